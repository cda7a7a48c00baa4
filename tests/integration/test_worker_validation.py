"""Validation runs through real Celery worker processes: results, bad input, redelivery, a worker killed mid-run."""

from __future__ import annotations

import pytest

from core.models import AuditEvent
from tests.integration.conftest import wait_for
from validation import services
from validation.choices import MlflowState, RunStage, RunStatus
from validation.models import ValidationRun
from validation.tasks import run_execute

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT = 120.0


def _wait(run_id: int, worker, done=lambda run: run.finished, timeout: float = TIMEOUT) -> ValidationRun:
    def probe():
        run = ValidationRun.objects.get(pk=run_id)
        return run if done(run) else None

    def describe():
        run = ValidationRun.objects.get(pk=run_id)
        return (
            f"Run {run_id}: {run.status}/{run.stage} {run.progress:.2f} attempt {run.attempt} ({run.error_reason}: {run.error}). {worker.describe()}"
        )

    return wait_for(probe, timeout=timeout, interval=0.05, describe=describe)


def _events(run_id: int) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="validation.validationrun", object_id=str(run_id)).order_by("seq").values_list("action", flat=True)
    )


def test_a_worker_validates_logs_to_mlflow_and_keeps_serving_after_a_failure(celery_worker, run_setup):
    engineer, version, dataset = run_setup["engineer"], run_setup["version"], run_setup["dataset"]
    bad = services.run_create(actor=engineer, version=version, dataset=dataset, manifest="missing.csv")
    failed = _wait(bad.pk, celery_worker)
    assert (failed.status, failed.error_reason) == (RunStatus.FAILED, "bad_manifest")

    good = services.run_create(actor=engineer, version=version, dataset=dataset, config={"n_resamples": 200})
    run = _wait(good.pk, celery_worker)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.worker.startswith("w1-") and run.device["kind"] == "cpu"
    assert run.results["results"]["pneumothorax"]["overall"]["metrics"]["auroc"]["n_valid"] == 200
    logged = _wait(good.pk, celery_worker, done=lambda r: r.mlflow_state == MlflowState.LOGGED)
    assert logged.mlflow_run_id

    # The same task delivered again (a broker redelivery): nothing changes.
    again = run_execute.delay(good.pk)
    wait_for(lambda: "succeeded in" in celery_worker.log().split(again.id, 1)[-1], timeout=TIMEOUT, describe=celery_worker.describe)
    after = ValidationRun.objects.get(pk=good.pk)
    assert (after.attempt, after.finished_at, after.results) == (1, run.finished_at, run.results)
    assert _events(good.pk) == ["create", "claim", "succeed"]
    assert celery_worker.process.poll() is None


def test_a_worker_killed_mid_run_is_replaced_and_the_run_has_exactly_one_result(start_worker, run_setup, write_dataset):
    """SIGKILL the worker during inference; the sweeper hands the expired lease to a second worker."""
    from registry.services import record_update

    record_update(instance=run_setup["dataset"], fields={"location": str(write_dataset("large", n=3000))})
    lease = {"RADTRUST_RUN_LEASE_SECONDS": "4"}
    first = start_worker("w1", queues="gpu", env=lease)
    run = services.run_create(
        actor=run_setup["engineer"],
        version=run_setup["version"],
        dataset=run_setup["dataset"],
        config={"batch_size": 4, "n_resamples": 2000},
    )
    midway = _wait(run.pk, first, done=lambda r: r.stage in {RunStage.INFERENCE, RunStage.METRICS} and r.progress > 0.05)
    first.kill()
    assert midway.status == RunStatus.RUNNING and midway.attempt == 1 and midway.worker.startswith("w1-")

    second = start_worker("w2", queues="gpu", env=lease)
    # The embedded broker never redelivers the killed worker's message; the sweeper re-queues once the lease lapses.
    wait_for(lambda: services.run_sweep(unclaimed_after_seconds=3600)["requeued"], timeout=30, interval=0.5, describe=second.describe)
    done = _wait(run.pk, second)
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert done.attempt == 2 and done.worker.startswith("w2-")
    assert done.results["dataset"]["n_evaluated"] == 3000
    assert ValidationRun.objects.filter(status=RunStatus.SUCCEEDED).count() == 1
    assert _events(run.pk) == ["create", "claim", "requeue", "claim", "succeed"]

    # A late redelivery of the original message (Redis after its visibility timeout) changes nothing.
    run_execute.delay(run.pk)
    run_execute.delay(run.pk)
    wait_for(lambda: second.log().count("validation.tasks.run_execute[") >= 6, timeout=TIMEOUT, describe=second.describe)
    final = ValidationRun.objects.get(pk=run.pk)
    assert (final.attempt, final.finished_at, final.results) == (2, done.finished_at, done.results)


def test_validate_command_waits_with_a_progress_bar_and_prints_the_figures(celery_worker, run_setup, capsys):
    from django.core.management import call_command

    version = run_setup["version"]
    call_command(
        "validate",
        str(version.pk),
        run_setup["dataset"].name,
        "--user",
        "engineer",
        "--config",
        '{"n_resamples": 100, "min_patients": 5}',
        "--wait",
        "--timeout",
        "120",
    )
    out, err = capsys.readouterr()
    run = ValidationRun.objects.get()
    assert run.status == RunStatus.SUCCEEDED
    lines = err.splitlines()
    assert lines[0].startswith("[..............................]   0% Waiting for a worker")
    assert lines[-1].startswith("[##############################] 100% Done (attempt 1, w1-")
    assert f"Run {run.pk}: succeeded on " in out and "60 images evaluated, 0 skipped" in out
    auroc = run.summary["labels"]["pneumothorax"]["overall"]["auroc"]
    assert f"auroc {auroc['value']:.3f} [{auroc['ci_low']:.3f}, {auroc['ci_high']:.3f}]" in out
