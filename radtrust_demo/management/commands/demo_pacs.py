"""``manage.py demo_pacs`` (``make demo-pacs``): the demo's validation read from a PACS over DICOMweb.

After ``manage.py demo``: starts Orthanc with its DICOMweb plugin on a free port with a throw-away
storage folder under the var folder, loads the demo's nodule test set (its DICOM files), defines
St. Anna's dataset "as held in the PACS" (a QIDO-RS query with the labels table keyed by SOP
Instance UID, credentials in this process's environment only), and validates the nodule model
on it with a real worker: the run freezes the query's instances, the worker fetches them with
WADO-RS into its cache and reads the DICOM headers for demographics and scanners. The same files
are validated from disk as well, and the two reports are compared figure by figure.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from core.audit import audit_context
from radtrust_demo.management.commands.demo import Command as DemoCommand
from radtrust_demo.orthanc import AUTH, OrthancError, orthanc
from radtrust_demo.pacs import dicom_files, header_manifest, sop_labels
from radtrust_demo.runs import LABEL, MODEL_NAME, TEST_SET, data_use_granted
from radtrust_engine.dicomweb import labels_table
from registry import services
from registry.choices import DataUsePurpose
from registry.dicomweb import dicomweb_source_set
from registry.models import Dataset, DicomwebManifest, ModelVersion, User
from validation.choices import RunStatus
from validation.reporting import follow_run
from validation.services import run_create

PACS_SET = "Nodule multi-site test set (St. Anna PACS)"
TWIN_SET = "Nodule multi-site test set (disk, headers only)"
CREDENTIALS_ENV = "RADTRUST_DEMO_PACS"
CONFIG = {"analyses": [], "n_resamples": 1000}


class Command(DemoCommand):
    help = "Start Orthanc, load the demo's DICOM test set and validate the demo's nodule model from it over DICOMweb."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=900.0, help="Seconds to wait for the worker to validate both ways.")

    def handle(self, *args, timeout: float, **options):
        version = ModelVersion.objects.filter(foundation_model__name=MODEL_NAME, version="1.0.0").first()
        test_set = Dataset.objects.filter(name=TEST_SET).first()
        if version is None or test_set is None or not test_set.location:
            raise CommandError("The demo's nodule model and test set are missing: run `make demo` first.")
        engineer, steward = User.objects.get(username="demo-engineer"), User.objects.get(username="demo-steward")
        root = Path(test_set.location)
        files = dicom_files(root, [LABEL])
        # The worker started below inherits this environment: the password never reaches the database.
        os.environ[f"{CREDENTIALS_ENV}_USER"], os.environ[f"{CREDENTIALS_ENV}_PASSWORD"] = AUTH
        try:
            with tempfile.TemporaryDirectory(dir=settings.VAR_DIR, prefix="orthanc-demo-") as folder, orthanc(Path(folder)) as pacs:
                self.stdout.write(
                    f"Orthanc with DICOMweb at {pacs.dicomweb_url} (storage {folder}, removed at the end); loading {len(files)} DICOM files ..."
                )
                pacs.upload(root / f.path for f in files)
                with audit_context(user=steward):
                    from_pacs = self._dataset(PACS_SET, test_set, steward, "")
                    dicomweb_source_set(
                        actor=steward,
                        dataset=from_pacs,
                        base_url=pacs.dicomweb_url,
                        credentials_env=CREDENTIALS_ENV,
                        modality="DX",
                        body_part="CHEST",
                        labels=labels_table(sop_labels(files)),
                    )
                with self._worker(timeout) as deadline:
                    pacs_run = self._run(version, from_pacs, engineer, deadline, "manifest.csv")
                    frozen = DicomwebManifest.objects.get(dataset=from_pacs, sha256=pacs_run.manifest_sha256)
                    header_manifest(root, files, [row[2] for row in frozen.content["instances"]])
                    with audit_context(user=steward):
                        twin = self._dataset(TWIN_SET, test_set, steward, str(root))
                    disk_run = self._run(version, twin, engineer, deadline, "manifest-headers.csv")
        except OrthancError as exc:
            raise CommandError(str(exc)) from None
        self._compare(pacs_run, disk_run, frozen)

    def _dataset(self, name: str, like: Dataset, steward: User, location: str) -> Dataset:
        """A copy of the test set's datasheet under ``name``, read from ``location`` (blank: from the PACS), granted to the provider."""
        dataset = Dataset.objects.filter(name=name).first()
        if dataset is None:
            fields = {f: getattr(like, f) for f in ("institution", "modality", "body_region", "legal_basis", "licence", "collection_purpose")}
            description = (
                f"The demo's nodule test set ({like.name}) as {'held in the PACS' if not location else 'files, with attributes from the headers'}."
            )
            dataset = services.record_create(
                model=Dataset, actor=steward, fields={**fields, "name": name, "description": description, "location": location}
            )
        for grant in like.use_grants.all():
            data_use_granted(dataset, steward=steward, grantee=grant.grantee, purpose=DataUsePurpose(grant.purpose))
        return dataset

    def _run(self, version, dataset, engineer, deadline: float, manifest: str):
        with audit_context(user=engineer):
            run = run_create(actor=engineer, version=version, dataset=dataset, manifest=manifest, config=CONFIG)
        self.stdout.write(f"Validation run {run.pk}: {version} on {dataset.name} ...")
        try:
            run = follow_run(run.pk, timeout=max(deadline - time.monotonic(), 1), stream=sys.stdout)
        except TimeoutError as exc:
            raise CommandError(str(exc)) from None
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"Validation run {run.pk} {run.status}: [{run.error_reason}] {run.error}")
        return run

    def _compare(self, pacs_run, disk_run, frozen) -> None:
        same = pacs_run.results["results"] == disk_run.results["results"]
        auroc = pacs_run.summary["labels"][LABEL]["overall"]["auroc"]
        w = self.stdout.write
        w("")
        w(f"From the PACS: run {pacs_run.pk}, {frozen.n_instances} instances frozen as manifest {frozen.sha256[:12]}..., fetched with WADO-RS.")
        w(f"From disk:     run {disk_run.pk}, the same DICOM files, attributes from the same headers.")
        w(
            f"AUROC {auroc['value']:.3f} (95% CI {auroc['ci_low']:.3f}-{auroc['ci_high']:.3f}) from the PACS; every figure and subgroup identical: {'yes' if same else 'NO'}."
        )
        w(f"Seconds: {pacs_run.timings.get('manifest', 0):.1f} to resolve and fetch, {pacs_run.timings.get('inference', 0):.1f} inference (PACS); "
          f"{disk_run.timings.get('inference', 0):.1f} inference (disk).")  # fmt: skip
        if not same:
            raise CommandError("The run from the PACS differs from the run on the same files: see both runs' reports.")
