"""A sharded run through two real Celery workers decoding in processes: the worker scoring a shard
is killed mid-shard, that shard alone is scored again, and the report equals the run scored whole."""

from __future__ import annotations

import pytest

from radtrust_engine.scoring import comparable
from registry.services import record_update
from tests.integration.conftest import wait_for
from validation import services
from validation.choices import RunStatus
from validation.models import RunShard, ValidationRun

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT = 300.0
CONFIG = {"batch_size": 4, "n_resamples": 200, "min_patients": 5, "analyses": ["calibration", "generalisation"]}


def test_a_killed_shard_worker_costs_its_shard_alone_and_the_report_equals_the_whole_run(start_worker, run_setup, write_dataset):
    record_update(instance=run_setup["dataset"], fields={"location": str(write_dataset("large", n=2400))})
    split = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config=CONFIG)
    env = {"RADTRUST_SHARD_MIN_IMAGES": "100", "RADTRUST_SHARD_IMAGES": "300", "RADTRUST_LOADER_PROCESSES": "2", "RADTRUST_RUN_LEASE_SECONDS": "4"}
    workers = {"w1": start_worker("w1", queues="gpu", env=env), "w2": start_worker("w2", queues="gpu", env=env)}

    def shard_of_the_other_worker():
        run = ValidationRun.objects.get(pk=split.pk)
        held = RunShard.objects.filter(run=run, status=RunStatus.RUNNING).exclude(worker=run.worker).exclude(worker="").first()
        return held if held is not None and run.worker else None

    def describe():
        return "; ".join(f"{s.index}:{s.status}/{s.attempt}/{s.worker[:3]}" for s in RunShard.objects.filter(run=split)) + workers["w1"].describe()

    killed = wait_for(shard_of_the_other_worker, timeout=TIMEOUT, interval=0.05, describe=describe)
    workers[killed.worker.split("-", 1)[0]].kill()
    coordinator = next(w for name, w in workers.items() if name != killed.worker.split("-", 1)[0])

    done = wait_for(lambda: (r := ValidationRun.objects.get(pk=split.pk)).finished and r, timeout=TIMEOUT, interval=0.2, describe=describe)
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert coordinator.process.poll() is None
    shards = {s.pk: s for s in RunShard.objects.filter(run=split)}
    assert len(shards) == 8 and all(s.status == RunStatus.SUCCEEDED for s in shards.values())
    assert shards[killed.pk].attempt == 2 and shards[killed.pk].worker == done.worker  # scored again by the worker left
    assert all(s.attempt == 1 for pk, s in shards.items() if pk != killed.pk)

    coordinator.kill()  # the same run scored whole, in this process (not sharded here), on the same data and seed
    whole = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config=CONFIG)
    assert services.run_execute(run_id=whole.pk, worker="here") == RunStatus.SUCCEEDED
    assert not RunShard.objects.filter(run=whole).exists()
    assert comparable(done.results) == comparable(ValidationRun.objects.get(pk=whole.pk).results)
