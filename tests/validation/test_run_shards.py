"""Sharded runs through the run's own task path (``services.run_execute``) and the shards' tasks
(``sharding.shard_execute``): the merged report equals the unsharded one, a redelivered shard
leaves one file and one row, a killed shard is re-run alone. The broker is replaced by a function
that runs the shard's task at once in this process (a second worker) or only records the send.
Leases are moved with explicit ``now`` arguments and updates, never by sleeping."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from radtrust_engine.loading import read_manifest
from radtrust_engine.scoring import Scored, ShardCases, comparable, patient_shards
from validation import services, sharding, tasks
from validation.choices import RunStatus
from validation.models import RunShard, ValidationRun
from validation.selectors import run_detail

pytestmark = pytest.mark.django_db

CONFIG = {"n_resamples": 50, "min_patients": 5, "max_unreadable_share": 0.05}


@pytest.fixture
def sharded(settings):
    """60 images of 30 patients (two each) in shards of 16 images: 16, 16, 16 and 12."""
    settings.RADTRUST_SHARD_MIN_IMAGES = 20
    settings.RADTRUST_SHARD_IMAGES = 16
    return settings


def _create(run_setup) -> ValidationRun:
    return services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config=CONFIG)


def _broker(monkeypatch, worker: str | None = None, *, only=lambda shard: True) -> list[int]:
    """Shard sends recorded; with ``worker``, those ``only`` accepts are run at once by that worker."""
    sent: list[int] = []

    def apply_async(args, queue):
        sent.append(args[0])
        shard = RunShard.objects.get(pk=args[0])
        if worker is not None and only(shard):
            sharding.shard_execute(shard_id=shard.pk, worker=worker)

    monkeypatch.setattr(tasks.run_shard_execute, "apply_async", apply_async)
    return sent


def _shard_files(run: ValidationRun) -> list[str]:
    """The shards' scores files (each shard's stored cases left out)."""
    return sorted(
        f"{index}/{name}"
        for index in default_storage.listdir(f"runs/{run.pk}/shards")[0]
        for name in default_storage.listdir(f"runs/{run.pk}/shards/{index}")[1]
        if name != "cases.json"
    )


def _planned(run_setup, monkeypatch) -> tuple[ValidationRun, list[RunShard]]:
    """A run claimed by its coordinator and cut into its 4 shards, whose sends nobody takes."""
    run = _create(run_setup)
    _broker(monkeypatch)
    assert services.run_claim(run_id=run.pk, worker="coordinator") == 1
    manifest = read_manifest(run_setup["root"] / "manifest.csv", run_setup["root"], label_columns=["pneumothorax"])
    sharding.shards_plan(run=run, manifest=manifest, plan=patient_shards(manifest.patient_ids, 16))
    return run, list(RunShard.objects.filter(run=run))


def test_a_sharded_run_reports_exactly_what_the_unsharded_run_reports(run_setup, settings, monkeypatch):
    manifest = run_setup["root"] / "manifest.csv"
    header, *lines = manifest.read_text().splitlines()
    order = np.random.default_rng(3).permutation(len(lines))  # a patient's images far apart: shards are not runs of rows
    manifest.write_text("\n".join([header, *(lines[i] for i in order)]) + "\n")
    whole, split = _create(run_setup), _create(run_setup)
    settings.RADTRUST_SHARD_MIN_IMAGES = 10_000
    assert services.run_execute(run_id=whole.pk, worker="w1") == RunStatus.SUCCEEDED
    assert not RunShard.objects.filter(run=whole).exists()

    settings.RADTRUST_SHARD_MIN_IMAGES, settings.RADTRUST_SHARD_IMAGES = 20, 16
    sent = _broker(monkeypatch, "w2", only=lambda shard: shard.index % 2 == 1)  # a second worker takes the odd shards
    assert services.run_execute(run_id=split.pk, worker="w1") == RunStatus.SUCCEEDED
    shards = list(RunShard.objects.filter(run=split))
    assert [(s.index, s.n_images, s.status, s.attempt) for s in shards] == [(i, n, RunStatus.SUCCEEDED, 1) for i, n in enumerate([16, 16, 16, 12])]
    assert [s.worker for s in shards] == ["w1", "w2", "w1", "w2"]  # the coordinator scored what was left to it
    assert sorted(sent) == [s.pk for s in shards]

    whole.refresh_from_db()
    split.refresh_from_db()
    assert comparable(split.results) == comparable(whole.results)
    assert split.results["inference"]["cases"] == 60 and split.results["dataset"]["n_patients"] == 30
    assert split.summary == whole.summary
    assert run_detail(user=run_setup["engineer"]).get(pk=split.pk).shards_done == 4


def test_a_redelivered_shard_leaves_one_file_and_one_row(run_setup, sharded, monkeypatch):
    run = _create(run_setup)
    sent: list[int] = []

    def delivered_twice(args, queue):
        sent.append(args[0])
        assert sharding.shard_execute(shard_id=args[0], worker="w2") == RunStatus.SUCCEEDED
        assert sharding.shard_execute(shard_id=args[0], worker="w3") is None  # the second delivery finds it done

    monkeypatch.setattr(tasks.run_shard_execute, "apply_async", delivered_twice)
    assert services.run_execute(run_id=run.pk, worker="w1") == RunStatus.SUCCEEDED
    shards = list(RunShard.objects.filter(run=run))
    assert len(shards) == 4 and {(s.attempt, s.worker) for s in shards} == {(1, "w2")}
    assert _shard_files(run) == [f"{s.index}/attempt-1.npz" for s in shards]
    assert ValidationRun.objects.get(pk=run.pk).results["dataset"]["n_evaluated"] == 60


def test_a_shards_worker_reads_its_own_cases_not_the_manifest(run_setup, sharded, monkeypatch):
    run, shards = _planned(run_setup, monkeypatch)
    first = shards[0]
    cases = sharding.shard_cases(first).cases
    manifest = read_manifest(run_setup["root"] / "manifest.csv", run_setup["root"], label_columns=["pneumothorax"])
    assert cases.rows == tuple(patient_shards(manifest.patient_ids, 16)[0]) and cases.run_images == 60
    # Neither the manifest nor any other shard's image is there to read: the shard needs neither.
    (run_setup["root"] / "manifest.csv").unlink()
    for row, path in enumerate(manifest.image_paths):
        if row not in cases.rows:
            (run_setup["root"] / path).unlink()

    assert sharding.shard_execute(shard_id=first.pk, worker="w2") == RunStatus.SUCCEEDED
    first.refresh_from_db()
    with default_storage.open(first.scores_name, "rb") as handle:
        scored = Scored.from_bytes(handle.read())
    assert scored.output.ids == list(cases.rows) and scored.reading.skipped == []
    assert scored.reading.allowed_skips == 3  # the whole run's allowance (5% of 60 images), not the shard's (5% of 16)


def test_a_stale_coordinator_planning_again_keeps_the_cases_a_shard_may_be_reading(run_setup, sharded, monkeypatch):
    run, shards = _planned(run_setup, monkeypatch)
    names = [sharding.cases_name(run.pk, shard.index) for shard in shards]
    before = [default_storage.open(name, "rb").read() for name in names]
    deleted: list[str] = []
    monkeypatch.setattr(default_storage, "delete", deleted.append)  # a delete would leave a shard nothing to read

    manifest = read_manifest(run_setup["root"] / "manifest.csv", run_setup["root"], label_columns=["pneumothorax"])
    for index, rows in enumerate(patient_shards(manifest.patient_ids, 16)):  # one that read "no shards yet" before they were made
        sharding._cases_store(run.pk, index, sharding.StoredCases(ShardCases.of(manifest, rows), None))

    assert deleted == [] and [default_storage.open(name, "rb").read() for name in names] == before


def test_a_shard_whose_stored_cases_were_altered_fails_the_run_with_the_reason(run_setup, sharded, monkeypatch):
    run, shards = _planned(run_setup, monkeypatch)
    name = sharding.cases_name(run.pk, 1)
    with default_storage.open(name, "rb") as handle:
        body = json.loads(handle.read())
    body["cases"]["rows"][0] = body["cases"]["rows"][1]  # another case scored twice
    default_storage.delete(name)
    default_storage.save(name, ContentFile(json.dumps(body).encode()))

    assert sharding.shard_execute(shard_id=shards[1].pk, worker="w2") == RunStatus.FAILED
    shards[1].refresh_from_db()
    assert shards[1].error_reason == "internal_error"
    assert shards[1].error == "Shard 2's stored cases do not match their hash: they were altered since the run was planned."


def test_a_worker_that_lost_its_shard_stops_before_writing(run_setup, sharded, monkeypatch):
    run, shards = _planned(run_setup, monkeypatch)
    first = shards[0]
    stale = sharding.shard_claim(shard_id=first.pk, worker="slow")
    RunShard.objects.filter(pk=first.pk).update(lease_until=stale.lease_until - timedelta(days=1))
    assert sharding.shard_execute(shard_id=first.pk, worker="fast") == RunStatus.SUCCEEDED

    with pytest.raises(sharding.ShardLost):  # the slow worker's first progress call finds the shard taken
        services._evaluate(run.pk, sharding.ShardReporter(run_id=first.pk, attempt=stale.attempt), shard=stale)
    first.refresh_from_db()
    assert (first.attempt, first.worker, first.status) == (2, "fast", RunStatus.SUCCEEDED)
    assert _shard_files(run) == ["0/attempt-2.npz"]


def test_a_killed_shard_is_rerun_alone_and_the_run_merges_the_rest(run_setup, sharded, monkeypatch, django_capture_on_commit_callbacks):
    run, shards = _planned(run_setup, monkeypatch)
    sent = _broker(monkeypatch)
    for shard in shards:
        if shard.index != 1:
            assert sharding.shard_execute(shard_id=shard.pk, worker="w2") == RunStatus.SUCCEEDED
    killed = sharding.shard_claim(shard_id=shards[1].pk, worker="killed", lease_seconds=3)  # its worker dies here
    scored = {s.pk: (s.scores_name, s.scores_sha256) for s in RunShard.objects.filter(run=run, status=RunStatus.SUCCEEDED)}

    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        swept = services.run_sweep(now=killed.lease_until + timedelta(seconds=1))
    assert (swept["requeued"], swept["shards_requeued"], swept["shards_failed"], sent) == ([], [killed.pk], [], [killed.pk])
    assert sharding.shard_execute(shard_id=killed.pk, worker="w3") == RunStatus.SUCCEEDED
    after = {s.index: (s.attempt, s.worker) for s in RunShard.objects.filter(run=run)}
    assert after == {0: (1, "w2"), 1: (2, "w3"), 2: (1, "w2"), 3: (1, "w2")}
    assert {s.pk: (s.scores_name, s.scores_sha256) for s in RunShard.objects.filter(run=run).exclude(pk=killed.pk)} == scored

    # The coordinator dies too: its next attempt merges the shards without scoring any again.
    monkeypatch.setattr(tasks.run_execute, "apply_async", lambda args, queue: None)
    run.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.run_sweep(now=run.lease_until + timedelta(seconds=1))["requeued"] == [run.pk]
    assert services.run_execute(run_id=run.pk, worker="coordinator-2") == RunStatus.SUCCEEDED
    assert {s.index: (s.attempt, s.worker) for s in RunShard.objects.filter(run=run)} == after
    run.refresh_from_db()
    assert (run.attempt, run.results["dataset"]["n_evaluated"]) == (2, 60)


def test_a_shard_out_of_attempts_fails_the_run_with_the_reason(run_setup, sharded, monkeypatch, django_capture_on_commit_callbacks):
    run, shards = _planned(run_setup, monkeypatch)
    shard = shards[2]
    RunShard.objects.filter(pk=shard.pk).update(attempt=shard.max_attempts - 1)
    killed = sharding.shard_claim(shard_id=shard.pk, worker="killed", lease_seconds=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.run_sweep(now=killed.lease_until + timedelta(seconds=1))["shards_failed"] == [shard.pk]
    # The coordinator's next look at its shards fails the run, naming the shard and why.
    ValidationRun.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED, lease_until=None)
    assert services.run_execute(run_id=run.pk, worker="coordinator") == RunStatus.FAILED
    run.refresh_from_db()
    assert run.error_reason == "worker_lost" and run.error.startswith("Shard 3 of 4:")
