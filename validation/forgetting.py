"""Forgetting across tasks: an adaptation is re-evaluated on every task its base and its parent
were evaluated on, on the same data, so that a fine-tune that lost what the base could do shows
in the change log (``compliance.change_log``, paired by patient) and in the trust score.

A task is a dataset and manifest on which the base (the top of the lineage) or the parent has a
succeeded run; the newest such run is the reference. Each task is queued as an ordinary
validation run (``services.run_create``) with the reference run's suite config, unless the
adaptation already has a run there that is queued, running or succeeded, or it outputs none of
the task's labels, or the run cannot be queued (no data-use grant, data not reachable, a
retired version): each of those is reported with its reason, never raised. Queued when an
adaptation is recorded (``validation.receivers``) and on request (the API).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from core.errors import Conflict
from registry.adaptations import lineage_root
from registry.models import ModelVersion
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun

_LIVE = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED)


@dataclass(frozen=True)
class TaskRequeue:
    """One task of the base or the parent and what was done about it for the adaptation."""

    dataset_id: int
    dataset: str
    manifest: str
    reference: str  # "parent" or "base"
    reference_version: str
    reference_run: int
    labels: tuple[str, ...]  # the task's labels the adaptation outputs too
    run: int | None  # the adaptation's run on the task (queued now or found)
    queued: bool
    reason: str  # what happened, in words

    def to_dict(self) -> dict:
        return asdict(self)


def reference_versions(version: ModelVersion) -> list[tuple[str, ModelVersion]]:
    """The parent and, when it is another version, the base at the top of the lineage."""
    if version.parent is None:
        return []
    found = [("parent", version.parent)]
    base = lineage_root(version)
    if base.pk not in (version.pk, version.parent_id):
        found.append(("base", base))
    return found


def reference_runs(version: ModelVersion) -> list[tuple[str, ValidationRun]]:
    """The newest succeeded run of the parent, then of the base, per dataset and manifest: the tasks."""
    tasks: dict[tuple[int, str], tuple[str, ValidationRun]] = {}
    for role, reference in reference_versions(version):
        runs = reference.validation_runs.filter(status=RunStatus.SUCCEEDED).select_related("dataset", "version").order_by("-finished_at", "-pk")
        for run in runs:
            tasks.setdefault((run.dataset_id, run.manifest), (role, run))
    return list(tasks.values())


def _task_labels(run: ValidationRun) -> list[str]:
    return list(((run.summary or {}).get("labels") or {}).keys())


def forgetting_runs_queue(*, actor, version: ModelVersion) -> list[TaskRequeue]:
    """Queue the adaptation's run on each task of its base and parent (module docstring)."""
    outputs = set((version.output_schema or {}).get("class_names") or [])
    done = []
    for role, reference in reference_runs(version):
        labels = tuple(label for label in _task_labels(reference) if label in outputs)
        common = {
            "dataset_id": reference.dataset_id,
            "dataset": reference.dataset.name,
            "manifest": reference.manifest,
            "reference": role,
            "reference_version": str(reference.version),
            "reference_run": reference.pk,
            "labels": labels,
        }
        if not labels:
            task = ", ".join(_task_labels(reference)) or "none recorded"
            done.append(
                TaskRequeue(
                    **common, run=None, queued=False, reason=f"The adaptation outputs none of the task's labels ({task}): nothing to compare."
                )
            )
            continue
        existing = version.validation_runs.filter(dataset_id=reference.dataset_id, manifest=reference.manifest, status__in=_LIVE).first()
        if existing is not None:
            done.append(
                TaskRequeue(
                    **common,
                    run=existing.pk,
                    queued=False,
                    reason=f"Already evaluated there: run {existing.pk} ({existing.get_status_display().lower()}).",
                )
            )
            continue
        try:
            with transaction.atomic():
                run = services.run_create(
                    actor=actor, version=version, dataset=reference.dataset, manifest=reference.manifest, config=reference.config
                )
        except (ValidationError, PermissionDenied, Conflict) as exc:
            words = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            done.append(TaskRequeue(**common, run=None, queued=False, reason=f"Not queued: {words}"))
            continue
        done.append(TaskRequeue(**common, run=run.pk, queued=True, reason=f"Queued as run {run.pk}, paired with run {reference.pk} of the {role}."))
    return done


def adaptation_recorded(sender, instance, created: bool, **kwargs) -> None:
    """``post_save`` of an Adaptation: queue its version's re-evaluation on the base's and parent's tasks."""
    if created and not kwargs.get("raw"):
        forgetting_runs_queue(actor=instance.created_by, version=instance.version)
