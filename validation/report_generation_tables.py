"""The section of a run of generated reports (``radtrust_engine.report_runs``) as its page shows it:
per finding sensitivity, specificity and F1, confabulation and omission rates with their intervals,
the same per report and by subgroup (a suppressed group shows "<N" patients, N the minimum, never
its count; "withheld" when protecting another group), and why the image analyses do not apply. Nothing is recomputed: the figures are the
report's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.readable import metric, number
from radtrust_engine.disclosure import SUPPRESSION_REASONS
from radtrust_engine.report_runs import REFERENCE_TEXT, Reference
from radtrust_engine.stratification import suppressed_count_text
from validation.report_tables import ATTRIBUTE_VALUES, Table
from validation.task_tables import TaskSection

FINDING_HEAD = [
    "Finding",
    "Reference positives",
    "Asserted",
    "Sensitivity (CI)",
    "Specificity (CI)",
    "F1 (CI)",
    "Confabulation rate (CI)",
    "Omission rate (CI)",
]
GROUP_HEAD = ["Group", "Reports", "Patients", "Reports with a confabulation (CI)", "Confabulations per report (CI)", "Reports with an omission (CI)"]


def _group_row(group: Mapping[str, Any], minimum: int) -> list[str]:
    if group.get("attribute") is None:
        name = "All reports"
    else:
        value = ATTRIBUTE_VALUES.get(group.get("attribute"), {}).get(group.get("value"), group.get("value"))
        name = f"{str(group.get('attribute')).replace('_', ' ')} = {value}"
    if group.get("suppressed"):
        why = SUPPRESSION_REASONS.get(group.get("reason") or "", "suppressed")
        return [name, "—", suppressed_count_text(group.get("reason"), minimum), f"suppressed: {why}", "—", "—"]
    rates = (metric(group.get(k)) for k in ("confabulating_reports", "confabulations_per_report", "omitting_reports"))
    return [name, number(group.get("n_reports")), number(group.get("n_patients")), *rates]


def report_generation_section(results: Mapping[str, Any] | None, *, summary_only: bool = False) -> TaskSection | None:
    """The generated-reports section of a stored report, or None for a run of another kind."""
    evaluation = (results or {}).get("report_generation")
    if not isinstance(evaluation, Mapping) or not isinstance(evaluation.get("overall"), Mapping):
        return None
    minimum = int(evaluation.get("min_patients") or 10)
    hedged = "counted as asserted" if evaluation.get("uncertain_as_present") else "not counted as asserted"
    by_reports = evaluation.get("reference") == Reference.REPORTS
    section = TaskSection(
        title="Generated reports against reference reports" if by_reports else "Generated reports against the reference findings",
        notes=[
            f"{number(evaluation.get('n_reports'))} generated reports of {number(evaluation.get('n_patients'))} patients; the findings each "
            f"report states were read by RadTrust's rule-based extractor (negation and uncertainty handled; hedged findings {hedged}) "
            f"and compared with {REFERENCE_TEXT[Reference.REPORTS if by_reports else Reference.LABELS]}.",
            "Confabulation: a report states a finding the reference does not have. Omission: it leaves out one the reference has. "
            f"Intervals: {round(100 * float(evaluation.get('confidence') or 0.95))}% patient-level bootstrap (BCa), all of a patient's reports "
            "resampled together.",
        ],
    )
    section.tables.append(Table("Per report", GROUP_HEAD, [_group_row(evaluation["overall"], minimum)]))
    if summary_only:
        return section
    findings = [
        [
            str(f.get("finding")),
            number(f.get("n_reference_positive")),
            number(f.get("n_asserted")),
            *(metric(f.get(k)) for k in ("sensitivity", "specificity", "f1", "confabulation_rate", "omission_rate")),
        ]
        for f in evaluation.get("findings") or []
        if isinstance(f, Mapping)
    ]
    section.tables.append(Table("Per finding", FINDING_HEAD, findings))
    groups = [_group_row(g, minimum) for g in evaluation.get("subgroups") or [] if isinstance(g, Mapping)]
    if groups:
        section.tables.append(Table("By subgroup", GROUP_HEAD, groups))
    else:
        section.notes.append("No subgroups: the suite asked for no attribute the manifest records.")
    for name, reason in (evaluation.get("not_applicable") or {}).items():
        section.notes.append(f"{str(name).capitalize()}: {reason}")
    return section
