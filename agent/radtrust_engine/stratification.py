"""Stratified metrics: every metric overall, per subgroup and per declared
intersection, with patient-level bootstrap CIs and fairness gaps.

Bootstrap weights are drawn once for the whole dataset and shared by every
subgroup (see ``radtrust_engine.metrics``), so the gap between two groups on
one resample is a coherent draw. Plain Python and NumPy, no Django.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radtrust_engine.disclosure import UNKNOWN, suppression_reasons
from radtrust_engine.gaps import Arms, FairnessGap, GapInterval, gap_interval
from radtrust_engine.metrics import (
    DEFAULT_CHUNK_SIZE,
    METRIC_NAMES,
    LayoutSet,
    MetricEstimate,
    ScoreLayout,
    checked_inputs,
    chunk_for,
    finite_or_none,
    seeded_bootstrap_chunks,
)
from radtrust_engine.scanners import manufacturer_name, model_name
from radtrust_engine.stats import bca_intervals


@dataclass(frozen=True)
class SubgroupResult:
    """Metrics of one subgroup (or of the whole dataset: no attributes).

    A suppressed subgroup is listed, never dropped, with its ``reason``
    (``radtrust_engine.disclosure.SUPPRESSION_REASONS``: fewer distinct patients than the
    minimum, in all or in a class, or withheld so that such a group cannot be recovered by subtraction) and no
    counts and no metrics. A stored report whose suppressed subgroups still carry counts (an
    older engine wrote them) reads back without them.
    """

    attributes: tuple[str, ...]
    values: tuple[str, ...]
    n_cases: int | None
    n_patients: int | None
    n_positive: int | None
    suppressed: bool
    metrics: dict[str, MetricEstimate] | None
    reason: str | None = None

    @property
    def grouping(self) -> str:
        return " x ".join(self.attributes) if self.attributes else "overall"

    @property
    def name(self) -> str:
        if not self.attributes:
            return "overall"
        return ", ".join(f"{a}={v}" for a, v in zip(self.attributes, self.values))

    def to_dict(self) -> dict[str, Any]:
        return {
            "grouping": self.grouping,
            "name": self.name,
            "attributes": list(self.attributes),
            "values": list(self.values),
            "n_cases": self.n_cases,
            "n_patients": self.n_patients,
            "n_positive": self.n_positive,
            "suppressed": self.suppressed,
            "reason": self.reason,
            "metrics": None if self.metrics is None else {k: v.to_dict() for k, v in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubgroupResult:
        """Read back ``to_dict``'s output (``grouping`` and ``name`` follow from the attributes and values)."""
        metrics = data["metrics"]
        suppressed = bool(data["suppressed"])
        if suppressed:
            return cls(tuple(data["attributes"]), tuple(data["values"]), None, None, None, True, None, data.get("reason") or "too_few_patients")
        return cls(
            attributes=tuple(data["attributes"]),
            values=tuple(data["values"]),
            n_cases=data["n_cases"],
            n_patients=data["n_patients"],
            n_positive=data["n_positive"],
            suppressed=False,
            metrics=None if metrics is None else {k: MetricEstimate.from_dict(v) for k, v in metrics.items()},
        )


def suppressed_count_text(reason: str | None, minimum: int | None) -> str:
    """What a page, chart or document shows in place of a suppressed subgroup's count: "<10"
    (below the minimum of 10) for a group with too few patients, "withheld" for any other (too
    few of a class, or withheld to protect another: it has the minimum of patients).
    One rule for every place that shows counts, so none of them prints a hidden count."""
    if reason not in (None, "too_few_patients"):
        return "withheld"
    return f"<{minimum}" if minimum else "below the minimum"


@dataclass(frozen=True)
class GroupedReport:
    """Overall and subgroup results with CIs, and the gaps: what every stratified report holds
    (classification here, segmentation in ``radtrust_engine.segmentation``)."""

    n_resamples: int
    seed: int | None
    confidence: float
    min_patients: int
    overall: SubgroupResult
    subgroups: list[SubgroupResult]
    gaps: list[FairnessGap]

    def subgroup(self, attributes: Sequence[str], values: Sequence[str]) -> SubgroupResult:
        key = (tuple(attributes), tuple(values))
        for s in self.subgroups:
            if (s.attributes, s.values) == key:
                return s
        raise KeyError(key)

    def gap(self, kind: str, attributes: Sequence[str]) -> FairnessGap:
        for g in self.gaps:
            if g.kind == kind and g.attributes == tuple(attributes):
                return g
        raise KeyError((kind, tuple(attributes)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "confidence": self.confidence,
            "min_patients": self.min_patients,
            "overall": self.overall.to_dict(),
            "subgroups": [s.to_dict() for s in self.subgroups],
            "gaps": [g.to_dict() for g in self.gaps],
        }


@dataclass(frozen=True)
class StratifiedReport(GroupedReport):
    """Classification metrics at one operating threshold, overall and per subgroup, and the fairness gaps."""

    threshold: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, **super().to_dict()}


# ---------------------------------------------------------------------------
# Stratification
# ---------------------------------------------------------------------------


def category_labels(values: Any, n: int, name: str) -> np.ndarray:
    """Category labels as strings; None, NaN and empty or missing-value text
    become "unknown"."""
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"attribute {name!r} has shape {arr.shape}, expected ({n},)")
    if arr.dtype.kind != "U":
        arr = np.array(["" if _is_missing(v) else str(v) for v in arr.astype(object)], dtype=str)
    return np.where(np.isin(arr, _MISSING_TEXT), UNKNOWN, arr)


# Text that stands for a missing value once a manifest column was read as strings.
_MISSING_TEXT = ("", "nan", "NaN", "None", "none", "null", "NA", "<NA>")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# How an attribute's raw values become strata, where they need more than the text as read.
_NORMALISE = {"scanner_manufacturer": manufacturer_name, "scanner_model": model_name}


def attribute_values(attributes: Mapping[str, Sequence[Any]], name: str, rows: Sequence[int], age_edges: Sequence[float]) -> list:
    """One attribute for the evaluated rows as strata see it: ages as bands ("age_band"), scanner
    makers and models under one spelling each (``radtrust_engine.scanners``), others as read;
    a missing value stays None (it becomes "unknown" in ``category_labels``)."""
    if name == "age_band":
        return list(age_band([attributes["age"][i] for i in rows], age_edges))
    normalise = _NORMALISE.get(name)
    values = [attributes[name][i] for i in rows]
    return [normalise(v) for v in values] if normalise else values


def age_band(ages: Any, edges: Sequence[float] = (18, 40, 65)) -> np.ndarray:
    """Ages to band labels: with the default edges "<18", "18-39", "40-64",
    "65+"; None or NaN give "unknown". A band holds ``[edge_i, edge_i+1)``."""
    edges = [float(e) for e in edges]
    if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError("edges must be a non-empty increasing sequence")

    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    names = [f"<{fmt(edges[0])}"]
    for lo, hi in zip(edges, edges[1:]):
        upper = fmt(hi - 1) if lo.is_integer() and hi.is_integer() else f"<{fmt(hi)}"
        names.append(f"{fmt(lo)}-{upper}")
    names.append(f"{fmt(edges[-1])}+")

    raw = np.asarray(ages, dtype=object).ravel()
    try:
        x = raw.astype(np.float64)  # None becomes NaN
    except (TypeError, ValueError):
        x = np.array([_to_float(a) for a in raw], dtype=np.float64)
    labels = np.asarray(names + [UNKNOWN])
    idx = np.searchsorted(np.asarray(edges), x, side="right")
    idx[~np.isfinite(x)] = len(names)
    return labels[idx]


def _to_float(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Group:
    attributes: tuple[str, ...]
    values: tuple[str, ...]
    n_cases: int
    n_patients: int
    n_positive: int
    suppressed: bool
    layout: ScoreLayout | None  # positions are indices into the score-sorted arrays
    patient_idx: np.ndarray | None  # patient index per position
    point: dict[str, float] = field(default_factory=dict)
    boot: dict[str, np.ndarray] = field(default_factory=dict)
    jack: dict[str, np.ndarray] = field(default_factory=dict)  # per deleted block of patients (BCa)
    reason: str | None = None  # why it is suppressed (``disclosure.SUPPRESSION_REASONS``)


def suppress_groups(
    groups: list[Group],
    groupings: Sequence[tuple[str, ...]],
    counts: Mapping[str, Sequence[int]],
    min_patients: int,
    classes: Mapping[str, Sequence[np.ndarray]] | None = None,
) -> None:
    """Mark the groups a report may not show (``disclosure.suppression_reasons``): those under
    ``min_patients`` patients, with ``classes`` (``"positive"`` and ``"negative"``: each group's
    patients with a case of the class) those under it in a class, and the further ones that stop
    a reader recovering them from the overall and the other groupings. ``groups[0]`` is the
    overall, never suppressed; every ``groups[i].patient_idx`` holds the group's patients;
    ``counts`` adds per group the counts a reader can derive besides cases, positives and
    negatives (a rate times its denominator)."""
    every = {
        "n": np.array([g.n_cases for g in groups]),
        "positive": np.array([g.n_positive for g in groups]),
        "negative": np.array([g.n_cases - g.n_positive for g in groups]),
        **{kind: np.asarray(values) for kind, values in counts.items()},
    }
    keys = [(g.attributes, g.values) for g in groups]
    patients = {"n": [g.patient_idx for g in groups], **(classes or {})}
    for g, reason in zip(groups, suppression_reasons(keys, groupings, patients, every, min_patients)):
        g.suppressed, g.reason = reason is not None, reason


def _make_groups(
    groupings: list[tuple[tuple[str, ...], np.ndarray]],
    sorted_scores: np.ndarray,
    sorted_pos: np.ndarray,
    sorted_patient: np.ndarray,
    threshold: float,
    min_patients: int,
) -> list[Group]:
    """Every group of every grouping (the overall first), suppressed as ``suppress_groups``
    decides from its patients of each class and its counts and confusion counts at
    ``threshold``, with the score layout of each one shown."""
    groups, positions = [], []
    for attrs, keys in groupings:
        for key in np.unique(keys):
            at = np.flatnonzero(keys == key)
            pats = sorted_patient[at]
            values = tuple(str(key).split("\x1f")) if attrs else ()
            groups.append(Group(attrs, values, at.size, int(np.unique(pats).size), int(sorted_pos[at].sum()), False, None, pats))
            positions.append(at)
    positive, called = sorted_pos.astype(bool), sorted_scores >= threshold
    outcomes = {"tp": positive & called, "fn": positive & ~called, "tn": ~positive & ~called, "fp": ~positive & called}
    confusion = {kind: [int(hit[at].sum()) for at in positions] for kind, hit in outcomes.items()}
    classes = {
        "positive": [sorted_patient[at][positive[at]] for at in positions],
        "negative": [sorted_patient[at][~positive[at]] for at in positions],
    }
    suppress_groups(groups, [attrs for attrs, _ in groupings], confusion, min_patients, classes)
    for g, at in zip(groups, positions):
        if not g.suppressed:
            g.layout = ScoreLayout.build(at, sorted_scores[at], sorted_pos[at], threshold)
    return groups


def strata_setup(
    n: int,
    patient_id: Any,
    attributes: Mapping[str, Any] | None,
    intersections: Sequence[Sequence[str]],
    *,
    confidence: float,
    n_resamples: int,
    chunk_size: int,
) -> tuple[dict[str, np.ndarray], list[tuple[str, ...]], np.ndarray, int]:
    """Checked arguments of a stratified bootstrap (classification or segmentation): attribute
    labels, intersections, each case's patient index and the number of patients."""
    pid = np.asarray(patient_id)
    if pid.shape != (n,):
        raise ValueError(f"patient_id has shape {pid.shape}, expected ({n},)")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    if n_resamples < 0 or chunk_size < 1:
        raise ValueError("n_resamples must be >= 0 and chunk_size >= 1")
    labels = {name: category_labels(v, n, name) for name, v in dict(attributes or {}).items()}
    inters = [tuple(x) for x in intersections]
    for inter in inters:
        if len(inter) < 2 or any(a not in labels for a in inter):
            raise ValueError(f"intersection {inter} must name two or more declared attributes")
    _, patient_idx = np.unique(pid, return_inverse=True)
    patient_idx = patient_idx.ravel()
    return labels, inters, patient_idx, int(patient_idx.max()) + 1


def subgroup_result(g: Group, metric_names: Sequence[str], n_resamples: int, confidence: float) -> SubgroupResult:
    """A group's point estimates with their BCa intervals (``stats.bca_intervals``); a suppressed group has
    neither, nor counts."""
    if g.suppressed:
        return SubgroupResult(g.attributes, g.values, None, None, None, True, None, g.reason)
    intervals = None
    if n_resamples:  # every metric's interval at once
        points = np.array([g.point[name] for name in metric_names])
        boot = np.stack([g.boot[name] for name in metric_names])
        jack = np.stack([g.jack[name] for name in metric_names])
        intervals = bca_intervals(points, boot, jack, g.n_patients, confidence)
    metrics = {}
    for i, name in enumerate(metric_names):
        value = finite_or_none(g.point[name])
        lo, hi, n_valid = (None, None, 0)
        if value is not None and intervals is not None and intervals[2][i]:
            lo, hi, n_valid = float(intervals[0][i]), float(intervals[1][i]), int(intervals[2][i])
        metrics[name] = MetricEstimate(value, lo, hi, n_valid)
    return SubgroupResult(g.attributes, g.values, g.n_cases, g.n_patients, g.n_positive, False, metrics)


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float | None, float | None, int]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None, 0
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi), int(finite.size)


JACKKNIFE_BLOCKS = 100  # BCa's acceleration from at most this many delete-a-block jackknife rows


def patient_jackknife_counts(n_patients: int, n_blocks: int = JACKKNIFE_BLOCKS, rows: range | None = None) -> np.ndarray:
    """Delete-a-block jackknife weights, shape ``(blocks, n_patients)`` (only ``rows`` of them when
    given, so a large dataset's rows can be made a chunk at a time): row k leaves out the
    patients whose index is k modulo the number of blocks (one patient each up to ``n_blocks``
    patients), all of a patient's cases together. One set of rows serves every group: a row that
    leaves out none of a group's patients repeats its estimate and adds nothing to the
    skewness that BCa reads, so the acceleration stays consistent (docs/methods.md)."""
    blocks = min(n_patients, n_blocks)
    wanted = np.arange(blocks) if rows is None else np.asarray(rows)
    return (np.arange(n_patients)[None, :] % blocks != wanted[:, None]).astype(np.float64)


def comparable_groups(groups: list[Group], metric: str) -> list[Group]:
    """The groups a gap compares: reported (not suppressed), with the metric defined, and with no
    "unknown" value: missing attribute values are listed as a row of their own but are not a
    demographic group, so a gap between "M" and "unknown" would say nothing about sex."""
    return [g for g in groups if not g.suppressed and math.isfinite(g.point[metric]) and UNKNOWN not in g.values]


def largest_gap(groups: list[Group], metric: str) -> dict[str, Any]:
    """The highest and lowest point estimate of ``metric`` among the comparable groups and their
    difference; no pair when every group ties (value 0: no difference), no value below two groups."""
    usable = comparable_groups(groups, metric)
    info: dict[str, Any] = {"metric": metric, "group_high": None, "group_low": None, "value": None, "n_groups_compared": len(usable)}
    if len(usable) < 2:
        return info
    high = max(usable, key=lambda g: g.point[metric])
    low = min(usable, key=lambda g: g.point[metric])
    info["value"] = high.point[metric] - low.point[metric]
    if info["value"] > 0:
        info.update(group_high=high.values, group_low=low.values)
    return info


# The cases a rate is a share of. A rate observed at 0 or 1 has no bootstrap spread, which would
# make a gap between such groups look certain; its standard error is at least that of
# (events + 1) / (cases + 2), so a handful of positives never reads as a precise gap.
_RATE_CASES = {"sensitivity": lambda g: g.n_positive, "fnr": lambda g: g.n_positive, "fpr": lambda g: g.n_cases - g.n_positive}


def _standard_error(g: Group, metric: str) -> float:
    finite = g.boot[metric][np.isfinite(g.boot[metric])]
    se = float(np.std(finite, ddof=1)) if finite.size > 1 else math.inf
    if metric in _RATE_CASES:
        cases = _RATE_CASES[metric](g)
        p = (g.point[metric] * cases + 1) / (cases + 2)
        se = max(se, math.sqrt(p * (1 - p) / cases))
    return se


def _arms(groups: list[Group], metric: str) -> Arms:
    return Arms(
        point=np.array([g.point[metric] for g in groups]),
        boot=np.column_stack([g.boot[metric] for g in groups]),
        se=np.array([_standard_error(g, metric) for g in groups]),
        patients=np.array([g.n_patients for g in groups], dtype=np.float64),
    )


def gap_result(kind: str, attrs: tuple[str, ...], groups: list[Group], metrics: Sequence[str], confidence: float) -> FairnessGap:
    """The largest gap of ``metrics`` across ``groups`` with its simultaneous interval and power
    (``radtrust_engine.gaps``). With two metrics (the equalized-odds difference: sensitivity and
    FPR) the gap is the larger of theirs, undefined if either is, and the family spans both."""
    parts = [largest_gap(groups, m) for m in metrics]
    components = {}
    if len(parts) > 1:
        components = {
            p["metric"]: {
                "group_high": None if p["group_high"] is None else list(p["group_high"]),
                "group_low": None if p["group_low"] is None else list(p["group_low"]),
                "value": p["value"],
            }
            for p in parts
        }
    if any(p["value"] is None for p in parts):
        n_compared = min(p["n_groups_compared"] for p in parts)
        return FairnessGap(kind, attrs, None, None, None, None, None, None, 0, n_compared, components)
    main = max(parts, key=lambda p: p["value"])  # the first (sensitivity) on a tie
    interval = GapInterval(None, None, 0, None, None, None)
    compared = [comparable_groups(groups, m) for m in metrics]
    if compared[0][0].boot:
        interval = gap_interval([_arms(gs, m) for gs, m in zip(compared, metrics)], confidence)
    return FairnessGap(
        kind=kind,
        attributes=attrs,
        component=main["metric"] if components else None,
        group_high=main["group_high"],
        group_low=main["group_low"],
        value=float(main["value"]),
        ci_low=interval.ci_low,
        ci_high=interval.ci_high,
        n_valid=interval.n_valid,
        n_groups_compared=main["n_groups_compared"],
        components=components,
        critical_value=interval.critical_value,
        mdd=interval.mdd,
        mdd_patients=interval.mdd_patients,
    )


_GAP_METRICS = (("auroc_gap", ("auroc",)), ("fnr_gap", ("fnr",)), ("equalized_odds_difference", ("sensitivity", "fpr")))


def _fairness_gaps(attrs: tuple[str, ...], groups: list[Group], confidence: float) -> list[FairnessGap]:
    return [gap_result(kind, attrs, groups, metrics, confidence) for kind, metrics in _GAP_METRICS]


def _metrics_per_row(layouts: LayoutSet, chunks: Iterable[np.ndarray], n_rows: int, names: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """The metrics ``names`` of every layout (the active groups', in order) for each row of patient
    weights (bootstrap counts or jackknife rows), the rows arriving in chunks of shape
    ``(rows, n_patients)``: every group of a chunk at once."""
    out = {k: np.empty((n_rows, len(layouts))) for k in names}
    start = 0
    for counts in chunks:
        stop = start + counts.shape[0]
        for k, values in layouts.metrics(counts, names).items():
            out[k][start:stop] = values
        start = stop
    return [{k: np.ascontiguousarray(out[k][:, i]) for k in names} for i in range(len(layouts))]


def stratified_metrics(
    y_true: Any,
    y_score: Any,
    patient_id: Any,
    attributes: Mapping[str, Any] | None = None,
    intersections: Sequence[Sequence[str]] = (),
    *,
    threshold: float = 0.5,
    n_resamples: int = 1000,
    seed: int | None = 0,
    min_patients: int = 10,
    confidence: float = 0.95,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    metric_names: Sequence[str] = METRIC_NAMES,
) -> StratifiedReport:
    """Every metric with a patient-level bootstrap CI, overall and per
    subgroup of each attribute and each declared intersection, and the
    fairness gaps of each grouping.

    1. Sort all cases by score once; build each subgroup's tie groups.
    2. Point estimates: unit weights.
    3. Bootstrap: per chunk, draw multinomial patient counts for the whole
       dataset (``numpy.random.default_rng(seed)``), expand them to case
       weights per subgroup, and compute every metric for every resample of
       the chunk at once. The same weights serve every subgroup.
    4. Jackknife: the same, once per deleted block of patients
       (``patient_jackknife_counts``), for BCa's acceleration.
    5. BCa intervals per group; per grouping the gaps, with simultaneous
       intervals over every pair of comparable groups (``radtrust_engine.gaps``).

    ``metric_names`` limits the metrics to those a caller reads (the leave-one-out AUROC of
    ``radtrust_engine.generalisation``); the gaps need them all, so fewer take no attributes.
    """
    if set(metric_names) != set(METRIC_NAMES) and attributes:
        raise ValueError("the fairness gaps of subgroups need every metric: pass no attributes with fewer metric_names")
    y, s = checked_inputs(y_true, y_score)
    n = s.size
    if n == 0:
        raise ValueError("no cases")
    labels, intersections, patient_idx, n_patients = strata_setup(
        n,
        patient_id,
        attributes,
        intersections,
        confidence=confidence,
        n_resamples=n_resamples,
        chunk_size=chunk_size,
    )

    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted, pat_sorted = s[order], y[order], patient_idx[order]
    chunk_size = chunk_for(n, chunk_size)

    groupings: list[tuple[tuple[str, ...], np.ndarray]] = [((), np.zeros(n, dtype=np.int8))]
    for name in labels:
        groupings.append(((name,), labels[name][order]))
    for inter in intersections:
        key = labels[inter[0]][order].astype(object)
        for a in inter[1:]:
            key = key + "\x1f" + labels[a][order].astype(object)
        groupings.append((inter, key.astype(str)))

    every_group = _make_groups(groupings, s_sorted, y_sorted, pat_sorted, float(threshold), min_patients)
    by_grouping = [(attrs, [g for g in every_group if g.attributes == attrs]) for attrs, _ in groupings]
    active = [g for _, gs in by_grouping for g in gs if not g.suppressed]

    layouts = LayoutSet.of([g.layout for g in active], [g.patient_idx for g in active], n_patients)
    point = layouts.metrics(np.ones((1, n_patients)), metric_names)  # every case once
    for i, g in enumerate(active):
        g.point = {k: float(v[0, i]) for k, v in point.items()}

    if n_resamples:
        draws = seeded_bootstrap_chunks(seed, n_patients, n_resamples, chunk_size)
        n_blocks = min(n_patients, JACKKNIFE_BLOCKS)
        blocks = (
            patient_jackknife_counts(n_patients, rows=range(start, min(start + chunk_size, n_blocks))) for start in range(0, n_blocks, chunk_size)
        )
        boots = _metrics_per_row(layouts, draws, n_resamples, metric_names)
        for g, boot, jk in zip(active, boots, _metrics_per_row(layouts, blocks, n_blocks, metric_names)):
            g.boot, g.jack = boot, jk

    def result(g: Group) -> SubgroupResult:
        return subgroup_result(g, metric_names, n_resamples, confidence)

    overall = result(by_grouping[0][1][0])
    subgroups = [result(g) for _, gs in by_grouping[1:] for g in gs]
    gaps = [gap for attrs, gs in by_grouping[1:] for gap in _fairness_gaps(attrs, gs, confidence)]
    return StratifiedReport(
        threshold=float(threshold),
        n_resamples=int(n_resamples),
        seed=seed,
        confidence=float(confidence),
        min_patients=int(min_patients),
        overall=overall,
        subgroups=subgroups,
        gaps=gaps,
    )
