"""Binary classification metrics, plain and weighted, and patient-level bootstrap weights.

Stratification and fairness gaps built on them are in ``radtrust_engine.stratification``.

Plain Python and NumPy (no Django), so a benchmark, a site agent and a
notebook can reuse it.

How the bootstrap stays fast (the approach described in STACK.md):

1. Cases are sorted by score once. A subgroup is a subset of that order, so
   it stays sorted; each case's place among the positives (below it, and up
   to a tie) is found once (``ScoreLayout``).
2. Every metric is a function of the cumulative weight of the positives in
   score order and plain sums of the negatives' weights: AUROC by the rank
   (Mann-Whitney) formula with ties counted one half, which equals the rank
   formula with average ranks; average precision as the positives' weighted
   mean of the precision at their score (all cases scored at or above it),
   as scikit-learn computes it; the confusion matrix at ``score >= threshold``
   from the sums on either side of the threshold. With integer weights (all
   a bootstrap uses) every sum is exact, whatever its order.
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
CHUNK_CELLS = 1 << 20  # weights held per chunk (8 MiB of float64), so memory does not grow with the dataset


def chunk_for(n_columns: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Resamples per chunk for weights of ``n_columns`` cases or patients: at most ``chunk_size``,
    and no more than ``CHUNK_CELLS`` weights. At 100,000 cases chunks of 64 made a run's memory
    grow by about 500 MB; the resamples are the same whatever the chunk size
    (``patient_bootstrap_counts``)."""
    return max(1, min(chunk_size, CHUNK_CELLS // max(1, n_columns)))


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


@dataclass
class ScoreLayout:
    """A set of cases in ascending score order, split by class, with each case's place among the
    positives (and each positive's among the negatives), ties counted as the module docstring says.

    A resample's metrics then need one cumulative sum, over the positives' weights, and gathers and
    sums over the cases: AUROC is the negatives' weighted sum of the positive weight above them
    (half of it when tied), the confusion matrix the sums on either side of the threshold, and
    average precision the positives' weighted sum of the precision at their score, for which the
    negatives' weights are summed between consecutive positives. A cumulative sum costs several
    times a plain sum or a gather in NumPy, and positives are usually the fewer.
    """

    positions: np.ndarray  # indices into the caller's arrays, ascending score
    positive: np.ndarray  # sorted positions of the positives
    negative: np.ndarray  # sorted positions of the negatives
    positives_below: np.ndarray  # per negative: positives with a lower score
    positives_upto: np.ndarray  # per negative: positives with a lower or equal score
    ranks_below: np.ndarray  # per positive: positives with a lower score
    segment_starts: np.ndarray  # negatives where a run between two positives' scores starts (after the first)
    segment_below: np.ndarray  # per positive: the runs of negatives wholly below its score
    threshold_positives: int  # positives scored below the threshold
    threshold_negatives: int  # negatives scored below the threshold

    @classmethod
    def build(cls, positions: np.ndarray, sorted_scores: np.ndarray, is_pos: np.ndarray, threshold: float) -> ScoreLayout:
        is_pos = np.asarray(is_pos, dtype=bool)
        positive, negative = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
        pos_scores, neg_scores = sorted_scores[positive], sorted_scores[negative]
        negatives_below = np.searchsorted(neg_scores, pos_scores, side="left")
        starts = np.unique(negatives_below[(negatives_below > 0) & (negatives_below < negative.size)])
        # Run k (from 1) is negatives [starts[k-1], starts[k]); run 0 is those below starts[0].
        segment_below = np.searchsorted(starts, negatives_below, side="right")
        return cls(
            positions=positions,
            positive=positive,
            negative=negative,
            positives_below=np.searchsorted(pos_scores, neg_scores, side="left"),
            positives_upto=np.searchsorted(pos_scores, neg_scores, side="right"),
            ranks_below=np.searchsorted(pos_scores, pos_scores, side="left"),
            segment_starts=np.r_[0, starts] if negative.size else starts,
            segment_below=np.where(negatives_below == negative.size, -1, segment_below) if negative.size else segment_below,
            threshold_positives=int(np.searchsorted(pos_scores, threshold, side="left")),
            threshold_negatives=int(np.searchsorted(neg_scores, threshold, side="left")),
        )

    def metrics(self, weights: np.ndarray, names: Collection[str] = METRIC_NAMES) -> dict[str, np.ndarray]:
        """The metrics ``names`` for weight rows, ``weights`` of shape ``(rows, len(positions))`` in score order."""
        return self._metrics(weights[:, self.positive], weights[:, self.negative], names)

    def metrics_from(self, counts: np.ndarray, units: np.ndarray, names: Collection[str] = METRIC_NAMES) -> dict[str, np.ndarray]:
        """``metrics`` of the case weights ``counts[:, units]`` (``units``: each sorted position's
        column of ``counts``, its patient), gathered by class without building them all first."""
        return self._metrics(np.take(counts, units[self.positive], axis=1), np.take(counts, units[self.negative], axis=1), names)

    def _metrics(self, pos_w: np.ndarray, neg_w: np.ndarray, names: Collection[str]) -> dict[str, np.ndarray]:
        cum_pos = _cumulative(pos_w)  # (rows, positives + 1): column k is the weight of the first k positives
        n_pos, n_neg = cum_pos[:, -1], neg_w.sum(axis=1)
        found: dict[str, np.ndarray] = {}
        if "auroc" in names:
            # Each negative is beaten by the positive weight above it and half of that tied with it. Gathered
            # with np.take: ``cum_pos[:, index]`` is Fortran-ordered, which makes einsum three times slower
            # (the sums are of integers, exact in any order).
            below = np.take(cum_pos, self.positives_below, axis=1)
            if np.array_equal(self.positives_below, self.positives_upto):
                not_above = below
            else:
                not_above = np.take(cum_pos, self.positives_upto, axis=1)
                not_above += below
                not_above *= 0.5
            pairs = n_pos * n_neg
            found["auroc"] = _ratio(pairs - np.einsum("ij,ij->i", neg_w, not_above), pairs)
        if "auprc" in names:
            # Precision at each positive's score: the cases scored at or above it.
            true_at = n_pos[:, None] - cum_pos[:, self.ranks_below]
            runs = np.add.reduceat(neg_w, self.segment_starts, axis=1) if self.segment_starts.size else neg_w[:, :0]
            negatives_under = np.concatenate([_cumulative(runs), n_neg[:, None]], axis=1)[:, self.segment_below]
            called = n_neg[:, None] - negatives_under
            called += true_at
            np.maximum(called, np.finfo(np.float64).tiny, out=called)  # 0 only where the positive's weight is 0
            true_at /= called
            found["auprc"] = _ratio(np.einsum("ij,ij->i", pos_w, true_at), n_pos)
        tp = n_pos - cum_pos[:, self.threshold_positives]
        fp = n_neg - neg_w[:, : self.threshold_negatives].sum(axis=1)
        fn = n_pos - tp
        tn = n_neg - fp
        rates = {
            "sensitivity": lambda: _ratio(tp, n_pos),
            "specificity": lambda: _ratio(tn, n_neg),
            "ppv": lambda: _ratio(tp, tp + fp),
            "npv": lambda: _ratio(tn, tn + fn),
            "f1": lambda: _ratio(2 * tp, 2 * tp + fp + fn),
            "fnr": lambda: _ratio(fn, n_pos),
            "fpr": lambda: _ratio(fp, n_neg),
        }
        found.update({name: rate() for name, rate in rates.items() if name in names})
        return {name: found[name] for name in METRIC_NAMES if name in names}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is 0 (the metric is undefined)."""
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _cumulative(weights: np.ndarray) -> np.ndarray:
    """Cumulative sums along each row with a leading zero column: column k is the first k weights' sum."""
    out = np.empty((weights.shape[0], weights.shape[1] + 1))
    out[:, 0] = 0.0
    np.cumsum(weights, axis=1, out=out[:, 1:])
    return out


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
