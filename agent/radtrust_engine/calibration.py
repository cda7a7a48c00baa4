"""Calibration, per-case uncertainty and selective prediction (referral to a human).

Plain NumPy (no Django). Binary classifiers: ``y_prob`` is the probability of
the positive class.

How the calibration report is computed (``calibration_report``):

1. Bins: ``uniform`` edges ``linspace(0, 1, n_bins + 1)`` or ``quantile``
   edges (percentiles of ``y_prob``). Bins are right-closed,
   ``(e_i, e_i+1]``, the first also holding its lower edge, which is
   scikit-learn's ``calibration_curve`` convention. Empty bins are listed but
   skipped by ECE and MCE.
2. ECE is ``sum_b (n_b / N) |mean prob_b - observed freq_b|``, which equals
   ``sum_b |sum_b(p - y)| / N``: one signed residual sum per bin. MCE is the
   largest per-bin gap; Brier is ``mean((p - y)^2)``.
3. Patient-level bootstrap: multinomial patient counts
   (``patient_bootstrap_counts``) expanded to case weights make each
   resample a weighted dataset, so a chunk of resamples is one matrix product
   ``weights @ residual_by_bin``. Bin edges stay those of the full data.
   Intervals are percentiles of the resampled values; ECE is biased upward
   (noise never cancels inside |.|), so its interval can sit above the point.

Undefined values are ``None`` in ``to_dict()``, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from radtrust_engine.metrics import DEFAULT_CHUNK_SIZE, MetricEstimate, chunk_for, patient_bootstrap_counts
from radtrust_engine.stats import wilson_interval

STRATEGIES = ("uniform", "quantile")
MAX_CURVE_POINTS = 101


class CalibrationInputError(ValueError):
    """Outputs that cannot be assessed for calibration; the caller records the message."""


def finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _check_probabilities(p: np.ndarray, name: str = "y_prob") -> None:
    if not np.isfinite(p).all():
        raise CalibrationInputError(f"{name} holds {int((~np.isfinite(p)).sum())} NaN or infinite value(s)")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise CalibrationInputError(
            f"{name} holds values outside [0, 1] (min {p.min():.4g}, max {p.max():.4g}): the outputs "
            "look like logits, not probabilities. The version's output schema must name an activation "
            "(sigmoid or softmax) so that they can be mapped to probabilities."
        )


def _check_binary(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(y_prob, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise CalibrationInputError("y_true and y_prob must be one-dimensional (binary classifier)")
    if y.shape != p.shape:
        raise CalibrationInputError(f"y_true has {y.size} values but y_prob has {p.size}")
    if y.size == 0:
        raise CalibrationInputError("no cases to assess")
    if not np.all((y == 0) | (y == 1)):
        raise CalibrationInputError("y_true must contain only 0 and 1")
    _check_probabilities(p)
    return y.astype(np.float64), p


# ---------------------------------------------------------------------------
# Calibration report
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityBin:
    """One point of the reliability diagram; ``None`` where the bin is empty."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed_frequency: float | None
    ci_low: float | None  # Wilson interval of the observed frequency
    ci_high: float | None
    sparse: bool  # non-empty but fewer than min_bin_count cases

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CalibrationReport:
    """ECE, MCE and Brier score with the binning they used and the reliability data."""

    n: int
    n_positive: int
    strategy: str
    n_bins: int
    bin_edges: list[float]
    ece: MetricEstimate
    mce: float | None
    brier: MetricEstimate
    bins: list[ReliabilityBin]
    min_bin_count: int
    confidence: float
    n_resamples: int  # 0 without patient ids: no intervals
    seed: int
    warnings: list[str] = field(default_factory=list)

    @property
    def binning(self) -> str:
        return (
            f"{self.n_bins} {self.strategy} bins, right-closed (e_i, e_i+1] with the first "
            "also holding its lower edge; empty bins are skipped by ECE and MCE; "
            "ECE weighted by bin counts; bootstrap resamples keep these edges"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_positive": self.n_positive,
            "strategy": self.strategy,
            "n_bins": self.n_bins,
            "bin_edges": self.bin_edges,
            "binning": self.binning,
            "ece": self.ece.to_dict(),
            "mce": self.mce,
            "brier": self.brier.to_dict(),
            "bins": [b.to_dict() for b in self.bins],
            "min_bin_count": self.min_bin_count,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "warnings": list(self.warnings),
        }


def _bin_edges(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    if strategy == "quantile":
        return np.percentile(p, np.linspace(0, 1, n_bins + 1) * 100)
    return np.linspace(0.0, 1.0, n_bins + 1)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(samples, [100 * alpha, 100 * (1 - alpha)])
    return finite_or_none(lo), finite_or_none(hi)


def calibration_report(
    y_true: Any,
    y_prob: Any,
    *,
    n_bins: int = 10,
    strategy: str = "uniform",
    patient_id: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    min_bin_count: int = 10,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> CalibrationReport:
    """ECE, MCE, Brier and reliability-diagram data, with patient-level
    bootstrap intervals for ECE and Brier when ``patient_id`` is given.

    Sparse bins are flagged and reported in ``warnings`` rather than dropped,
    so the diagram still shows every case.
    """
    y, p = _check_binary(y_true, y_prob)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    n = p.size
    edges = _bin_edges(p, n_bins, strategy)
    bin_id = np.searchsorted(edges[1:-1], p)

    counts = np.bincount(bin_id, minlength=n_bins)
    sum_p = np.bincount(bin_id, weights=p, minlength=n_bins)
    sum_y = np.bincount(bin_id, weights=y, minlength=n_bins)
    nonempty = counts > 0
    gaps = np.abs(sum_p[nonempty] - sum_y[nonempty]) / counts[nonempty]
    ece = float(np.abs(sum_p - sum_y).sum() / n)
    brier = float(np.mean((p - y) ** 2))

    bins = []
    for b in range(n_bins):
        c = int(counts[b])
        lo, hi = wilson_interval(float(sum_y[b]), c, confidence)
        bins.append(
            ReliabilityBin(
                lower=float(edges[b]),
                upper=float(edges[b + 1]),
                count=c,
                mean_predicted=float(sum_p[b] / c) if c else None,
                observed_frequency=float(sum_y[b] / c) if c else None,
                ci_low=lo,
                ci_high=hi,
                sparse=0 < c < min_bin_count,
            )
        )

    warnings = []
    sparse = [i for i, b in enumerate(bins) if b.sparse]
    if sparse:
        warnings.append(
            f"{len(sparse)} of {int(nonempty.sum())} non-empty bins hold fewer than {min_bin_count} "
            f"cases (bins {sparse}; {n} cases in all): their observed frequencies are imprecise "
            "and ECE/MCE are noisy; consider fewer bins or the quantile strategy"
        )

    ece_ci = brier_ci = (None, None)
    n_valid = 0
    if patient_id is not None and n_resamples > 0:
        pid = np.asarray(patient_id)
        if pid.shape != (n,):
            raise ValueError(f"patient_id has shape {pid.shape}, expected ({n},)")
        _, patient_idx = np.unique(pid, return_inverse=True)
        patient_idx = patient_idx.ravel()
        n_patients = int(patient_idx.max()) + 1
        residual = np.zeros((n, n_bins))
        residual[np.arange(n), bin_id] = p - y
        stats = np.column_stack([residual, (p - y) ** 2, np.ones(n)])  # (n, n_bins + 2)
        # Summed per patient once: a resample's sums are then its patient counts times these.
        per_patient = np.zeros((n_patients, stats.shape[1]))
        np.add.at(per_patient, patient_idx, stats)
        rng = np.random.default_rng(seed)
        ece_s = np.empty(n_resamples)
        brier_s = np.empty(n_resamples)
        chunk_size = chunk_for(n_patients, chunk_size)
        for start in range(0, n_resamples, chunk_size):
            stop = min(start + chunk_size, n_resamples)
            draws = patient_bootstrap_counts(rng, n_patients, stop - start)
            sums = draws @ per_patient
            total = sums[:, -1]
            ece_s[start:stop] = np.abs(sums[:, :n_bins]).sum(axis=1) / total
            brier_s[start:stop] = sums[:, n_bins] / total
        ece_ci, brier_ci = _interval(ece_s, confidence), _interval(brier_s, confidence)
        n_valid = n_resamples

    return CalibrationReport(
        n=n,
        n_positive=int(y.sum()),
        strategy=strategy,
        n_bins=int(n_bins),
        bin_edges=[float(e) for e in edges],
        ece=MetricEstimate(ece, *ece_ci, n_valid),
        mce=float(gaps.max()) if gaps.size else None,
        brier=MetricEstimate(brier, *brier_ci, n_valid),
        bins=bins,
        min_bin_count=int(min_bin_count),
        confidence=float(confidence),
        n_resamples=n_valid,
        seed=int(seed),
        warnings=warnings,
    )


# ---------------------------------------------------------------------------
# Uncertainty
# ---------------------------------------------------------------------------


def _xlogx(p: np.ndarray) -> np.ndarray:
    """``p ln p`` with ``0 ln 0 = 0``."""
    return p * np.log(np.where(p > 0, p, 1.0))


def predictive_entropy(probs: Any) -> np.ndarray:
    """Entropy of the predicted distribution per case, in nats (natural log):
    ``(N,)`` binary probabilities (max ln 2) or ``(N, K)`` class probabilities
    (max ln K). Higher means less certain."""
    p = np.asarray(probs, dtype=np.float64)
    _check_probabilities(p, "probs")
    if p.ndim == 1:
        return -(_xlogx(p) + _xlogx(1.0 - p))
    if p.ndim == 2:
        if p.size and not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
            raise CalibrationInputError("class probabilities must sum to 1 per case (apply softmax first)")
        return -_xlogx(p).sum(axis=1)
    raise CalibrationInputError(f"probs must be (N,) or (N, K), got shape {p.shape}")


@dataclass(frozen=True)
class TTAUncertainty:
    """Per-case uncertainty from test-time augmentation, in nats.

    ``mutual_information`` (BALD) is the part of the entropy due to
    disagreement between augmentations: zero when they all agree.
    """

    n_augmentations: int
    mean_prob: np.ndarray  # (N,) or (N, K)
    std: np.ndarray  # population std across augmentations, same shape as mean_prob
    entropy: np.ndarray  # (N,) entropy of mean_prob
    mutual_information: np.ndarray  # (N,) entropy of the mean minus mean entropy

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_augmentations": self.n_augmentations,
            "units": "nats",
            "mean_prob": self.mean_prob.tolist(),
            "std": self.std.tolist(),
            "entropy": self.entropy.tolist(),
            "mutual_information": self.mutual_information.tolist(),
        }


def tta_uncertainty(prob_samples: Any) -> TTAUncertainty:
    """Summarise ``(n_aug, N)`` or ``(n_aug, N, K)`` probabilities from
    test-time augmentations into per-case mean, spread, entropy and BALD."""
    s = np.asarray(prob_samples, dtype=np.float64)
    if s.ndim not in (2, 3) or s.shape[0] < 1:
        raise CalibrationInputError(f"prob_samples must be (n_aug, N) or (n_aug, N, K), got shape {s.shape}")
    mean = s.mean(axis=0)
    entropy = predictive_entropy(mean)
    per_aug = np.stack([predictive_entropy(a) for a in s])
    mi = np.maximum(entropy - per_aug.mean(axis=0), 0.0)  # >= 0 by Jensen; clip rounding
    return TTAUncertainty(int(s.shape[0]), mean, s.std(axis=0), entropy, mi)


# ---------------------------------------------------------------------------
# Selective prediction
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageRisk:
    """Risk (error rate at the operating threshold) among the most confident
    cases, at every coverage a cut-off on the uncertainty can reach.

    The arrays hold one point per distinct uncertainty value (cases with equal
    uncertainty are kept or referred together); ``to_dict`` downsamples them.
    """

    n: int
    threshold: float
    n_errors: int
    aurc: float  # mean risk over coverage k/N, k = 1..N
    aurc_optimal: float  # AURC of a ranking that puts every error last
    coverage: np.ndarray
    risk: np.ndarray
    cutoff: np.ndarray  # keep cases with uncertainty <= cutoff
    n_covered: np.ndarray

    def curve(self, max_points: int = MAX_CURVE_POINTS) -> list[dict[str, float]]:
        idx = np.arange(self.coverage.size)
        if idx.size > max_points:
            targets = np.linspace(self.coverage[0], 1.0, max_points)
            idx = np.unique(np.searchsorted(self.coverage, targets, side="left"))
        return [
            {"coverage": float(self.coverage[i]), "risk": float(self.risk[i]), "cutoff": float(self.cutoff[i]), "n_covered": int(self.n_covered[i])}
            for i in idx
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "threshold": self.threshold,
            "n_errors": self.n_errors,
            "risk_full_coverage": float(self.risk[-1]),
            "aurc": self.aurc,
            "aurc_optimal": self.aurc_optimal,
            "curve": self.curve(),
        }


def coverage_risk(y_true: Any, y_prob: Any, uncertainty: Any, *, threshold: float) -> CoverageRisk:
    """Risk-coverage curve and AURC for referring the most uncertain cases.

    1. Errors are ``(y_prob >= threshold) != y_true``.
    2. Cases are sorted by uncertainty, most confident first; a cut-off can
       only separate distinct uncertainty values, so the curve has one point
       per tie group.
    3. AURC averages the risk over all coverages k/N; inside a tie group the
       cumulative error count is interpolated linearly (the expectation over
       random tie-breaking), so the order of tied cases does not matter.
    """
    y, p = _check_binary(y_true, y_prob)
    u = np.asarray(uncertainty, dtype=np.float64)
    if u.shape != p.shape:
        raise CalibrationInputError(f"uncertainty has shape {u.shape}, expected {p.shape}")
    if not np.isfinite(u).all():
        raise CalibrationInputError("uncertainty holds NaN or infinite values")
    n = p.size
    err = ((p >= threshold) != (y == 1)).astype(np.float64)
    order = np.argsort(u, kind="stable")
    u_sorted = u[order]
    cum_err = np.cumsum(err[order])
    ends = np.flatnonzero(np.append(u_sorted[1:] != u_sorted[:-1], True))
    n_covered = ends + 1
    risk = cum_err[ends] / n_covered

    # Expected cumulative errors at every k, linear inside tie groups.
    k = np.arange(1, n + 1)
    group = np.searchsorted(ends, k - 1)
    prev_n = np.concatenate([[0], n_covered[:-1]])[group]
    prev_e = np.concatenate([[0.0], cum_err[ends][:-1]])[group]
    size = n_covered[group] - prev_n
    expected = prev_e + (k - prev_n) * (cum_err[ends][group] - prev_e) / size
    aurc = float(np.mean(expected / k))
    n_err = int(err.sum())
    aurc_optimal = float(np.mean(np.maximum(k - (n - n_err), 0) / k))
    return CoverageRisk(
        n=n,
        threshold=float(threshold),
        n_errors=n_err,
        aurc=aurc,
        aurc_optimal=aurc_optimal,
        coverage=n_covered / n,
        risk=risk,
        cutoff=u_sorted[ends],
        n_covered=n_covered,
    )


@dataclass(frozen=True)
class Referral:
    """How many cases go to a human so that the rest meet ``target_risk``."""

    target_risk: float
    reachable: bool
    coverage: float  # share kept by the model
    referred_share: float
    cutoff: float | None  # refer cases with uncertainty > cutoff; None: refer all
    risk: float | None  # achieved risk among kept cases
    n_covered: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def referral_for_target_risk(curve: CoverageRisk, target_risk: float) -> Referral:
    """The largest coverage whose risk is at most ``target_risk`` (risk need
    not fall monotonically with coverage, so every point is considered)."""
    ok = np.flatnonzero(curve.risk <= target_risk)
    if ok.size == 0:
        best = float(curve.risk.min())
        return Referral(
            float(target_risk),
            False,
            0.0,
            1.0,
            None,
            None,
            0,
            f"target risk {target_risk:.4g} not reachable: even the most confident cases have "
            f"risk {curve.risk[0]:.4g} (lowest on the curve {best:.4g}); every case is referred",
        )
    i = int(ok[-1])
    cov = float(curve.coverage[i])
    return Referral(
        float(target_risk),
        True,
        cov,
        1.0 - cov,
        float(curve.cutoff[i]),
        float(curve.risk[i]),
        int(curve.n_covered[i]),
        f"refer {1.0 - cov:.1%} of cases (uncertainty > {curve.cutoff[i]:.4g}) for risk {curve.risk[i]:.4g} <= {target_risk:.4g} on the rest",
    )


def case_flags(uncertainty: Any, cutoff: float | None) -> np.ndarray:
    """Per-case "refer to a human" flags: uncertainty above the cut-off, or
    every case when the target was not reachable (``cutoff`` None)."""
    u = np.asarray(uncertainty, dtype=np.float64)
    if cutoff is None:
        return np.ones(u.shape, dtype=bool)
    return u > cutoff
