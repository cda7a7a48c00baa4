"""A run of generated reports: the reports file of a report-generating model (JSON Lines, one
``{"case_id", "report"}`` per case, produced outside RadTrust) evaluated against a reference
(``radtrust_engine.report_evaluation``): the dataset manifest's label columns as reference
findings, or reference reports (the same JSON Lines form, written by radiologists) whose findings
the same extractor reads.

The result is an ordinary ``RunReport`` so that every reader of runs handles it: no label results
(no image was scored), the dataset as the manifest describes it, and the evaluation in
``report_generation`` with the reference it used named in words. A manifest label column is a
finding when its name, read without case and with underscores as spaces, is one of the
extractor's observations ("pleural_effusion" is "Pleural Effusion"); subgroups are the suite's
attributes, suppressed by the shared disclosure rules. Plain Python (no Django).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from radtrust_engine.loading import Manifest
from radtrust_engine.pipeline import ENGINE_VERSION, SuiteConfig, case_strata, dataset_info
from radtrust_engine.report import ImageConversions, RunReport
from radtrust_engine.report_evaluation import ReportInputError, evaluate_reports, read_reports, reference_from_reports
from radtrust_engine.report_findings import OBSERVATIONS

NOT_RUN_STATEMENT = (
    "RadTrust did not run this model. Its generated reports were produced elsewhere and uploaded; "
    "RadTrust checked the file's hash and its cases against the dataset manifest, read the findings "
    "each report states with its rule-based extractor, and compared them with the reference."
)


class Reference(StrEnum):
    """What the generated reports are compared with."""

    LABELS = "labels"
    REPORTS = "reports"


REFERENCE_TEXT = {
    Reference.LABELS: "the dataset manifest's reference findings (its label columns, 0 or 1 per case)",
    Reference.REPORTS: "reference reports uploaded with the generated ones (one per case), whose findings the same rule-based extractor read",
}
_BY_KEY = {name.lower(): name for name in OBSERVATIONS}


def observation(column: str) -> str | None:
    """The extractor's observation a manifest label column names, or None."""
    return _BY_KEY.get(column.replace("_", " ").strip().lower())


def finding_columns(class_names: Sequence[str]) -> dict[str, str]:
    """Label column -> observation, for the columns that name one; ``ReportInputError`` if none does."""
    found = {name: obs for name in class_names if (obs := observation(name)) is not None}
    if not found:
        raise ReportInputError(
            f"None of the output schema's classes ({', '.join(class_names) or 'none'}) is a finding the extractor reads "
            f"({', '.join(OBSERVATIONS)}); name the reference findings as those observations."
        )
    return found


@dataclass(frozen=True)
class ReportRunInputs:
    """The checked inputs of a run: each case's generated report and its reference findings (0/1 per observation)."""

    generated: dict[str, str]
    reference: dict[str, dict[str, int]]
    reference_kind: Reference
    finding_columns: dict[str, str]  # manifest label column -> observation; empty with reference reports


def report_run_inputs(
    data: bytes, manifest: Manifest, *, reference_reports: bytes | None = None, uncertain_as_present: bool = False
) -> ReportRunInputs:
    """Read the generated reports and the reference, every manifest case once in each
    (``read_reports``); ``ReportInputError`` names the first offending rows and, in ``field``,
    the input at fault: "reports", "reference_reports", or "version" for an output schema
    that names no finding the extractor reads (reference labels only)."""
    generated = read_reports(data, known_cases=manifest.image_paths)
    if reference_reports is not None:
        try:
            written = read_reports(reference_reports, known_cases=manifest.image_paths, what="reference report")
        except ReportInputError as exc:
            raise ReportInputError(str(exc), field="reference_reports") from None
        return ReportRunInputs(generated, reference_from_reports(written, uncertain_as_present), Reference.REPORTS, {})
    try:
        columns = finding_columns(manifest.label_names)
    except ReportInputError as exc:
        raise ReportInputError(str(exc), field="version") from None
    index = {name: j for j, name in enumerate(manifest.label_names)}
    reference = {case: {obs: int(manifest.labels[i, index[col]]) for col, obs in columns.items()} for i, case in enumerate(manifest.image_paths)}
    return ReportRunInputs(generated, reference, Reference.LABELS, columns)


def evaluate_report_run(
    data: bytes,
    manifest: Manifest,
    *,
    config: SuiteConfig,
    uncertain_as_present: bool = False,
    reference_reports: bytes | None = None,
) -> RunReport:
    """Evaluate the generated reports against the manifest's reference findings, or against
    ``reference_reports`` when given (``report_run_inputs`` refuses bad files)."""
    inputs = report_run_inputs(data, manifest, reference_reports=reference_reports, uncertain_as_present=uncertain_as_present)
    patients = dict(zip(manifest.image_paths, manifest.patient_ids, strict=True))
    rows = np.arange(len(manifest), dtype=np.int64)
    strata, missing = case_strata(manifest, rows, config)
    attributes = {name: dict(zip(manifest.image_paths, values.tolist(), strict=True)) for name, values in strata.items() if name in config.attributes}
    evaluation = evaluate_reports(
        inputs.generated,
        inputs.reference,
        patients,
        attributes,
        uncertain_as_present=uncertain_as_present,
        min_patients=config.min_patients,
        n_resamples=config.n_resamples,
        seed=config.seed,
        confidence=config.confidence,
    )
    statement = {"run_by_radtrust": False, "reports_sha256": hashlib.sha256(data).hexdigest(), "statement": NOT_RUN_STATEMENT}
    reference = {"reference": inputs.reference_kind.value, "reference_text": REFERENCE_TEXT[inputs.reference_kind]}
    if reference_reports is not None:
        reference["reference_sha256"] = hashlib.sha256(reference_reports).hexdigest()
    return RunReport(
        engine_version=ENGINE_VERSION,
        task="report_generation",
        config=config.to_dict(),
        preprocessing={},
        activation="none",
        output_mapping="findings read from the generated report text by the rule-based extractor",
        model=statement,
        dataset=dataset_info(manifest, rows, missing, [], {"filled": {}, "unreadable": []}, ImageConversions.collect([])),
        skipped=(),
        inference={**statement, "forward_passes": 0},
        results={},
        report_generation={**evaluation.to_dict(), "min_patients": config.min_patients, "finding_columns": inputs.finding_columns, **reference},
    )
