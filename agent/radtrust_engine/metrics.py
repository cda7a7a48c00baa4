"""Binary classification metrics, plain and weighted, and patient-level bootstrap weights.

Stratification and fairness gaps built on them are in ``radtrust_engine.stratification``.

Plain Python and NumPy (no Django), so a benchmark, a site agent and a
notebook can reuse it.

How the bootstrap stays fast (the approach described in STACK.md):

1. Cases are sorted by score once. A subgroup is a subset of that order, so
   it stays sorted. Its cases are reduced once to columns (``ScoreLayout``):
   one per distinct score of the positives (a tie group) and one per run of
   negatives between two such scores, with each run's place among the tie
   groups (below it, and up to a tie) and each tie group's among the runs.
2. Every metric is a function of the columns' weights: AUROC by the rank
   (Mann-Whitney) formula with ties counted one half, which equals the rank
   formula with average ranks (each run against the cumulative positive
   weight below it); average precision as the tie groups' weighted mean of
   the precision at their score (all cases scored at or above it), as
   scikit-learn computes it; the confusion matrix at ``score >= threshold``
   from the sums on either side of the threshold (runs split there). With
   integer weights (all a bootstrap uses) every sum is exact, whatever its
   order, so AUROC and the confusion matrix do not depend on the arrangement.
3. A bootstrap resample is a vector of integer weights, one per patient: the
   number of times the patient was drawn (multinomial counts, so all of a
   patient's cases move together). The columns' weights of a chunk of
   resamples are one sparse product of those counts (``LayoutSet``: every
   subgroup of a report, or every robustness condition, side by side), and
   the metrics a few array operations on them, a few rows at a time so that
   the arrays stay in a core's cache (``SUM_CELLS``).
4. Weights are drawn once for the whole dataset and shared by every subgroup,
   so the gap between two groups on one resample is a coherent draw and the
   gaps' simultaneous intervals (``radtrust_engine.gaps``) are meaningful.
   The labels of a run draw the same resamples, so the counts are kept
   between calls (``seeded_bootstrap_chunks``) and drawn once per run.

Undefined values (AUROC with one class present, PPV with nothing predicted
positive, ...) are ``None``, never a made-up number. Bootstrap intervals (BCa,
``radtrust_engine.stats.bca_interval``) are taken over the resamples on which
the metric is defined; how many that were is reported as ``n_valid``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

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
SUM_CELLS = 1 << 15  # column sums per pass of ``LayoutSet.metrics``: its arrays stay in a core's cache
KEPT_DRAW_CELLS = 1 << 24  # bootstrap counts kept between calls (``seeded_bootstrap_chunks``), one byte each


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
    """A set of cases in ascending score order, reduced to the sums a metric reads: one column per
    distinct score of the positives (their tie group) and one per run of negatives between two such
    scores (split at the threshold, and apart where tied with a positive), with each run's place
    among the positives and each tie group's among the runs; ties counted as the module docstring says.

    A resample's metrics then need one sparse product, from the resample's weights to the column
    sums, and a few operations on those sums: AUROC is the runs' weighted sum of the positive weight
    above them (half of it when tied), the confusion matrix the sums on either side of the
    threshold, and average precision each tie group's weight times the precision at its score.
    The product reads each case's weight once (a patient's cases in one column are summed first);
    the columns are at most the cases, and far fewer when positives are few or ties many, and no
    per-case weight matrix is built.
    """

    positions: np.ndarray  # indices into the caller's arrays, ascending score
    columns: np.ndarray  # per position: its column (the positives' tie groups first, then the runs of negatives)
    tie_groups: int  # columns holding positives
    positives_below: np.ndarray  # per run: tie groups with a lower score
    positives_upto: np.ndarray  # per run: tie groups with a lower or equal score
    runs_below: np.ndarray  # per tie group: the runs wholly below its score
    threshold_positives: int  # tie groups scored below the threshold
    threshold_negatives: int  # runs scored below the threshold
    _sets: dict[tuple[bytes, int], LayoutSet] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, positions: np.ndarray, sorted_scores: np.ndarray, is_pos: np.ndarray, threshold: float) -> ScoreLayout:
        is_pos = np.asarray(is_pos, dtype=bool)
        pos_scores, neg_scores = sorted_scores[is_pos], sorted_scores[~is_pos]
        ties = np.unique(pos_scores)
        below = np.searchsorted(ties, neg_scores, side="left")
        upto = np.searchsorted(ties, neg_scores, side="right")
        above = neg_scores >= threshold
        new_run = np.ones(neg_scores.size, dtype=bool)
        new_run[1:] = (below[1:] != below[:-1]) | (upto[1:] != upto[:-1]) | (above[1:] != above[:-1])
        starts = np.flatnonzero(new_run)
        columns = np.empty(is_pos.size, dtype=np.intp)
        columns[is_pos] = np.searchsorted(ties, pos_scores)
        columns[~is_pos] = ties.size + np.cumsum(new_run) - 1
        return cls(
            positions=positions,
            columns=columns,
            tie_groups=int(ties.size),
            positives_below=below[starts],
            positives_upto=upto[starts],
            # A run lies wholly below tie group k when no tie group up to its score reaches k.
            runs_below=np.searchsorted(upto[starts], np.arange(ties.size), side="right"),
            threshold_positives=int(np.searchsorted(ties, threshold, side="left")),
            threshold_negatives=int(np.count_nonzero(~above[starts])),
        )

    def metrics(self, weights: np.ndarray, names: Collection[str] = METRIC_NAMES) -> dict[str, np.ndarray]:
        """The metrics ``names`` for weight rows, ``weights`` of shape ``(rows, len(positions))`` in score order."""
        found = LayoutSet.of([self], [np.arange(self.columns.size)], self.columns.size).metrics(weights, names)
        return {name: values[:, 0] for name, values in found.items()}

    def metrics_from(self, counts: np.ndarray, units: np.ndarray, names: Collection[str] = METRIC_NAMES) -> dict[str, np.ndarray]:
        """``metrics`` of the case weights ``counts[:, units]`` (``units``: each sorted position's
        column of ``counts``, its patient), summed per column without building them first. The
        summing is kept per ``units``: a bootstrap calls this once per chunk of resamples."""
        key = (np.asarray(units).tobytes(), counts.shape[1])
        layouts = self._sets.get(key)
        if layouts is None:
            layouts = self._sets[key] = LayoutSet.of([self], [units], counts.shape[1])
        return {name: values[:, 0] for name, values in layouts.metrics(counts, names).items()}


@dataclass(frozen=True)
class LayoutSet:
    """Several ``ScoreLayout`` computed together on the same weight rows (every subgroup of a
    stratified report, every condition of a robustness report): one sparse product gives every
    layout's column sums, side by side (all tie groups first, then all runs), and each metric is a
    few array operations over all of them, so the cost per resample is that of the cases read,
    not of the number of layouts.

    A layout's cumulative sums are differences of the sums over all columns, and its totals sums of
    its segment; with integer weights (every bootstrap and jackknife row, and the point estimate)
    all of them are exact (below 2**53, some 10**15: a run's weight times every layout's positive
    weight), so AUROC and the confusion-matrix metrics are those of the layout alone to the bit,
    and average precision differs from a per-layout sum by rounding only.
    """

    summing: Any  # (columns, units) sparse matrix: the column sums of a row of unit weights
    tie_groups: int  # columns holding positives; the runs of negatives follow
    tie_start: np.ndarray  # per layout: its first tie group (into the cumulative positive sums)
    tie_stop: np.ndarray  # per layout: one past its last tie group
    run_start: np.ndarray  # per layout: its first run (into the cumulative negative sums)
    run_stop: np.ndarray
    run_below: np.ndarray  # per run: its positives_below, into the cumulative positive sums
    run_upto: np.ndarray | None  # per run: its positives_upto (None: no negative tied with a positive)
    tie_layout_stop: np.ndarray  # per tie group: its layout's tie_stop
    tie_layout_run_stop: np.ndarray  # per tie group: its layout's run_stop
    tie_runs_below: np.ndarray  # per tie group: its runs_below, into the cumulative negative sums
    threshold_ties: np.ndarray  # per layout: its first tie group at or above the threshold
    threshold_runs: np.ndarray  # per layout: its first run at or above the threshold
    halves: tuple[np.ndarray, np.ndarray]  # starts and stops of each layout's runs below, then above, the threshold

    def __len__(self) -> int:
        return int(self.tie_start.size)

    @classmethod
    def of(cls, layouts: Sequence[ScoreLayout], units: Sequence[np.ndarray], n_units: int) -> LayoutSet:
        """The set of ``layouts``, ``units[i]`` giving layout ``i``'s sorted positions' columns of the weights."""
        ties = np.array([lay.tie_groups for lay in layouts], dtype=np.intp)
        runs = np.array([lay.positives_below.size for lay in layouts], dtype=np.intp)
        tie_start, run_start = np.cumsum(ties) - ties, np.cumsum(runs) - runs
        tie_groups = int(ties.sum())
        columns = [
            np.where(lay.columns < lay.tie_groups, lay.columns + first_tie, lay.columns - lay.tie_groups + tie_groups + first_run)
            for lay, first_tie, first_run in zip(layouts, tie_start, run_start)
        ]
        rows, cols = np.concatenate(columns), np.concatenate([np.asarray(u) for u in units])
        summing = sparse.csr_array((np.ones(rows.size), (rows, cols)), shape=(tie_groups + int(runs.sum()), n_units))
        summing.sum_duplicates()
        tied = any(not np.array_equal(lay.positives_below, lay.positives_upto) for lay in layouts)
        per_tie, per_run = np.repeat(np.arange(len(layouts)), ties), np.repeat(np.arange(len(layouts)), runs)
        threshold_runs = run_start + np.array([lay.threshold_negatives for lay in layouts], dtype=np.intp)
        return cls(
            summing=summing,
            tie_groups=tie_groups,
            tie_start=tie_start,
            tie_stop=tie_start + ties,
            run_start=run_start,
            run_stop=run_start + runs,
            run_below=np.concatenate([lay.positives_below for lay in layouts]) + tie_start[per_run],
            run_upto=np.concatenate([lay.positives_upto for lay in layouts]) + tie_start[per_run] if tied else None,
            tie_layout_stop=(tie_start + ties)[per_tie],
            tie_layout_run_stop=(run_start + runs)[per_tie],
            tie_runs_below=np.concatenate([lay.runs_below for lay in layouts]) + run_start[per_tie],
            threshold_ties=tie_start + np.array([lay.threshold_positives for lay in layouts], dtype=np.intp),
            threshold_runs=threshold_runs,
            halves=(np.column_stack([run_start, threshold_runs]).ravel(), np.column_stack([threshold_runs, run_start + runs]).ravel()),
        )

    def metrics(self, weights: np.ndarray, names: Collection[str] = METRIC_NAMES) -> dict[str, np.ndarray]:
        """The metrics ``names`` of every layout, ``(rows, layouts)`` each, for the unit weight rows
        ``weights`` of shape ``(rows, units)``, a few rows at a time (``SUM_CELLS``)."""
        step = max(1, SUM_CELLS // max(1, self.summing.shape[0]))
        if weights.shape[0] <= step:
            return self._metrics(weights, names)
        parts = [self._metrics(weights[start : start + step], names) for start in range(0, weights.shape[0], step)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _metrics(self, weights: np.ndarray, names: Collection[str]) -> dict[str, np.ndarray]:
        sums = _column_sums(self.summing, weights)
        pos_w, neg_w = sums[:, : self.tie_groups], sums[:, self.tie_groups :]
        cum_pos = _cumulative(pos_w)  # column k: the first k tie groups' weight
        n_pos = cum_pos[:, self.tie_stop] - cum_pos[:, self.tie_start]
        if "auprc" in names:
            cum_neg = _cumulative(neg_w)
            n_neg = cum_neg[:, self.run_stop] - cum_neg[:, self.run_start]
            fp = cum_neg[:, self.run_stop] - cum_neg[:, self.threshold_runs]
        else:  # plain sums below and above the threshold: a cumulative sum costs several times more
            halves = _segment_sums(neg_w, self.halves[0], self.halves[1])
            fp = halves[:, 1::2]
            n_neg = halves[:, ::2] + fp
        found: dict[str, np.ndarray] = {}
        if "auroc" in names:
            # Each run is beaten by its layout's positive weight above it and half of that tied with it:
            # the cumulative sum at the run less that before the layout, times the run's weight.
            not_above = np.take(cum_pos, self.run_below, axis=1)
            if self.run_upto is not None:
                not_above += np.take(cum_pos, self.run_upto, axis=1)
                not_above *= 0.5
            not_above *= neg_w
            beaten = _segment_sums(not_above, self.run_start, self.run_stop) - cum_pos[:, self.tie_start] * n_neg
            pairs = n_pos * n_neg
            found["auroc"] = _ratio(pairs - beaten, pairs)
        if "auprc" in names:
            # Precision at each tie group's score: its layout's cases scored at or above it.
            true_at = np.take(cum_pos, self.tie_layout_stop, axis=1)
            true_at -= cum_pos[:, :-1]
            called = np.take(cum_neg, self.tie_layout_run_stop, axis=1)
            called -= np.take(cum_neg, self.tie_runs_below, axis=1)
            called += true_at
            np.maximum(called, np.finfo(np.float64).tiny, out=called)  # 0 only where the tie group's weight is 0
            true_at /= called
            true_at *= pos_w
            found["auprc"] = _ratio(_segment_sums(true_at, self.tie_start, self.tie_stop), n_pos)
        rates = [name for name in METRIC_NAMES if name in names and name not in found]
        if rates:  # the confusion-matrix rates, every division at once
            tp = cum_pos[:, self.tie_stop] - cum_pos[:, self.threshold_ties]
            fn, tn = n_pos - tp, n_neg - fp
            terms = {
                "sensitivity": (tp, n_pos),
                "specificity": (tn, n_neg),
                "ppv": (tp, tp + fp),
                "npv": (tn, tn + fn),
                "f1": (2 * tp, 2 * tp + fp + fn),
                "fnr": (fn, n_pos),
                "fpr": (fp, n_neg),
            }
            found.update(zip(rates, _ratio(np.stack([terms[name][0] for name in rates]), np.stack([terms[name][1] for name in rates]))))
        return {name: found[name] for name in METRIC_NAMES if name in names}


def _segment_sums(values: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Per row, the sums of the column segments ``[start[i], stop[i])`` (contiguous, in order, each
    beginning where the last non-empty one ended), ``(rows, segments)``; 0 for an empty segment."""
    out = np.zeros((values.shape[0], start.size))
    filled = stop > start
    if filled.any():
        out[:, filled] = np.add.reduceat(values, start[filled], axis=1)
    return out


def _column_sums(summing: Any, weights: np.ndarray) -> np.ndarray:
    """Each weight row's column sums, ``(rows, columns)``: one sparse product (every unit's weight
    read once, added in the same order for every row, so a row's sums do not depend on the other rows)."""
    return np.ascontiguousarray((summing @ np.ascontiguousarray(weights.T)).T)


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


_kept_draws: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
_kept_lock = threading.Lock()


def seeded_bootstrap_chunks(seed: int | None, n_patients: int, n_resamples: int, chunk_size: int) -> Iterator[np.ndarray]:
    """``patient_bootstrap_counts`` of ``numpy.random.default_rng(seed)``, ``chunk_size`` resamples at a time.

    Every label of a run draws the same resamples (the same seed and patients), and so does each
    leave-one-out and robustness sample once per label: the counts last drawn are kept, as bytes,
    up to ``KEPT_DRAW_CELLS`` in all, so a 14-label run draws each set once. The rows are the same
    whatever the chunk size, kept or not; with no seed nothing is kept.
    """
    key = None if seed is None else (int(seed), n_patients, n_resamples)
    with _kept_lock:
        kept = _kept_draws.get(key) if key is not None else None
        if kept is not None:
            _kept_draws.move_to_end(key)
    if kept is not None:
        for start in range(0, n_resamples, chunk_size):
            yield kept[start : start + chunk_size].astype(np.float64)
        return
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] | None = [] if key is not None and n_resamples * n_patients <= KEPT_DRAW_CELLS else None
    for start in range(0, n_resamples, chunk_size):
        counts = patient_bootstrap_counts(rng, n_patients, min(chunk_size, n_resamples - start))
        if keep is not None and counts.max(initial=0) <= 255:
            keep.append(counts.astype(np.uint8))
        else:
            keep = None
        yield counts
    if keep is not None:
        with _kept_lock:
            _kept_draws[key] = np.concatenate(keep) if keep else np.empty((0, n_patients), dtype=np.uint8)
            while sum(a.size for a in _kept_draws.values()) > KEPT_DRAW_CELLS:
                _kept_draws.popitem(last=False)
