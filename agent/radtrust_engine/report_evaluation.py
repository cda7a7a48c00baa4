"""Evaluation of generated radiology reports against reference findings: what a report-generating
model states that is not there (confabulation) and what it leaves out (omission).

Generated reports arrive as JSON Lines (``{"case_id": ..., "report": ...}``) from a model that
RadTrust does not run; the reference is the dataset's labels (0/1 per finding) or reference
reports read by the same extractor (``radtrust_engine.report_findings``). Definitions
(docs/methods.md, "Report generation"):

- A report **asserts** a finding when the extractor reads it as present (with
  ``uncertain_as_present``, also when hedged).
- Per finding: sensitivity, specificity and F1 of the assertions against the reference.
- **Confabulation rate** of a finding: the share of reports whose reference lacks it that assert
  it; per report: the share of reports asserting at least one finding their reference lacks,
  and the mean number of such findings per report. "No Finding" is left out of the per-report
  counts: stating a normal study when it is not is an omission, counted there.
- **Omission rate** of a finding: the share of reports whose reference has it that do not assert
  it; per report: the share of reports with a reference finding that miss at least one.

Every interval is a patient-level bootstrap (all of a patient's reports resampled together,
``radtrust_engine.metrics.patient_bootstrap_counts``) with the BCa correction
(``radtrust_engine.stats.bca_interval``); subgroups are suppressed by the shared disclosure rules
(``radtrust_engine.disclosure.suppression_reasons``). Plain Python and NumPy (no Django).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radtrust_engine.disclosure import SUPPRESSION_REASONS, UNKNOWN, suppression_reasons
from radtrust_engine.metrics import MetricEstimate, patient_bootstrap_counts
from radtrust_engine.report_findings import NO_FINDING, OBSERVATIONS, Assertion, extract_findings
from radtrust_engine.stats import bca_interval
from radtrust_engine.stratification import patient_jackknife_counts

NOT_APPLICABLE = {
    "explainability": (
        "Not applicable for generated reports: saliency maps explain the score of an image "
        "classifier, and RadTrust did not run the report-generating model, so it has no gradients "
        "or activations to explain."
    ),
    "robustness": (
        "Not applicable for generated reports: robustness is measured by perturbing images and "
        "re-running the model, and the reports were generated outside RadTrust."
    ),
}
ERROR_ROWS_SHOWN = 5  # offending rows named in an error message


class ReportInputError(ValueError):
    """A generated-reports or reference file that cannot be evaluated; the message names the first
    offending rows and ``field`` the input at fault (the generated reports unless said otherwise)."""

    def __init__(self, message: str, field: str = "reports") -> None:
        super().__init__(message)
        self.field = field


def _rows_text(rows: Sequence[Any]) -> str:
    shown = ", ".join(str(r) for r in rows[:ERROR_ROWS_SHOWN])
    more = len(rows) - ERROR_ROWS_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def read_reports(data: bytes, known_cases: Sequence[str] | None = None, what: str = "generated report") -> dict[str, str]:
    """Case id to report text from a JSON Lines file, refusing the whole file at the first problem
    (not UTF-8, a line that is not an object with a ``case_id`` and a non-empty ``report``, a
    case twice, a case the dataset manifest does not hold, a manifest case without a report).
    ``what`` names the file's reports in the messages (generated or reference reports)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReportInputError(f"The {what}s file is not UTF-8 text (first bad byte on line {line}); save it as UTF-8.") from None
    reports: dict[str, str] = {}
    bad, empty, duplicate = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("case_id"), str | int) or not isinstance(row.get("report"), str):
            bad.append(number)
            continue
        case = str(row["case_id"])
        if not row["report"].strip():
            empty.append(f"line {number} ({case})")
        elif case in reports:
            duplicate.append(f"line {number} ({case})")
        else:
            reports[case] = row["report"]
    if bad:
        raise ReportInputError(f'Lines {_rows_text(bad)} are not JSON objects with a "case_id" and a "report" text.')
    if empty:
        raise ReportInputError(f"Empty report text on {_rows_text(empty)}; every case needs its {what}.")
    if duplicate:
        raise ReportInputError(f"Case ids given twice on {_rows_text(duplicate)}; give one report per case.")
    if not reports:
        raise ReportInputError(f"The {what}s file holds no reports.")
    if known_cases is not None:
        known = set(known_cases)
        unknown = [c for c in reports if c not in known]
        if unknown:
            raise ReportInputError(f"Case ids not in the dataset manifest: {_rows_text(unknown)}.")
        missing = [c for c in known_cases if c not in reports]
        if missing:
            raise ReportInputError(f"Manifest cases without a {what}: {_rows_text(missing)}.")
    return reports


def reference_from_reports(reports: Mapping[str, str], uncertain_as_present: bool = False) -> dict[str, dict[str, int]]:
    """Reference labels read from reference reports by the same extractor (0/1 per observation)."""
    return {case: _asserted(extract_findings(text), uncertain_as_present) for case, text in reports.items()}


def _asserted(found: Mapping[str, Assertion], uncertain_as_present: bool) -> dict[str, int]:
    yes = (Assertion.PRESENT, Assertion.UNCERTAIN) if uncertain_as_present else (Assertion.PRESENT,)
    return {name: int(a in yes) for name, a in found.items()}


@dataclass(frozen=True)
class FindingResult:
    """One finding across the evaluated reports."""

    finding: str
    n_reference_positive: int
    n_asserted: int
    sensitivity: MetricEstimate
    specificity: MetricEstimate
    f1: MetricEstimate
    confabulation_rate: MetricEstimate
    omission_rate: MetricEstimate

    def to_dict(self) -> dict[str, Any]:
        metrics = ("sensitivity", "specificity", "f1", "confabulation_rate", "omission_rate")
        return {
            "finding": self.finding,
            "n_reference_positive": self.n_reference_positive,
            "n_asserted": self.n_asserted,
            **{m: getattr(self, m).to_dict() for m in metrics},
        }


@dataclass(frozen=True)
class ReportGroupResult:
    """Per-report rates of one subgroup (or of all reports: no attribute); a suppressed group
    carries its reason and no counts."""

    attribute: str | None
    value: str | None
    n_reports: int | None
    n_patients: int | None
    suppressed: bool
    reason: str | None
    confabulating_reports: MetricEstimate | None
    confabulations_per_report: MetricEstimate | None
    omitting_reports: MetricEstimate | None

    @property
    def name(self) -> str:
        return "all reports" if self.attribute is None else f"{self.attribute}={self.value}"

    def to_dict(self) -> dict[str, Any]:
        rates = ("confabulating_reports", "confabulations_per_report", "omitting_reports")
        return {
            "name": self.name,
            "attribute": self.attribute,
            "value": self.value,
            "n_reports": self.n_reports,
            "n_patients": self.n_patients,
            "suppressed": self.suppressed,
            "reason": self.reason,
            "reason_text": SUPPRESSION_REASONS.get(self.reason or "", None),
            **{r: None if getattr(self, r) is None else getattr(self, r).to_dict() for r in rates},
        }


@dataclass(frozen=True)
class ReportEvaluation:
    """The evaluation of one set of generated reports."""

    n_reports: int
    n_patients: int
    findings: list[FindingResult]
    overall: ReportGroupResult
    subgroups: list[ReportGroupResult]
    uncertain_as_present: bool
    confidence: float
    n_resamples: int
    not_applicable: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_reports": self.n_reports,
            "n_patients": self.n_patients,
            "findings": [f.to_dict() for f in self.findings],
            "overall": self.overall.to_dict(),
            "subgroups": [g.to_dict() for g in self.subgroups],
            "uncertain_as_present": self.uncertain_as_present,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "not_applicable": dict(self.not_applicable),
        }


class _Ratios:
    """Ratios of per-patient sums with their patient-bootstrap BCa intervals, weights drawn once so
    that every finding and subgroup uses the same resamples."""

    def __init__(self, n_patients: int, n_resamples: int, seed: int, confidence: float) -> None:
        self.boot = patient_bootstrap_counts(np.random.default_rng(seed), n_patients, n_resamples)
        self.jack = patient_jackknife_counts(n_patients)
        self.n_patients, self.confidence = n_patients, confidence

    def estimate(self, numerator: np.ndarray, denominator: np.ndarray, units: int | None = None) -> MetricEstimate:
        """``sum(numerator) / sum(denominator)`` over patients (both per patient)."""
        den = float(denominator.sum())
        if den == 0:
            return MetricEstimate(None, None, None, 0)
        point = float(numerator.sum()) / den
        if self.boot.shape[0] == 0:  # a suite without resamples (n_resamples 0) reports points without intervals
            return MetricEstimate(point, None, None, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            samples = (self.boot @ numerator) / (self.boot @ denominator)
            jack = (self.jack @ numerator) / (self.jack @ denominator)
        low, high, n_valid = bca_interval(point, samples, jack, units or self.n_patients, self.confidence)
        return MetricEstimate(point, low, high, n_valid)


def _per_patient(values: np.ndarray, patient_idx: np.ndarray, n_patients: int) -> np.ndarray:
    return np.bincount(patient_idx, weights=values.astype(np.float64), minlength=n_patients)


def evaluate_reports(
    generated: Mapping[str, str],
    reference: Mapping[str, Mapping[str, int]],
    patients: Mapping[str, str],
    attributes: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    uncertain_as_present: bool = False,
    min_patients: int = 10,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> ReportEvaluation:
    """Per finding and per report rates of the generated reports against the reference labels.

    ``reference`` holds each case's 0/1 labels for the observations it knows (the manifest's
    findings); only those observations are evaluated, and "No Finding" is derived from the others
    when the reference lacks it. ``patients`` maps every case to its patient; ``attributes`` maps
    an attribute name (sex, age band, site) to each case's value, a missing one "unknown".
    """
    cases = sorted(generated)
    missing = [c for c in cases if c not in reference or c not in patients]
    if missing:
        raise ReportInputError(f"Cases without reference labels or patient: {_rows_text(missing)}.")
    names = [o for o in OBSERVATIONS if any(o in reference[c] for c in cases)]
    if not names:
        raise ReportInputError(f"The reference labels name none of the observations the extractor reads ({', '.join(OBSERVATIONS)}).")
    if NO_FINDING not in names:
        names.insert(0, NO_FINDING)
    truth = np.array([[_reference_value(reference[c], n, names) for n in names] for c in cases], dtype=float)
    said = np.array([[_asserted(extract_findings(generated[c]), uncertain_as_present)[n] for n in names] for c in cases], dtype=float)
    patient_keys, patient_idx = np.unique([str(patients[c]) for c in cases], return_inverse=True)
    n_pat = patient_keys.size
    ratios = _Ratios(n_pat, n_resamples, seed, confidence)
    known = ~np.isnan(truth)
    ref = np.nan_to_num(truth)
    tp, fp = said * ref * known, said * (1 - ref) * known
    fn, tn = (1 - said) * ref * known, (1 - said) * (1 - ref) * known

    findings = []
    for j, name in enumerate(names):
        per = {k: _per_patient(v[:, j], patient_idx, n_pat) for k, v in {"tp": tp, "fp": fp, "fn": fn, "tn": tn}.items()}
        pos, neg = per["tp"] + per["fn"], per["fp"] + per["tn"]
        findings.append(
            FindingResult(
                name,
                int(pos.sum()),
                int((per["tp"] + per["fp"]).sum()),
                ratios.estimate(per["tp"], pos),
                ratios.estimate(per["tn"], neg),
                ratios.estimate(2 * per["tp"], 2 * per["tp"] + per["fp"] + per["fn"]),
                ratios.estimate(per["fp"], neg),
                ratios.estimate(per["fn"], pos),
            )
        )

    pathology = np.array([n != NO_FINDING for n in names])
    confabulated = fp[:, pathology].sum(axis=1)
    omitted = fn[:, pathology].sum(axis=1)
    has_reference = (ref * known)[:, pathology].sum(axis=1) > 0
    per_report = {
        "confabulating": confabulated > 0,
        "confabulations": confabulated,
        "omitting": omitted > 0,
        "with_reference": has_reference,
    }
    overall = _group(None, None, np.ones(len(cases), dtype=bool), per_report, patient_idx, ratios, None)
    subgroups = _subgroups(cases, attributes or {}, per_report, patient_idx, ratios, min_patients)
    return ReportEvaluation(len(cases), int(n_pat), findings, overall, subgroups, uncertain_as_present, confidence, n_resamples, dict(NOT_APPLICABLE))


def _reference_value(labels: Mapping[str, int], name: str, names: Sequence[str]) -> float:
    """A case's reference for one observation: its label, "No Finding" derived from the other
    pathology labels when not given, NaN when unknown."""
    if name in labels and labels[name] is not None:
        value = int(labels[name])
        if value not in (0, 1):
            raise ReportInputError(f'Reference label "{name}" must be 0 or 1, got {labels[name]!r}.')
        return float(value)
    if name == NO_FINDING:
        others = [int(labels[n]) for n in names if n not in (NO_FINDING, "Support Devices") and labels.get(n) is not None]
        return float(not any(others))
    return float("nan")


def _group(
    attribute: str | None,
    value: str | None,
    mask: np.ndarray,
    per_report: Mapping[str, np.ndarray],
    patient_idx: np.ndarray,
    ratios: _Ratios,
    reason: str | None,
) -> ReportGroupResult:
    if reason is not None:
        return ReportGroupResult(attribute, value, None, None, True, reason, None, None, None)
    n_pat = ratios.n_patients
    weights = mask.astype(np.float64)
    reports = _per_patient(weights, patient_idx, n_pat)
    units = int(np.unique(patient_idx[mask]).size)

    def summed(key: str) -> np.ndarray:
        return _per_patient(per_report[key] * weights, patient_idx, n_pat)

    return ReportGroupResult(
        attribute,
        value,
        int(mask.sum()),
        units,
        False,
        None,
        ratios.estimate(summed("confabulating"), reports, units),
        ratios.estimate(summed("confabulations"), reports, units),
        ratios.estimate(summed("omitting") * 1.0, summed("with_reference"), units),
    )


def _subgroups(
    cases: Sequence[str],
    attributes: Mapping[str, Mapping[str, Any]],
    per_report: Mapping[str, np.ndarray],
    patient_idx: np.ndarray,
    ratios: _Ratios,
    min_patients: int,
) -> list[ReportGroupResult]:
    """Every value of every attribute, suppressed as ``disclosure.suppression_reasons`` decides
    from its patients and its counts of reports and of confabulating and omitting reports."""
    cells: list[tuple[str, str, np.ndarray]] = []
    for attribute, values in attributes.items():
        column = np.array([UNKNOWN if values.get(c) in (None, "") else str(values.get(c)) for c in cases])
        cells += [(attribute, v, column == v) for v in np.unique(column)]
    if not cells:
        return []
    everyone = np.ones(len(cases), dtype=bool)
    masks = [everyone] + [m for _, _, m in cells]
    keys = [((), ())] + [((a,), (v,)) for a, v, _ in cells]
    groupings = [()] + list(dict.fromkeys((a,) for a, _, _ in cells))
    counts = {
        "n": np.array([m.sum() for m in masks]),
        "confabulating": np.array([per_report["confabulating"][m].sum() for m in masks]),
        "omitting": np.array([per_report["omitting"][m].sum() for m in masks]),
    }
    reasons = suppression_reasons(keys, groupings, {"n": [patient_idx[m] for m in masks]}, counts, min_patients)
    return [_group(a, v, m, per_report, patient_idx, ratios, r) for (a, v, m), r in zip(cells, reasons[1:])]
