"""Validation runs on a dataset held in a real Orthanc, through a real worker: the same figures as the
same DICOM files read from disk, a frozen manifest, vanished instances, and a PACS that refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from radtrust_demo.orthanc import AUTH, free_port
from radtrust_demo.pacs import header_manifest, sop_labels
from radtrust_engine.dicomweb import labels_table
from registry.dicomweb import dicomweb_source_set
from registry.models import Dataset, DicomwebManifest
from registry.services import record_create
from tests.factories import DataUseGrantFactory
from tests.integration.conftest import PACS_IMAGES, PACS_LABEL
from tests.integration.test_worker_validation import _wait
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

N_IMAGES, LABEL = PACS_IMAGES, PACS_LABEL  # the set in the Orthanc of ``pacs`` (conftest)
ENV = "RT_TEST_PACS"


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


def test_a_sharded_run_from_the_pacs_fetches_each_shards_own_instances_and_reports_as_unsharded(
    run_setup, pacs_dataset, settings, monkeypatch, tmp_path
):
    """The coordinator's worker holds the whole set (it reads every header for the report); a shard
    scored on another machine, with a cache of its own, fetches that shard's instances and no others."""
    from radtrust_engine.scoring import comparable
    from validation import sharding, tasks
    from validation.models import RunShard

    config = {"n_resamples": 100, "min_patients": 5}
    whole = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=pacs_dataset, config=config)
    split = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=pacs_dataset, config=config)
    settings.RADTRUST_SHARD_MIN_IMAGES = 100_000
    assert services.run_execute(run_id=whole.pk, worker="w1") == RunStatus.SUCCEEDED

    settings.RADTRUST_SHARD_MIN_IMAGES, settings.RADTRUST_SHARD_IMAGES = 20, 16
    coordinator_cache, fetched = settings.RADTRUST_DICOMWEB_CACHE, {}

    def other_machine(args, queue):  # the odd shards go to a second worker as soon as they are sent
        shard = RunShard.objects.get(pk=args[0])
        if shard.index % 2 == 1:
            settings.RADTRUST_DICOMWEB_CACHE = tmp_path / f"machine-{shard.index}"
            try:
                assert sharding.shard_execute(shard_id=shard.pk, worker="w2") == RunStatus.SUCCEEDED
            finally:
                settings.RADTRUST_DICOMWEB_CACHE = coordinator_cache
            fetched[shard.index] = sorted(p.stem for p in (tmp_path / f"machine-{shard.index}").glob("*/*.dcm"))

    monkeypatch.setattr(tasks.run_shard_execute, "apply_async", other_machine)
    assert services.run_execute(run_id=split.pk, worker="w1") == RunStatus.SUCCEEDED

    shards = list(RunShard.objects.filter(run=split))
    assert len(shards) >= 3 and {s.worker for s in shards} == {"w1", "w2"}
    for shard in shards:
        if shard.index % 2 == 1:
            assert fetched[shard.index] == sorted(i.sop_uid for i in sharding.shard_cases(shard).instances)
            assert len(fetched[shard.index]) == shard.n_images < N_IMAGES
    whole.refresh_from_db()
    split.refresh_from_db()
    assert comparable(split.results) == comparable(whole.results) and split.results["dataset"]["n_evaluated"] == N_IMAGES


def test_scheduled_revalidation_resolves_the_pacs_query_again_and_runs(run_setup, pacs_dataset, pacs, generated, personas, monkeypatch):
    from datetime import timedelta

    from registry.choices import DeploymentStatus, RevalidationState
    from registry.models import ModelVersion
    from registry.services import deployment_create
    from tests.factories import within_clinical_investigation
    from validation import revalidation

    today = run_setup["dataset"].created_at.date()
    version = run_setup["version"]
    ModelVersion.objects.filter(pk=version.pk).update(status="approved")
    version.refresh_from_db()
    within_clinical_investigation(version, pacs_dataset.institution, personas["officer"])
    deployment = deployment_create(
        actor=personas["officer"],
        version=version,
        institution=pacs_dataset.institution,
        status=DeploymentStatus.ACTIVE,
        since=today - timedelta(days=30),
        revalidation_cadence_days=30,
    )
    monkeypatch.setattr(revalidation, "run_enqueue", lambda *, run_id, queue: None)  # the run is executed here below

    assert revalidation.revalidation_dispatch(today=today)["queued"] == [deployment.pk]
    first = ValidationRun.objects.get(deployment=deployment)
    assert (first.dataset, first.queue, first.manifest) == (pacs_dataset, "gpu", "dicomweb")
    assert DicomwebManifest.objects.get(sha256=first.manifest_sha256).n_instances == N_IMAGES
    assert services.run_execute(run_id=first.pk, worker="w1") == RunStatus.SUCCEEDED
    deployment.refresh_from_db()
    assert deployment.revalidation_state == RevalidationState.SUCCEEDED

    # A cadence later the PACS holds one instance less: the query is resolved again, to a new frozen manifest.
    gone = DicomwebManifest.objects.get(sha256=first.manifest_sha256).content["instances"][3][2]
    pacs.delete_instance(gone)
    try:
        assert revalidation.revalidation_dispatch(today=today + timedelta(days=30))["queued"] == [deployment.pk]
    finally:
        root, files = generated
        pacs.upload([root / f.path for f in files if f.sop_uid == gone])
    second = ValidationRun.objects.filter(deployment=deployment).exclude(pk=first.pk).get()
    assert second.manifest_sha256 != first.manifest_sha256
    assert DicomwebManifest.objects.get(sha256=second.manifest_sha256).n_instances == N_IMAGES - 1
