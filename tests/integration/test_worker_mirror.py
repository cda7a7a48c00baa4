"""A real Celery worker mirrors registered versions into MLflow, once, however often the task comes."""

from __future__ import annotations

import json

import pytest

from registry.choices import MirrorState
from registry.mlflow_mirror import TAG_VERSION_ID, mlflow_client
from registry.models import ModelVersion
from registry.tasks import version_mirror
from tests.factories import FoundationModelFactory
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT = 60.0


def _wait_mirrored(version_id: int, worker) -> ModelVersion:
    def mirrored():
        row = ModelVersion.objects.get(pk=version_id)
        return row if row.mirror_state == MirrorState.MIRRORED else None

    def describe():
        row = ModelVersion.objects.get(pk=version_id)
        return f"Version {version_id} is {row.mirror_state!r} ({row.mirror_error or 'no error'}). {worker.describe()}"

    return wait_for(mirrored, timeout=TIMEOUT, describe=describe)


def _wait_task_succeeded(task_id: str, worker):
    from django_celery_results.models import TaskResult

    return wait_for(
        lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").first(),
        timeout=TIMEOUT,
        describe=lambda: f"Task {task_id}: {list(TaskResult.objects.filter(task_id=task_id).values('status', 'result'))}. {worker.describe()}",
    )


def test_worker_mirrors_a_registered_version_once_however_often_the_task_comes(celery_worker, register_version, institutions):
    fm = FoundationModelFactory(provider=institutions["vendor"], name="ChestFM")

    # The registration commits and its on_commit hook queues the mirror for the worker.
    version = register_version(fm, "1.0.0", kind="external")
    row = _wait_mirrored(version.pk, celery_worker)

    client = mlflow_client()
    [mirrored] = client.search_model_versions("name='ChestFM'")
    assert (row.mlflow_model_name, row.mlflow_version) == ("ChestFM", str(mirrored.version))
    assert mirrored.tags[TAG_VERSION_ID] == str(version.pk)
    assert mirrored.tags["radtrust.sha256"] == version.artifact_sha256
    assert mirrored.tags["radtrust.version"] == "1.0.0"
    assert row.mirror_error == ""
    expected = {"model_name": "ChestFM", "mlflow_version": row.mlflow_version}

    # Redelivered while the row says mirrored: nothing new in MLflow.
    redelivered = version_mirror.delay(version.pk)
    assert json.loads(_wait_task_succeeded(redelivered.id, celery_worker).result) == expected

    # Redelivered after the worker created the MLflow version but its write to the row
    # was lost: the worker must find the version by its tag, not create a second one.
    ModelVersion.objects.filter(pk=version.pk).update(mirror_state=MirrorState.PENDING, mlflow_model_name="", mlflow_version="", mirrored_at=None)
    after_lost_write = version_mirror.delay(version.pk)
    assert json.loads(_wait_task_succeeded(after_lost_write.id, celery_worker).result) == expected

    row = ModelVersion.objects.get(pk=version.pk)
    assert (row.mirror_state, row.mlflow_version) == (MirrorState.MIRRORED, expected["mlflow_version"])
    assert [str(v.version) for v in client.search_model_versions("name='ChestFM'")] == [expected["mlflow_version"]]
    assert celery_worker.process.poll() is None, "the worker died while working"


@pytest.mark.parametrize("queue", ["gpu", "site.vendor"])
def test_a_task_routed_to_a_gpu_or_site_queue_reaches_a_worker_consuming_it(queue, celery_worker, institutions):
    from django_celery_results.models import TaskResult

    from radtrust.celery import site_queue
    from tests.factories import ModelVersionFactory

    version = ModelVersionFactory(foundation_model=FoundationModelFactory(provider=institutions["vendor"]))
    target = site_queue("vendor") if queue.startswith("site.") else queue
    result = version_mirror.apply_async((version.pk,), queue=target)
    # The factory's artifact has no files: the worker refuses to publish it, records why, and does not retry.
    failed = wait_for(
        lambda: ModelVersion.objects.filter(pk=version.pk, mirror_state=MirrorState.REFUSED).first(),
        timeout=TIMEOUT,
        describe=celery_worker.describe,
    )
    assert "fails verification" in failed.mirror_error
    task = wait_for(lambda: TaskResult.objects.filter(task_id=result.id, status="FAILURE").first(), timeout=TIMEOUT, describe=celery_worker.describe)
    assert task.worker.startswith("w1-")
    assert "ArtifactError" in task.result
