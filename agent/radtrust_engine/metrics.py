"""Binary classification metrics, plain and weighted, and patient-level bootstrap weights.

Stratification and fairness gaps built on them are in ``radtrust_engine.stratification``.

Plain Python and NumPy (no Django), so a benchmark, a site agent and a
notebook can reuse it.

How the bootstrap stays fast (the approach described in STACK.md):

1. Cases are sorted by score once. A subgroup is a subset of that order, so
   it stays sorted; its tie groups (runs of equal scores) are found once.
2. Every metric is a function of two per-tie-group sums, the weight of the
   positives ``P_g`` and of the negatives ``N_g``: AUROC by the rank
   (Mann-Whitney) formula with ties counted one half, which equals the rank
   formula with average ranks; average precision from the cumulative sums
   taken from the top score down, as scikit-learn does; the confusion matrix
   at ``score >= threshold`` from the sums above the tie group where the
   threshold falls.
3. A bootstrap resample is a vector of integer weights, one per case: the
   number of times its patient was drawn (multinomial counts over patients,
   so all of a patient's cases move together). Resamples are processed in
   chunks as a ``(chunk, cases)`` weight matrix, so every resample of a chunk
   is computed by the same few array operations.
4. Weights are drawn once for the whole dataset and shared by every subgroup,
   so the gap between two groups on one resample is a coherent draw and the
   gaps' simultaneous intervals (``radtrust_engine.gaps``) are meaningful.

Undefined values (AUROC with one class present, PPV with nothing predicted
positive, ...) are ``None``, never a made-up number. Bootstrap intervals (BCa,
``radtrust_engine.stats.bca_interval``) are taken over the resamples on which
the metric is defined; how many that were is reported as ``n_valid``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

METRIC_NAMES: tuple[str, ...] = (
    "auroc",
    "auprc",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "fnr",
    "fpr",
)
DEFAULT_CHUNK_SIZE = 64


def finite_or_none(value: float) -> float | None:
    """A finite float, or None where the value is undefined."""
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BinaryMetrics:
    """Point metrics of a binary classifier; ``None`` where undefined."""

    threshold: float
    n: float
    n_positive: float
    auroc: float | None
    auprc: float | None
    sensitivity: float | None
    specificity: float | None
    ppv: float | None
    npv: float | None
    f1: float | None
    fnr: float | None
    fpr: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MetricEstimate:
    """A point estimate with its bootstrap (BCa) interval."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n_valid: int  # resamples on which the metric was defined

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricEstimate:
        return cls(value=data["value"], ci_low=data["ci_low"], ci_high=data["ci_high"], n_valid=data["n_valid"])


# ---------------------------------------------------------------------------
# Core: metrics from per-tie-group weights
# ---------------------------------------------------------------------------


def _metrics_from_cumulative(
    pos_g: np.ndarray,
    tot_g: np.ndarray,
    pos_incl: np.ndarray,
    tot_incl: np.ndarray,
    threshold_group: int,
    names: Collection[str] = METRIC_NAMES,
) -> dict[str, np.ndarray]:
    """The metrics ``names`` for each row of weights, as arrays of shape ``(rows,)``.

    All inputs have shape ``(rows, tie_groups)``, tie groups in ascending
    score order: the weight of the positives (``pos_g``) and of all cases
    (``tot_g``) at each distinct score, and their cumulative sums up to and
    including each tie group. ``threshold_group`` is the first tie group whose
    score is ``>= threshold`` (``tie_groups`` if none). NaN marks undefined
    values. AUROC and average precision each take several passes over the
    weights (the rest are per row), so a caller that reads neither does not pay for them.
    """
    n_pos = pos_incl[:, -1]
    n_all = tot_incl[:, -1]
    n_neg = n_all - n_pos
    found: dict[str, np.ndarray] = {}

    with np.errstate(invalid="ignore", divide="ignore"):
        if "auroc" in names:
            # AUROC: P(score_pos > score_neg) + 0.5 P(tie); negatives below a tie
            # group plus half of those in it = neg_incl - 0.5 neg_g.
            neg_term = tot_incl - pos_incl
            neg_term -= 0.5 * (tot_g - pos_g)
            auc_num = np.einsum("ij,ij->i", pos_g, neg_term)
            del neg_term
            found["auroc"] = np.where((n_pos > 0) & (n_neg > 0), auc_num / (n_pos * n_neg), np.nan)

        if "auprc" in names:
            # Average precision: sum over distinct thresholds (high to low) of the
            # recall increment pos_g / P times the precision at score >= s_g.
            tp_at = n_pos[:, None] - pos_incl
            tp_at += pos_g
            called = n_all[:, None] - tot_incl
            called += tot_g
            np.maximum(called, np.finfo(np.float64).tiny, out=called)  # 0 only where pos_g = 0
            tp_at /= called
            del called
            found["auprc"] = np.where(n_pos > 0, np.einsum("ij,ij->i", pos_g, tp_at) / n_pos, np.nan)
            del tp_at

        if threshold_group == 0:
            tp, fp = n_pos, n_neg
        else:
            below_pos = pos_incl[:, threshold_group - 1]
            below_all = tot_incl[:, threshold_group - 1]
            tp = n_pos - below_pos
            fp = n_neg - (below_all - below_pos)
        fn = n_pos - tp
        tn = n_neg - fp

        def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
            return np.where(den > 0, num / den, np.nan)

        found.update(
            sensitivity=ratio(tp, n_pos),
            specificity=ratio(tn, n_neg),
            ppv=ratio(tp, tp + fp),
            npv=ratio(tn, tn + fn),
            f1=ratio(2 * tp, 2 * tp + fp + fn),
            fnr=ratio(fn, n_pos),
            fpr=ratio(fp, n_neg),
        )
        return {name: found[name] for name in METRIC_NAMES if name in names}


@dataclass
class ScoreLayout:
    """A set of cases in ascending score order, with its tie groups."""

    positions: np.ndarray  # indices into the caller's arrays, ascending score
    is_pos: np.ndarray  # float 0/1 per position
    ends: np.ndarray | None  # last position of each tie group; None when no ties
    threshold_group: int

    @classmethod
    def build(cls, positions: np.ndarray, sorted_scores: np.ndarray, is_pos: np.ndarray, threshold: float) -> ScoreLayout:
        col = is_pos.astype(np.float64)
        if sorted_scores.size == 0:
            return cls(positions, col, None, 0)
        last = np.empty(sorted_scores.size, dtype=bool)
        last[-1] = True
        np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=last[:-1])
        ends = np.flatnonzero(last)
        group_scores = sorted_scores[ends]
        threshold_group = int(np.searchsorted(group_scores, threshold, side="left"))
        return cls(positions, col, None if ends.size == sorted_scores.size else ends, threshold_group)

    def metrics(self, weights: np.ndarray, names: Collection[str] = METRIC_NAMES) -> dict[str, np.ndarray]:
        """The metrics ``names`` for weight rows, ``weights`` of shape ``(rows, len(positions))``.

        Cumulative sums run along the last (contiguous) axis, which is several
        times faster in NumPy than along the first.
        """
        if weights.shape[1] == 0:
            empty = np.zeros((weights.shape[0], 1))
            return _metrics_from_cumulative(empty, empty, empty, empty, 1, names)
        pos_w = weights * self.is_pos
        tot_incl = np.cumsum(weights, axis=1)
        pos_incl = np.cumsum(pos_w, axis=1)
        if self.ends is None:
            return _metrics_from_cumulative(pos_w, weights, pos_incl, tot_incl, self.threshold_group, names)
        del pos_w
        tot_incl = tot_incl[:, self.ends]
        pos_incl = pos_incl[:, self.ends]
        tot_g = np.diff(tot_incl, axis=1, prepend=0.0)
        pos_g = np.diff(pos_incl, axis=1, prepend=0.0)
        return _metrics_from_cumulative(pos_g, tot_g, pos_incl, tot_incl, self.threshold_group, names)


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def checked_inputs(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError("y_true and y_score must be one-dimensional")
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but y_score has {s.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("y_score contains NaN or infinite values")
    if y.dtype == bool:
        y = y.astype(np.int8)
    if y.size and not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must contain only 0 and 1")
    return y.astype(bool), s


def _check_weights(sample_weight: Any, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    return w


# ---------------------------------------------------------------------------
# Point metrics
# ---------------------------------------------------------------------------


def binary_metrics(y_true: Any, y_score: Any, threshold: float = 0.5, sample_weight: Any = None) -> BinaryMetrics:
    """AUROC, average precision and the confusion-matrix metrics at
    ``score >= threshold``, optionally weighted (for example by bootstrap
    counts: integer weights give the metrics of the repeated data)."""
    y, s = checked_inputs(y_true, y_score)
    w = _check_weights(sample_weight, s.size)
    order = np.argsort(s, kind="stable")
    layout = ScoreLayout.build(order, s[order], y[order], float(threshold))
    values = layout.metrics(w[order][None, :])
    return BinaryMetrics(
        threshold=float(threshold),
        n=float(w.sum()),
        n_positive=float(w[y].sum()),
        **{name: finite_or_none(values[name][0]) for name in METRIC_NAMES},
    )


def auroc(y_true: Any, y_score: Any, sample_weight: Any = None) -> float | None:
    """Area under the ROC curve (ties count one half); None with one class."""
    return binary_metrics(y_true, y_score, 0.5, sample_weight).auroc


def average_precision(y_true: Any, y_score: Any, sample_weight: Any = None) -> float | None:
    """Average precision (AUPRC) as scikit-learn defines it; None without positives."""
    return binary_metrics(y_true, y_score, 0.5, sample_weight).auprc


def roc_points(y_true: Any, y_score: Any, max_points: int = 201) -> dict[str, list[float]] | None:
    """The ROC curve (one point per distinct score, from the highest down, as scikit-learn's
    ``roc_curve``), thinned to at most ``max_points`` by keeping evenly spaced points and both
    ends; None when one class is missing."""
    y, s = checked_inputs(y_true, y_score)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    tpr = np.r_[0.0, np.cumsum(y)[ends] / n_pos]
    fpr = np.r_[0.0, np.cumsum(~y)[ends] / n_neg]
    if tpr.size > max_points:
        keep = np.unique(np.linspace(0, tpr.size - 1, max_points).round().astype(int))
        tpr, fpr = tpr[keep], fpr[keep]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


# ---------------------------------------------------------------------------
# Bootstrap weights
# ---------------------------------------------------------------------------


def patient_bootstrap_counts(rng: np.random.Generator, n_patients: int, n_resamples: int) -> np.ndarray:
    """Multinomial counts of shape ``(n_resamples, n_patients)``: how often
    each patient is drawn when ``n_patients`` are drawn with replacement.

    Drawn row by row from ``rng`` so that the same seed gives the same
    resamples whatever the chunk size.
    """
    draws = rng.integers(0, n_patients, size=(n_resamples, n_patients))
    draws += (np.arange(n_resamples) * n_patients)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_resamples * n_patients)
    return counts.reshape(n_resamples, n_patients).astype(np.float64)
