"""What a run leaves beside its report: files (case table, charts, saliency overlays), the
cases its uncertainty analysis flagged, and the findings of its comparison with the baseline
(handed to ``validation.signals.run_succeeded``; post-market monitoring raises the alerts).

Files are written to the default storage before the run's closing transaction, under
``runs/<run>/attempt-<n>/`` so that a stale attempt never overwrites the winner's files;
their rows and the flags are created, and the signal sent, inside that transaction, so a run that
loses its lease leaves no row and a redelivered task no duplicate (the unique constraints
on file name, flagged case and alert finding back that up).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from radtrust_engine.report import DriftFinding, RunReport
from validation.charts import report_charts
from validation.choices import RunFileKind
from validation.models import CaseFlag, RunFile, ValidationRun
from validation.signals import run_succeeded

CASE_TABLE = "cases.npz"
_CONTENT_TYPES = {RunFileKind.CASE_TABLE: "application/octet-stream", RunFileKind.CHART: "image/svg+xml", RunFileKind.SALIENCY: "image/png"}


@dataclass
class RunOutputs:
    """Rows to create when the run closes successfully (files already written)."""

    files: list[RunFile] = field(default_factory=list)
    flags: list[CaseFlag] = field(default_factory=list)
    findings: list[DriftFinding] = field(default_factory=list)


def _store(run_id: int, attempt: int, name: str, kind: str, data: bytes, *, title: str = "", alt: str = "") -> RunFile:
    stored = default_storage.save(f"runs/{run_id}/attempt-{attempt}/{name}", ContentFile(data))
    return RunFile(
        run_id=run_id,
        kind=kind,
        name=name,
        storage_name=stored,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        content_type=_CONTENT_TYPES[kind],
        title=title,
        alt=alt,
    )


def run_outputs_write(*, run_id: int, attempt: int, evaluation) -> RunOutputs:
    """Write the run's files (charts rendered once here) and collect its flags and findings."""
    report = evaluation.run_report
    outputs = RunOutputs()
    if evaluation.cases is not None:
        outputs.files.append(_store(run_id, attempt, CASE_TABLE, RunFileKind.CASE_TABLE, evaluation.cases.to_bytes(), title="Per-case table"))
    for chart in report_charts(report.to_dict()):
        outputs.files.append(
            _store(
                run_id,
                attempt,
                f"charts/{chart.name}.svg",
                RunFileKind.CHART,
                chart.svg.encode(),
                title=chart.title,
                alt=chart.alt,
            )
        )
    for name, data in evaluation.files.items():
        outputs.files.append(
            _store(
                run_id,
                attempt,
                name,
                RunFileKind.SALIENCY,
                data,
                title="Saliency overlay",
                alt=f"Saliency map ({name.split('/')[2]}) over the preprocessed image of manifest row {name.rsplit('-', 1)[-1][:-4]}",
            )
        )
    outputs.flags = _case_flags(run_id, report)
    outputs.findings = list(report.drift.findings if report.drift else ())
    return outputs


def _case_flags(run_id: int, report: RunReport) -> list[CaseFlag]:
    """A row per case the uncertainty analysis referred for a human read, per label, with the label's cutoff."""
    return [
        CaseFlag(
            run_id=run_id,
            label=label,
            row=case.row,
            image_path=case.image_path[:500],
            uncertainty=case.uncertainty,
            probability=case.probability,
            tta_std=case.tta_std,
            cutoff=result.referral_cutoff,
        )
        for label, result in report.results.items()
        for case in result.flagged_cases
    ]


def run_outputs_save(run: ValidationRun, outputs: RunOutputs) -> None:
    """Create the rows of a succeeded run and announce its findings (inside its closing transaction)."""
    RunFile.objects.bulk_create(outputs.files)
    CaseFlag.objects.bulk_create(outputs.flags)
    run_succeeded.send(sender=ValidationRun, run=run, findings=outputs.findings)
