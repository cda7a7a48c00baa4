"""The machinery the scoring rules share: the rule registry (``RULES``, filled by the ``scoring_rule``
decorator in ``compliance.trust.rules``), what a rule returns (``Outcome``), the CI-aware
threshold verdict, and the helpers that read runs, ratings and documentation. No Django import."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from compliance.trust.evidence import FederatedStudyEvidence, Link, RatingEvidence, RunEvidence, VersionEvidence
from radtrust_engine.report import LabelResult
from radtrust_engine.stats import mean_interval

DEMOGRAPHICS = ("sex", "age_band", "ethnicity")  # registry.datasheets.DEMOGRAPHIC_ATTRIBUTES
RUN_NAME = {"ethnicity": "race_ethnicity"}  # datasheet attribute -> manifest attribute
ACQUISITION = frozenset({"site", "scanner_manufacturer", "scanner_model", "protocol"})
MISSING_VALUES = frozenset({"", "unknown"})
# The verdicts of a criterion (``Outcome.status``) and of a principle, in words: the one place pages,
# change sentences and documents read them from.
STATUS_LABELS = {
    "met": "met",
    "partly": "partly met",
    "not_met": "not met",
    "uncertain": "uncertain: the interval spans the target",
    "no_evidence": "no evidence",
    "assessed": "assessed",
    "insufficient_evidence": "insufficient evidence",
}


def status_label(status: str | None) -> str:
    """A criterion's or principle's status in words; an unknown code is shown as it is stored."""
    return STATUS_LABELS.get(status, status or "none")


@dataclass(frozen=True)
class Outcome:
    """What a rule found; ``assess`` adds the policy's key, title and weight."""

    value: float | None
    status: str  # met | partly | not_met | uncertain | no_evidence
    inputs: dict[str, Any]
    explanation: str
    links: tuple[Link, ...] = ()
    n: int | None = None
    ci_width: float | None = None


@dataclass(frozen=True)
class Rule:
    """A rule function and its params: name -> (default, lowest allowed, highest allowed)."""

    function: Callable[[VersionEvidence, dict[str, float]], Outcome]
    params: dict[str, tuple[float, float, float]] = field(default_factory=dict)


RULES: dict[str, Rule] = {}


def scoring_rule(name: str, **params: tuple[float, float, float]):
    def register(function):
        RULES[name] = Rule(function, params)
        return function

    return register


# --- Shared helpers ---------------------------------------------------------------


def rounded(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def insufficient_evidence(explanation: str, **inputs: Any) -> Outcome:
    return Outcome(value=None, status="no_evidence", inputs=inputs, explanation=explanation)


def share_status(value: float) -> str:
    return "met" if value >= 1 - 1e-9 else "not_met" if value <= 1e-9 else "partly"


def threshold_verdict(observed: float, ci_low: float | None, ci_high: float | None, threshold: float) -> tuple[float, str]:
    """The CI-aware threshold rule for a quantity that should stay below ``threshold`` (module docstring)."""
    low = observed if ci_low is None else ci_low
    high = observed if ci_high is None else ci_high
    if high < threshold:
        return 1.0, "met"
    if low > threshold:
        return 0.5 * threshold / max(observed, low), "not_met"
    return 0.5, "uncertain"


def _verdict_words(status: str, threshold: float) -> str:
    return {
        "met": f"is below {threshold:g} with its whole CI",
        "not_met": f"exceeds {threshold:g}",
        "uncertain": f"is uncertain: its CI spans {threshold:g}",
    }[status]


def _ci_text(run: RunEvidence, low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "no CI"
    return f"{round(100 * run.report.confidence):d}% CI {low:.3f}-{high:.3f}"


def run_link(run: RunEvidence) -> Link:
    return Link("run", run.id, f"Run {run.id} on {run.dataset_name}")


def study_link(study: FederatedStudyEvidence) -> Link:
    return Link("federated_study", study.id, f"Federated study {study.name}")


def run_labels(run: RunEvidence) -> Iterator[tuple[str, LabelResult]]:
    yield from run.report.results.items()


def listed_values(values: tuple[str, ...] | None) -> list[str] | None:
    """A report's group values as the JSON list rule inputs show (None stays None)."""
    return None if values is None else list(values)


def label_suffix(run: RunEvidence, label: str) -> str:
    return f" for {label}" if sum(1 for _ in run_labels(run)) > 1 else ""


def worst_of(candidates: list[dict]) -> dict:
    return min(candidates, key=lambda c: (c["score"], -c["observed"]))


def newest_with(evidence: VersionEvidence, find: Callable[[RunEvidence], list[dict]]) -> tuple[RunEvidence | None, list[dict]]:
    """The newest run for which ``find`` returns candidates, and those candidates."""
    for run in evidence.runs:
        found = find(run)
        if found:
            return run, found
    return None, []


def _threshold_inputs(run: RunEvidence, worst: dict, threshold: float) -> dict[str, Any]:
    return {
        "run": run.id,
        "label": worst["label"],
        "observed": rounded(worst["observed"]),
        "ci_low": rounded(worst.get("ci_low")),
        "ci_high": rounded(worst.get("ci_high")),
        "threshold": threshold,
        **worst.get("extra", {}),
    }


def _ci_width(worst: dict) -> float | None:
    low, high = worst.get("ci_low"), worst.get("ci_high")
    return rounded(high - low) if low is not None and high is not None else None


def threshold_outcome(run: RunEvidence, worst: dict, threshold: float, sentence: str) -> Outcome:
    explanation = (
        f"{sentence} {worst['observed']:.3f} ({_ci_text(run, worst.get('ci_low'), worst.get('ci_high'))}){worst['where']}"
        f"{label_suffix(run, worst['label'])} {_verdict_words(worst['status'], threshold)}{worst.get('note', '')} (run {run.id})."
    )
    return Outcome(
        value=rounded(worst["score"]),
        status=worst["status"],
        inputs=_threshold_inputs(run, worst, threshold),
        explanation=explanation,
        links=(run_link(run),),
        n=worst.get("n"),
        ci_width=_ci_width(worst),
    )


def underpowered_outcome(run: RunEvidence, blind: dict, threshold: float, sentence: str) -> Outcome:
    """No value for a threshold criterion whose run could not have seen a difference of the
    threshold's size: its minimum detectable difference (80% power, ``blind["mdd"]``) is above the
    threshold, so even a CI below the threshold would not show that there is none worth worrying
    about. ``blind["extra"]["patients_needed"]`` says how many patients per group would do."""
    explanation = (
        f"{sentence} {blind['observed']:.3f} ({_ci_text(run, blind.get('ci_low'), blind.get('ci_high'))}){blind['where']}"
        f"{label_suffix(run, blind['label'])}, but this run could only detect a gap of {blind['mdd']:.3f} or more with 80% power, "
        f"above the tolerated {threshold:g}: insufficient evidence, about {blind['extra']['patients_needed']} patients per group "
        f"are needed (run {run.id})."
    )
    return Outcome(
        value=None,
        status="no_evidence",
        inputs=_threshold_inputs(run, blind, threshold),
        explanation=explanation,
        links=(run_link(run),),
        n=blind.get("n"),
        ci_width=_ci_width(blind),
    )


def target_status(low: float, high: float, target: float) -> str:
    return "met" if low >= target else "not_met" if high < target else "uncertain"


def pooled_ratings(ratings: list[RatingEvidence]) -> RatingEvidence:
    usable = [r for r in ratings if r.n and r.mean is not None and r.mean_sq is not None]
    n = sum(r.n for r in usable)
    if not n:
        return RatingEvidence(n=0, mean=None, mean_sq=None)
    return RatingEvidence(n=n, mean=sum(r.n * float(r.mean) for r in usable) / n, mean_sq=sum(r.n * float(r.mean_sq) for r in usable) / n)


def mean_ci(rating: RatingEvidence) -> tuple[float, float | None, float | None]:
    """The rating's mean and its 95% interval (``None`` bounds below two ratings)."""
    mean = float(rating.mean)
    return (mean, *mean_interval(rating.n, mean, float(rating.mean_sq)))


def documented(evidence: VersionEvidence, fields: tuple[str, ...], what: str) -> Outcome:
    filled = [f for f in fields if str(evidence.model.get(f) or "").strip()]
    missing = [f for f in fields if f not in filled]
    inputs = {"stated": filled, "missing": missing}
    if not filled:
        return insufficient_evidence(f"The model record does not state its {what} ({', '.join(fields)}).", **inputs)
    value = len(filled) / len(fields)
    gap = f"; missing: {', '.join(missing)}" if missing else ""
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs=inputs,
        explanation=f"{len(filled)} of {len(fields)} {what} items stated{gap}.",
        links=(Link("version", evidence.version_id, evidence.label),),
    )


def groups_of(run: RunEvidence, attribute: str) -> set[str]:
    """Values of ``attribute`` with a non-suppressed single-attribute subgroup in any label of ``run``."""
    found = set()
    for _, section in run_labels(run):
        for group in section.subgroups:
            if group.attributes == (attribute,) and not group.suppressed and str(group.values[0]) not in MISSING_VALUES:
                found.add(str(group.values[0]))
    return found


def group_patients(section: LabelResult, attributes: list, values: list | None) -> int | None:
    if values is None:
        return None
    for group in section.subgroups:
        if group.attributes == tuple(attributes) and group.values == tuple(values):
            return group.n_patients
    return None


def share_of_deployments(evidence: VersionEvidence, statuses: tuple[str, ...], ok: Callable, what: str, nothing: str) -> Outcome:
    chosen = [d for d in evidence.deployments if d.status in statuses]
    if not chosen:
        return insufficient_evidence(nothing)
    good = [d for d in chosen if ok(d)]
    bad = [d.institution for d in chosen if not ok(d)]
    value = len(good) / len(chosen)
    tail = f"; not at {', '.join(bad)}" if bad else ""
    return Outcome(
        value=rounded(value),
        status=share_status(value),
        inputs={"deployments": len(chosen), "ok": len(good), "not_ok": bad},
        explanation=f"{len(good)} of {len(chosen)} deployments {what}{tail}.",
        links=tuple(Link("deployment", d.id, f"Deployment at {d.institution}") for d in chosen),
    )


def dicom_input(run: RunEvidence) -> bool | None:
    """True when the run read DICOM headers or lists DICOM cases, False when its listed cases are
    all other formats, None when the report does not show the input format."""
    if run.report.dataset.header_fill.any_filled:
        return True
    paths = [
        path
        for _, section in run_labels(run)
        for path in [
            *(c.image_path for c in section.flagged_cases),
            *(c.get("image_path", "") for c in (section.explainability or {}).get("cases", ())),
        ]
    ]
    return any(p.lower().endswith((".dcm", ".dicom")) for p in paths) if paths else None


def feedback_link(n: int) -> tuple[Link, ...]:
    return (Link("feedback", None, f"{n} feedback reports"),)


def rating_outcome(rating: RatingEvidence, params: dict, what: str) -> Outcome:
    """A 1-5 rating as (mean - 1) / 4, its status from its CI against the target (no value under min_n)."""
    if rating.n < params["min_n"] or rating.mean is None or rating.mean_sq is None:
        return insufficient_evidence(f"Only {rating.n} ratings of {what}; at least {params['min_n']:g} are needed.", n=rating.n)
    mean, low, high = mean_ci(rating)
    if low is None:
        return insufficient_evidence(f"One rating of {what} says nothing of its spread; at least two are needed.", n=rating.n)
    value = min(1.0, max(0.0, (mean - 1) / 4))
    return Outcome(
        value=rounded(value),
        status=target_status(low, high, params["target"]),
        n=rating.n,
        ci_width=rounded((high - low) / 4),
        inputs={"n": rating.n, "mean": rounded(mean), "ci_low": rounded(low), "ci_high": rounded(high), "target": params["target"]},
        explanation=f"Clinicians rated {what} {mean:.2f} of 5 on average (n={rating.n}, 95% CI {low:.2f}-{high:.2f}), target {params['target']:g}.",
        links=feedback_link(rating.n),
    )
