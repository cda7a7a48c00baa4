"""Segmentation metrics: per-case Dice and IoU, and their means overall and
per subgroup with patient-level bootstrap CIs and the largest Dice gap.

Results reuse the classification types (``MetricEstimate``,
``SubgroupResult``, ``FairnessGap``) and the same rules (missing attribute
values become "unknown", small subgroups are listed as suppressed, weights
drawn once per resample for the whole dataset), so the API and the pages
treat a segmentation report as they treat a ``StratifiedReport``.

How the bootstrap stays fast: a group's mean Dice on one resample is
``sum_p c_p D_pg / sum_p c_p K_pg``, where ``c_p`` is the number of times
patient ``p`` was drawn, ``D_pg`` the sum of the patient's defined Dice
values in group ``g`` and ``K_pg`` how many there are. So every group of
every grouping, for every resample of a chunk, is one product of the
``(chunk, patients)`` count matrix with a sparse ``(patients, 3 x groups)``
matrix of those per-patient sums.

Plain Python, NumPy and SciPy (no Django).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import expit

from radtrust_engine.metrics import DEFAULT_CHUNK_SIZE, finite_or_none, patient_bootstrap_counts
from radtrust_engine.stratification import (
    FairnessGap,
    Group,
    GroupedReport,
    SubgroupResult,
    gap_result,
    patient_jackknife_counts,
    strata_setup,
    subgroup_result,
    suppress_groups,
)

SEGMENTATION_METRICS: tuple[str, ...] = ("dice", "iou")
# What turns a model's raw output into probabilities ("none": it outputs them); the output schema names one.
ACTIVATIONS: tuple[str, ...] = ("none", "sigmoid", "softmax")


# ---------------------------------------------------------------------------
# Per-case overlap
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OverlapScores:
    """Per-case Dice and IoU of binary masks.

    Where prediction and truth are both empty, Dice and IoU are 0/0: NaN
    here, and left out of the means. Counting such a case as 1.0 (a perfect
    "nothing found") would inflate the mean on datasets with many negative
    cases and hide misses on the positive ones, which is why MONAI's
    ``ignore_empty`` does the same; how many cases were left out is
    ``n_empty_both``. A prediction on an empty truth still scores 0.
    """

    dice: np.ndarray  # (N,) float64, NaN where both masks are empty
    iou: np.ndarray  # (N,) float64, NaN where both masks are empty
    truth_size: np.ndarray  # (N,) int64, foreground voxels of the truth
    truth_empty: np.ndarray  # (N,) bool

    @property
    def n_cases(self) -> int:
        return int(self.dice.size)

    @property
    def n_empty_both(self) -> int:
        return int(np.isnan(self.dice).sum())

    @property
    def mean_dice(self) -> float | None:
        return _nanmean(self.dice)

    @property
    def mean_iou(self) -> float | None:
        return _nanmean(self.iou)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_cases": self.n_cases,
            "n_empty_both": self.n_empty_both,
            "n_truth_empty": int(self.truth_empty.sum()),
            "mean_dice": self.mean_dice,
            "mean_iou": self.mean_iou,
            "dice": [finite_or_none(v) for v in self.dice],
            "iou": [finite_or_none(v) for v in self.iou],
            "truth_size": [int(v) for v in self.truth_size],
            "truth_empty": [bool(v) for v in self.truth_empty],
        }


def _nanmean(values: np.ndarray) -> float | None:
    defined = values[np.isfinite(values)]
    return float(defined.mean()) if defined.size else None


def _binary(mask: Any, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype == np.bool_:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or np.any((arr != 0) & (arr != 1)):
        raise ValueError(f"{name} must be a binary mask (bool, or 0 and 1 only); threshold model outputs with masks_from_output first")
    return arr != 0


def overlap_scores(pred: np.ndarray, truth: np.ndarray) -> OverlapScores:
    """Dice and IoU per case of binary masks shaped ``(N, ...)``, any spatial rank."""
    p, t = _binary(pred, "pred"), _binary(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"pred has shape {p.shape} but truth has shape {t.shape}")
    if p.ndim < 2 or p.shape[0] == 0:
        raise ValueError(f"masks must be shaped (N, ...) with N >= 1 and a spatial axis, got {p.shape}")
    p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    inter = np.count_nonzero(p & t, axis=1).astype(np.float64)
    size_p = np.count_nonzero(p, axis=1)
    size_t = np.count_nonzero(t, axis=1)
    total = (size_p + size_t).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2.0 * inter / total
        iou = inter / (total - inter)
    return OverlapScores(dice=dice, iou=iou, truth_size=size_t.astype(np.int64), truth_empty=size_t == 0)


# ---------------------------------------------------------------------------
# Model outputs and ground-truth masks
# ---------------------------------------------------------------------------


def masks_from_output(output: np.ndarray, threshold: float, *, activation: str) -> np.ndarray:
    """Boolean foreground masks ``(N, *spatial)`` from a model output
    ``(N, C, H, W)`` or ``(N, C, D, H, W)``.

    One channel: the foreground probability (after a sigmoid for
    ``"sigmoid"``, as it is for ``"none"``) is ``>= threshold``, the same
    rule as for classification scores. Several channels (``"softmax"``, or
    ``"none"`` for probabilities already softmaxed in the graph): channel 0
    is background and the foreground is ``argmax != 0``; the threshold is
    not used, since argmax is the rule such models are trained for.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    out = np.asarray(output)
    if out.ndim not in (4, 5):
        raise ValueError(
            f"cannot interpret a segmentation output of shape {out.shape}: expected "
            "(N, C, H, W) or (N, C, D, H, W), with a channel axis even for one class"
        )
    if not np.issubdtype(out.dtype, np.number) or np.isnan(out).any():
        raise ValueError("segmentation output must be numeric without NaN")
    channels = out.shape[1]
    if channels == 1:
        if activation == "softmax":
            raise ValueError(f"softmax over one channel is always 1 (output shape {out.shape}); use 'sigmoid' for logits or 'none' for probabilities")
        prob = expit(out[:, 0]) if activation == "sigmoid" else out[:, 0]
        return prob >= threshold
    if activation == "sigmoid":
        raise ValueError(
            f"sigmoid output with {channels} channels (shape {out.shape}) is multi-label; "
            "expected one foreground channel, or 'softmax' with channel 0 as background"
        )
    return np.argmax(out, axis=1) != 0


def fit_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A ground-truth mask binarised (``> 0.5``) and resized by nearest
    neighbour to the model output's spatial ``shape``.

    Singleton axes beyond the target rank are squeezed, trailing ones first
    (a 2D NIfTI mask reads as ``(H, W, 1)``), then leading ones (a
    channel-first ``(1, H, W)`` NPY). The resize aligns corners, as the
    bilinear image resize in ``preprocessing`` does, so the mask stays on
    the image's grid.
    """
    arr = np.asarray(mask)
    target = tuple(int(s) for s in shape)
    if not target or any(s < 1 for s in target):
        raise ValueError(f"target shape must be positive sizes, got {tuple(shape)}")
    fitted = arr
    while fitted.ndim > len(target) and fitted.shape[-1] == 1:
        fitted = fitted[..., 0]
    while fitted.ndim > len(target) and fitted.shape[0] == 1:
        fitted = fitted[0]
    if fitted.ndim != len(target):
        raise ValueError(f"mask of shape {arr.shape} cannot be fitted to output shape {target}")
    fitted = fitted > 0.5
    if fitted.shape == target:
        return fitted
    index = [
        np.floor(np.arange(out) * ((size - 1) / (out - 1)) + 0.5).astype(np.intp) if out > 1 else np.zeros(1, dtype=np.intp)
        for size, out in zip(fitted.shape, target)
    ]
    return fitted[np.ix_(*index)]


# ---------------------------------------------------------------------------
# Stratified means with bootstrap CIs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentationReport(GroupedReport):
    """Mean Dice and IoU overall and per subgroup with CIs, and the Dice gaps.

    Each ``SubgroupResult.metrics`` holds ``dice`` and ``iou``; its
    ``n_positive`` counts the cases that enter the means (Dice defined:
    foreground in the truth or the prediction), so ``n_cases - n_positive``
    were empty in both. Each grouping has one ``FairnessGap`` of kind
    ``"dice_gap"``.
    """

    def gap(self, attributes: Sequence[str]) -> FairnessGap:  # one kind of gap here
        return super().gap("dice_gap", attributes)


def _check_scores(dice: Any, iou: Any) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(dice, dtype=np.float64)
    j = np.asarray(iou, dtype=np.float64)
    if d.ndim != 1 or d.shape != j.shape:
        raise ValueError(f"dice and iou must be one-dimensional of equal length, got {d.shape} and {j.shape}")
    if d.size == 0:
        raise ValueError("no cases")
    if not np.array_equal(np.isnan(d), np.isnan(j)):
        raise ValueError("dice and iou must be undefined (NaN) on the same cases")
    for name, v in (("dice", d), ("iou", j)):
        finite = v[~np.isnan(v)]
        if not np.all(np.isfinite(finite)) or np.any((finite < 0) | (finite > 1)):
            raise ValueError(f"{name} values must lie in [0, 1] (NaN where undefined)")
    return d, j


def _grouping_keys(labels: dict[str, np.ndarray], intersections: list[tuple[str, ...]], n: int) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """Per grouping, one key per case; intersection keys join values with \\x1f
    as ``stratified_metrics`` does."""
    groupings: list[tuple[tuple[str, ...], np.ndarray]] = [((), np.zeros(n, dtype=np.int8))]
    groupings += [((name,), labels[name]) for name in labels]
    for inter in intersections:
        key = labels[inter[0]].astype(object)
        for a in inter[1:]:
            key = key + "\x1f" + labels[a].astype(object)
        groupings.append((inter, key.astype(str)))
    return groupings


def stratified_segmentation(
    dice: np.ndarray,
    iou: np.ndarray,
    patient_id: Any,
    attributes: Mapping[str, Any] | None = None,
    intersections: Sequence[Sequence[str]] = (),
    *,
    n_resamples: int = 1000,
    seed: int | None = 0,
    min_patients: int = 10,
    confidence: float = 0.95,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SegmentationReport:
    """Mean Dice and IoU (over cases where defined) with patient-level
    bootstrap BCa CIs, overall, per subgroup of each attribute and
    each declared intersection, and each grouping's largest Dice gap.

    1. Per grouping, give every case its group; count cases, distinct
       patients and defined cases per group; suppress groups with fewer
       than ``min_patients`` patients and the groups that would give them
       away (``suppress_groups``; never the overall group).
    2. Sum each patient's Dice, IoU and defined-case count per unsuppressed
       group into one sparse ``(patients, 3 x groups)`` matrix.
    3. Point estimates: unit patient weights. Bootstrap: per chunk, draw
       multinomial patient counts for the whole dataset
       (``numpy.random.default_rng(seed)``) and multiply; the same draws
       serve every group, so gaps between groups are coherent draws.
       The jackknife rows (``patient_jackknife_counts``) go through the same
       product, for BCa's acceleration.
    4. BCa intervals; each grouping's Dice gap with simultaneous intervals
       over every pair of comparable groups (``radtrust_engine.gaps``).
    """
    d, j = _check_scores(dice, iou)
    n = d.size
    labels, inters, patient_idx, n_patients = strata_setup(
        n,
        patient_id,
        attributes,
        intersections,
        confidence=confidence,
        n_resamples=n_resamples,
        chunk_size=chunk_size,
    )
    defined = ~np.isnan(d)
    sums = (np.where(defined, d, 0.0), np.where(defined, j, 0.0), defined.astype(np.float64))

    # 1-2. Groups, suppressed as ``suppress_groups`` decides, and the columns of the shown ones.
    by_grouping: list[tuple[tuple[str, ...], list[Group]]] = []
    case_group: list[np.ndarray] = []
    for attrs, keys in _grouping_keys(labels, inters, n):
        names, group_of = np.unique(keys, return_inverse=True)
        group_of = group_of.ravel()
        n_cases = np.bincount(group_of, minlength=names.size)
        n_defined = np.bincount(group_of, weights=sums[2], minlength=names.size)
        groups = []
        for k, name in enumerate(names):
            values = tuple(str(name).split("\x1f")) if attrs else ()
            patients = patient_idx[group_of == k]
            groups.append(Group(attrs, values, int(n_cases[k]), int(np.unique(patients).size), int(n_defined[k]), False, None, patients))
        by_grouping.append((attrs, groups))
        case_group.append(group_of)
    suppress_groups([g for _, gs in by_grouping for g in gs], [attrs for attrs, _ in by_grouping], {}, min_patients)
    active: list[Group] = []
    rows, cols, vals = [], [], [[], [], []]
    for (_, groups), group_of in zip(by_grouping, case_group):
        column = np.full(len(groups), -1)
        for k, g in enumerate(groups):
            if not g.suppressed:
                column[k] = len(active)
                active.append(g)
        in_active = column[group_of] >= 0
        rows.append(patient_idx[in_active])
        cols.append(column[group_of][in_active])
        for acc, s in zip(vals, sums):
            acc.append(s[in_active])

    n_active = len(active)
    row, col = np.concatenate(rows), np.concatenate(cols)
    weights = sparse.csr_array(
        (np.concatenate([np.concatenate(v) for v in vals]), (np.tile(row, 3), np.concatenate([col, col + n_active, col + 2 * n_active]))),
        shape=(n_patients, 3 * n_active),
    )

    def means(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        totals = np.asarray(counts @ weights)
        den = totals[:, 2 * n_active :]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (np.where(den > 0, totals[:, :n_active] / den, np.nan), np.where(den > 0, totals[:, n_active : 2 * n_active] / den, np.nan))

    # 3. Point estimates and bootstrap means.
    point = means(np.ones((1, n_patients)))
    boot = (np.empty((n_resamples, n_active)), np.empty((n_resamples, n_active)))
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk_size):
        stop = min(start + chunk_size, n_resamples)
        chunk = means(patient_bootstrap_counts(rng, n_patients, stop - start))
        for out, values in zip(boot, chunk):
            out[start:stop] = values
    jack = means(patient_jackknife_counts(n_patients)) if n_resamples else None
    for k, g in enumerate(active):
        g.point = {m: float(p[0, k]) for m, p in zip(SEGMENTATION_METRICS, point)}
        if n_resamples:
            g.boot = {m: b[:, k] for m, b in zip(SEGMENTATION_METRICS, boot)}
            g.jack = {m: j[:, k] for m, j in zip(SEGMENTATION_METRICS, jack)}

    # 4. Intervals and gaps.
    def result(g: Group) -> SubgroupResult:
        return subgroup_result(g, SEGMENTATION_METRICS, n_resamples, confidence)

    gaps = []
    for attrs, groups in by_grouping[1:]:
        gaps.append(gap_result("dice_gap", attrs, groups, ("dice",), confidence))
    return SegmentationReport(
        n_resamples=int(n_resamples),
        seed=seed,
        confidence=float(confidence),
        min_patients=int(min_patients),
        overall=result(by_grouping[0][1][0]),
        subgroups=[result(g) for _, gs in by_grouping[1:] for g in gs],
        gaps=gaps,
    )
