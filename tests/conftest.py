"""Shared fixtures: personas, API clients, real ONNX artifacts and isolated file storage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True)
def isolated_storage(settings, tmp_path):
    """Each test stores artifacts and MLflow runs in its own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MLFLOW_TRACKING_URI = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    settings.MLFLOW_REGISTRY_URI = settings.MLFLOW_TRACKING_URI
    settings.MLFLOW_ARTIFACT_ROOT = str(tmp_path / "mlflow" / "artifacts")
    return tmp_path


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory) -> dict[str, list[Path]]:
    """Real torch-exported models, built once: ``inline`` (weights in the graph) and ``external``."""
    from registry.demo_models import export_tiny_classifier

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
