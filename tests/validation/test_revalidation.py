"""Scheduled revalidation: due deployments get exactly one run per due date, even with racing dispatchers."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from registry.choices import DeploymentStatus, RevalidationState
from registry.models import Dataset, Deployment
from tests.concurrency import race
from validation import revalidation, services
from validation.choices import RunStatus
from validation.models import ValidationRun
from validation.revalidation import next_due_on, revalidation_dispatch

TODAY = date(2026, 11, 28)


@pytest.fixture
def deployment(run_setup, personas):
    from registry.services import deployment_create
    from tests.factories import within_clinical_investigation

    version = run_setup["version"]
    from registry.models import ModelVersion

    ModelVersion.objects.filter(pk=version.pk).update(status="approved")
    version.refresh_from_db()
    within_clinical_investigation(version, personas["clinician_north"].institution, personas["officer"])  # deployable before placing on the market
    deployed = deployment_create(
        actor=personas["officer"],
        version=version,
        institution=personas["clinician_north"].institution,
        status=DeploymentStatus.ACTIVE,
        since=TODAY - timedelta(days=40),
        revalidation_cadence_days=30,
    )
    return deployed


def test_a_due_deployment_gets_one_run_on_its_sites_newest_data(deployment, run_setup, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(revalidation, "run_enqueue", lambda *, run_id, queue: sent.append((run_id, queue)))  # where it is called
    with django_capture_on_commit_callbacks(execute=True):
        outcome = revalidation_dispatch(today=TODAY)
    run = ValidationRun.objects.get()
    assert outcome == {"queued": [deployment.pk], "no_data": [], "skipped": []}
    assert (run.deployment, run.dataset, run.due_on, run.requested_by, run.queue) == (
        deployment,
        run_setup["dataset"],
        TODAY - timedelta(days=10),
        None,
        "gpu",
    )
    assert sent == [(run.pk, "gpu")]
    deployment.refresh_from_db()
    assert deployment.revalidation_state == RevalidationState.QUEUED and f"Run {run.pk}" in deployment.revalidation_note
    # Beat fires again the same day: the next due date is a cadence later, nothing new.
    assert revalidation_dispatch(today=TODAY) == {"queued": [], "no_data": [], "skipped": []}
    assert next_due_on(deployment) == TODAY + timedelta(days=20)


def test_the_runs_end_is_written_on_the_deployment(deployment):
    revalidation_dispatch(today=TODAY)
    run = ValidationRun.objects.get()
    assert services.run_execute(run_id=run.pk, worker="w") == RunStatus.SUCCEEDED
    deployment.refresh_from_db()
    assert deployment.revalidation_state == RevalidationState.SUCCEEDED and deployment.revalidated_at is not None


def test_not_due_ended_and_dataless_deployments(deployment, run_setup):
    assert revalidation_dispatch(today=TODAY - timedelta(days=11)) == {"queued": [], "no_data": [], "skipped": []}
    from registry.models import Dataset

    Dataset.objects.filter(pk=run_setup["dataset"].pk).update(location="")
    assert revalidation_dispatch(today=TODAY)["no_data"] == [deployment.pk]
    deployment.refresh_from_db()
    assert deployment.revalidation_state == RevalidationState.NO_DATA and "no dataset with a location" in deployment.revalidation_note
    Deployment.objects.filter(pk=deployment.pk).update(status=DeploymentStatus.ENDED)
    assert revalidation_dispatch(today=TODAY) == {"queued": [], "no_data": [], "skipped": []}
    assert not ValidationRun.objects.exists()


def test_data_under_a_root_but_not_on_this_server_goes_to_the_sites_queue(deployment, run_setup, settings, monkeypatch):
    """The roots list the site workers' folders too; a folder absent here is the site's to read."""
    site_folder = f"{settings.RADTRUST_DATA_ROOTS[0]}/site-north/chest"  # a site worker's path, not mounted here
    Dataset.objects.filter(pk=run_setup["dataset"].pk).update(location=site_folder)
    monkeypatch.setattr(revalidation, "run_enqueue", lambda *, run_id, queue: None)  # where it is called
    revalidation_dispatch(today=TODAY)
    assert ValidationRun.objects.get().queue == "site.north"


@pytest.mark.django_db(transaction=True)
def test_racing_dispatchers_queue_exactly_one_run(deployment):
    """Two dispatchers in two threads (two database connections) at once: one run."""
    outcomes, errors = race(lambda: revalidation_dispatch(today=TODAY))
    assert not errors, errors
    assert ValidationRun.objects.filter(deployment=deployment).count() == 1
    assert sum(len(o["queued"]) for o in outcomes) == 1


def _pacs_dataset(run_setup, base_url: str) -> Dataset:
    """North's newest dataset, held in a PACS at ``base_url`` (labels for the version's class)."""
    from radtrust_engine.dicomweb import labels_table
    from registry.dicomweb import dicomweb_source_set
    from registry.services import record_create

    dataset = record_create(
        model=Dataset,
        actor=run_setup["engineer"],
        fields={"name": "North PACS set", "institution": run_setup["dataset"].institution, "modality": "DX"},
    )
    table = labels_table([{"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1", "pneumothorax": 1}])
    dicomweb_source_set(actor=run_setup["engineer"], dataset=dataset, base_url=base_url, modality="DX", labels=table)
    return dataset


def test_a_model_that_is_not_a_classifier_is_revalidated_on_folder_data_not_a_newer_pacs_dataset(deployment, run_setup):
    """A PACS dataset's labels are per study or instance: a segmenter falls back to the site's newest folder."""
    from radtrust_demo.orthanc import free_port
    from registry.models import FoundationModel

    folder = revalidation.newest_site_dataset(deployment)
    pacs = _pacs_dataset(run_setup, f"http://127.0.0.1:{free_port()}/dicom-web")
    assert folder is not None and revalidation.newest_site_dataset(deployment) == pacs  # a classifier: the newer PACS set

    FoundationModel.objects.filter(pk=deployment.version.foundation_model_id).update(task="segmentation")
    deployment.refresh_from_db()
    deployment.version.foundation_model.refresh_from_db()
    assert revalidation.newest_site_dataset(deployment) == folder


def test_a_pacs_dataset_is_revalidated_and_a_pacs_that_is_down_fails_it_with_the_reason(deployment, run_setup, personas):
    from core.errors import Conflict
    from radtrust_demo.orthanc import free_port
    from registry.models import DicomwebManifest

    dataset = _pacs_dataset(run_setup, f"http://127.0.0.1:{free_port()}/dicom-web")  # nothing listens there
    assert revalidation.newest_site_dataset(deployment) == dataset

    assert revalidation_dispatch(today=TODAY) == {"queued": [], "no_data": [deployment.pk], "skipped": []}
    deployment.refresh_from_db()
    assert deployment.revalidation_state == RevalidationState.FAILED
    assert deployment.revalidation_note.startswith(
        f"revalidation due on {TODAY - timedelta(days=10)}: no run on North PACS set: North PACS set could not"
    )
    assert "the PACS does not answer (ConnectionError)" in deployment.revalidation_note
    assert not ValidationRun.objects.exists() and not DicomwebManifest.objects.exists()  # nothing half-stored
    assert next_due_on(deployment) == TODAY - timedelta(days=10)  # still due: the next beat tries again
    with pytest.raises(Conflict, match="the PACS does not answer") as refused:
        revalidation.revalidation_queue_now(actor=personas["officer"], deployment=deployment, reason="proposed by alert 1")
    assert refused.value.code == "pacs_unresolved"
