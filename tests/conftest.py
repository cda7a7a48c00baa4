"""Shared fixtures: personas, API clients, real ONNX artifacts, image datasets and isolated file storage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import time_machine
from django.db import connection

from tests.clock import session_midday, session_midday_fix

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def pytest_configure(config):
    """Fix the session's midday before collection and before xdist starts its workers, which inherit it."""
    session_midday_fix()


@pytest.fixture(autouse=True)
def midday(request):
    """Unit tests run on the session's day at 12:00 UTC with the clock ticking from there: an expectation
    built from "today" or "an hour ago" then holds whatever hour the suite runs at (a run that crossed
    midnight once failed on dates). Integration tests keep the real clock, which their worker and
    server processes share."""
    if request.node.get_closest_marker("integration"):
        yield None
        return
    with time_machine.travel(session_midday().timestamp(), tick=True) as traveller:  # a timestamp: no TZ set per test
        yield traveller


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """On PostgreSQL, let the test flush empty the audit tables: a transactional test ends with one
    TRUNCATE of every table, which their append-only triggers refuse (core migration 0002). Only
    the TRUNCATE triggers are disabled; the row triggers stay, and tests/compliance/test_tamper.py
    turns a TRUNCATE trigger back on inside its transaction to check it. SQLite's flush deletes
    row by row, so there the signature's delete trigger is dropped (compliance migration 0010);
    tests/compliance/test_signature_records.py installs it again inside its transaction."""
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for table in ("compliance_auditevent", "compliance_audithead"):
                    cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_truncate")
        elif connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("DROP TRIGGER IF EXISTS compliance_dossiersignature_undeletable")


@pytest.fixture(autouse=True)
def isolated_storage(settings, tmp_path):
    """Each test stores artifacts, MLflow runs and audit checkpoints in its own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RADTRUST_AUDIT_CHECKPOINT_DIR = tmp_path / "audit"
    settings.MLFLOW_TRACKING_URI = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    settings.MLFLOW_REGISTRY_URI = settings.MLFLOW_TRACKING_URI
    settings.MLFLOW_ARTIFACT_ROOT = str(tmp_path / "mlflow" / "artifacts")
    settings.RADTRUST_DATA_ROOTS = [str(tmp_path / "data")]
    from django.core.cache import cache

    cache.clear()  # debounce keys (compliance.trust.services.trust_request) must not leak between tests
    return tmp_path


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory) -> dict[str, list[Path]]:
    """Real torch-exported models, built once: ``inline`` (weights in the graph) and ``external``."""
    from radtrust_demo.networks import export_tiny_classifier

    root = tmp_path_factory.mktemp("onnx")
    return {
        "inline": export_tiny_classifier(root / "inline", seed=1),
        "external": export_tiny_classifier(root / "external", seed=2, external_data=True),
    }


@pytest.fixture
def onnx_copy(onnx_files, tmp_path):
    """A writable copy of one of the session's models (tests may corrupt it)."""

    def copy(kind: str) -> list[Path]:
        folder = tmp_path / f"copy-{kind}"
        folder.mkdir(exist_ok=True)
        return [Path(shutil.copy(p, folder / p.name)) for p in onnx_files[kind]]

    return copy


@pytest.fixture
def institutions(db):
    from tests.factories import InstitutionFactory

    return {
        "vendor": InstitutionFactory(code="vendor", name="RadVendor GmbH", kind="provider"),
        "north": InstitutionFactory(code="north", name="North Hospital"),
        "south": InstitutionFactory(code="south", name="South Hospital"),
    }


@pytest.fixture
def personas(institutions):
    """An ML engineer and two officers at the vendor, a clinician at each hospital, an auditor, a worker."""
    from registry.services import user_create

    spec = {
        "engineer": ("ml_engineer", "vendor"),
        "officer": ("compliance_officer", "vendor"),
        "officer2": ("compliance_officer", "vendor"),
        "clinician_north": ("clinician", "north"),
        "clinician_south": ("clinician", "south"),
        "auditor": ("auditor", "vendor"),
        "worker": ("worker", "vendor"),
        "engineer_south": ("ml_engineer", "south"),
    }
    return {name: user_create(username=name, role=role, institution=institutions[site]) for name, (role, site) in spec.items()}


@pytest.fixture
def api_client():
    """An API client factory: ``api_client(user)`` is authenticated as that user (``None``: anonymous)."""
    from rest_framework.test import APIClient

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def register_version(onnx_files, personas):
    """Register a version through the service with a real artifact."""
    from registry.services import version_register

    def register(foundation_model, version="1.0.0", *, kind="inline", parent=None, actor=None, **kwargs):
        files = onnx_files[kind]
        handles = [open(p, "rb") for p in files]
        try:
            return version_register(
                actor=actor or personas["engineer"],
                foundation_model=foundation_model,
                version=version,
                parent=parent,
                model_file=(files[0].name, handles[0]),
                data_files=[(p.name, h) for p, h in zip(files[1:], handles[1:])],
                output_schema=kwargs.pop("output_schema", {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}}),
                **kwargs,
            )
        finally:
            for h in handles:
                h.close()

    return register


MANIFEST_HEADER = "image_path,patient_id,study_date,age,sex,site,pneumothorax"


@pytest.fixture
def write_dataset(isolated_storage):
    """``write_dataset(name, n=...)`` writes n 64x64 NPY images and a manifest under the data root.

    Positives carry a bright square, so the tiny model's scores still rank; two
    images per patient, two sites, two sexes, ages 20-89; ``offset`` shifts every
    intensity (a miscalibrated detector). Returns the folder.
    """

    def write(name: str = "cxr", *, n: int = 60, seed: int = 0, rows: list[str] | None = None, offset: float = 0.0) -> Path:
        root = Path(isolated_storage) / "data" / name
        (root / "img").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        lines = [MANIFEST_HEADER]
        for i in range(n):
            label = int(i % 3 == 0)
            image = rng.normal(offset, 1.0, (64, 64)).astype(np.float32)
            if label:
                image[20:40, 20:40] += 3.0
            np.save(root / "img" / f"{i}.npy", image)
            lines.append(f"img/{i}.npy,p{i // 2},2024-01-{1 + i % 28:02d},{20 + (i * 7) % 70},{'FM'[i % 2]},{'AB'[(i // 2) % 2]},{label}")
        lines.extend(rows or [])
        (root / "manifest.csv").write_text("\n".join(lines) + "\n")
        return root

    return write


@pytest.fixture
def run_setup(personas, register_version, write_dataset):
    """A registered tiny classifier (sigmoid on its logits), and a North hospital dataset folder
    with its Dataset row, granted to the provider by North for external validation and linked
    to the version as external validation data."""
    from registry.models import Dataset
    from registry.services import provenance_link, record_create
    from tests.factories import DataUseGrantFactory, FoundationModelFactory

    model = FoundationModelFactory(provider=personas["engineer"].institution)
    version = register_version(
        model,
        output_schema={"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}, "activation": "sigmoid"},
    )
    root = write_dataset()
    dataset = record_create(
        model=Dataset,
        actor=personas["engineer"],
        fields={"name": "North test set", "institution": personas["clinician_north"].institution, "modality": "DX", "location": str(root)},
    )
    DataUseGrantFactory(dataset=dataset, grantee=model.provider)
    provenance_link(actor=personas["engineer"], version=version, dataset=dataset, role="external_validation")
    return {"version": version, "dataset": dataset, "root": root, "engineer": personas["engineer"], "model": model}


@pytest.fixture
def deployed(personas, institutions):
    """A version deployed at the North and South hospitals, for feedback, monitoring and incidents."""
    from registry.choices import DeploymentStatus, MdrClass, VersionStatus
    from tests.factories import DeploymentFactory, FoundationModelFactory, ModelVersionFactory, within_clinical_investigation

    model = FoundationModelFactory(
        provider=institutions["vendor"],
        mdr_class=MdrClass.IIA,
        instructions_for_use="Read every flagged film yourself.",
        known_limitations="Weaker for patients aged 65 and over.",
    )
    version = ModelVersionFactory(foundation_model=model, status=VersionStatus.DEPLOYED)
    for where in ("north", "south"):
        within_clinical_investigation(version, institutions[where], personas["officer"])
    return {
        "version": version,
        "north": DeploymentFactory(version=version, institution=institutions["north"], status=DeploymentStatus.ACTIVE),
        "south": DeploymentFactory(version=version, institution=institutions["south"], status=DeploymentStatus.ACTIVE),
    }


@pytest.fixture
def report(personas, deployed):
    """``report(agreement, ...)`` submits one feedback through the service as the North clinician."""
    from compliance.feedback import feedback_submit

    def submit(agreement: str = "agree", *, who: str = "clinician_north", where: str = "north", **fields):
        fields.setdefault("case_reference", "CASE-7f3a9c")
        fields.setdefault("model_output", "pneumothorax 0.82 (flagged)")
        if agreement != "agree":
            fields.setdefault("error_type", "false_positive")
        feedback, _ = feedback_submit(actor=personas[who], deployment=deployed[where], agreement=agreement, **fields)
        return feedback

    return submit


@pytest.fixture
def pin_release_evidence(personas):
    """``pin_release_evidence(version)``: the officer pins every run of the version on its test data as its declared performance."""
    from compliance.release_evidence import TEST, release_evidence_pin, version_run_role
    from validation.models import ValidationRun

    def pin(version):
        role = version_run_role(version)
        runs = [r for r in ValidationRun.objects.filter(version=version, status="succeeded").order_by("pk") if role(r) == TEST]
        return release_evidence_pin(actor=personas["officer"], version=version, runs=runs, population="Adults with frontal chest radiographs.")

    return pin


@pytest.fixture
def evidenced(run_setup, pin_release_evidence):
    """run_setup's version after one succeeded run, pinned as its release evidence, so evidence-backed dossier fields have evidence."""
    from validation import services

    run = services.run_create(
        actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 50, "min_patients": 5}
    )
    services.run_execute(run_id=run.pk, worker="w")
    pin_release_evidence(run_setup["version"])
    return run_setup["version"]


@pytest.fixture
def signing_password(personas, settings):
    """The password the two officer personas sign with (a signature asks for it again). Hashed
    with a fast hasher: these tests are about signing, not about password hashing."""
    from tests.factories import SIGNING_PASSWORD

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for name in ("officer", "officer2"):
        personas[name].set_password(SIGNING_PASSWORD)
        personas[name].save(update_fields=["password"])
    return SIGNING_PASSWORD


@pytest.fixture
def sign_dossier(personas, signing_password, pin_release_evidence):
    """``sign_dossier(version)``: the release evidence pinned (where none is), every officer field filled by the officer,
    submitted, and signed by the second officer."""
    from compliance.dossiers import dossier_open, dossier_save, dossier_sign, dossier_submit
    from tests.factories import dossier_officer_values

    def sign(version, values: dict | None = None):
        if not version.release_evidence.exists():
            pin_release_evidence(version)
        dossier = dossier_open(actor=personas["officer"], version=version)
        dossier = dossier_save(
            actor=personas["officer"], dossier=dossier, values={**dossier_officer_values(), **(values or {})}, edit_count=dossier.edit_count
        )
        dossier = dossier_submit(actor=personas["officer"], dossier=dossier)
        return dossier_sign(actor=personas["officer2"], dossier=dossier, password=signing_password, snapshot_sha256=dossier.snapshot_sha256).dossier

    return sign
