"""Sharded runs: a large run's images scored by every worker on its queue, then merged once.

The run's own task is the coordinator; shards are an equivalent of a Celery chord built on the
run's lease protocol (``validation.services``), so that every step survives a lost worker:

1. The coordinator claims the run as any run (``run_claim``, heartbeats, one closing write). Above
   ``RADTRUST_SHARD_MIN_IMAGES`` images it cuts the frozen manifest into shards of whole patients
   (``radtrust_engine.scoring.patient_shards``), stores each shard's own cases (its rows and image
   paths; for a PACS dataset its instances' UIDs too) as a file beside the shard, and only then
   creates one ``RunShard`` row per shard (the same rows on every attempt) and sends a
   ``run_shard_execute`` task per shard to the run's queue. A shard's worker reads that file and
   never the whole manifest: from a PACS it fetches its own instances and no others.
2. A shard is claimed like a run: one conditional UPDATE takes a queued shard, or a running one
   whose lease expired, with ``attempt + 1``; a ``ShardReporter`` renews its lease while it is
   scored. Any worker may take it: the shard's own task, or the coordinator, which scores shards
   itself while any is left, so one worker alone finishes the run and two share it.
3. A scored shard's file is written under its attempt's name, then named on the row in one
   transaction that checks the attempt again: a redelivered task finds the shard done, a worker
   that lost its lease writes nothing, and no row ever names a half-written file.
4. A worker that dies stops renewing its shard's lease; the coordinator, or any worker the
   sweeper re-sends that shard alone to (``shards_sweep``), claims it again. The others are kept.
5. Once every shard is scored the coordinator merges them in manifest-row order and the
   statistics stage runs once on the merged table (``pipeline.evaluate`` with ``scored``): the
   report equals the unsharded run's on the same data and seed.

Progress shows the share of images in scored shards; the run's API shows shards done and in all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from radtrust_engine.dicomweb import FrozenManifest, Instance
from radtrust_engine.hashing import canonical_sha256
from radtrust_engine.images import allowed_skips
from radtrust_engine.loading import Manifest, ManifestError
from radtrust_engine.pipeline import SuiteConfig, score_cases
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import ModelSession
from radtrust_engine.scoring import Scored, ShardCases, patient_shards
from registry.dicomweb import DICOMWEB_MANIFEST, instances_fetch
from registry.models import DicomwebManifest
from validation.choices import FailureReason, RunStage, RunStatus
from validation.models import RunShard, ValidationRun
from validation.services import LeaseLost, RunCancelled, RunReporter, _evaluate, dataset_root, failure_of

log = logging.getLogger(__name__)

# Analyses that keep images in memory beside the model: a run naming one is scored whole.
IN_MEMORY_ANALYSES = ("explainability", "robustness", "uncertainty")
SHARDED_TASKS = ("binary", "multilabel")
WAIT_SECONDS = 1.0  # how often a coordinator with no shard left to take looks at the others
CASES_FORMAT = "radtrust-shard-cases-1"


class ShardLost(LeaseLost):
    """Another attempt owns the shard now, or its run stopped: this worker drops the shard."""


class ShardCasesUnusable(Exception):
    """A shard's stored cases are missing, cut short or altered: the shard cannot know what to score."""

    reason = FailureReason.INTERNAL_ERROR


class ShardFailed(Exception):
    """A shard failed for good (an engine error, or out of attempts): the run fails with its reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ShardReporter(RunReporter):
    """``RunReporter`` for one attempt at a shard (``run_id`` holds the shard's id): it renews the
    shard's lease, and stops the work once the shard is another attempt's or its run is no longer
    running (cancelled, failed, or taken over by the sweeper)."""

    def write(self, **fields) -> None:
        if not self._renew():
            raise ShardLost()

    def _held(self):
        return RunShard.objects.filter(pk=self.run_id, attempt=self.attempt, status=RunStatus.RUNNING, run__status=RunStatus.RUNNING).exclude(
            run__cancel_requested=True
        )

    def _why_not_held(self) -> Exception:
        return ShardLost()


def shards_wanted(task: str, n_images: int, suite: SuiteConfig) -> bool:
    """Whether a run of ``n_images`` under ``suite`` is scored in shards: classification runs only
    (a mask or a volume per case is no small score to store and merge)."""
    return task in SHARDED_TASKS and n_images >= settings.RADTRUST_SHARD_MIN_IMAGES and not any(a in suite.analyses for a in IN_MEMORY_ANALYSES)


def cases_name(run_id: int, index: int) -> str:
    return f"runs/{run_id}/shards/{index}/cases.json"


@dataclass(frozen=True)
class StoredCases:
    """What a shard's worker reads: its cases and, for a PACS dataset, the instances to fetch (one per case)."""

    cases: ShardCases
    instances: tuple[Instance, ...] | None = None


def _cases_bytes(run_id: int, index: int, stored: StoredCases) -> bytes:
    body = {
        "format": CASES_FORMAT,
        "run": run_id,
        "index": index,
        "cases": stored.cases.to_dict(),
        "instances": None if stored.instances is None else [[i.study_uid, i.series_uid, i.sop_uid, i.patient_id] for i in stored.instances],
    }
    return json.dumps({**body, "sha256": canonical_sha256(body)}).encode()


def shard_cases(shard: RunShard) -> StoredCases:
    """The shard's own cases as the plan stored them, checked against their hash and the shard."""
    unusable = f"Shard {shard.index + 1}'s stored cases"
    try:
        with default_storage.open(cases_name(shard.run_id, shard.index), "rb") as handle:
            body = json.loads(handle.read())
        digest = body.pop("sha256")
    except (OSError, ValueError, KeyError, AttributeError):
        raise ShardCasesUnusable(f"{unusable} are missing or unreadable; cancel the run and start it again.") from None
    if body.get("format") != CASES_FORMAT or canonical_sha256(body) != digest:
        raise ShardCasesUnusable(f"{unusable} do not match their hash: they were altered since the run was planned.")
    try:
        cases = ShardCases.from_dict(body["cases"])
        instances = None if body["instances"] is None else tuple(Instance(*map(str, row)) for row in body["instances"])
    except (KeyError, TypeError, ValueError):
        raise ShardCasesUnusable(f"{unusable} cannot be read.") from None
    if (body["run"], body["index"], len(cases)) != (shard.run_id, shard.index, shard.n_images) or (
        instances is not None and len(instances) != len(cases)
    ):
        raise ShardCasesUnusable(f"{unusable} belong to another shard or run.")
    return StoredCases(cases, instances)


def _cases_store(run_id: int, index: int, stored: StoredCases) -> None:
    """Write the shard's cases under their fixed name. The same plan writes the same bytes, which
    are kept: a stale coordinator planning again never removes a file a shard may be reading. Other
    bytes (a coordinator that died while writing) are replaced; no shard row exists for them yet."""
    name, data = cases_name(run_id, index), _cases_bytes(run_id, index, stored)
    if default_storage.exists(name):
        try:
            with default_storage.open(name, "rb") as handle:
                if handle.read() == data:
                    return
        except OSError:
            pass
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(data))
    if saved != name:  # another attempt at planning wrote the same cases meanwhile
        default_storage.delete(saved)


# --- The coordinator ---------------------------------------------------------------------


def run_scored(
    *,
    run: ValidationRun,
    reporter: RunReporter,
    worker: str,
    model: ModelSession,
    manifest: Manifest,
    preprocessing: Preprocessing,
    suite: SuiteConfig,
    instances: Sequence[Instance] | None = None,
) -> Scored | None:
    """Stage 2 of a sharded run (see the module docstring); None when the run is scored whole.
    ``instances`` are a PACS dataset's, one per manifest row."""
    if not shards_wanted(run.version.task_spec.task, len(manifest), suite):
        return None
    plan = patient_shards(manifest.patient_ids, settings.RADTRUST_SHARD_IMAGES)
    if len(plan) < 2:
        return None
    shards_plan(run=run, manifest=manifest, plan=plan, instances=instances)
    total = len(manifest)
    while True:
        shards = list(RunShard.objects.filter(run=run).order_by("index"))
        done = sum(s.n_images for s in shards if s.status == RunStatus.SUCCEEDED)
        reporter(RunStage.INFERENCE, done / total)  # raises once the run is cancelled or taken over
        failed = next((s for s in shards if s.status == RunStatus.FAILED), None)
        if failed is not None:
            raise ShardFailed(failed.error_reason or FailureReason.INTERNAL_ERROR, f"Shard {failed.index + 1} of {len(shards)}: {failed.error}")
        if done == total:
            break
        shard = shard_claim(run_id=run.pk, worker=worker)
        if shard is None:
            time.sleep(WAIT_SECONDS)  # the others are being scored by other workers
            continue
        with suppress(ShardLost):  # the shard went to another worker; the next turn sees whether the run is still ours
            _score_here(shard, reporter, done / total, total, model=model, preprocessing=preprocessing, suite=suite)
    return Scored.merge([_scored_load(s) for s in shards])


def _score_here(shard: RunShard, reporter: RunReporter, done: float, total: int, **inputs) -> None:
    """The coordinator scores a shard itself, holding the shard's lease beside the run's; the run's
    progress moves with the shard's."""
    shard_reporter = ShardReporter(run_id=shard.pk, attempt=shard.attempt)

    def progress(stage: str, fraction: float) -> None:
        shard_reporter(stage, fraction)
        reporter(RunStage.INFERENCE, done + (fraction if stage == RunStage.INFERENCE else 0.0) * shard.n_images / total)

    with shard_reporter.heartbeats():
        shard_score(shard=shard, progress=progress, **inputs)


def shards_plan(*, run: ValidationRun, manifest: Manifest, plan: list[list[int]], instances: Sequence[Instance] | None = None) -> None:
    """Store each shard's cases and create the run's shards once (every attempt finds the same), then
    send each unscored one to the run's queue. A plan that no longer matches the rows refuses the run."""
    existing = list(RunShard.objects.filter(run=run).order_by("index").values_list("n_images", flat=True))
    if existing and existing != [len(rows) for rows in plan]:
        raise ManifestError("the manifest no longer gives this run's shards: the data changed since the run was planned")
    if not existing:
        for index, rows in enumerate(plan):  # every file complete before any row names a shard
            shard_instances = None if instances is None else tuple(instances[r] for r in rows)
            _cases_store(run.pk, index, StoredCases(ShardCases.of(manifest, rows), shard_instances))
        RunShard.objects.bulk_create(
            [
                RunShard(run=run, index=i, n_images=len(rows), plan_images=settings.RADTRUST_SHARD_IMAGES, max_attempts=run.max_attempts)
                for i, rows in enumerate(plan)
            ],
            ignore_conflicts=True,
        )
    for shard_id in RunShard.objects.filter(run=run, status=RunStatus.QUEUED).values_list("pk", flat=True):
        try:
            shard_enqueue(shard_id=shard_id, queue=run.queue)
        except Exception:  # a broker that is down: the coordinator scores the shards itself
            log.exception("Run %s: could not send shard %s; the run's own worker or the sweeper takes it.", run.pk, shard_id)
            break


def shard_enqueue(*, shard_id: int, queue: str, now: datetime | None = None) -> None:
    """Send the shard to its run's queue and note when (``sent_at``)."""
    from validation.tasks import run_shard_execute  # the tasks module imports this one

    run_shard_execute.apply_async((shard_id,), queue=queue)
    RunShard.objects.filter(pk=shard_id).update(sent_at=now or timezone.now())


def _scored_load(shard: RunShard) -> Scored:
    with default_storage.open(shard.scores_name, "rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != shard.scores_sha256:
        raise ShardFailed(FailureReason.INTERNAL_ERROR, f"Shard {shard.index + 1}'s stored scores do not match their hash.")
    return Scored.from_bytes(data)


# --- One shard -----------------------------------------------------------------------------


def shard_claim(*, worker: str, shard_id: int | None = None, run_id: int | None = None, lease_seconds: int | None = None) -> RunShard | None:
    """Take one shard (``shard_id``, or the first free one of ``run_id``) for this worker: a queued
    shard, or a running one whose lease expired, of a run still running; None if there is none."""
    lease_seconds = lease_seconds or settings.RADTRUST_RUN_LEASE_SECONDS
    now = timezone.now()
    free = (
        RunShard.objects.filter(attempt__lt=F("max_attempts"), run__status=RunStatus.RUNNING, run__cancel_requested=False)
        .filter(Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, lease_until__lt=now))
        .filter(**({"pk": shard_id} if shard_id is not None else {"run_id": run_id}))
    )
    for pk in free.order_by("index").values_list("pk", flat=True)[:8]:
        claimed = (
            RunShard.objects.filter(pk=pk, attempt__lt=F("max_attempts"))
            .filter(Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, lease_until__lt=now))
            .update(
                status=RunStatus.RUNNING,
                attempt=F("attempt") + 1,
                worker=worker[:200],
                lease_until=now + timedelta(seconds=lease_seconds),
                heartbeat_at=now,
                error_reason="",
                error="",
            )
        )
        if claimed:
            return RunShard.objects.get(pk=pk)
    return None


def shard_score(*, shard: RunShard, model: ModelSession, preprocessing: Preprocessing, suite: SuiteConfig, progress) -> str | None:
    """Score the shard's own cases, store the file, and close the shard if this attempt still holds it."""
    stored = shard_cases(shard)
    scored = score_cases(
        model,
        stored.cases,
        _images_root(shard, stored, suite, progress),
        preprocessing=preprocessing,
        config=suite,
        progress=progress,
        loader_processes=settings.RADTRUST_LOADER_PROCESSES,
    )
    data = scored.to_bytes()
    name = default_storage.save(f"runs/{shard.run_id}/shards/{shard.index}/attempt-{shard.attempt}.npz", ContentFile(data))
    with transaction.atomic():
        held = RunShard.objects.select_for_update().filter(pk=shard.pk, attempt=shard.attempt, status=RunStatus.RUNNING).first()
        if held is None:
            log.warning("Shard %s: attempt %s finished but no longer holds the shard; its scores are dropped.", shard.pk, shard.attempt)
            transaction.on_commit(lambda: default_storage.delete(name))
            return None
        held.status, held.scores_name, held.scores_sha256 = RunStatus.SUCCEEDED, name, hashlib.sha256(data).hexdigest()
        held.lease_until, held.finished_at = None, timezone.now()
        held.save(update_fields=["status", "scores_name", "scores_sha256", "lease_until", "finished_at"])
    return RunStatus.SUCCEEDED


def _images_root(shard: RunShard, stored: StoredCases, suite: SuiteConfig, progress) -> Path:
    """Where the shard's images lie: the dataset's folder, or the PACS cache once this shard's own
    instances are fetched into it (within the whole run's skip allowance; those missing are skipped)."""
    run = ValidationRun.objects.select_related("dataset").get(pk=shard.run_id)
    if run.manifest != DICOMWEB_MANIFEST:
        return dataset_root(run.dataset)
    if stored.instances is None:
        raise ShardCasesUnusable(f"Shard {shard.index + 1}'s stored cases name no PACS instances.")
    base_url = DicomwebManifest.objects.filter(dataset=run.dataset, sha256=run.manifest_sha256).values_list("base_url", flat=True).get()
    return instances_fetch(
        dataset_id=run.dataset_id,
        base_url=base_url,
        instances=FrozenManifest(stored.instances, run.manifest_sha256),
        allowed=allowed_skips(suite.max_unreadable_share, stored.cases.run_images),
        progress=lambda fraction: progress(RunStage.MANIFEST, fraction),
    )


def shard_fail(*, shard: RunShard, reason: str, error: str) -> None:
    """Close the shard as failed, if this attempt still holds it: its run fails with the reason."""
    RunShard.objects.filter(pk=shard.pk, attempt=shard.attempt, status=RunStatus.RUNNING).update(
        status=RunStatus.FAILED, error_reason=reason, error=error[:4000], lease_until=None, finished_at=timezone.now()
    )


def shard_execute(*, shard_id: int, worker: str) -> str | None:
    """A shard's task: claim it, score it with the run's verified model and manifest, close it.
    None when another attempt holds it, it is done, or its run is not running."""
    shard = shard_claim(shard_id=shard_id, worker=worker)
    if shard is None:
        return None
    reporter = ShardReporter(run_id=shard.pk, attempt=shard.attempt)
    try:
        with reporter.heartbeats():
            return _evaluate(shard.run_id, reporter, shard=shard)
    except (LeaseLost, RunCancelled):
        return None
    except DatabaseError:
        raise  # the task is sent again with backoff; the shard's lease runs out meanwhile
    except ManifestError as exc:
        shard_fail(shard=shard, reason=FailureReason.BAD_MANIFEST, error=str(exc))
    except Exception as exc:
        reason, message = failure_of(shard.run_id, exc)
        shard_fail(shard=shard, reason=reason, error=message)
    return RunStatus.FAILED


# --- Sweep ---------------------------------------------------------------------------------


def shards_sweep(*, now: datetime, unclaimed_after: timedelta) -> dict[str, list[int]]:
    """Shards of running runs whose worker died go back to the queue alone (or fail once out of
    attempts); queued shards nobody claimed are sent again once per period from their last send."""
    requeued: list[int] = []
    failed: list[int] = []
    expired = RunShard.objects.filter(status=RunStatus.RUNNING, lease_until__lt=now, run__status=RunStatus.RUNNING)
    for shard_id in expired.values_list("pk", flat=True):
        with transaction.atomic():
            shard = RunShard.objects.select_for_update().select_related("run").get(pk=shard_id)
            if shard.status != RunStatus.RUNNING or shard.lease_until is None or shard.lease_until >= now:
                continue
            lost = f"The worker {shard.worker or '?'} stopped sending heartbeats (attempt {shard.attempt})."
            if shard.attempt >= shard.max_attempts:
                shard.status, shard.error_reason, shard.error = RunStatus.FAILED, FailureReason.WORKER_LOST, f"{lost} No attempts left."
                failed.append(shard.pk)
            else:
                shard.status, shard.error = RunStatus.QUEUED, lost
                transaction.on_commit(lambda s=shard: shard_enqueue(shard_id=s.pk, queue=s.run.queue, now=now), robust=True)
                requeued.append(shard.pk)
            shard.lease_until = None  # operational, like a lease renewal: not audited (the run's outcome is)
            shard.save(update_fields=["status", "error_reason", "error", "lease_until"])
    unclaimed = (
        RunShard.objects.filter(status=RunStatus.QUEUED, run__status=RunStatus.RUNNING)
        .exclude(pk__in=requeued)
        .annotate(last_sent=Coalesce("sent_at", "run__started_at"))
        .filter(last_sent__lt=now - unclaimed_after)
        .order_by("pk")
    )
    resent = []
    for shard_id, queue in unclaimed.values_list("pk", "run__queue"):
        try:
            shard_enqueue(shard_id=shard_id, queue=queue, now=now)
        except Exception:  # the broker is down: the next sweep tries again
            log.exception("Sweep: could not send shard %s; the next sweep tries again.", shard_id)
            break
        resent.append(shard_id)
    return {"shards_requeued": requeued, "shards_failed": failed, "shards_resent": resent}
