"""What a run leaves beside its report: files (case table, charts, saliency overlays), the
cases its uncertainty analysis flagged, and the alerts its comparison with the baseline raised;
and the baseline itself (which run, and reading its case table back).

Files are written to the default storage before the run's closing transaction, under
``runs/<run>/attempt-<n>/`` so that a stale attempt never overwrites the winner's files;
their rows, the flags and the alerts are created inside that transaction, so a run that
loses its lease leaves no row and a redelivered task no duplicate (the unique constraints
on file name, flagged case and alert finding back that up).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from compliance.audit import audit_action
from radtrust.errors import Conflict
from registry.models import ModelVersion
from validation.choices import AlertKind, AlertStatus, RunFileKind, RunStatus
from validation.models import Alert, CaseFlag, RunFile, ValidationRun

CASE_TABLE = "cases.npz"
_CONTENT_TYPES = {RunFileKind.CASE_TABLE: "application/octet-stream", RunFileKind.CHART: "image/svg+xml", RunFileKind.SALIENCY: "image/png"}


@dataclass
class RunOutputs:
    """Rows to create when the run closes successfully (files already written)."""

    files: list[RunFile] = field(default_factory=list)
    flags: list[CaseFlag] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)


def _store(run_id: int, attempt: int, name: str, kind: str, data: bytes, *, title: str = "", alt: str = "") -> RunFile:
    stored = default_storage.save(f"runs/{run_id}/attempt-{attempt}/{name}", ContentFile(data))
    return RunFile(
        run_id=run_id, kind=kind, name=name, storage_name=stored, sha256=hashlib.sha256(data).hexdigest(),
        size=len(data), content_type=_CONTENT_TYPES[kind], title=title, alt=alt,
    )


def run_outputs_write(*, run_id: int, attempt: int, evaluation) -> RunOutputs:
    """Write the run's files (charts rendered once here) and collect its flags and findings."""
    from validation.charts import report_charts

    report = evaluation.report
    outputs = RunOutputs()
    if evaluation.cases is not None:
        outputs.files.append(_store(run_id, attempt, CASE_TABLE, RunFileKind.CASE_TABLE, evaluation.cases.to_bytes(), title="Per-case table"))
    for chart in report_charts(report):
        outputs.files.append(_store(
            run_id, attempt, f"charts/{chart.name}.svg", RunFileKind.CHART, chart.svg.encode(), title=chart.title, alt=chart.alt,
        ))
    for name, data in evaluation.files.items():
        outputs.files.append(_store(
            run_id, attempt, name, RunFileKind.SALIENCY, data, title="Saliency overlay",
            alt=f"Saliency map ({name.split('/')[2]}) over the preprocessed image of manifest row {name.rsplit('-', 1)[-1][:-4]}",
        ))
    for label, result in report.get("results", {}).items():
        uncertainty = result.get("uncertainty") or {}
        cutoff = (uncertainty.get("referral") or {}).get("cutoff")
        for case in uncertainty.get("flagged_cases", []):
            outputs.flags.append(CaseFlag(
                run_id=run_id, label=label, row=case["row"], image_path=case["image_path"][:500],
                uncertainty=case["uncertainty"], probability=case["probability"], tta_std=case["tta_std"], cutoff=cutoff,
            ))
    outputs.findings = list((report.get("drift") or {}).get("findings", []))
    return outputs


def run_outputs_save(run: ValidationRun, outputs: RunOutputs) -> None:
    """Create the rows of a succeeded run (inside its closing transaction) and raise its alerts."""
    RunFile.objects.bulk_create(outputs.files)
    CaseFlag.objects.bulk_create(outputs.flags)
    for finding in outputs.findings:
        with audit_action("raise"):
            Alert.objects.create(
                version_id=run.version_id, deployment_id=run.deployment_id, run=run, baseline_run_id=run.baseline_id,
                kind=finding["kind"], severity=finding["severity"], subject=finding["subject"][:200],
                message=finding["message"], evidence=finding["evidence"],
            )


# --- Baseline ----------------------------------------------------------------------------


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
    from validation.engine.baseline import Baseline, BaselineError, CaseTable

    if run.baseline_id is None:
        return Baseline(table=None, problem=(
            f"no baseline run: version {run.version} had none when this run was queued; mark a succeeded run as "
            "its baseline (POST /api/validation-runs/<id>/set-baseline/) and later runs are compared with it"
        ))
    baseline = run.baseline
    source = {"run": baseline.pk, "dataset": baseline.dataset.name, "dataset_id": baseline.dataset_id,
              "same_dataset": baseline.dataset_id == run.dataset_id, "finished_at": baseline.finished_at.isoformat() if baseline.finished_at else None}
    problem = baseline_check(run_version=run.version, baseline=baseline)
    if problem:
        return Baseline(table=None, source=source, problem=problem)
    stored = baseline.files.get(kind=RunFileKind.CASE_TABLE)
    try:
        with default_storage.open(stored.storage_name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return Baseline(table=None, source=source, problem=f"the baseline's case table cannot be read: {exc}")
    if hashlib.sha256(data).hexdigest() != stored.sha256:
        return Baseline(table=None, source=source, problem="the baseline's case table does not match the sha256 recorded when it was written")
    try:
        table = CaseTable.from_file(io.BytesIO(data))
    except BaselineError as exc:
        return Baseline(table=None, source=source, problem=str(exc))
    return Baseline(table=table, source=source)


# --- Alerts ------------------------------------------------------------------------------


def alert_handle(*, actor, alert: Alert, status: str, note: str = "") -> Alert:
    """Acknowledge or resolve an alert; resolving needs a note saying what was done."""
    from django.core.exceptions import ValidationError
    from django.utils import timezone

    if status not in {AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED}:
        raise ValidationError({"status": "An alert is acknowledged or resolved."})
    if status == AlertStatus.RESOLVED and not note.strip():
        raise ValidationError({"note": "Say what was done about the alert before resolving it."})
    with transaction.atomic():
        locked = Alert.objects.select_for_update().get(pk=alert.pk)
        if locked.status == AlertStatus.RESOLVED:
            raise Conflict("The alert is already resolved.", code="alert_resolved")
        if locked.status == status:
            raise Conflict(f"The alert is already {status}.", code="alert_unchanged")
        locked.status, locked.handled_by, locked.handled_at = status, actor, timezone.now()
        if note:
            locked.note = note[:4000]
        with audit_action(status):
            locked.save(update_fields=["status", "handled_by", "handled_at", "note"])
        if status == AlertStatus.RESOLVED and locked.kind == AlertKind.DISAGREEMENT_RISE and locked.deployment_id:
            from compliance.feedback import monitor_reset

            monitor_reset(deployment_id=locked.deployment_id)  # the sequential test starts again
    return locked
