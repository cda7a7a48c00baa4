"""Validation runs on a dataset held in a real Orthanc, through a real worker: the same figures as the
same DICOM files read from disk, a frozen manifest, vanished instances, and a PACS that refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from radtrust_demo.data import generate_dataset
from radtrust_demo.orthanc import AUTH, free_port
from radtrust_demo.orthanc import orthanc as start_orthanc
from radtrust_demo.pacs import dicom_files, header_manifest, sop_labels
from radtrust_engine.dicomweb import labels_table
from registry.dicomweb import dicomweb_source_set
from registry.models import Dataset, DicomwebManifest
from registry.services import record_create
from tests.factories import DataUseGrantFactory
from tests.integration.test_worker_validation import _wait
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

N_IMAGES = 60
LABEL = "pneumothorax"  # the tiny classifier's class (tests/conftest.py, run_setup)
ENV = "RT_TEST_PACS"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated DICOM test set (three sites, headers with sex, age and scanner) and its files' UIDs and labels."""
    root = tmp_path_factory.mktemp("generated")
    generate_dataset(root, n_images=N_IMAGES, seed=5, label=LABEL)
    return root, dicom_files(root, [LABEL])


@pytest.fixture(scope="module")
def pacs(generated, tmp_path_factory):
    root, files = generated
    with start_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        server.upload(root / f.path for f in files)
        yield server


@pytest.fixture
def pacs_dataset(run_setup, generated, pacs, monkeypatch, settings, tmp_path):
    """North's dataset defined as a DICOMweb query on the Orthanc, granted to the provider; credentials in the environment."""
    monkeypatch.setenv(f"{ENV}_USER", AUTH[0])
    monkeypatch.setenv(f"{ENV}_PASSWORD", AUTH[1])
    settings.RADTRUST_DICOMWEB_CACHE = tmp_path / "dicomweb-cache"
    north = run_setup["dataset"].institution
    dataset = record_create(model=Dataset, actor=run_setup["engineer"], fields={"name": "North PACS set", "institution": north, "modality": "DX"})
    DataUseGrantFactory(dataset=dataset, grantee=run_setup["model"].provider)
    dicomweb_source_set(
        actor=run_setup["engineer"],
        dataset=dataset,
        base_url=pacs.dicomweb_url,
        credentials_env=ENV,
        modality="DX",
        body_part="CHEST",
        labels=labels_table(sop_labels(generated[1])),
    )
    return dataset


def _worker(start_worker, settings):
    return start_worker("w1", queues="gpu", env={"RADTRUST_DICOMWEB_CACHE": str(settings.RADTRUST_DICOMWEB_CACHE)})


def test_a_run_from_the_pacs_gives_the_figures_of_the_same_files_read_from_disk(run_setup, pacs_dataset, generated, start_worker, settings):
    root, files = generated
    config = {"n_resamples": 200, "min_patients": 5}
    from_pacs = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=pacs_dataset, config=config)
    frozen = DicomwebManifest.objects.get(dataset=pacs_dataset, sha256=from_pacs.manifest_sha256)
    assert frozen.n_instances == N_IMAGES and frozen.unlabelled == 0

    twin = Path(settings.RADTRUST_DATA_ROOTS[0]) / "twin"
    shutil.copytree(root, twin)
    header_manifest(twin, files, [row[2] for row in frozen.content["instances"]])
    disk = record_create(
        model=Dataset,
        actor=run_setup["engineer"],
        fields={"name": "North disk twin", "institution": pacs_dataset.institution, "modality": "DX", "location": str(twin)},
    )
    DataUseGrantFactory(dataset=disk, grantee=run_setup["model"].provider)
    from_disk = services.run_create(
        actor=run_setup["engineer"], version=run_setup["version"], dataset=disk, manifest="manifest-headers.csv", config=config
    )

    worker = _worker(start_worker, settings)
    pacs_run, disk_run = _wait(from_pacs.pk, worker), _wait(from_disk.pk, worker)
    assert (pacs_run.status, disk_run.status) == (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED), (pacs_run.error, disk_run.error)
    assert pacs_run.results["results"] == disk_run.results["results"]
    assert pacs_run.results["dataset"]["n_evaluated"] == disk_run.results["dataset"]["n_evaluated"] == N_IMAGES
    assert pacs_run.results["dataset"]["header_fill"] == disk_run.results["dataset"]["header_fill"]
    assert pacs_run.manifest_sha256 == frozen.sha256
    assert len(list(Path(settings.RADTRUST_DICOMWEB_CACHE).glob("*/*.dcm"))) == N_IMAGES

    # The same query again: the same frozen manifest (nothing changed in the PACS), read from the cache.
    again = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=pacs_dataset, config=config)
    assert again.manifest_sha256 == frozen.sha256 and DicomwebManifest.objects.count() == 1
    assert _wait(again.pk, worker).results["results"] == pacs_run.results["results"]


def test_an_instance_that_vanished_after_freezing_is_skipped_or_fails_the_run_past_the_allowance(
    run_setup, pacs_dataset, pacs, generated, start_worker, settings
):
    tolerant = services.run_create(
        actor=run_setup["engineer"], version=run_setup["version"], dataset=pacs_dataset, config={"n_resamples": 100, "max_unreadable_share": 0.05}
    )
    strict = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=pacs_dataset, config={"n_resamples": 100})
    frozen = DicomwebManifest.objects.get(sha256=tolerant.manifest_sha256)
    gone = frozen.content["instances"][7][2]
    pacs.delete_instance(gone)
    try:
        worker = _worker(start_worker, settings)
        kept, failed = _wait(tolerant.pk, worker), _wait(strict.pk, worker)
    finally:  # the module's other tests find the PACS whole again
        root, files = generated
        pacs.upload([root / f.path for f in files if f.sop_uid == gone])
    assert kept.status == RunStatus.SUCCEEDED, kept.error
    assert kept.results["dataset"]["n_evaluated"] == N_IMAGES - 1
    assert [(s["image_path"], s["kind"]) for s in kept.results["skipped"]] == [(f"{gone}.dcm", "not_found")]
    assert (failed.status, failed.error_reason) == (RunStatus.FAILED, "unreadable_images")
    assert "1 of 60 instances could not be retrieved" in failed.error
    assert "vanished from the PACS since the manifest was frozen (1)" in failed.error


def test_a_refusing_down_empty_or_too_large_pacs_refuses_the_run_and_stores_nothing(run_setup, pacs_dataset, generated, monkeypatch, settings):
    def refused(match: str):
        with pytest.raises(ValidationError, match=match) as caught:
            services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=pacs_dataset)
        assert list(caught.value.message_dict) == ["dataset"]
        assert not ValidationRun.objects.filter(dataset=pacs_dataset).exists() and not DicomwebManifest.objects.exists()

    monkeypatch.setenv(f"{ENV}_PASSWORD", "wrong")
    refused("HTTP 401, the PACS refused the credentials")
    monkeypatch.setenv(f"{ENV}_PASSWORD", AUTH[1])
    settings.RADTRUST_DICOMWEB_MAX_INSTANCES = 10
    refused("more than 10 instances, the configured limit")
    settings.RADTRUST_DICOMWEB_MAX_INSTANCES = 1000
    source = pacs_dataset.dicomweb
    source.modality = "MR"
    source.save()
    refused("matches no instance")
    other_labels = labels_table([{"SOPInstanceUID": f.sop_uid, "effusion": 1} for f in generated[1]])
    source = pacs_dataset.dicomweb = dicomweb_source_set(
        actor=run_setup["engineer"], dataset=pacs_dataset, base_url=source.base_url, credentials_env=ENV, modality="DX", labels=other_labels
    )
    refused(r"has no column for the class\(es\) pneumothorax")
    source.modality, source.base_url = "DX", f"http://127.0.0.1:{free_port()}/dicom-web"
    source.save()
    refused("does not answer")
