"""Lesion detection: ground-truth boxes or points, the model's boxes, matching, FROC and CPM.

A detection model finds lesions (nodules, fractures, haemorrhages) as scored boxes; the accepted
measure is lesion-level, not image-level: the FROC curve, sensitivity (share of lesions found)
against the mean number of false positives per image (or volume).

Output contract (docs/methods.md, detection): an ONNX detection model returns, per image, three
outputs, with or without a leading batch axis of 1:

- ``boxes`` ``[N, 4]`` (``x1, y1, x2, y2``) for 2D or ``[N, 6]`` (``x1, y1, z1, x2, y2, z2``) for 3D,
  in pixel (voxel) coordinates of the model's input, ``x1 <= x2`` and so on;
- ``scores`` ``[N]``, finite;
- ``labels`` ``[N]``, integer indices into the version's class names.

A case whose output breaks the contract, or whose ground truth lies outside the image, is skipped
with the reason (``DetectionError``); it never crashes the run.

Steps:

1. non-maximum suppression per class (``nms``), as configured: IoU threshold and a cap on boxes;
2. matching (``match``): detections in descending score order, each to the unmatched lesion of its
   class with the highest IoU at or above ``iou_threshold`` (or, by ``distance``, the nearest
   centre within ``max_distance``); each lesion is matched once, a second hit on it is a false positive;
3. FROC (``froc``): over every score threshold, sensitivity = matched lesions / lesions, and FP per
   image = false positives / images. The sensitivity at a rate ``f`` is the highest sensitivity of
   any threshold whose FP per image is at most ``f`` (0 when none is); CPM is the mean at
   1/8, 1/4, 1/2, 1, 2, 4 and 8 FP per image (the LUNA16 competition performance metric);
4. intervals: patients resampled with replacement (all images and lesions of a patient together),
   BCa (``stats.bca_intervals``); strata by lesion size, and per subgroup of images.
Plain Python, NumPy and SciPy (no Django).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .disclosure import suppression_reasons
from .metrics import patient_bootstrap_counts
from .stats import bca_intervals

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class DetectionError(ValueError):
    """A case that cannot be evaluated (its ground truth or the model's output), with the reason."""


@dataclass(frozen=True)
class DetectionConfig:
    """How detections are suppressed and matched (stored with the run)."""

    match_by: str = "iou"  # iou | distance
    iou_threshold: float = 0.3
    max_distance: float = 5.0  # pixels or voxels, or mm when a spacing is given
    nms_iou: float = 0.5
    max_detections: int = 100

    def __post_init__(self) -> None:
        if self.match_by not in ("iou", "distance"):
            raise ValueError(f"match_by must be 'iou' or 'distance', not {self.match_by!r}")
        if not 0.0 < self.iou_threshold <= 1.0 or not 0.0 < self.nms_iou <= 1.0:
            raise ValueError("IoU thresholds must lie in (0, 1]")
        if self.max_distance <= 0 or self.max_detections < 1:
            raise ValueError("max_distance must be positive and max_detections at least 1")


@dataclass
class Lesions:
    """The ground truth of one image or volume: boxes ``(n, 2 * dims)`` and their class labels."""

    boxes: np.ndarray
    labels: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        """Each lesion's size: its largest box side (for points with a radius, the diameter)."""
        dims = self.boxes.shape[1] // 2
        return (self.boxes[:, dims:] - self.boxes[:, :dims]).max(axis=1) if len(self.boxes) else np.zeros(0)


@dataclass
class Detections:
    """The model's detections of one image or volume, after the contract check."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


# ---------------------------------------------------------------------------
# Ground truth: CSV or COCO-style JSON
# ---------------------------------------------------------------------------

_BOX_COLUMNS = {2: ("x1", "y1", "x2", "y2"), 3: ("x1", "y1", "z1", "x2", "y2", "z2")}
_POINT_COLUMNS = {2: ("x", "y"), 3: ("x", "y", "z")}


def _point_box(centre: Sequence[float], radius: float) -> list[float]:
    return [c - radius for c in centre] + [c + radius for c in centre]


def ground_truth_from_csv(path: str | Path, class_names: Sequence[str], *, dims: int = 2) -> dict[str, list[tuple[list[float], str]]]:
    """``{case_id: [(box, label), ...]}`` from a CSV with ``case_id``, ``label`` and either box
    columns (``x1, y1[, z1], x2, y2[, z2]``) or a point (``x, y[, z]``, optional ``radius``, else 0).
    A row without a lesion (empty coordinates) lists a case with none. Rows that cannot be read
    raise ``DetectionError`` naming the row."""
    found: dict[str, list[tuple[list[float], str]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            case_id = (row.get("case_id") or "").strip()
            if not case_id:
                raise DetectionError(f"row {number}: no case_id")
            lesions = found.setdefault(case_id, [])
            box_columns, point_columns = _BOX_COLUMNS[dims], _POINT_COLUMNS[dims]
            columns = box_columns if all(c in row for c in box_columns) else point_columns
            cells = [(row.get(c) or "").strip() for c in columns]
            if not any(cells):
                continue
            try:
                numbers = [float(c) for c in cells]
                radius = float(row.get("radius") or 0.0)
            except ValueError:
                raise DetectionError(f"row {number}: coordinates must be numbers, got {', '.join(cells)}") from None
            box = numbers if columns is box_columns else _point_box(numbers, radius)
            lesions.append((box, _class_of(row.get("label"), class_names, number)))
    return found


def ground_truth_from_coco(path: str | Path, class_names: Sequence[str]) -> dict[str, list[tuple[list[float], str]]]:
    """``{file_name: [(box, label), ...]}`` from COCO-style JSON: ``images`` (``id``, ``file_name``),
    ``annotations`` (``image_id``, ``bbox`` ``[x, y, w, h]`` or ``[x, y, z, w, h, d]``,
    ``category_id``) and ``categories`` (``id``, ``name``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    images = {image["id"]: str(image["file_name"]) for image in data.get("images", [])}
    found: dict[str, list[tuple[list[float], str]]] = {name: [] for name in images.values()}
    for number, annotation in enumerate(data.get("annotations", []), start=1):
        if annotation.get("image_id") not in images:
            raise DetectionError(f"annotation {number}: image_id {annotation.get('image_id')!r} is not among the images")
        bbox = [float(v) for v in annotation["bbox"]]
        if len(bbox) not in (4, 6):
            raise DetectionError(f"annotation {number}: bbox needs 4 (2D) or 6 (3D) numbers, got {len(bbox)}")
        dims = len(bbox) // 2
        box = bbox[:dims] + [bbox[i] + bbox[i + dims] for i in range(dims)]
        label = names.get(annotation.get("category_id"), str(annotation.get("category_id")))
        found[images[annotation["image_id"]]].append((box, _class_of(label, class_names, number)))
    return found


def _class_of(label: Any, class_names: Sequence[str], where: int) -> str:
    text = str(label or "").strip()
    if not text and len(class_names) == 1:
        return class_names[0]
    if text not in class_names:
        raise DetectionError(f"row {where}: label {text!r} is not among the class names ({', '.join(class_names)})")
    return text


def checked_lesions(lesions: Sequence[tuple[Sequence[float], str]], class_names: Sequence[str], shape: Sequence[int]) -> Lesions:
    """The lesions of one case as arrays; ``DetectionError`` when a box is inverted or lies outside
    the image (``shape`` in the boxes' axis order: x, y[, z])."""
    dims = len(shape)
    boxes = np.array([list(b) for b, _ in lesions], dtype=np.float64).reshape(len(lesions), 2 * dims)
    _check_boxes(boxes, shape, "ground-truth box")
    labels = np.array([list(class_names).index(label) for _, label in lesions], dtype=np.int64)
    return Lesions(boxes, labels)


def _check_boxes(boxes: np.ndarray, shape: Sequence[int], what: str) -> None:
    dims = len(shape)
    if not np.all(np.isfinite(boxes)):
        raise DetectionError(f"a {what} has a coordinate that is not a finite number")
    low, high = boxes[:, :dims], boxes[:, dims:]
    inverted = np.any(high < low, axis=1)
    if inverted.any():
        raise DetectionError(f"{what} {boxes[np.argmax(inverted)].round(1).tolist()} has an end before its start")
    outside = np.any(low < 0, axis=1) | np.any(high > np.asarray(shape, dtype=np.float64), axis=1)
    if outside.any():
        raise DetectionError(f"{what} {boxes[np.argmax(outside)].round(1).tolist()} lies outside the image ({' x '.join(map(str, shape))})")


def checked_output(boxes: Any, scores: Any, labels: Any, *, n_classes: int, shape: Sequence[int]) -> Detections:
    """The model's output for one case checked against the contract (module docstring); boxes are
    clipped to the image only within half a pixel, otherwise the case is skipped."""
    dims = len(shape)
    arrays = []
    for name, value in (("boxes", boxes), ("scores", scores), ("labels", labels)):
        array = np.asarray(value)
        if array.ndim >= 2 and array.shape[0] == 1 and (name != "boxes" or array.ndim == 3):
            array = array[0]  # a batch axis of 1
        arrays.append(array)
    boxes, scores, labels = arrays
    if boxes.ndim != 2 or boxes.shape[1] != 2 * dims:
        raise DetectionError(f"the model's boxes have shape {list(boxes.shape)}; the contract is [N, {2 * dims}] for {dims}D input")
    if scores.shape != (boxes.shape[0],) or labels.shape != (boxes.shape[0],):
        raise DetectionError(f"the model gave {boxes.shape[0]} boxes, scores of shape {list(scores.shape)} and labels of shape {list(labels.shape)}")
    scores = scores.astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise DetectionError("the model gave a score that is not a finite number")
    if labels.size and (not np.all(np.equal(np.mod(labels, 1), 0)) or labels.min() < 0 or labels.max() >= n_classes):
        raise DetectionError(f"the model gave a label outside 0..{n_classes - 1}")
    boxes = boxes.astype(np.float64)
    clipped = np.clip(boxes, 0.0, np.tile(np.asarray(shape, dtype=np.float64), 2))
    boxes = np.where(np.abs(boxes - clipped) <= 0.5, clipped, boxes)
    _check_boxes(boxes, shape, "detected box")
    return Detections(boxes, scores, labels.astype(np.int64))


# ---------------------------------------------------------------------------
# Suppression and matching
# ---------------------------------------------------------------------------


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``(n, 2d)`` with every box of ``b`` ``(m, 2d)``, 2D or 3D."""
    dims = a.shape[1] // 2
    low = np.maximum(a[:, None, :dims], b[None, :, :dims])
    high = np.minimum(a[:, None, dims:], b[None, :, dims:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    vol_a = np.prod(a[:, dims:] - a[:, :dims], axis=1)
    vol_b = np.prod(b[:, dims:] - b[:, :dims], axis=1)
    union = vol_a[:, None] + vol_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def centres(boxes: np.ndarray) -> np.ndarray:
    dims = boxes.shape[1] // 2
    return (boxes[:, :dims] + boxes[:, dims:]) / 2.0


def nms(detections: Detections, config: DetectionConfig) -> Detections:
    """Greedy non-maximum suppression per class: the best-scoring box stays, boxes overlapping it
    by more than ``config.nms_iou`` go; at most ``config.max_detections`` kept."""
    order = np.argsort(-detections.scores, kind="stable")
    keep: list[int] = []
    overlaps = iou_matrix(detections.boxes, detections.boxes)
    removed = np.zeros(len(order), dtype=bool)
    for i in order:
        if removed[i]:
            continue
        keep.append(int(i))
        if len(keep) == config.max_detections:
            break
        removed |= (overlaps[i] > config.nms_iou) & (detections.labels == detections.labels[i])
    kept = np.array(keep, dtype=np.int64)
    return Detections(detections.boxes[kept].reshape(-1, detections.boxes.shape[1]), detections.scores[kept], detections.labels[kept])


def match(detections: Detections, lesions: Lesions, config: DetectionConfig, spacing: Sequence[float] | None = None) -> np.ndarray:
    """The lesion each detection found (its index), -1 for a false positive; greedy by score,
    each lesion matched once (module docstring, step 2). ``spacing`` scales centre distances to mm."""
    matched = np.full(len(detections.scores), -1, dtype=np.int64)
    if not len(lesions.boxes) or not len(detections.scores):
        return matched
    same_class = detections.labels[:, None] == lesions.labels[None, :]
    if config.match_by == "iou":
        quality = iou_matrix(detections.boxes, lesions.boxes)
        allowed = same_class & (quality >= config.iou_threshold)
    else:
        scale = np.ones(detections.boxes.shape[1] // 2) if spacing is None else np.asarray(spacing, dtype=np.float64)
        distance = np.linalg.norm((centres(detections.boxes)[:, None, :] - centres(lesions.boxes)[None, :, :]) * scale, axis=2)
        quality = -distance
        allowed = same_class & (distance <= config.max_distance)
    taken = np.zeros(len(lesions.boxes), dtype=bool)
    for i in np.argsort(-detections.scores, kind="stable"):
        candidates = allowed[i] & ~taken
        if candidates.any():
            best = int(np.argmax(np.where(candidates, quality[i], -np.inf)))
            matched[i] = best
            taken[best] = True
    return matched


# ---------------------------------------------------------------------------
# FROC
# ---------------------------------------------------------------------------


@dataclass
class MatchedCase:
    """One evaluated image or volume: its detections' scores and what each found."""

    case_id: str
    patient_id: str
    scores: np.ndarray
    lesion_of: np.ndarray  # per detection: the lesion index, -1 for a false positive
    n_lesions: int
    lesion_sizes: np.ndarray
    attributes: dict[str, str] = field(default_factory=dict)
    labels: np.ndarray | None = None  # per detection its class index (drift compares each class's scores)
    lesion_labels: np.ndarray | None = None  # per lesion its class index


@dataclass
class _Pooled:
    """Detections of many cases sorted by descending score, with per-patient indices."""

    scores: np.ndarray
    tp: np.ndarray  # counts as a found lesion (in the stratum)
    fp: np.ndarray
    patient: np.ndarray
    lesions_per_patient: np.ndarray
    images_per_patient: np.ndarray


def _pool(cases: Sequence[MatchedCase], size_range: tuple[float, float] | None = None) -> _Pooled:
    _, patient_of = np.unique(np.asarray([c.patient_id for c in cases], dtype=str), return_inverse=True)
    n_patients = int(patient_of.max()) + 1 if len(cases) else 0
    scores, tp, fp, patient = [], [], [], []
    lesions = np.zeros(n_patients)
    images = np.zeros(n_patients)
    for case, p in zip(cases, patient_of, strict=True):
        in_stratum = np.ones(case.n_lesions, dtype=bool)
        if size_range is not None:
            in_stratum = (case.lesion_sizes >= size_range[0]) & (case.lesion_sizes < size_range[1])
        hit = case.lesion_of >= 0
        counts = np.zeros(len(case.scores), dtype=bool)
        counts[hit] = in_stratum[case.lesion_of[hit]]
        keep = ~hit | counts  # a hit on a lesion of another size is neither found nor a false positive
        scores.append(case.scores[keep])
        tp.append(counts[keep])
        fp.append(~hit[keep])
        patient.append(np.full(int(keep.sum()), p))
        lesions[p] += int(in_stratum.sum())
        images[p] += 1
    order_scores = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(-order_scores, kind="stable")
    return _Pooled(
        order_scores[order],
        np.concatenate(tp)[order].astype(np.float64) if tp else np.zeros(0),
        np.concatenate(fp)[order].astype(np.float64) if fp else np.zeros(0),
        np.concatenate(patient)[order].astype(np.int64) if patient else np.zeros(0, dtype=np.int64),
        lesions,
        images,
    )


def _sensitivities(pooled: _Pooled, weights: np.ndarray, rates: Sequence[float]) -> np.ndarray:
    """Sensitivity at each FP rate for each row of patient ``weights`` ``(k, patients)``: ``(k, rates)``.

    Thresholds sit only between distinct scores (tied detections enter together)."""
    per_detection = weights[:, pooled.patient]
    cum_tp = np.cumsum(per_detection * pooled.tp, axis=1)
    cum_fp = np.cumsum(per_detection * pooled.fp, axis=1)
    ends = np.r_[pooled.scores[1:] != pooled.scores[:-1], True] if len(pooled.scores) else np.zeros(0, dtype=bool)
    cum_tp = np.concatenate([np.zeros((len(weights), 1)), cum_tp[:, ends]], axis=1)
    cum_fp = np.concatenate([np.zeros((len(weights), 1)), cum_fp[:, ends]], axis=1)
    lesions = weights @ pooled.lesions_per_patient
    images = weights @ pooled.images_per_patient
    out = np.empty((len(weights), len(rates)))
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, rate in enumerate(rates):
            allowed = cum_fp <= rate * images[:, None] + 1e-9
            # cum_tp rises with cum_fp: the last allowed threshold has the highest sensitivity
            last = allowed.shape[1] - 1 - np.argmax(allowed[:, ::-1], axis=1)
            out[:, j] = np.where(lesions > 0, cum_tp[np.arange(len(weights)), last] / lesions, np.nan)
    return out


@dataclass(frozen=True)
class FrocResult:
    """The FROC of a set of cases: sensitivity at each FP rate and CPM, with intervals."""

    n_cases: int
    n_patients: int
    n_lesions: int
    n_detections: int
    rates: tuple[float, ...]
    sensitivity: tuple[float | None, ...]
    low: tuple[float | None, ...]
    high: tuple[float | None, ...]
    cpm: float | None
    cpm_low: float | None
    cpm_high: float | None
    curve: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        def r(values):
            return [None if v is None else round(v, 4) for v in values]

        return {
            "n_cases": self.n_cases,
            "n_patients": self.n_patients,
            "n_lesions": self.n_lesions,
            "n_detections": self.n_detections,
            "fp_per_image": list(self.rates),
            "sensitivity": r(self.sensitivity),
            "low": r(self.low),
            "high": r(self.high),
            "cpm": {"value": r([self.cpm])[0], "low": r([self.cpm_low])[0], "high": r([self.cpm_high])[0]},
            "curve": self.curve,
        }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def froc(
    cases: Sequence[MatchedCase],
    *,
    rates: Sequence[float] = FP_RATES,
    size_range: tuple[float, float] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_points: int = 201,
) -> FrocResult:
    """The FROC of ``cases`` (module docstring, steps 3 and 4), lesions limited to ``size_range``."""
    pooled = _pool(cases, size_range)
    n_patients = len(pooled.images_per_patient)
    ones = np.ones((1, n_patients))
    curve_rates = np.asarray(rates, dtype=np.float64)
    point = _sensitivities(pooled, ones, curve_rates)[0]
    cpm = float(np.mean(point)) if np.all(np.isfinite(point)) else np.nan
    low = high = np.full(len(rates) + 1, np.nan)
    if n_patients >= 2 and n_resamples > 0:
        weights = patient_bootstrap_counts(np.random.default_rng(seed), n_patients, n_resamples)
        samples = _sensitivities(pooled, weights, curve_rates)
        jack = _sensitivities(pooled, 1.0 - np.eye(n_patients), curve_rates)
        stats = np.c_[samples, samples.mean(axis=1)].T
        jackknife = np.c_[jack, jack.mean(axis=1)].T
        low, high, _ = bca_intervals(np.r_[point, cpm], stats, jackknife, n_patients, confidence)
    return FrocResult(
        n_cases=len(cases),
        n_patients=n_patients,
        n_lesions=int(pooled.lesions_per_patient.sum()),
        n_detections=len(pooled.scores),
        rates=tuple(float(r) for r in rates),
        sensitivity=tuple(_finite(v) for v in point),
        low=tuple(_finite(v) for v in low[:-1]),
        high=tuple(_finite(v) for v in high[:-1]),
        cpm=_finite(cpm),
        cpm_low=_finite(low[-1]),
        cpm_high=_finite(high[-1]),
        curve=froc_curve(pooled, max_points),
    )


def patient_order(cases: Sequence[MatchedCase]) -> np.ndarray:
    """The cases' patients in the order ``froc_weighted`` takes their weights (sorted ids)."""
    return np.unique(np.asarray([c.patient_id for c in cases], dtype=str))


def froc_weighted(cases: Sequence[MatchedCase], weights: np.ndarray, rates: Sequence[float] = FP_RATES) -> np.ndarray:
    """Sensitivity at each FP rate under each row of patient ``weights`` ``(k, patients)``, patients
    in ``patient_order``: ``(k, rates)``, NaN where a row weighs no lesion. What a paired or
    stratified bootstrap of the FROC (robustness, drift) evaluates on each resample."""
    return _sensitivities(_pool(cases), np.atleast_2d(weights), rates)


def froc_curve(pooled: _Pooled, max_points: int = 201) -> dict[str, list[float]]:
    """The FROC curve's points (FP per image, sensitivity) at every distinct threshold, thinned."""
    lesions, images = pooled.lesions_per_patient.sum(), pooled.images_per_patient.sum()
    if lesions == 0 or images == 0:
        return {"fp_per_image": [], "sensitivity": []}
    ends = np.r_[pooled.scores[1:] != pooled.scores[:-1], True] if len(pooled.scores) else np.zeros(0, dtype=bool)
    fp = np.r_[0.0, np.cumsum(pooled.fp)[ends] / images]
    sens = np.r_[0.0, np.cumsum(pooled.tp)[ends] / lesions]
    if fp.size > max_points:
        keep = np.unique(np.linspace(0, fp.size - 1, max_points).round().astype(int))
        fp, sens = fp[keep], sens[keep]
    return {"fp_per_image": [round(float(v), 4) for v in fp], "sensitivity": [round(float(v), 4) for v in sens]}


SIZE_EDGES = (0.0, 6.0, 10.0, 20.0, float("inf"))
"""Lesion-size strata (largest box side, pixels or mm): the LUNA16 / Lung-RADS nodule sizes."""


def detection_report(
    cases: Sequence[MatchedCase],
    *,
    attributes: Sequence[str] = (),
    size_edges: Sequence[float] = SIZE_EDGES,
    min_patients: int = 10,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Overall FROC, per lesion-size stratum and per subgroup of ``attributes``: groups with fewer
    than ``min_patients`` patients, and those withheld so that the others do not give their count
    away, are listed as suppressed with the reason and no count."""
    run = {"n_resamples": n_resamples, "seed": seed, "confidence": confidence}
    overall = froc(cases, **run)
    strata = []
    for low, high in zip(size_edges[:-1], size_edges[1:], strict=True):
        name = f"{low:g} to {high:g}" if np.isfinite(high) else f"{low:g} and above"
        strata.append({"size": name, **froc(cases, size_range=(low, high), **run).to_dict()})
    subgroups = []
    cells = [(attribute, value) for attribute in attributes for value in sorted({c.attributes.get(attribute) or "unknown" for c in cases})]
    members = [[c for c in cases if (c.attributes.get(attribute) or "unknown") == value] for attribute, value in cells]
    reasons = _suppression(cases, cells, members, attributes, min_patients)
    for (attribute, value), group, reason in zip(cells, members, reasons, strict=True):
        entry: dict[str, Any] = {"attribute": attribute, "value": value}
        if reason is not None:  # no count of a suppressed group is published (disclosure rules)
            entry.update(suppressed=True, reason=reason)
        else:
            entry.update(suppressed=False, **froc(group, **run).to_dict())
        subgroups.append(entry)
    return {"overall": overall.to_dict(), "size_strata": strata, "subgroups": subgroups}


def _suppression(
    cases: Sequence[MatchedCase], cells: list[tuple[str, str]], members: list[list[MatchedCase]], attributes: Sequence[str], minimum: int
) -> list[str | None]:
    """Why each subgroup is suppressed (None: shown): fewer than ``minimum`` patients, or withheld so
    that the overall and the shown groups do not give its count away (``disclosure.suppression_reasons``)."""
    if not cells:
        return []
    patient_index = {p: i for i, p in enumerate(sorted({c.patient_id for c in cases}))}
    groups = [list(cases), *members]
    keys = [((), ()), *[((a,), (v,)) for a, v in cells]]
    patients = {"n": [np.asarray([patient_index[c.patient_id] for c in g], dtype=np.int64) for g in groups]}
    counts = {"n": np.asarray([len(g) for g in groups], dtype=np.float64)}
    groupings = [(), *[(a,) for a in attributes]]
    return suppression_reasons(keys, groupings, patients, counts, minimum)[1:]


# ---------------------------------------------------------------------------
# A model over a set of images or volumes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionCase:
    """One image or volume to evaluate: how to read its pixels, its ground truth and its attributes."""

    case_id: str
    patient_id: str
    read: Callable[[], np.ndarray]  # the model's input: (1, 1, height, width) or (1, 1, depth, height, width)
    lesions: Sequence[tuple[Sequence[float], str]]
    attributes: Mapping[str, str] = field(default_factory=dict)
    spacing: Sequence[float] | None = None  # mm per pixel (voxel) in box axis order, for distance matching


def match_cases(
    cases: Iterable[DetectionCase],
    forward: Callable[[np.ndarray], Sequence[np.ndarray]],
    class_names: Sequence[str],
    config: DetectionConfig,
    *,
    on_match: Callable[[DetectionCase, np.ndarray, Lesions, MatchedCase], None] | None = None,
) -> tuple[list[MatchedCase], list[dict[str, str]]]:
    """Run ``forward`` (an input array to the ``(boxes, scores, labels)`` outputs) on every case,
    check the contract, suppress and match: the matched cases, and those skipped with their reason
    (ground truth or output breaking the rules). ``cases`` is read once, in order: a generator
    keeps one case's pixels in memory at a time; ``on_match`` sees each matched case while its
    pixels are still there (the robustness analysis perturbs them)."""
    matched, skipped = [], []
    for case in cases:
        try:
            pixels = np.asarray(case.read())
            if pixels.ndim not in (4, 5):
                raise DetectionError(
                    f"the model's input has shape {list(pixels.shape)}; it needs (1, 1, height, width) or (1, 1, depth, height, width)"
                )
            shape = tuple(int(n) for n in pixels.shape[2:])[::-1]  # boxes are x, y[, z]: the reverse of the array's axes
            lesions = checked_lesions(case.lesions, class_names, shape)
            found = detect(pixels, forward, len(class_names), config)
        except DetectionError as exc:
            skipped.append({"case_id": case.case_id, "reason": str(exc)})
            continue
        result = matched_case(case, found, lesions, config)
        matched.append(result)
        if on_match is not None:
            on_match(case, pixels, lesions, result)
    return matched, skipped


def detect(pixels: np.ndarray, forward: Callable[[np.ndarray], Sequence[np.ndarray]], n_classes: int, config: DetectionConfig) -> Detections:
    """The model's detections of one input, checked against the contract and suppressed;
    ``DetectionError`` when the output breaks the contract."""
    shape = tuple(int(n) for n in pixels.shape[2:])[::-1]
    outputs = forward(pixels)
    if len(outputs) < 3:
        raise DetectionError(f"the model gave {len(outputs)} output(s); the contract is boxes, scores and labels")
    return nms(checked_output(*outputs[:3], n_classes=n_classes, shape=shape), config)


def matched_case(case: DetectionCase, found: Detections, lesions: Lesions, config: DetectionConfig) -> MatchedCase:
    """One case's detections matched to its lesions (step 2), as the FROC takes them."""
    lesion_of = match(found, lesions, config, case.spacing)
    return MatchedCase(
        case.case_id,
        case.patient_id,
        found.scores,
        lesion_of,
        len(lesions.boxes),
        lesions.sizes,
        dict(case.attributes),
        labels=found.labels,
        lesion_labels=lesions.labels,
    )


def evaluate_detection(
    cases: Iterable[DetectionCase],
    forward: Callable[[np.ndarray], Sequence[np.ndarray]],
    class_names: Sequence[str],
    config: DetectionConfig,
    *,
    attributes: Sequence[str] = (),
    size_edges: Sequence[float] = SIZE_EDGES,
    min_patients: int = 10,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """``match_cases``, then the report (``detection_report``) with the configuration and the
    skipped cases; ``DetectionError`` when no case is left."""
    matched, skipped = match_cases(cases, forward, class_names, config)
    if not matched:
        reasons = "; ".join(f"{s['case_id']}: {s['reason']}" for s in skipped[:3])
        raise DetectionError(f"no case could be evaluated ({len(skipped)} skipped: {reasons})")
    report = detection_report(
        matched, attributes=attributes, size_edges=size_edges, min_patients=min_patients, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
    return {**report, "config": config_dict(config), "skipped": skipped}


def config_dict(config: DetectionConfig) -> dict[str, Any]:
    """The configuration as stored with the run's detection section."""
    return {k: getattr(config, k) for k in config.__dataclass_fields__}
