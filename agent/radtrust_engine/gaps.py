"""Fairness gaps: the largest difference of one metric between the groups of one grouping, an
interval for it that stays honest whichever pair is largest, and the smallest gap the data
could have shown.

The largest gap is a maximum over pairs, chosen on the data. An interval for the difference
between the two groups that happen to be furthest apart ignores that choice: with three groups
and no true difference it excluded 0 in up to 69% of simulated datasets. Here every pairwise
difference gets a simultaneous interval (max-t over the pairs, calibrated on the same patient
bootstrap), and the gap's lower end is what those intervals allow for the largest absolute
difference: it is above 0 exactly when some pair differs at the family-wise level, which
happens in at most 1 - confidence of datasets without a true gap. The upper end bootstraps the
largest difference itself, the pair re-chosen in every resample (docs/methods.md, gap
intervals, has the simulated rates). Plain NumPy; the grouping itself is in
``radtrust_engine.stratification``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from radtrust_engine.stats import expanded_quantile, minimum_detectable_difference

POWER = 0.8  # the power the minimum detectable gap is stated at


@dataclass(frozen=True)
class FairnessGap:
    """The largest gap of one metric between the groups of one grouping, with an honest interval.

    ``value`` is the largest minus the smallest point estimate; ``group_high`` and ``group_low``
    name them (both None when every group ties: no difference, no pair). "unknown" groups are
    listed as subgroups but never compared. The lower end comes from simultaneous (max-t)
    intervals of every pairwise difference and the upper end from the bootstrap of the largest
    difference itself, so it covers the true largest gap whichever pair that is; the lower end
    is above 0 only if some pair differs at the family-wise level
    (``significant``; docs/methods.md, gap intervals). ``critical_value`` is that family's
    critical value; ``mdd`` the smallest gap the test would detect with 80% power between the
    two least informative groups, which hold ``mdd_patients`` patients each in equal-size terms.
    For the equalized-odds difference, ``component`` says which gap (sensitivity = TPR, or FPR)
    was the larger and names its groups; ``components`` holds both; the family spans both.
    """

    kind: str  # "auroc_gap" | "fnr_gap" | "equalized_odds_difference" | "dice_gap"
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
    critical_value: float | None = None
    mdd: float | None = None
    mdd_patients: float | None = None

    @property
    def grouping(self) -> str:
        return " x ".join(self.attributes)

    @property
    def significant(self) -> bool:
        """Some pair of groups differs at the family-wise level: the interval excludes 0."""
        return self.ci_low is not None and self.ci_low > 0

    def patients_needed(self, tolerated: float) -> int | None:
        """Patients per group for the minimum detectable gap to shrink to ``tolerated``: the
        standard errors fall as 1 / sqrt(patients), so ``mdd_patients * (mdd / tolerated)**2``."""
        if self.mdd is None or self.mdd_patients is None or tolerated <= 0:
            return None
        return math.ceil(self.mdd_patients * (self.mdd / tolerated) ** 2)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["grouping"] = self.grouping
        d["attributes"] = list(self.attributes)
        for key in ("group_high", "group_low"):
            d[key] = None if d[key] is None else list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FairnessGap:
        """Read back ``to_dict``'s output (``grouping`` follows from the attributes); reports stored
        before the power figures existed read back without them."""

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
            critical_value=data.get("critical_value"),
            mdd=data.get("mdd"),
            mdd_patients=data.get("mdd_patients"),
        )


@dataclass(frozen=True)
class Arms:
    """One metric in the groups compared: point estimates ``(K,)``, bootstrap values ``(B, K)``
    on resamples shared by every group, standard errors ``(K,)`` and patients ``(K,)``."""

    point: np.ndarray
    boot: np.ndarray
    se: np.ndarray
    patients: np.ndarray


@dataclass(frozen=True)
class GapInterval:
    """The interval of a largest gap and the power figures of its family of pairs (``gap_interval``)."""

    ci_low: float | None
    ci_high: float | None
    n_valid: int  # resamples on which some pair was defined
    critical_value: float | None
    mdd: float | None
    mdd_patients: float | None


def gap_interval(arms: Sequence[Arms], confidence: float, power: float = POWER) -> GapInterval:
    """The simultaneous interval of the largest absolute pairwise difference of metrics in [0, 1].

    1. Every pair of groups within each ``Arms`` is one member of the family (the equalized-odds
       difference passes two: its TPR and FPR pairs are one family).
    2. Each pair's difference ``d`` has standard error ``se = sqrt(se_i**2 + se_j**2)``. The
       critical value ``c`` is the larger of two: the ``confidence`` quantile over the resamples
       of the largest studentised deviation ``max |d* - d| / se`` (max-t, which sees heavy tails
       and the pairs' correlation), and the Sidak normal quantile for the family's P pairs,
       two-sided at ``confidence ** (1 / P)`` and widened for the smallest group's patients as
       ``stats.expanded_quantile`` does. Sidak holds for normal estimates whatever their
       correlation; the max-t alone let 5.5-6% of null datasets through at 100-200 patients
       per group, where the bootstrap's spread is a few percent short.
    3. The lower end is ``max(0, max(|d| - c se))``: it passes the largest true absolute
       difference only if some pair's simultaneous interval misses, and it is above 0 exactly
       when some pair differs at the family-wise level. The upper end bootstraps the whole
       statistic: ``max|d| + q sd*``, clipped at 1, where ``sd*`` is the standard deviation
       over the resamples of the largest absolute difference, the pair re-chosen in each, and
       ``q`` the one-sided quantile (1.96, widened for few patients). Taking the upper end from
       each pair's own interval (``max(|d| + q se)``) let a small group's wide interval carry
       it: the largest gap's interval covered 98.9% of simulated datasets, not 95%. The
       maximum is biased upwards when pairs nearly tie, which only widens this end.
    4. The least informative pair (largest ``se``) sets the minimum detectable gap
       ``(c + z_power) se`` (``stats.minimum_detectable_difference``) and its equal-size patients
       ``(n_i se_i**2 + n_j se_j**2) / (se_i**2 + se_j**2)``.
    """
    diffs, devs, ses, sizes = [], [], [], []
    for arm in arms:
        i, j = np.triu_indices(arm.point.size, 1)
        d = arm.point[i] - arm.point[j]
        se2_i, se2_j = arm.se[i] ** 2, arm.se[j] ** 2
        se = np.sqrt(se2_i + se2_j)
        with np.errstate(invalid="ignore", divide="ignore"):
            deviation = np.abs(arm.boot[:, i] - arm.boot[:, j] - d)
            devs.append(np.where(se > 0, deviation / se, np.where(np.isnan(deviation), np.nan, 0.0)))
            sizes.append(np.where(se > 0, (arm.patients[i] * se2_i + arm.patients[j] * se2_j) / (se2_i + se2_j), np.nan))
        diffs.append(d)
        ses.append(se)
    d, se, size = np.concatenate(diffs), np.concatenate(ses), np.concatenate(sizes)
    deviation = np.concatenate(devs, axis=1)
    defined = np.isfinite(deviation).any(axis=1)
    if d.size == 0 or not defined.any():
        return GapInterval(None, None, 0, None, None, None)
    largest = np.max(np.where(np.isfinite(deviation), deviation, -np.inf), axis=1)[defined]
    fewest = int(min(arm.patients.min() for arm in arms))
    c = max(float(np.quantile(largest, confidence)), expanded_quantile(confidence ** (1.0 / d.size), fewest))
    low = max(0.0, float(np.max(np.abs(d) - c * se)))
    high = min(1.0, float(np.max(np.abs(d))) + expanded_quantile(confidence, fewest) * _spread_of_largest(arms))
    worst = int(np.argmax(se))
    mdd = minimum_detectable_difference(float(se[worst]), c, power)
    return GapInterval(
        ci_low=low,
        ci_high=high,
        n_valid=int(defined.sum()),
        critical_value=c,
        mdd=mdd if math.isfinite(mdd) else None,
        mdd_patients=float(size[worst]) if math.isfinite(size[worst]) else None,
    )


def _spread_of_largest(arms: Sequence[Arms]) -> float:
    """The bootstrap standard deviation of the largest absolute pairwise difference, re-chosen in
    every resample over every pair of every ``Arms`` (resamples where no pair is defined are left out)."""
    largest = []
    for arm in arms:
        i, j = np.triu_indices(arm.point.size, 1)
        with np.errstate(invalid="ignore"):
            largest.append(np.abs(arm.boot[:, i] - arm.boot[:, j]))
    per_resample = np.concatenate(largest, axis=1)
    defined = np.isfinite(per_resample).any(axis=1)
    values = np.max(np.where(np.isfinite(per_resample), per_resample, -np.inf), axis=1)[defined]
    return float(np.std(values, ddof=1)) if values.size > 1 else 0.0
