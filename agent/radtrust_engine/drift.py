"""Distribution drift between a baseline run and a new one, with patients as the unit: the
two-sample Kolmogorov-Smirnov test on per-patient means, PSI as a descriptive effect size, and
label-prevalence shift with a patient-cluster test.

Patients, not images, are independent: a patient's images share their anatomy, detector
settings and disease, so counting each image as a new observation makes every test
over-confident (with 1-4 images per patient a nominal 1% KS test fires several times as
often). How one comparison is computed (``distribution_drift``):

1. Each run's values are averaged per patient (``patient_sample``); without patient keys each
   value is its own patient. The KS statistic is the largest gap between the empirical CDFs of
   the two runs' patient means; its p-value is scipy's exact one up to 10,000 patients per run
   and the asymptotic one (``kstwo`` at ``m n / (m + n)``) above, as ``ks_2samp`` chooses.
2. PSI is computed on the images (the usual population-stability number), over the
   reference's deciles; an empty bin's share is floored at ``PSI_FLOOR``. It is an effect size,
   never a test.
3. PSI is biased upward in small samples: with no drift its expected value is about
   ``(bins - 1) (1/n + 1/m)`` at ``n`` and ``m`` independent values. Images of one patient are
   not independent, so ``n`` is each run's effective size bound ``(sum n_j)^2 / sum n_j^2``
   (``n_j`` images of patient ``j``; the patient count when each has one image). When that
   expectation exceeds half of ``psi_moderate`` the PSI is reported but not used (``psi_used``
   false).
4. Drift is called (``drift_call``) when the KS test rejects at the family-wise level after the
   run's multiplicity adjustment (``radtrust_engine.baseline``; a lone comparison is a family of
   one) *and* the change is material: a KS statistic of at least ``ks_min_statistic`` (0.1) or a
   usable PSI of at least ``psi_moderate`` (0.1). With tens of thousands of patients every tiny
   difference is significant, so significance alone is not drift. The level is the PSI band
   ("moderate" from 0.1, "major" from 0.25); where PSI is not usable a called drift is "major".
5. Prevalence (``prevalence_shift``) is the share of positive images in each run. Its interval
   is Newcombe's hybrid score interval from two Wilson intervals at each run's effective size
   (images divided by the design effect of the patient clusters, at least 1); its two-sided
   p-value is a cluster-robust score test: the difference over the ratio estimator's variance
   from per-patient residuals about the pooled prevalence.

A change in the number of images per patient changes the spread of per-patient means even when
each image's distribution is the same; the report gives both runs' patient counts beside the
image counts so a reader can see such a change.

Plain NumPy and SciPy (no Django).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy.stats import ks_2samp, kstwo, norm

from radtrust_engine.stats import wilson_interval

PSI_FLOOR = 1e-4
MIN_PATIENTS = 20
EXACT_KS_MAX = 10_000  # scipy's own limit for the exact two-sample KS distribution
ALERT_ALPHA = 0.05  # family-wise error rate of a run's alert tests


class DriftInputError(ValueError):
    """Samples that cannot be compared; the message says why (the suite records it and goes on)."""


@dataclass(frozen=True)
class DriftThresholds:
    """Effect sizes a significant change must reach before it is called drift (step 4)."""

    psi_moderate: float = 0.1
    psi_major: float = 0.25
    ks_min_statistic: float = 0.1


@dataclass(frozen=True)
class DriftResult:
    """One feature compared between the reference (baseline) and the current sample.

    ``ks_pvalue`` is the test's own p-value; ``ks_pvalue_adjusted`` the one after the run's
    multiplicity adjustment (equal for a lone comparison), which ``drifted`` rests on."""

    feature: str
    n_reference: int
    n_current: int
    n_reference_patients: int
    n_current_patients: int
    psi: float
    ks_statistic: float
    ks_pvalue: float
    ks_pvalue_adjusted: float
    level: str  # "none" | "moderate" | "major"
    drifted: bool
    psi_used: bool  # false when the samples are too small for PSI (step 3)
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

    def adjusted(self, p_adjusted: float, alpha: float = ALERT_ALPHA) -> DriftResult:
        """This result judged on the p-value adjusted for the run's family of tests."""
        level, drifted = drift_call(self.psi, self.psi_used, self.ks_statistic, p_adjusted, self.thresholds, alpha)
        return replace(self, ks_pvalue_adjusted=float(p_adjusted), level=level, drifted=drifted)


def drift_call(psi: float, psi_used: bool, ks_statistic: float, p_adjusted: float, thresholds: DriftThresholds, alpha: float) -> tuple[str, bool]:
    """(level, drifted) of one feature (step 4): drift needs the adjusted test and a material change."""
    material = ks_statistic >= thresholds.ks_min_statistic or (psi_used and psi >= thresholds.psi_moderate)
    drifted = bool(p_adjusted <= alpha and material)
    if not psi_used:
        return ("major" if drifted else "none"), drifted
    if psi >= thresholds.psi_major:
        return "major", drifted
    return ("moderate" if psi >= thresholds.psi_moderate else "none"), drifted


def _clean(values: Any, name: str, feature: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        raise DriftInputError(f"{feature}: the {name} sample holds {int((~np.isfinite(x)).sum())} NaN or infinite value(s)")
    return x


def patient_index(patients: Any, n_values: int, what: str) -> np.ndarray:
    """Each value's patient as 0 .. P-1 (each value its own patient when ``patients`` is None)."""
    if patients is None:
        return np.arange(n_values)
    keys = np.asarray(patients).ravel()
    if keys.size != n_values:
        raise DriftInputError(f"{what}: {keys.size} patient key(s) for {n_values} value(s)")
    return np.unique(keys, return_inverse=True)[1].ravel()


def patient_sample(values: np.ndarray, patients: Any, what: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The values sorted, the per-patient means sorted (step 1), and the effective size
    ``(sum n_j)^2 / sum n_j^2`` (step 3); without patient keys each value is its own patient."""
    ordered = np.sort(values)
    if patients is None:
        return ordered, ordered, float(values.size)
    index = patient_index(patients, values.size, what)
    counts = np.bincount(index).astype(np.float64)
    means = np.sort(np.bincount(index, weights=values) / counts)
    return ordered, means, float(counts.sum() ** 2 / np.sum(counts**2))


def ks_sorted(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and two-sided p-value of two sorted samples (step 1)."""
    both = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, both, side="right") / a.size
    cdf_b = np.searchsorted(b, both, side="right") / b.size
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    if max(a.size, b.size) <= EXACT_KS_MAX:
        return statistic, float(ks_2samp(a, b, method="exact").pvalue)
    n = a.size * b.size / (a.size + b.size)
    return statistic, float(np.clip(kstwo.sf(statistic, round(n)), 0.0, 1.0))


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
    reference_patients: Any = None,
    current_patients: Any = None,
    n_bins: int = 10,
    thresholds: DriftThresholds = DriftThresholds(),
    alpha: float = ALERT_ALPHA,
) -> DriftResult:
    """Compare two samples of one feature, patients as the unit (see the module docstring)."""
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    ref, ref_means, ref_size = patient_sample(_clean(reference, "reference", feature), reference_patients, f"{feature}, reference")
    cur, cur_means, cur_size = patient_sample(_clean(current, "current", feature), current_patients, f"{feature}, current")
    for name, means in (("reference", ref_means), ("current", cur_means)):
        if means.size < MIN_PATIENTS:
            raise DriftInputError(
                f"{feature}: the {name} sample has {means.size} patient(s); at least {MIN_PATIENTS} are needed to compare distributions"
            )
    statistic, pvalue = ks_sorted(ref_means, cur_means)
    psi, edges, ref_shares, cur_shares = psi_sorted(ref, cur, n_bins)
    expected = (len(ref_shares) - 1) * (1 / ref_size + 1 / cur_size)
    psi_used = expected <= thresholds.psi_moderate / 2
    level, drifted = drift_call(psi, psi_used, statistic, pvalue, thresholds, alpha)
    return DriftResult(
        feature=feature,
        n_reference=int(ref.size),
        n_current=int(cur.size),
        n_reference_patients=int(ref_means.size),
        n_current_patients=int(cur_means.size),
        psi=psi,
        ks_statistic=statistic,
        ks_pvalue=pvalue,
        ks_pvalue_adjusted=pvalue,
        level=level,
        drifted=drifted,
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
    """Mean, standard deviation, 1st and 99th percentile of one image (see ``image_statistics``),
    the same floats as NumPy's ``mean``, ``std`` and ``percentile`` of its float64 values.

    A loader thread summarises every image of a run beside ONNX Runtime on the same cores, so
    this is written for memory traffic: the float64 values and the deviations go into scratch
    buffers kept per thread (a fresh 2 MB array per image page-faulted more than it computed),
    each step the one NumPy's ``std`` takes, and the percentiles' tails are picked from the
    image's own values (float32 widens to float64 exactly and in order)."""
    x = np.asarray(image).reshape(-1)
    if x.size > _MAX_STATISTIC_PIXELS:
        x = x[:: -(-x.size // _MAX_STATISTIC_PIXELS)]
    n = x.size
    wide, deviations = _scratch(n)
    np.copyto(wide, x, casting="unsafe")
    mean = np.add.reduce(wide) / n
    if not np.isfinite(mean):
        low, high = np.percentile(wide, [1, 99])
        return float(mean), float(wide.std()), float(low), float(high)
    np.subtract(wide, mean, out=deviations)
    np.multiply(deviations, deviations, out=deviations)
    std = np.sqrt(np.add.reduce(deviations) / n)
    low, high = _tail_percentiles(x if x.dtype.kind == "f" or x.dtype.itemsize < 4 else wide)
    return float(mean), float(std), float(low), float(high)


_buffers = threading.local()


def _scratch(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two float64 buffers of ``n`` values for this thread, grown when an image is larger."""
    held = getattr(_buffers, "pair", None)
    if held is None or held[0].size < n:
        held = _buffers.pair = (np.empty(n), np.empty(n))
    return held[0][:n], held[1][:n]


def _tail_percentiles(x: np.ndarray) -> tuple[float, float]:
    """``np.percentile(x, [1, 99])`` of the finite values ``x`` as float64, without partitioning
    the whole image.

    That partition was half of a 512x512 image's decoding time. The order statistics the two
    percentiles interpolate between lie in the lowest and highest 1%, so:

    1. A threshold on each side is read off a sorted regular subsample at 2% from its end.
    2. The values beyond it are exactly the image's smallest (largest) ones; when there are
       enough of them the order statistics are selected among them, else among all values.
    3. They are interpolated in float64 with NumPy's own formula for its default "linear"
       method, so the result is the same float as ``np.percentile``'s. ``x`` may be of any
       type that widens to float64 exactly (float32, small integers): order is kept.
    """
    n = x.size
    sample = np.sort(x[:: max(1, n // 4096)])
    margin = len(sample) // 50 + 1
    results = []
    for q, tail in ((0.01, x[x <= sample[min(margin, len(sample) - 1)]]), (0.99, x[x >= sample[max(len(sample) - 1 - margin, 0)]])):
        virtual = (n - 1) * q
        below = min(int(np.floor(virtual)), n - 1)
        above = min(below + 1, n - 1)
        offset = 0 if q < 0.5 else n - tail.size  # rank of the tail's smallest value in the whole image
        if below - offset < 0 or above - offset >= tail.size:
            tail, offset = x, 0  # the subsample misjudged the tail: select among every value
        values = np.partition(tail, (below - offset, above - offset))
        a, b, gamma = float(values[below - offset]), float(values[above - offset]), virtual - below
        results.append(b - (b - a) * (1 - gamma) if gamma >= 0.5 else a + (b - a) * gamma)
    return results[0], results[1]


@dataclass(frozen=True)
class PrevalenceShift:
    """Label prevalence (share of positive images) in the reference and current data, their
    difference with its CI and the two-sided p-value of the patient-cluster test (step 5);
    ``significant`` rests on ``p_value_adjusted``, the p-value after the run's multiplicity
    adjustment (equal to ``p_value`` for a lone comparison)."""

    label: str
    reference: float
    current: float
    difference: float
    ci_low: float
    ci_high: float
    n_reference: int
    n_current: int
    n_reference_patients: int
    n_current_patients: int
    p_value: float
    p_value_adjusted: float
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def adjusted(self, p_adjusted: float, alpha: float = ALERT_ALPHA) -> PrevalenceShift:
        """This shift judged on the p-value adjusted for the run's family of tests."""
        return replace(self, p_value_adjusted=float(p_adjusted), significant=bool(p_adjusted <= alpha))


def _ratio_variance(y: np.ndarray, index: np.ndarray, centre: float) -> float:
    """Cluster-robust variance of a share of images: per-patient residuals about ``centre``."""
    residuals = np.bincount(index, weights=y) - centre * np.bincount(index)
    patients = residuals.size
    return float(patients / (patients - 1) * np.sum(residuals**2) / y.size**2)


def _effective_wilson(p: float, y: np.ndarray, index: np.ndarray, confidence: float) -> tuple[float, float]:
    """Wilson interval at the effective size: images over the cluster design effect (at least 1)."""
    if 0 < p < 1:
        design_effect = max(1.0, _ratio_variance(y, index, p) / (p * (1 - p) / y.size))
    else:
        design_effect = 1.0
    n = y.size / design_effect
    low, high = wilson_interval(p * n, n, confidence)
    return float(low), float(high)


def prevalence_shift(
    reference_labels: Any,
    current_labels: Any,
    *,
    label: str,
    reference_patients: Any = None,
    current_patients: Any = None,
    confidence: float = 0.95,
    alpha: float = ALERT_ALPHA,
) -> PrevalenceShift:
    """The change in a label's prevalence between two runs, patients as the unit (step 5)."""
    ref = np.asarray(reference_labels).astype(bool).ravel().astype(np.float64)
    cur = np.asarray(current_labels).astype(bool).ravel().astype(np.float64)
    ref_index = patient_index(reference_patients, ref.size, f"{label}, reference")
    cur_index = patient_index(current_patients, cur.size, f"{label}, current")
    n_ref, n_cur = int(ref_index.max(initial=-1)) + 1, int(cur_index.max(initial=-1)) + 1
    if n_ref < 2 or n_cur < 2:
        raise DriftInputError(f"{label}: prevalence needs labels of at least 2 patients in each run ({n_ref} and {n_cur} given)")
    p1, p2 = float(ref.mean()), float(cur.mean())
    l1, u1 = _effective_wilson(p1, ref, ref_index, confidence)
    l2, u2 = _effective_wilson(p2, cur, cur_index, confidence)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    pooled = float((ref.sum() + cur.sum()) / (ref.size + cur.size))
    variance = _ratio_variance(ref, ref_index, pooled) + _ratio_variance(cur, cur_index, pooled)
    p_value = float(2 * norm.sf(abs(d) / math.sqrt(variance))) if variance > 0 else 1.0
    return PrevalenceShift(
        label=label,
        reference=p1,
        current=p2,
        difference=d,
        ci_low=low,
        ci_high=high,
        n_reference=int(ref.size),
        n_current=int(cur.size),
        n_reference_patients=n_ref,
        n_current_patients=n_cur,
        p_value=p_value,
        p_value_adjusted=p_value,
        significant=p_value <= alpha,
    )
