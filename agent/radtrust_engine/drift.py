"""Distribution drift between a baseline run and a new one: PSI and the two-sample
Kolmogorov-Smirnov test, on model outputs and on per-image statistics, and label-prevalence shift.

How one comparison is computed (``distribution_drift``), sorting each sample once:

1. Both samples are sorted. The KS statistic is the largest gap between the
   two empirical CDFs, evaluated with ``searchsorted`` at every value of the
   union (what ``scipy.stats.ks_2samp`` computes); its p-value is scipy's
   asymptotic one (``kstwo`` at the effective sample size ``m n / (m + n)``),
   which scipy itself uses above 10,000 values per sample.
2. PSI bins are the reference's deciles (``n_bins`` quantile bins, read from
   the sorted reference), so each reference bin holds about the same share;
   the current sample's shares come from ``searchsorted`` on its sorted copy.
   An empty bin's share is floored at ``PSI_FLOOR`` so the logarithm stays
   finite (stated in the result).
3. Drift is called when PSI reaches ``psi_moderate`` (0.1) or the KS test
   rejects at ``ks_alpha`` (0.01) *and* the KS statistic reaches
   ``ks_min_statistic`` (0.1): with tens of thousands of cases every tiny
   difference is significant, so significance alone is not drift. PSI of 0.25
   or more is "major" (the usual credit-scoring bands).
4. PSI is biased upward in small samples: with no drift at all its expected
   value is about ``(bins - 1) (1/n + 1/m)`` (its chi-square approximation),
   0.3 for two samples of 60. When that expectation exceeds half of
   ``psi_moderate`` the PSI is reported but not used, and drift rests on the
   KS test alone (``psi_used`` false).

Plain NumPy and SciPy (no Django).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import kstwo

from radtrust_engine.stats import wilson_interval

PSI_FLOOR = 1e-4
MIN_VALUES = 20


class DriftInputError(ValueError):
    """Samples that cannot be compared; the message says why (the suite records it and goes on)."""


@dataclass(frozen=True)
class DriftThresholds:
    psi_moderate: float = 0.1
    psi_major: float = 0.25
    ks_alpha: float = 0.01
    ks_min_statistic: float = 0.1


@dataclass(frozen=True)
class DriftResult:
    """One feature compared between the reference (baseline) and the current sample."""

    feature: str
    n_reference: int
    n_current: int
    psi: float
    ks_statistic: float
    ks_pvalue: float
    level: str  # "none" | "moderate" | "major"
    drifted: bool
    psi_used: bool  # false when the samples are too small for PSI (step 4)
    psi_expected_without_drift: float
    bin_edges: list[float]
    reference_shares: list[float]
    current_shares: list[float]
    reference_mean: float
    current_mean: float
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["psi_floor"] = PSI_FLOOR
        return data


def _clean(values: Any, name: str, feature: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        raise DriftInputError(f"{feature}: the {name} sample holds {int((~np.isfinite(x)).sum())} NaN or infinite value(s)")
    if x.size < MIN_VALUES:
        raise DriftInputError(f"{feature}: the {name} sample has {x.size} value(s); at least {MIN_VALUES} are needed to compare distributions")
    return x


def ks_sorted(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and asymptotic two-sided p-value of two sorted samples."""
    both = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, both, side="right") / a.size
    cdf_b = np.searchsorted(b, both, side="right") / b.size
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    n = a.size * b.size / (a.size + b.size)
    pvalue = float(np.clip(kstwo.sf(statistic, round(n)), 0.0, 1.0))
    return statistic, pvalue


def psi_sorted(reference: np.ndarray, current: np.ndarray, n_bins: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """PSI over the reference's quantile bins; returns (psi, inner edges, reference shares, current shares)."""
    positions = (np.arange(1, n_bins) * reference.size) // n_bins
    edges = np.unique(reference[positions])  # tied quantiles merge their bins
    ref_counts = np.diff(np.concatenate([[0], np.searchsorted(reference, edges, side="left"), [reference.size]]))
    cur_counts = np.diff(np.concatenate([[0], np.searchsorted(current, edges, side="left"), [current.size]]))
    expected = np.maximum(ref_counts / reference.size, PSI_FLOOR)
    actual = np.maximum(cur_counts / current.size, PSI_FLOOR)
    psi = float(np.sum((actual - expected) * np.log(actual / expected)))
    return psi, edges, ref_counts / reference.size, cur_counts / current.size


def distribution_drift(
    reference: Any,
    current: Any,
    *,
    feature: str,
    n_bins: int = 10,
    thresholds: DriftThresholds = DriftThresholds(),
) -> DriftResult:
    """Compare two samples of one feature (see the module docstring)."""
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    ref = np.sort(_clean(reference, "reference", feature))
    cur = np.sort(_clean(current, "current", feature))
    statistic, pvalue = ks_sorted(ref, cur)
    psi, edges, ref_shares, cur_shares = psi_sorted(ref, cur, n_bins)
    ks_drift = pvalue < thresholds.ks_alpha and statistic >= thresholds.ks_min_statistic
    expected = (len(ref_shares) - 1) * (1 / ref.size + 1 / cur.size)
    psi_used = expected <= thresholds.psi_moderate / 2
    level = "major" if psi >= thresholds.psi_major else "moderate" if psi >= thresholds.psi_moderate else "none"
    if not psi_used:
        level = "major" if ks_drift else "none"  # KS alone decides; a rejected KS is reported as major
    return DriftResult(
        feature=feature,
        n_reference=int(ref.size),
        n_current=int(cur.size),
        psi=psi,
        ks_statistic=statistic,
        ks_pvalue=pvalue,
        level=level,
        drifted=bool(level != "none" or ks_drift),
        psi_used=psi_used,
        psi_expected_without_drift=float(expected),
        bin_edges=edges.tolist(),
        reference_shares=ref_shares.tolist(),
        current_shares=cur_shares.tolist(),
        reference_mean=float(ref.mean()),
        current_mean=float(cur.mean()),
        thresholds=thresholds,
    )


IMAGE_FEATURES = ("image_mean", "image_std", "image_p01", "image_p99")
_MAX_STATISTIC_PIXELS = 1 << 18


def image_statistics(images: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-image summary statistics (``IMAGE_FEATURES``) of images as read, in their own units
    (after the DICOM rescale, before windowing and normalisation, which would hide a new
    detector's offset): the inputs whose distributions drift when a scanner, protocol or
    population changes. Images of any shape; above 2**18 pixels a regular subsample is used."""
    rows = [image_summary(image) for image in images]
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(IMAGE_FEATURES))
    return {name: table[:, k] for k, name in enumerate(IMAGE_FEATURES)}


def image_summary(image: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, standard deviation, 1st and 99th percentile of one image (see ``image_statistics``)."""
    x = np.asarray(image).reshape(-1)
    if x.size > _MAX_STATISTIC_PIXELS:
        x = x[:: -(-x.size // _MAX_STATISTIC_PIXELS)]
    x = x.astype(np.float64, copy=False)
    low, high = np.percentile(x, [1, 99])
    return float(x.mean()), float(x.std()), float(low), float(high)


@dataclass(frozen=True)
class PrevalenceShift:
    """Label prevalence in the reference and current data, their difference and its 95% CI
    (Newcombe's hybrid score interval from two Wilson intervals)."""

    label: str
    reference: float
    current: float
    difference: float
    ci_low: float
    ci_high: float
    n_reference: int
    n_current: int

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def prevalence_shift(reference_labels: Any, current_labels: Any, *, label: str) -> PrevalenceShift:
    ref = np.asarray(reference_labels).astype(bool).ravel()
    cur = np.asarray(current_labels).astype(bool).ravel()
    if ref.size == 0 or cur.size == 0:
        raise DriftInputError(f"{label}: prevalence needs labels in both runs ({ref.size} and {cur.size} given)")
    p1, p2 = ref.mean(), cur.mean()
    l1, u1 = wilson_interval(int(ref.sum()), ref.size)
    l2, u2 = wilson_interval(int(cur.sum()), cur.size)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return PrevalenceShift(label, float(p1), float(p2), float(d), float(low), float(high), int(ref.size), int(cur.size))
