"""A worker that cannot reach its database refuses to start, and the run it would have eaten waits
on the queue for a worker that can record it."""

from __future__ import annotations

import pytest

from tests.integration.conftest import WORKER_READY_TIMEOUT, wait_for
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT = 120.0


def test_a_worker_without_its_database_exits_with_a_clear_message_and_takes_no_run(spawn_worker, start_worker, run_setup, tmp_path):
    run = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 20})
    # A PostgreSQL socket folder that does not exist: the connection fails at once.
    unreachable = f"postgres://radtrust@/radtrust?host={tmp_path / 'no-database-here'}"
    blind = spawn_worker("blind", queues="gpu", env={"DATABASE_URL": unreachable})
    wait_for(lambda: blind.process.poll() is not None, timeout=WORKER_READY_TIMEOUT, describe=blind.describe)
    log = blind.log()
    assert blind.process.returncode != 0, log
    assert "RadTrust worker: cannot reach the database" in log and "check DATABASE_URL" in log, log
    assert " ready." not in log and "run_execute[" not in log, log

    healthy = start_worker("w2", queues="gpu")

    def finished():
        current = ValidationRun.objects.get(pk=run.pk)
        return current if current.finished else None

    done = wait_for(finished, timeout=TIMEOUT, describe=healthy.describe)
    assert (done.status, done.attempt) == (RunStatus.SUCCEEDED, 1), done.error
    assert done.worker.startswith("w2-")
