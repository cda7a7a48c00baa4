"""The sweeper re-sends what was left undone, once per period from the last send, one sweep at a
time; a claim the database refuses is retried, not dropped. Time is moved with explicit ``now``
arguments, never by sleeping."""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from validation import services, tasks
from validation.choices import MlflowState, RunStatus
from validation.models import ValidationRun

pytestmark = pytest.mark.django_db

NO_SHARDS = {"shards_requeued": [], "shards_failed": [], "shards_resent": []}  # no sharded run to sweep

SECOND = timedelta(seconds=1)


def _create(run_setup) -> ValidationRun:
    """A run whose first send never happened (its transaction, the test's, never commits)."""
    return services.run_create(
        actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 20, "min_patients": 5}
    )


def test_a_queued_run_is_resent_once_per_period_from_its_last_send(run_setup, monkeypatch):
    run = _create(run_setup)
    sent = []
    monkeypatch.setattr(tasks.run_execute, "apply_async", lambda args, queue: sent.append(args[0]))
    period = timedelta(seconds=600)

    def resent(at) -> list[int]:
        return services.run_sweep(now=at, unclaimed_after_seconds=600)["resent"]

    assert resent(run.created_at + period - SECOND) == []  # never sent: judged by its creation
    first = run.created_at + period + SECOND
    assert resent(first) == [run.pk]
    assert ValidationRun.objects.get(pk=run.pk).sent_at == first
    assert resent(first + SECOND) == []  # a backlog behind a busy worker does not grow
    assert resent(first + period - SECOND) == []
    assert resent(first + period + SECOND) == [run.pk]
    assert sent == [run.pk, run.pk]


def test_a_resend_the_broker_refuses_is_tried_again_by_the_next_sweep(run_setup, monkeypatch):
    first, second = _create(run_setup), _create(run_setup)
    refused = []

    def broker_down(args, queue):
        refused.append(args[0])
        raise BrokerDown("connection refused")

    monkeypatch.setattr(tasks.run_execute, "apply_async", broker_down)
    later = second.created_at + timedelta(hours=1)
    assert services.run_sweep(now=later, unclaimed_after_seconds=600)["resent"] == []
    assert refused == [first.pk]  # the broker refuses the rest too: the sweep stops at the first
    assert ValidationRun.objects.get(pk=first.pk).sent_at is None

    monkeypatch.setattr(tasks.run_execute, "apply_async", lambda args, queue: None)
    assert services.run_sweep(now=later + SECOND, unclaimed_after_seconds=600)["resent"] == [first.pk, second.pk]


def test_an_mlflow_copy_lost_to_a_broker_outage_is_resent_until_done(run_setup, django_capture_on_commit_callbacks, monkeypatch):
    from compliance.tasks import trust_recompute
    from registry.mlflow_mirror import version_mirror
    from validation import mlflow_log

    version_mirror(version_id=run_setup["version"].pk)
    monkeypatch.setattr(trust_recompute, "apply_async", lambda *args, **kwargs: None)  # the rescore is compliance's sweep's business
    sends = []
    log_to_mlflow = mlflow_log._log

    def mlflow_down_once(run):
        if sends.count(run.pk) == 2:
            raise ConnectionError("MLflow is not answering")
        return log_to_mlflow(run)

    def delay(run_id):
        """The broker: down for the first send; then a worker takes each copy at once."""
        sends.append(run_id)
        if len(sends) == 1:
            raise BrokerDown("connection refused")
        with suppress(ConnectionError):  # the worker's failure, recorded on the row, not the sender's
            mlflow_log.run_log(run_id=run_id)

    monkeypatch.setattr(tasks.run_log_mlflow, "delay", delay)
    monkeypatch.setattr(mlflow_log, "_log", mlflow_down_once)
    run = _create(run_setup)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.run_execute(run_id=run.pk, worker="w") == RunStatus.SUCCEEDED  # the refused send fails nothing
    run.refresh_from_db()
    assert (run.mlflow_state, run.mlflow_sent_at, sends) == (MlflowState.PENDING, None, [run.pk])

    def mlflow_resent(at) -> list[int]:
        return services.run_sweep(now=at)["mlflow_resent"]

    assert mlflow_resent(run.finished_at + services.MLFLOW_RESEND_AFTER - SECOND) == []
    second = run.finished_at + services.MLFLOW_RESEND_AFTER + SECOND
    assert mlflow_resent(second) == [run.pk]
    run.refresh_from_db()
    assert (run.mlflow_state, run.mlflow_sent_at, run.mlflow_lease_until) == (MlflowState.FAILED, second, None)
    assert "MLflow is not answering" in run.mlflow_error

    assert mlflow_resent(second + services.MLFLOW_RESEND_AFTER - SECOND) == []
    assert mlflow_resent(second + services.MLFLOW_RESEND_AFTER + SECOND) == [run.pk]
    run.refresh_from_db()
    assert run.mlflow_state == MlflowState.LOGGED and run.mlflow_run_id
    assert mlflow_resent(second + 10 * services.MLFLOW_RESEND_AFTER) == []  # done: never sent again
    assert sends == [run.pk] * 3


def test_a_copy_held_by_a_worker_is_neither_copied_nor_resent(run_setup, monkeypatch):
    from validation.mlflow_log import run_log

    run = _create(run_setup)
    services.run_execute(run_id=run.pk, worker="w")
    assert services.run_mlflow_claim(run_id=run.pk, lease_seconds=3600) is True
    assert run_log(run_id=run.pk) is None  # a retried task backs off while another worker copies
    sent = []
    monkeypatch.setattr(tasks.run_log_mlflow, "delay", sent.append)
    assert services.run_sweep(now=timezone.now() + services.MLFLOW_RESEND_AFTER + SECOND)["mlflow_resent"] == []
    assert sent == []


def test_one_sweep_at_a_time_and_a_dead_holder_lets_it_lapse():
    start = timezone.now()
    with services.sweep_lock("sweep", seconds=60, now=start) as first:
        with services.sweep_lock("sweep", seconds=60, now=start + SECOND) as second:
            assert (first, second) == (True, False)
        with services.sweep_lock("sweep", seconds=60, now=start + 61 * SECOND) as after_a_holder_died:
            assert after_a_holder_died
    with services.sweep_lock("sweep", seconds=60, now=start + 62 * SECOND) as next_sweep:
        assert next_sweep  # released by the sweep that held it last


def test_the_sweep_task_does_nothing_while_another_sweep_runs():
    with services.sweep_lock("validation-run-sweep", seconds=60) as held:
        assert held and tasks.run_sweep.apply().get() is None
    assert tasks.run_sweep.apply().get() == {"requeued": [], "failed": [], "resent": [], "mlflow_resent": [], **NO_SHARDS}


def test_a_sweep_that_waited_past_its_period_expires(settings):
    """beat's database scheduler turns the entry's ``expire_seconds`` into the message's expiry."""
    from django_celery_beat.schedulers import ModelEntry

    from radtrust.celery import app

    for name in ("validation-run-sweep", "compliance-trust-missed-sweep"):
        entry = settings.CELERY_BEAT_SCHEDULE[name]
        scheduled = ModelEntry.from_entry(name, app=app, **entry)
        assert scheduled.options["expires"] == entry["schedule"]


def test_a_claim_the_database_refuses_is_retried_and_noted_on_the_run(run_setup, monkeypatch):
    run = _create(run_setup)
    claims = []

    def refused(**kwargs):
        claims.append(kwargs)
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(services, "run_claim", refused)
    result = tasks.run_execute.apply((run.pk,))  # eager: each retry runs at once
    assert len(claims) == 1 + tasks.run_execute.max_retries  # sent again each time, never acknowledged as done
    assert isinstance(result.result, OperationalError)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert "could not claim the run: the database refused (OperationalError)" in run.error
    assert "could not connect" not in run.error  # the details stay in the worker's log
