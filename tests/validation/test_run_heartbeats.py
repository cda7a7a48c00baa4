"""A worker's heartbeat thread: the lease outlives a long analysis, a cancel and a lost lease are
seen without waiting for the engine's next progress report.

The run is executed on a thread of this process while the test watches the database, so the
rows are committed (``transaction=True``). The evaluation is a stub that blocks on an event, as
an analysis that reports no progress for a long time would; nothing here waits a fixed time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F

from tests.integration.conftest import wait_for
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun

pytestmark = pytest.mark.django_db(transaction=True)

BOUND = 60.0  # seconds: a generous bound on waiting for an event, never an asserted duration


@dataclass
class BlockedEvaluation:
    """Stands in for ``services._evaluate``: waits for ``release``, then makes the engine's next
    progress call (which raises if the heartbeat thread asked the evaluation to stop) and
    evaluates for real."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    reporter: services.RunReporter | None = None


@pytest.fixture
def blocked(monkeypatch) -> BlockedEvaluation:
    gate = BlockedEvaluation()
    evaluate = services._evaluate

    def blocked_evaluate(run_id, reporter):
        gate.reporter = reporter
        gate.entered.set()
        if not gate.release.wait(BOUND):
            raise TimeoutError("the test never released the evaluation")
        reporter("inference", 0.5)
        return evaluate(run_id, reporter)

    monkeypatch.setattr(services, "_evaluate", blocked_evaluate)
    return gate


@pytest.fixture
def execute() -> Iterator:
    """``execute(run_id)`` runs ``services.run_execute`` on a worker thread of its own; a Future."""
    with ThreadPoolExecutor(max_workers=1) as pool:

        def submit(run_id: int) -> Future:
            def run() -> str | None:
                try:
                    return services.run_execute(run_id=run_id, worker="w1")
                finally:
                    connection.close()

            return pool.submit(run)

        yield submit


def _create(run_setup) -> ValidationRun:
    return services.run_create(
        actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 20, "min_patients": 5}
    )


def _heartbeat_threads(run_id: int) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == f"run-{run_id}-heartbeat"]


def test_a_heartbeat_keeps_a_blocked_run_alive_past_several_lease_periods(run_setup, settings, blocked, execute):
    settings.RADTRUST_RUN_LEASE_SECONDS = 3
    run = _create(run_setup)
    outcome = execute(run.pk)
    assert blocked.entered.wait(BOUND), "the evaluation never started"
    claimed = ValidationRun.objects.get(pk=run.pk)
    # No progress is reported while the evaluation is blocked: only the heartbeat thread can
    # carry the lease three lease periods beyond the one the claim gave.
    beyond = claimed.lease_until + timedelta(seconds=3 * settings.RADTRUST_RUN_LEASE_SECONDS)
    wait_for(
        lambda: ValidationRun.objects.get(pk=run.pk).lease_until > beyond,
        timeout=BOUND,
        describe=lambda: f"The lease stayed at {ValidationRun.objects.get(pk=run.pk).lease_until}, the claim gave {claimed.lease_until}.",
    )
    # A sweep at a moment when the claim's lease had long expired finds the run alive.
    assert services.run_sweep(now=beyond)["requeued"] == []
    assert (blocked.reporter.stop.is_set(), ValidationRun.objects.get(pk=run.pk).stage) == (False, claimed.stage)

    blocked.release.set()
    assert outcome.result(timeout=BOUND) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert (run.status, run.attempt, run.worker, run.lease_until) == (RunStatus.SUCCEEDED, 1, "w1", None)
    assert _heartbeat_threads(run.pk) == []  # stopped and joined before the outcome was written


def test_a_cancel_is_seen_while_the_evaluation_reports_no_progress(run_setup, settings, blocked, execute):
    # Renewals 200 s apart: only the heartbeat thread's cancel check can see the request within the bound.
    settings.RADTRUST_RUN_LEASE_SECONDS = 600
    run = _create(run_setup)
    outcome = execute(run.pk)
    assert blocked.entered.wait(BOUND), "the evaluation never started"
    services.run_cancel(actor=run_setup["engineer"], run=run)
    assert blocked.reporter.stop.wait(BOUND), "the heartbeat thread never saw the cancel"

    blocked.release.set()  # the engine's next progress call stops the evaluation
    assert outcome.result(timeout=BOUND) == RunStatus.CANCELLED
    run.refresh_from_db()
    assert (run.status, run.error_reason, run.error, run.results) == (RunStatus.CANCELLED, "cancelled", "Cancelled while running.", None)
    assert _heartbeat_threads(run.pk) == []


def test_a_lease_taken_over_stops_the_evaluation_without_writing(run_setup, settings, blocked, execute):
    settings.RADTRUST_RUN_LEASE_SECONDS = 600
    run = _create(run_setup)
    outcome = execute(run.pk)
    assert blocked.entered.wait(BOUND), "the evaluation never started"
    ValidationRun.objects.filter(pk=run.pk).update(attempt=F("attempt") + 1, worker="w2")  # the sweeper gave it to another worker
    assert blocked.reporter.stop.wait(BOUND), "the heartbeat thread never saw the lease go"

    blocked.release.set()
    assert outcome.result(timeout=BOUND) is None
    run.refresh_from_db()
    assert (run.status, run.attempt, run.worker, run.results) == (RunStatus.RUNNING, 2, "w2", None)
