"""``manage.py demo``: walk the registry path end to end on generated data and the embedded defaults.

Creates two institutions and a user per role, a foundation model with a base and a
fine-tuned version (real ONNX files exported with torch), two datasets with
datasheets and provenance; generates a multi-site radiograph test set and trains a
nodule CNN on generated data (``radtrust_demo.runs``); starts a real Celery worker on
the configured broker that mirrors the versions into MLflow and validates the nodule
model on its test set; verifies the audit chain; runs a federated study with the server
and a site agent per hospital as separate processes (``radtrust_demo.federated``);
prints the figures and where everything is. Running it again reuses what exists (and
validates again).

A Vision Transformer encoder with an embedding output, its linear probe and its fine-tune
(``radtrust_demo.encoder_demo``) get the data-efficiency evaluation: the small ViT by default,
the ViT-B/16-sized one (86 M parameters) with ``--vit`` or ``RADTRUST_DEMO_VIT=1``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from compliance.models import DeploymentMonitor
from compliance.trust.services import trust_assess
from core.audit import audit_context, audit_verify_chain
from core.choices import Role
from radtrust_demo.ct import CT_SUITE, ct_lines, ct_setup
from radtrust_demo.dossiers import approval_demo, demo_credentials, dossier_demo, feedback_demo, market_demo, substantial_approval_demo
from radtrust_demo.encoder_demo import EFFICIENCY_SUITE, efficiency_lines, encoder_setup
from radtrust_demo.federated import federated_demo, federated_lines
from radtrust_demo.networks import export_tiny_classifier
from radtrust_demo.runs import drift_datasets, drift_lines, fine_tuned_setup, found_effects_lines, nodule_model_setup, suite_lines, trust_lines
from radtrust_demo.usage import usage_demo, usage_lines
from radtrust_engine.report import RunReport
from registry import services
from registry.choices import MirrorState, Modality, ProvenanceRole, Task
from registry.mlflow_mirror import mlflow_client
from registry.models import Dataset, FoundationModel, Institution, ModelVersion, Provenance, User
from registry.tasks import version_mirror
from validation.baselines import run_set_baseline, version_baseline
from validation.choices import MlflowState, RunStatus
from validation.models import ValidationRun
from validation.reporting import follow_run, summary_lines
from validation.services import run_create

MODEL_NAME = "ChestFM-Pneumothorax"
USERS = {
    "demo-engineer": (Role.ML_ENGINEER, "radvendor"),
    "demo-officer": (Role.COMPLIANCE_OFFICER, "radvendor"),
    "demo-officer-2": (Role.COMPLIANCE_OFFICER, "radvendor"),
    "demo-clinician": (Role.CLINICIAN, "st-anna"),
    "demo-steward": (Role.COMPLIANCE_OFFICER, "st-anna"),  # St. Anna's data steward: grants RadVendor the use of its data
    "demo-clinician-2": (Role.CLINICIAN, "city-general"),
    "demo-auditor": (Role.AUDITOR, "radvendor"),
    "demo-worker": (Role.WORKER, "radvendor"),
}


FULL_SUITE = {"analyses": ["calibration", "drift", "explainability", "generalisation", "robustness", "uncertainty"]}


class Command(BaseCommand):
    help = "Create demo data, mirror it into MLflow with a real worker, and print a summary."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait for the worker to mirror the versions and validate.")
        parser.add_argument(
            "--vit",
            action="store_true",
            default=os.environ.get("RADTRUST_DEMO_VIT", "") == "1",
            help="Build the ViT-B/16-sized encoder (86 M parameters, ~340 MB) instead of the small ViT (also RADTRUST_DEMO_VIT=1).",
        )

    def handle(self, *args, timeout: float, vit: bool, **options):
        started = time.monotonic()
        with audit_context(label="demo"):
            sites = self._institutions()
            credentials = self._users(sites)
            engineer = User.objects.get(username="demo-engineer")
            base, tuned = self._model_and_versions(sites["radvendor"], engineer)
            self._datasets(sites, engineer, base, tuned)
            steward = User.objects.get(username="demo-steward")
            nodule, test_set = nodule_model_setup(
                engineer=engineer, steward=steward, provider=sites["radvendor"], site=sites["st-anna"], out=self.stdout.write
            )
            go_live, follow_ups = drift_datasets(engineer=engineer, steward=steward, site=sites["st-anna"], out=self.stdout.write)
            tuned_nodule = fine_tuned_setup(engineer=engineer, parent=nodule, test_set=test_set, out=self.stdout.write)
            ct = ct_setup(engineer=engineer, steward=steward, provider=sites["radvendor"], site=sites["st-anna"], out=self.stdout.write)
            encoder = encoder_setup(engineer=engineer, provider=sites["radvendor"], full=vit, out=self.stdout.write)
        with self._worker(timeout) as deadline:
            self._mirror([base, tuned, nodule, tuned_nodule, encoder.base, encoder.probe, encoder.fine_tune], deadline)
            self._baseline(nodule, go_live, engineer, deadline)
            run = self._validate(nodule, test_set, engineer, deadline, FULL_SUITE)
            later = [self._validate(nodule, dataset, engineer, deadline, {"analyses": ["drift"]}) for dataset in follow_ups]
            self._validate(tuned_nodule, test_set, engineer, deadline, FULL_SUITE)
            ct_runs = [self._validate(version, ct.dataset, engineer, deadline, CT_SUITE) for version in (ct.detector, ct.segmenter)]
            fine_tune_run = self._validate(encoder.fine_tune, encoder.dataset, engineer, deadline, EFFICIENCY_SUITE)
            efficiency_run = self._validate(encoder.base, encoder.dataset, engineer, deadline, EFFICIENCY_SUITE, comparator=fine_tune_run)
        verdict = audit_verify_chain()
        if not verdict.ok:
            raise CommandError(f"The audit chain is broken at event #{verdict.broken_seq}: {verdict.reason}")
        self._summary(base, tuned, credentials, verdict.checked, time.monotonic() - started)
        self._validation_summary(run)
        self._drift_summary(later)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("3D: lesion detection and volume segmentation on generated chest CT"))
        for line in ct_lines(ct, ct_runs):
            self.stdout.write(line)
        self._efficiency_summary(efficiency_run)
        officers = {"officer": User.objects.get(username="demo-officer"), "reviewer": User.objects.get(username="demo-officer-2")}
        with audit_context(label="demo"):
            self.stdout.write("")
            approval_demo(version=nodule, engineer=engineer, out=self.stdout.write, **officers)
            market_demo(version=nodule, out=self.stdout.write, **officers)  # deployment is refused before it
            monitoring = feedback_demo(
                version=nodule,
                sites=sites,
                officer=officers["officer"],
                clinicians={"st-anna": User.objects.get(username="demo-clinician"), "city-general": User.objects.get(username="demo-clinician-2")},
                out=self.stdout.write,
            )
            monitoring["usage"] = usage_demo(deployments=monitoring["deployments"], out=self.stdout.write)
        self._monitoring_summary(monitoring)
        self._federated_summary(
            nodule, engineer, [sites[code] for code in ("st-anna", "city-general", "north-clinic")], timeout
        )  # before the scores, which read its heterogeneity
        self._trust_summary([nodule, tuned_nodule])
        with audit_context(label="demo"):
            dossiers = dossier_demo(versions=[nodule, tuned_nodule], out=self.stdout.write, **officers)
            substantial_approval_demo(version=tuned_nodule, engineer=engineer, out=self.stdout.write, **officers)
            market_demo(version=tuned_nodule, out=self.stdout.write, **officers)
        self._documents_summary(dossiers)

    def _institutions(self) -> dict[str, Institution]:
        specs = {
            "radvendor": {
                "name": "RadVendor GmbH",
                "kind": Institution.Kind.PROVIDER,
                "country": "DE",
                "contact_email": "regulatory@radvendor.example",
            },
            "st-anna": {
                "name": "St. Anna University Hospital",
                "kind": Institution.Kind.HOSPITAL,
                "country": "NL",
                "contact_email": "radiology@st-anna.example",
            },
            "city-general": {
                "name": "City General Hospital",
                "kind": Institution.Kind.HOSPITAL,
                "country": "BE",
                "contact_email": "imaging@city-general.example",
            },
            "north-clinic": {
                "name": "North Clinic",
                "kind": Institution.Kind.HOSPITAL,
                "country": "DK",
                "contact_email": "radiology@north-clinic.example",
            },
        }
        return {
            code: Institution.objects.filter(code=code).first()
            or services.record_create(model=Institution, actor=None, fields={"code": code, **fields})
            for code, fields in specs.items()
        }

    def _users(self, sites) -> dict[str, str]:
        """Create the persona accounts with random passwords, kept in var/demo-credentials.txt (mode 600)."""
        path = Path(settings.VAR_DIR) / "demo-credentials.txt"
        existing = demo_credentials()
        for username, (role, site) in USERS.items():
            if User.objects.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(12)
            user = services.user_create(username=username, role=role, institution=sites[site], password=password)
            user.is_staff = True  # the admin shows each role what its permissions allow
            user.save(update_fields=["is_staff"])
            existing[username] = password
        path.write_text("".join(f"{u} {p}\n" for u, p in existing.items()))
        path.chmod(0o600)
        return existing

    def _model_and_versions(self, vendor, engineer) -> tuple[ModelVersion, ModelVersion]:
        model = FoundationModel.objects.filter(name=MODEL_NAME).first() or services.record_create(
            model=FoundationModel,
            actor=engineer,
            fields={
                "name": MODEL_NAME,
                "provider": vendor,
                "description": "A chest radiograph encoder pre-trained self-supervised, with a pneumothorax head.",
                "intended_purpose": "Flag suspected pneumothorax on adult frontal chest radiographs for prioritised reading by a radiologist.",
                "intended_users": "Radiologists and emergency physicians.",
                "modality": Modality.DX,
                "body_region": "chest",
                "task": Task.BINARY,
                "licence": "Proprietary, per-site licence",
            },
        )
        schema = {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}}
        base = self._version(
            model, engineer, "1.0.0", None, seed=1, external=True, notes="Base model: pre-trained encoder with a linear probe.", schema=schema
        )
        tuned = self._version(
            model, engineer, "1.1.0", base, seed=2, external=False, notes="Fine-tuned on St. Anna pneumothorax cases.", schema=schema
        )
        return base, tuned

    def _version(self, model, engineer, number, parent, *, seed, external, notes, schema) -> ModelVersion:
        existing = ModelVersion.objects.filter(foundation_model=model, version=number).first()
        if existing:
            return existing
        with tempfile.TemporaryDirectory() as folder:
            files = export_tiny_classifier(Path(folder), seed=seed, external_data=external)
            handles = [open(p, "rb") for p in files]
            try:
                return services.version_register(
                    actor=engineer,
                    foundation_model=model,
                    version=number,
                    parent=parent,
                    model_file=(files[0].name, handles[0]),
                    data_files=[(p.name, h) for p, h in zip(files[1:], handles[1:])],
                    output_schema=schema,
                    preprocessing={"resize": [64, 64], "normalise": {"mean": 0.5, "std": 0.25}, "channels": "1xHxW"},
                    release_notes=notes,
                )
            finally:
                for h in handles:
                    h.close()

    def _datasets(self, sites, engineer, base, tuned) -> None:
        common = {"modality": Modality.DX, "body_region": "chest", "legal_basis": "research"}
        pretrain = Dataset.objects.filter(name="EU-CXR-Pretrain").first() or services.record_create(
            model=Dataset,
            actor=engineer,
            fields={
                **common,
                "name": "EU-CXR-Pretrain",
                "institution": sites["radvendor"],
                "description": "Unlabelled frontal chest radiographs for self-supervised pre-training.",
                "collection_start": date(2015, 1, 1),
                "collection_end": date(2022, 12, 31),
                "collection_purpose": "Routine clinical care; re-used for research under a data-use agreement.",
                "patient_count": 410_000,
                "study_count": 655_000,
                "image_count": 702_000,
                "scanners": [
                    {"manufacturer": "Siemens", "model": "Ysio Max", "count": 300_000},
                    {"manufacturer": "Philips", "model": "DigitalDiagnost", "count": 402_000},
                ],
                "protocols": {"PA": 520_000, "AP portable": 182_000},
                "demographics": {"sex": {"F": 198_000, "M": 212_000}, "age_band": {"18-39": 90_000, "40-64": 170_000, "65+": 150_000}},
                "label_source": "None (self-supervised).",
                "preparation": "DICOM to 16-bit PNG, de-duplicated by SOP Instance UID, burned-in text masked.",
                "deidentification": "DICOM PS3.15 basic profile with retained longitudinal dates.",
                "licence": "Data-use agreement DUA-2023-07",
                "known_limitations": "No paediatric cases; one country's population.",
                "location": "RadVendor research data lake (EU region)",
            },
            m2m={"source_institutions": [sites["radvendor"]]},
        )
        finetune = Dataset.objects.filter(name="StAnna-PTX-2023").first() or services.record_create(
            model=Dataset,
            actor=engineer,
            fields={
                **common,
                "name": "StAnna-PTX-2023",
                "institution": sites["radvendor"],
                "description": "Labelled pneumothorax cases and controls from St. Anna.",
                "collection_start": date(2021, 1, 1),
                "collection_end": date(2023, 6, 30),
                "patient_count": 2_400,
                "scanners": [{"manufacturer": "GE", "model": "Definium 656", "count": 2_400}],
                "demographics": {"sex": {"F": 1_100, "M": 1_300}},
                "label_source": "Two radiologists, consensus on disagreement.",
                "rater_count": 2,
                "rater_agreement": "Cohen's kappa 0.84",
                "location": "St. Anna PACS research enclave (data stays on site)",
            },
            m2m={"source_institutions": [sites["st-anna"]]},
        )
        links = [
            (base, pretrain, ProvenanceRole.PRETRAINING),
            (tuned, pretrain, ProvenanceRole.PRETRAINING),
            (tuned, finetune, ProvenanceRole.FINE_TUNING),
        ]
        for version, dataset, role in links:
            if not Provenance.objects.filter(version=version, dataset=dataset, role=role).exists():
                services.provenance_link(actor=engineer, version=version, dataset=dataset, role=role)

    @contextmanager
    def _worker(self, timeout: float) -> Iterator[float]:
        """A real worker on the configured broker, consuming ``default`` and ``gpu``, for the demo's tasks; yields the deadline."""
        log = Path(settings.VAR_DIR) / "demo-worker.log"
        self.stdout.write(f"Starting a Celery worker (queues default, gpu; log {log}) ...")
        with open(log, "w") as out:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "radtrust",
                    "worker",
                    "--pool",
                    "solo",
                    "-Q",
                    "default,gpu",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "info",
                    "-n",
                    "demo@%h",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            self._worker_process = worker
            try:
                yield time.monotonic() + timeout
            finally:
                worker.terminate()
                worker.wait(timeout=30)

    def _wait(self, done, deadline: float, what: str) -> None:
        while not done():
            if self._worker_process.poll() is not None:
                raise CommandError(f"The worker exited early; see {Path(settings.VAR_DIR) / 'demo-worker.log'}")
            if time.monotonic() > deadline:
                raise CommandError(f"Timed out waiting for {what}; see {Path(settings.VAR_DIR) / 'demo-worker.log'}")
            time.sleep(0.5)

    def _mirror(self, versions: list[ModelVersion], deadline: float) -> None:
        """Queue the mirror of every version not yet in MLflow and wait for the worker to do it."""
        pending = [v.pk for v in versions if v.mirror_state != MirrorState.MIRRORED]
        with transaction.atomic():
            for pk in pending:  # versions created in an earlier, interrupted run may have no message queued
                transaction.on_commit(lambda pk=pk: version_mirror.delay(pk))
        self.stdout.write(f"Mirroring {len(pending)} version(s) into MLflow ...")
        self._wait(
            lambda: not ModelVersion.objects.filter(pk__in=pending).exclude(mirror_state=MirrorState.MIRRORED).exists(), deadline, "the MLflow mirror"
        )

    def _baseline(self, version, dataset, engineer, deadline: float) -> None:
        """Validate on the go-live data and mark that run as the version's baseline (once)."""
        if version_baseline(version) is None:
            run = self._validate(version, dataset, engineer, deadline, {"analyses": ["calibration"]})
            with audit_context(user=engineer):
                run_set_baseline(actor=engineer, run=run)
            self.stdout.write(f"Run {run.pk} on {dataset.name} is the baseline of {version}.")

    def _validate(self, version, dataset, engineer, deadline: float, config: dict, comparator=None):
        """Queue a validation run as the demo engineer, follow its progress, wait for its MLflow copy."""
        with audit_context(user=engineer):
            run = run_create(actor=engineer, version=version, dataset=dataset, config=config, comparator=comparator)
        self.stdout.write(f"Validation run {run.pk}: {version} on {dataset.name} ({dataset.image_count} images, 1000 bootstrap resamples) ...")
        try:
            run = follow_run(run.pk, timeout=max(deadline - time.monotonic(), 1), stream=sys.stdout)
        except TimeoutError as exc:
            raise CommandError(str(exc)) from None
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"Validation run {run.pk} {run.status}: [{run.error_reason}] {run.error}")
        self._wait(lambda: ValidationRun.objects.filter(pk=run.pk, mlflow_state=MlflowState.LOGGED).exists(), deadline, "the run's MLflow logging")
        return ValidationRun.objects.get(pk=run.pk)

    def _validation_summary(self, run) -> None:
        w = self.stdout.write
        total = sum(run.timings.values())
        stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run.timings.items())
        w("")
        w(self.style.SUCCESS(f"Validation run {run.pk}: {run.version} on {run.dataset.name}"))
        w(f"  Device       {run.device.get('name')} ({', '.join(run.device.get('providers', []))}), worker {run.worker}")
        w(f"  Time         {total:.1f} s: {stages}")
        for line in summary_lines(run.summary):
            w(line)
        w("Planted effects and what the run found:")
        report = RunReport.from_dict(run.results)
        for line in found_effects_lines(run.summary, report):
            w(line)
        for line in suite_lines(report):
            w(line)
        for line in drift_lines(run):
            w(line)
        charts = run.files.filter(kind="chart").count()
        overlays = run.files.filter(kind="saliency").count()
        w(f"  Files        {charts} charts (SVG) and {overlays} saliency overlays (PNG): GET /api/run-files/?run={run.pk}")
        w(f"  Report       GET /api/validation-runs/{run.pk}/  (MLflow run {run.mlflow_run_id})")
        w(
            f"  Again        .venv/bin/python manage.py validate {run.version.foundation_model.name}:{run.version.version} '{run.dataset.name}' --user demo-engineer --wait"
        )

    def _drift_summary(self, runs) -> None:
        w = self.stdout.write
        w("")
        w(self.style.SUCCESS("Later data against the go-live baseline (sites a and b):"))
        for run in runs:
            w(f"Run {run.pk} on {run.dataset.name}")
            for line in drift_lines(run):
                w(line)
        w("  Alerts       GET /api/alerts/")

    def _efficiency_summary(self, run) -> None:
        w = self.stdout.write
        w("")
        w(self.style.SUCCESS(f"Data efficiency of {run.version} (embeddings), against its fine-tune {run.comparator.version}:"))
        for line in efficiency_lines(run):
            w(line)

    def _trust_summary(self, versions) -> None:
        """Score both nodule versions on their evidence now and print them side by side, with why."""
        with audit_context(label="demo"):
            assessments = [trust_assess(version=v, trigger="demo") for v in versions]
        w = self.stdout.write
        w("")
        w(self.style.SUCCESS("FUTURE-AI trustworthiness, base and fine-tuned (0-100; 'insufficient' where required evidence is missing):"))
        for line in trust_lines(assessments):
            w(line)
        w("  Pages        " + ", ".join(f"/versions/{v.pk}/trust/" for v in versions) + f"; manage.py trust {versions[0].pk} --json")

    def _documents_summary(self, dossiers: list[dict]) -> None:
        """Each signed dossier, its change log's classification, and every document's path and hash."""
        w = self.stdout.write
        w("")
        w(self.style.SUCCESS("Dossiers signed by a second officer, and the documents rendered from their frozen snapshots:"))
        for item in dossiers:
            dossier = item["dossier"]
            signature = dossier.signature
            w(
                f"  {dossier.version}  revision {dossier.revision}, snapshot sha256 {dossier.snapshot_sha256[:16]}..., "
                f"signed by {signature.signer_name or signature.signer.username} at {signature.signed_at:%Y-%m-%d %H:%M}   /dossiers/{dossier.pk}/"
            )
            change_log = (dossier.snapshot.get("evidence") or {}).get("change_log")
            if change_log:
                w(f"    change log against {change_log['parent']['label']}: {change_log['classification']['label']}")
                for reason in change_log["classification"]["reasons"][:4]:
                    w(f"      - {reason['text']}")
            for document in item["documents"]:
                pages = f", {document.pages} pages" if document.pages else ""
                w(
                    f"    {document.get_kind_display():<62} {Path(settings.MEDIA_ROOT) / document.storage_name}  sha256 {document.sha256[:16]}...{pages}"
                )
        w("  Verify       manage.py verify_documents; each PDF's PAdES signature with any PDF reader or pdfsig, trusting")
        w(f"               {Path(settings.RADTRUST_SIGNING_DIR) / 'ca.cert.pem'} (docs/operating.md, document signing keys)")

    def _federated_summary(self, version, engineer, hospitals, timeout: float) -> None:
        """The federated study: the server and one site agent per hospital as separate processes, then the pooled figures."""
        self.stdout.write("")
        with audit_context(label="demo"):
            result = federated_demo(version=version, engineer=engineer, hospitals=hospitals, out=self.stdout.write, timeout=timeout)
        self.stdout.write(self.style.SUCCESS(f"Federated validation of {version} at {len(hospitals)} hospitals (only aggregates left each site):"))
        for line in federated_lines(result):
            self.stdout.write(line)

    def _monitoring_summary(self, monitoring: dict) -> None:
        w = self.stdout.write
        w("")
        w(self.style.SUCCESS("Clinician feedback and post-market monitoring:"))
        for code, deployment in monitoring["deployments"].items():
            m = DeploymentMonitor.objects.get(deployment=deployment)
            state = "ALARM" if m.state.get("alarmed") else "in control"
            w(
                f"  {code:<13} {m.n_feedback} reports ({m.n_disagree} disagree, {m.n_partly} partly); rate at deployment "
                f"{m.baseline_rate:.1%}; CUSUM {m.state.get('statistic', 0):.2f} of h={m.design['h']:.2f}: {state}   /monitoring/{deployment.pk}/"
            )
        for line in usage_lines(monitoring["usage"], monitoring["deployments"]):
            w(line)
        alert, incident = monitoring["alert"], monitoring["incident"]
        if alert is None:
            w("  No alert was raised.")
            return
        w(f"  Alert {alert.pk}    [{alert.severity}] {alert.message}")
        w(f"  Trend    {incident.pk} {incident.title}: {incident.get_triage_display()}: no serious-incident report   /incidents/{incident.pk}/")
        suspected = monitoring["suspected"]
        report = suspected.reports.first()
        w(
            f"  Incident {suspected.pk} flagged by a clinician, triaged {suspected.get_incident_type_display().lower()}: {suspected.legal_basis}, "
            f"aware {suspected.aware_on}, report by {suspected.deadline}; initial report {report.reference} sent {report.submitted_on}   /incidents/{suspected.pk}/"
        )
        w(
            "  Pages        make serve, then http://127.0.0.1:8000/ as demo-clinician or demo-clinician-2 (feedback) and demo-officer (monitoring, alerts, incidents)"
        )

    def _summary(self, base, tuned, credentials, audit_events, seconds) -> None:
        client = mlflow_client()
        mirrored = client.search_model_versions(f"name='{MODEL_NAME}'")
        w = self.stdout.write
        w("")
        w(self.style.SUCCESS(f"RadTrust demo ready in {seconds:.0f} s"))
        w(f"  Model        {MODEL_NAME}")
        for v in (base, tuned):
            v.refresh_from_db()
            parent = f", fine-tuned from {v.parent.version}" if v.parent_id else ""
            w(
                f"  Version      {v.version}{parent}: sha256 {v.artifact_sha256[:16]}..., {v.parameter_count} parameters, opset {v.opset}, MLflow version {v.mlflow_version}"
            )
        w(f"  MLflow       {len(mirrored)} version(s) of {MODEL_NAME} in {settings.MLFLOW_TRACKING_URI}")
        w(f"  Datasets     {', '.join(Dataset.objects.values_list('name', flat=True))}")
        w(f"  Artifacts    {Path(settings.MEDIA_ROOT) / 'artifacts'}")
        w(f"  Database     {settings.DATABASES['default']['NAME']}")
        w(f"  Audit trail  {audit_events} events, chain intact (manage.py verify_audit)")
        w(f"  Users        {', '.join(f'{u} ({USERS[u][0].label})' for u in USERS)}; passwords in {Path(settings.VAR_DIR) / 'demo-credentials.txt'}")
        w("")
        w("Next:")
        w("  make serve                          then http://127.0.0.1:8000/admin/ and http://127.0.0.1:8000/api/docs/")
        if settings.MLFLOW_TRACKING_URI.startswith("sqlite:"):
            w(f"  .venv/bin/mlflow ui --backend-store-uri {settings.MLFLOW_TRACKING_URI}   then http://127.0.0.1:5000/")
        else:
            w(f"  MLflow UI at {settings.MLFLOW_TRACKING_URI}")
