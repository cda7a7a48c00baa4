"""A version's baseline run: which run it is, whether a run may serve as one, and reading its
per-case table back for the drift and degradation comparison of later runs; a run's
data-efficiency comparator (another version's run on the same dataset) is read back the same way."""

from __future__ import annotations

import hashlib
import io
import logging

from django.core.files.storage import default_storage
from django.db import transaction

from core.audit import audit_action
from core.errors import Conflict
from radtrust_engine.baseline import Baseline, BaselineError, CaseTable
from registry.models import ModelVersion
from validation.choices import RunFileKind, RunStatus
from validation.models import ValidationRun

log = logging.getLogger(__name__)


def version_baseline(version: ModelVersion) -> ValidationRun | None:
    return version.validation_runs.filter(is_baseline=True).first()


def baseline_check(*, run_version: ModelVersion, baseline: ValidationRun) -> str | None:
    """Why ``baseline`` cannot serve as a baseline for a run of ``run_version``, or None."""
    if baseline.version_id != run_version.pk:
        return f"run {baseline.pk} is a run of another version ({baseline.version}); a baseline must be a run of {run_version}"
    if baseline.status != RunStatus.SUCCEEDED:
        return f"run {baseline.pk} has {baseline.status}; a baseline must have succeeded"
    if not baseline.files.filter(kind=RunFileKind.CASE_TABLE).exists():
        return f"run {baseline.pk} kept no per-case table (a segmentation run, or one from before case tables were kept)"
    return None


def run_set_baseline(*, actor, run: ValidationRun) -> ValidationRun:
    """Mark ``run`` as its version's baseline: runs queued from now on measure drift against it."""
    problem = baseline_check(run_version=run.version, baseline=run)
    if problem:
        raise Conflict(f"This run cannot be the baseline: {problem}.", code="not_a_baseline")
    with transaction.atomic():
        for previous in ValidationRun.objects.select_for_update().filter(version_id=run.version_id, is_baseline=True).exclude(pk=run.pk):
            previous.is_baseline = False
            with audit_action("unset_baseline"):
                previous.save(update_fields=["is_baseline"])
        run.is_baseline = True
        with audit_action("set_baseline"):
            run.save(update_fields=["is_baseline"])
    return run


def baseline_load(run: ValidationRun):
    """The engine's ``Baseline`` for a run: the baseline's case table, or the reason there is none."""
    if run.baseline_id is None:
        return Baseline(
            table=None,
            problem=(
                f"no baseline run: version {run.version} had none when this run was queued; mark a succeeded run as "
                "its baseline (POST /api/validation-runs/<id>/set-baseline/) and later runs are compared with it"
            ),
        )
    baseline = run.baseline
    source = {
        "run": baseline.pk,
        "dataset": baseline.dataset.name,
        "dataset_id": baseline.dataset_id,
        "same_dataset": baseline.dataset_id == run.dataset_id,
        "finished_at": baseline.finished_at.isoformat() if baseline.finished_at else None,
    }
    problem = baseline_check(run_version=run.version, baseline=baseline)
    if problem:
        return Baseline(table=None, source=source, problem=problem)
    return _case_table(run, baseline, source, "baseline")


def comparator_check(*, dataset_id: int, comparator: ValidationRun) -> str | None:
    """Why ``comparator`` cannot be the data-efficiency comparator of a run on ``dataset_id``, or None."""
    if comparator.dataset_id != dataset_id:
        return f"run {comparator.pk} evaluated another dataset ({comparator.dataset}); the comparator must have embedded the same cases"
    if comparator.status != RunStatus.SUCCEEDED:
        return f"run {comparator.pk} has {comparator.status}; a comparator must have succeeded"
    if not comparator.files.filter(kind=RunFileKind.CASE_TABLE).exists():
        return f"run {comparator.pk} kept no per-case table"
    return None


def comparator_load(run: ValidationRun):
    """The comparator run's case table (read like a baseline's), the reason it cannot be used, or None without one."""
    if run.comparator_id is None:
        return None
    comparator = run.comparator
    source = {"run": comparator.pk, "version": str(comparator.version), "version_id": comparator.version_id}
    problem = comparator_check(dataset_id=run.dataset_id, comparator=comparator)
    if problem:
        return Baseline(table=None, source=source, problem=problem)
    return _case_table(run, comparator, source, "comparator")


def _case_table(run: ValidationRun, stored_run: ValidationRun, source: dict, role: str):
    """``stored_run``'s case table, checked against its recorded sha256, or the reason it cannot be read."""
    stored = stored_run.files.get(kind=RunFileKind.CASE_TABLE)
    try:
        with default_storage.open(stored.storage_name, "rb") as handle:
            data = handle.read()
    except OSError as exc:  # its message names the file under MEDIA_ROOT, which the run's readers need not see
        log.warning("Run %s: the %s's case table %s cannot be read: %s", run.pk, role, stored.storage_name, exc)
        return Baseline(
            table=None, source=source, problem=f"the {role}'s case table cannot be read ({type(exc).__name__}); the worker's log has the details"
        )
    if hashlib.sha256(data).hexdigest() != stored.sha256:
        return Baseline(table=None, source=source, problem=f"the {role}'s case table does not match the sha256 recorded when it was written")
    try:
        table = CaseTable.from_file(io.BytesIO(data))
    except BaselineError as exc:
        return Baseline(table=None, source=source, problem=str(exc))
    return Baseline(table=table, source=source)
