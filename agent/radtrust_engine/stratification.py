"""Stratified metrics: every metric overall, per subgroup and per declared
intersection, with patient-level bootstrap CIs and fairness gaps.

Bootstrap weights are drawn once for the whole dataset and shared by every
subgroup (see ``radtrust_engine.metrics``), so the gap between two groups on
one resample is a coherent draw. Plain Python and NumPy, no Django.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from radtrust_engine.metrics import (
    DEFAULT_CHUNK_SIZE,
    METRIC_NAMES,
    MetricEstimate,
    ScoreLayout,
    checked_inputs,
    finite_or_none,
    patient_bootstrap_counts,
)
from radtrust_engine.scanners import manufacturer_name, model_name

UNKNOWN = "unknown"


@dataclass(frozen=True)
class SubgroupResult:
    """Metrics of one subgroup (or of the whole dataset: no attributes).

    A subgroup with fewer distinct patients than the minimum is listed with
    ``suppressed=True`` and no metrics, never dropped.
    """

    attributes: tuple[str, ...]
    values: tuple[str, ...]
    n_cases: int
    n_patients: int
    n_positive: int
    suppressed: bool
    metrics: dict[str, MetricEstimate] | None

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
            "metrics": None if self.metrics is None else {k: v.to_dict() for k, v in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubgroupResult:
        """Read back ``to_dict``'s output (``grouping`` and ``name`` follow from the attributes and values)."""
        metrics = data["metrics"]
        return cls(
            attributes=tuple(data["attributes"]),
            values=tuple(data["values"]),
            n_cases=data["n_cases"],
            n_patients=data["n_patients"],
            n_positive=data["n_positive"],
            suppressed=data["suppressed"],
            metrics=None if metrics is None else {k: MetricEstimate.from_dict(v) for k, v in metrics.items()},
        )


@dataclass(frozen=True)
class FairnessGap:
    """The largest gap of one metric between two groups of one grouping.

    ``group_high`` and ``group_low`` are chosen on the point estimate; the
    interval is the percentile interval of the gap between those same two
    groups over the bootstrap resamples. For the equalized-odds difference,
    ``component`` says which gap (sensitivity = TPR, or FPR) was the larger
    and names its groups; ``components`` holds both.
    """

    kind: str  # "auroc_gap" | "fnr_gap" | "equalized_odds_difference"
    attributes: tuple[str, ...]
    component: str | None
    group_high: tuple[str, ...] | None
    group_low: tuple[str, ...] | None
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n_valid: int
    n_groups_compared: int
    components: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def grouping(self) -> str:
        return " x ".join(self.attributes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["grouping"] = self.grouping
        d["attributes"] = list(self.attributes)
        for key in ("group_high", "group_low"):
            d[key] = None if d[key] is None else list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FairnessGap:
        """Read back ``to_dict``'s output (``grouping`` follows from the attributes)."""

        def groups(key: str) -> tuple[str, ...] | None:
            return None if data[key] is None else tuple(data[key])

        return cls(
            kind=data["kind"],
            attributes=tuple(data["attributes"]),
            component=data["component"],
            group_high=groups("group_high"),
            group_low=groups("group_low"),
            value=data["value"],
            ci_low=data["ci_low"],
            ci_high=data["ci_high"],
            n_valid=data["n_valid"],
            n_groups_compared=data["n_groups_compared"],
            components=copy.deepcopy(dict(data["components"])),
        )


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


def _make_groups(
    groupings: list[tuple[tuple[str, ...], np.ndarray]],
    sorted_scores: np.ndarray,
    sorted_pos: np.ndarray,
    sorted_patient: np.ndarray,
    threshold: float,
    min_patients: int,
) -> list[Group]:
    groups = []
    for attrs, keys in groupings:
        for key in np.unique(keys):
            positions = np.flatnonzero(keys == key)
            pats = sorted_patient[positions]
            n_pat = int(np.unique(pats).size)
            suppressed = n_pat < min_patients and bool(attrs)
            values = tuple(str(key).split("\x1f")) if attrs else ()
            layout = None
            if not suppressed:
                layout = ScoreLayout.build(positions, sorted_scores[positions], sorted_pos[positions], threshold)
            groups.append(
                Group(attrs, values, positions.size, n_pat, int(sorted_pos[positions].sum()), suppressed, layout, None if suppressed else pats)
            )
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
    """A group's point estimates with their percentile intervals; a suppressed group has none."""
    metrics = None
    if not g.suppressed:
        metrics = {}
        for name in metric_names:
            value = finite_or_none(g.point[name])
            lo, hi, n_valid = (None, None, 0)
            if value is not None and n_resamples:
                lo, hi, n_valid = percentile_interval(g.boot[name], confidence)
            metrics[name] = MetricEstimate(value, lo, hi, n_valid)
    return SubgroupResult(g.attributes, g.values, g.n_cases, g.n_patients, g.n_positive, g.suppressed, metrics)


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float | None, float | None, int]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None, 0
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi), int(finite.size)


def largest_gap(groups: list[Group], metric: str) -> tuple[dict[str, Any], np.ndarray | None]:
    usable = [g for g in groups if not g.suppressed and math.isfinite(g.point[metric])]
    info: dict[str, Any] = {"metric": metric, "group_high": None, "group_low": None, "value": None, "n_groups_compared": len(usable)}
    if len(usable) < 2:
        return info, None
    high = max(usable, key=lambda g: g.point[metric])
    low = min(usable, key=lambda g: g.point[metric])
    samples = high.boot[metric] - low.boot[metric] if high.boot else np.zeros(0)
    info.update(group_high=high.values, group_low=low.values, value=high.point[metric] - low.point[metric])
    return info, samples


def gap_result(
    kind: str,
    attrs: tuple[str, ...],
    info: dict[str, Any],
    samples: np.ndarray | None,
    confidence: float,
    components: dict[str, dict[str, Any]] | None = None,
) -> FairnessGap:
    lo, hi, n_valid = (None, None, 0) if samples is None else percentile_interval(samples, confidence)
    return FairnessGap(
        kind=kind,
        attributes=attrs,
        component=info["metric"] if components else None,
        group_high=info["group_high"],
        group_low=info["group_low"],
        value=None if info["value"] is None else float(info["value"]),
        ci_low=lo,
        ci_high=hi,
        n_valid=n_valid,
        n_groups_compared=info["n_groups_compared"],
        components=components or {},
    )


def _fairness_gaps(attrs: tuple[str, ...], groups: list[Group], confidence: float) -> list[FairnessGap]:
    gaps = []
    for kind, metric in (("auroc_gap", "auroc"), ("fnr_gap", "fnr")):
        info, samples = largest_gap(groups, metric)
        gaps.append(gap_result(kind, attrs, info, samples, confidence))

    tpr, tpr_s = largest_gap(groups, "sensitivity")
    fpr, fpr_s = largest_gap(groups, "fpr")
    components = {
        c["metric"]: {
            "group_high": None if c["group_high"] is None else list(c["group_high"]),
            "group_low": None if c["group_low"] is None else list(c["group_low"]),
            "value": c["value"],
        }
        for c in (tpr, fpr)
    }
    if tpr["value"] is None or fpr["value"] is None:
        # Either component undefined: the difference is undefined.
        info = {
            "metric": None,
            "group_high": None,
            "group_low": None,
            "value": None,
            "n_groups_compared": min(tpr["n_groups_compared"], fpr["n_groups_compared"]),
        }
        gaps.append(gap_result("equalized_odds_difference", attrs, info, None, confidence, components))
        return gaps
    main = tpr if tpr["value"] >= fpr["value"] else fpr
    samples = np.maximum(tpr_s, fpr_s)  # same pairs on every resample; NaN propagates
    gaps.append(gap_result("equalized_odds_difference", attrs, dict(main), samples, confidence, components))
    return gaps


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
    4. Percentile intervals; gaps between the two groups chosen on the point
       estimate, recomputed for those groups on each resample.
    """
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

    groupings: list[tuple[tuple[str, ...], np.ndarray]] = [((), np.zeros(n, dtype=np.int8))]
    for name in labels:
        groupings.append(((name,), labels[name][order]))
    for inter in intersections:
        key = labels[inter[0]][order].astype(object)
        for a in inter[1:]:
            key = key + "\x1f" + labels[a][order].astype(object)
        groupings.append((inter, key.astype(str)))

    by_grouping: list[tuple[tuple[str, ...], list[Group]]] = []
    for attrs, keys in groupings:
        groups = _make_groups([(attrs, keys)], s_sorted, y_sorted, pat_sorted, float(threshold), min_patients)
        by_grouping.append((attrs, groups))
    active = [g for _, gs in by_grouping for g in gs if not g.suppressed]

    for g in active:
        point = g.layout.metrics(np.ones((1, g.n_cases)))
        g.point = {k: float(v[0]) for k, v in point.items()}
        if n_resamples:
            g.boot = {k: np.empty(n_resamples) for k in METRIC_NAMES}

    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk_size):
        stop = min(start + chunk_size, n_resamples)
        counts = patient_bootstrap_counts(rng, n_patients, stop - start)
        for g in active:
            values = g.layout.metrics(np.take(counts, g.patient_idx, axis=1))  # C order
            for k in METRIC_NAMES:
                g.boot[k][start:stop] = values[k]

    def result(g: Group) -> SubgroupResult:
        return subgroup_result(g, METRIC_NAMES, n_resamples, confidence)

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
