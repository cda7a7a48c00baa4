"""A validation run of a lesion detector (task ``detection``), on 2D images or 3D volumes.

The manifest lists one image or volume per row (``image_path``: a DICOM, PNG, NPY or NIfTI image;
a DICOM series folder or a NIfTI file is read as a volume), the patient and the usual attributes,
and in ``annotations`` the ground-truth file holding its lesions (rows may share one file): a CSV
(``case_id``, ``label``, boxes ``x1, y1[, z1], x2, y2[, z2]`` or points ``x, y[, z]`` with an optional
``radius``) or COCO-style JSON (``images``, ``annotations``, ``categories``), in the image's pixel
(voxel) coordinates as read. A case's id there is its ``image_path`` as the manifest writes it; a
case with no lesion is listed without coordinates (CSV) or without annotations (COCO).

Stages (``radtrust_engine.pipeline`` dispatches here):

1. ``inference``: each case is read (2D: ``images.load_image`` and the preprocessing spec; 3D:
   ``pipeline_volumes.read_volume``, the spec's intensity steps and, when the version gives a
   spacing, resampling to it), its lesions scaled to the model's input grid, and the model run;
   its outputs checked against the contract, suppressed and matched
   (``detection.match_cases``); one case in memory at a time.
2. ``metrics``: the FROC with patient-level BCa intervals, the sensitivity at 1/8 to 8 false
   positives per image and CPM, per lesion-size stratum and per subgroup (groups under the suite's
   ``min_patients`` suppressed); the detection scores' calibration (is a detection with score p
   a true lesion with probability p?) when the scores are probabilities.
   With ``robustness`` among the suite's analyses, a sample of cases is perturbed while it is in
   memory for stage 1 and its FROC change reported (``detection_robustness``); with ``drift``,
   the run's case table (each case's highest scores, its detections, its image statistics as
   read) is compared with the baseline run's (``detection_drift``).
3. readers: ``reader:<name>:<class>`` columns (0/1: the reader saw a lesion of the class in the
   case) give the readers' agreement and, for a one-class model, the model's case-level call (its
   highest score at the class's threshold) among them (``readers.reader_report``).

A case whose image, ground truth or output cannot be used is skipped with its reason; the run
fails (``UnreadableImages``) only when no case is left. Plain Python (no Django).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radtrust_engine.baseline import Baseline
from radtrust_engine.detection import (
    DetectionCase,
    DetectionError,
    MatchedCase,
    config_dict,
    detection_report,
    ground_truth_from_coco,
    ground_truth_from_csv,
    match_cases,
)
from radtrust_engine.detection_drift import detection_case_table
from radtrust_engine.detection_robustness import PerturbedDetections, detection_robustness_report
from radtrust_engine.drift import IMAGE_FEATURES, image_summary
from radtrust_engine.images import ImageError, load_image
from radtrust_engine.loading import Manifest
from radtrust_engine.pipeline import Evaluation, Progress, SuiteConfig, UnreadableImages, calibration_section, case_strata, drift_section, kept_sample
from radtrust_engine.pipeline_volumes import (
    READER_MASK,
    inside,
    is_volume_path,
    model_refused,
    nothing_evaluated,
    read_volume,
    skipped_rows,
    task_evaluation,
    volume_tensor,
)
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.readers import reader_report
from radtrust_engine.runner import ModelSession
from radtrust_engine.task_spec import GROUND_TRUTH_COLUMNS, TaskSpec
from radtrust_engine.volumes import MAX_VOXELS, VolumeError, resample

ANNOTATIONS_COLUMN = GROUND_TRUTH_COLUMNS["detection"]
Lesion = tuple[list[float], str]


class _GroundTruth:
    """The annotation files a manifest names, each read once; a file that cannot be read skips its cases."""

    def __init__(self, manifest: Manifest, class_names: Sequence[str]):
        self.manifest = manifest
        self.class_names = list(class_names)
        self.files: dict[str, dict[str, list[Lesion]] | DetectionError] = {}

    def lesions(self, index: int) -> list[Lesion]:
        relative = self.manifest.mask_paths[index]
        if relative not in self.files:
            self.files[relative] = self._read(relative)
        found = self.files[relative]
        if isinstance(found, DetectionError):
            raise found
        case_id = self.manifest.image_paths[index]
        if case_id not in found:
            raise DetectionError(
                f"the annotations file {relative} does not list this case (list a case without lesions with empty coordinates, "
                "or as an image without annotations)"
            )
        return found[case_id]

    def _read(self, relative: str) -> dict[str, list[Lesion]] | DetectionError:
        try:
            path = inside(self.manifest, relative)
            if relative.lower().endswith(".json"):
                return {_normal(k): v for k, v in ground_truth_from_coco(path, self.class_names).items()}
            if relative.lower().endswith(".csv"):
                return {_normal(k): v for k, v in ground_truth_from_csv(path, self.class_names, dims=_csv_dims(path)).items()}
            return DetectionError(f"annotations {relative}: give a CSV (.csv) or COCO-style JSON (.json) file")
        except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:  # DetectionError and JSON errors are ValueErrors
            problem = str(exc) if isinstance(exc, (DetectionError, VolumeError)) else f"cannot be read ({type(exc).__name__})"
            return DetectionError(f"annotations {relative}: {problem}")


def _normal(case_id: str) -> str:
    return str(Path(case_id)) if case_id else case_id


def _csv_dims(path: Path) -> int:
    """3 when the CSV's header has a z coordinate (``z1`` or ``z``), else 2."""
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    return 3 if {"z", "z1"} & {c.strip() for c in header} else 2


def _scaled(lesions: list[Lesion], factors: Sequence[float]) -> list[Lesion]:
    """Boxes from the image's grid as read to the model's input grid (``factors`` in box axis order x, y[, z])."""
    twice = [*factors, *factors]
    return [([c * f for c, f in zip(box, twice, strict=True)], label) for box, label in lesions]


def _read_case(
    manifest: Manifest, index: int, preprocessing: Preprocessing, spec: TaskSpec, truth: _GroundTruth
) -> tuple[np.ndarray, list[Lesion], tuple[float, ...] | None, tuple[float, ...]]:
    """The model's input for one case with a batch axis, its lesions on that grid, the grid's
    spacing in box axis order (mm; None for a 2D image, whose distances are in pixels), and the
    statistics of the image as read (``drift.IMAGE_FEATURES``, what input drift compares)."""
    path = inside(manifest, manifest.image_paths[index])
    volume_settings = spec.volume
    if is_volume_path(path):
        volume = read_volume(path, max_voxels=volume_settings.max_voxels if volume_settings else MAX_VOXELS)
        lesions = truth.lesions(index)
        _check_dims(lesions, 3)
        grid = volume if volume_settings is None or volume_settings.spacing is None else resample(volume, volume_settings.spacing)
        tensor = volume_tensor(preprocessing, grid.array)
        factors = [n / m for n, m in zip(grid.array.shape, volume.array.shape, strict=True)][::-1]
        return tensor[None, None], _scaled(lesions, factors), tuple(grid.spacing[::-1]), image_summary(volume.array)
    try:
        image = load_image(path, preprocessing)
        tensor = preprocessing.apply(image.array)
    except ImageError as exc:
        raise VolumeError(exc.reason) from None
    except ValueError as exc:
        raise VolumeError(f"preprocessing: {exc}") from None
    lesions = truth.lesions(index)
    _check_dims(lesions, 2)
    height, width = _plane(image.array.shape)
    return tensor[None], _scaled(lesions, (tensor.shape[2] / width, tensor.shape[1] / height)), None, image_summary(image.array)


def _check_dims(lesions: list[Lesion], dims: int) -> None:
    for box, _ in lesions:
        if len(box) != 2 * dims:
            raise DetectionError(f"a ground-truth box has {len(box)} coordinates; a {dims}D case needs {2 * dims}")


def _plane(shape: Sequence[int]) -> tuple[int, int]:
    """(height, width) of a 2D image as read: (H, W), (H, W, 3|4) or (1|3, H, W)."""
    if len(shape) == 3 and shape[-1] not in (3, 4) and shape[0] in (1, 3):
        return int(shape[1]), int(shape[2])
    return int(shape[0]), int(shape[1])


def evaluate_detection_run(
    model: ModelSession,
    manifest: Manifest,
    *,
    spec: TaskSpec,
    class_names: Sequence[str],
    thresholds: Mapping[str, float],
    preprocessing: Preprocessing,
    config: SuiteConfig,
    activation: str = "none",
    progress: Progress | None = None,
    modality: str = "",
    baseline: Baseline | None = None,
) -> Evaluation:
    """Detect, match and report on every case of ``manifest`` (module docstring); ``modality``
    chooses the robustness perturbations, ``baseline`` is the run drift is measured against."""
    if manifest.mask_paths is None:
        raise UnreadableImages(f"a detection run needs a manifest with an {ANNOTATIONS_COLUMN!r} column naming each case's ground-truth file")
    truth = _GroundTruth(manifest, class_names)
    total = len(manifest)
    all_rows = np.arange(total)
    strata, _ = case_strata(manifest, all_rows, config)
    row_of = {path: i for i, path in enumerate(manifest.image_paths)}
    unread: list[dict[str, str]] = []
    stats: dict[str, tuple[float, ...]] = {}

    def cases() -> Iterator[DetectionCase]:
        for index, path in enumerate(manifest.image_paths):
            if progress:
                progress("inference", index / total)
            try:
                pixels, lesions, spacing, stats[path] = _read_case(manifest, index, preprocessing, spec, truth)
            except (VolumeError, DetectionError) as exc:  # DetectionError is not a VolumeError: both ValueErrors, caught apart
                unread.append({"case_id": path, "reason": str(exc)})
                continue
            attributes = {name: str(values[index]) for name, values in strata.items() if values[index]}
            yield DetectionCase(path, manifest.patient_ids[index], lambda pixels=pixels: pixels, lesions, attributes, spacing)

    names = _output_names(model)

    def forward(pixels: np.ndarray) -> list[np.ndarray]:
        try:
            return model.forward(pixels, names)
        except Exception as exc:  # ONNX Runtime's own errors (an input the graph refuses): this case is skipped
            raise DetectionError(model_refused(exc, pixels.shape)) from None

    perturbed = None
    if "robustness" in config.analyses:
        sample = frozenset(manifest.image_paths[r] for r in kept_sample(total, config))
        perturbed = PerturbedDetections(forward, len(class_names), spec.detection, modality, config.seed, sample)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    matched, refused = match_cases(cases(), forward, class_names, spec.detection, on_match=perturbed.observe if perturbed else None)
    timings["inference"] = time.perf_counter() - started
    passes = {"inference": model.forward_passes}
    if perturbed is not None:
        timings["inference"] -= perturbed.seconds
        timings["robustness"] = perturbed.seconds
        passes = {"inference": model.forward_passes - perturbed.forward_passes, "robustness": perturbed.forward_passes}
    skipped = skipped_rows(manifest, sorted([*unread, *refused], key=lambda s: row_of[s["case_id"]]), row_of)
    if not matched:
        raise nothing_evaluated(skipped, total)

    started = time.perf_counter()
    if progress:
        progress("metrics", 0.0)
    section = detection_report(
        matched,
        attributes=list(strata),
        min_patients=config.min_patients,
        n_resamples=config.n_resamples,
        seed=config.seed,
        confidence=config.confidence,
    )
    section["config"] = config_dict(spec.detection)
    section["dimensions"] = _dimensions(manifest, matched)
    section["calibration"] = _score_calibration(matched, config)
    if perturbed is not None:
        section["robustness"] = detection_robustness_report(perturbed, n_resamples=config.n_resamples, seed=config.seed, confidence=config.confidence)
    rows = np.asarray(sorted(row_of[c.case_id] for c in matched), dtype=np.int64)
    readers = _readers(manifest, matched, class_names, thresholds, config)
    timings["metrics"] = time.perf_counter() - started
    table = detection_case_table(matched, class_names, {name: [stats[c.case_id][j] for c in matched] for j, name in enumerate(IMAGE_FEATURES)})
    sections: dict[str, Any] = {"detection": section, "readers": readers}
    if "drift" in config.analyses:
        started = time.perf_counter()
        sections["drift"] = drift_section(table, baseline, thresholds, config)
        timings["drift"] = time.perf_counter() - started
    return task_evaluation(
        model,
        manifest,
        task="detection",
        rows=rows,
        skipped=skipped,
        config=config,
        preprocessing=preprocessing,
        activation=activation,
        timings=timings,
        sections=sections,
        cases=table,
        passes=passes,
    )


def _output_names(model: ModelSession) -> list[str]:
    """The outputs named ``boxes``, ``scores`` and ``labels`` in that order when the model has them, else its first three."""
    wanted = ["boxes", "scores", "labels"]
    return wanted if all(n in model.output_names for n in wanted) else list(model.output_names[:3])


def _dimensions(manifest: Manifest, matched: Sequence[MatchedCase]) -> str:
    """``2D``, ``3D`` or ``2D and 3D``: what the evaluated cases were."""
    kinds = {"3D" if is_volume_path(manifest.root / c.case_id) else "2D" for c in matched}
    return " and ".join(sorted(kinds))


def _score_calibration(matched: Sequence[MatchedCase], config: SuiteConfig) -> dict[str, Any]:
    """Calibration of the detection scores against being a true lesion (after suppression); the
    reason instead when the scores are not probabilities or cannot be assessed."""
    scores = np.concatenate([c.scores for c in matched]) if matched else np.zeros(0)
    if scores.size == 0:
        return {"error": "the model made no detection"}
    if scores.min() < 0 or scores.max() > 1:
        return {"error": "the detection scores are not probabilities (outside 0 to 1): calibration does not apply"}
    hits = np.concatenate([c.lesion_of >= 0 for c in matched]).astype(np.int64)
    patients = np.concatenate([np.full(len(c.scores), c.patient_id, dtype=object) for c in matched]).astype(str)
    return calibration_section(hits, scores, patients, config)


def _readers(
    manifest: Manifest, matched: Sequence[MatchedCase], class_names: Sequence[str], thresholds: Mapping[str, float], config: SuiteConfig
) -> dict[str, Any] | None:
    """The readers' agreement on lesion presence per case, and a one-class model's case-level call among them."""
    cells = {c: v for c, v in (manifest.reader_cells or {}).items() if not c.endswith(f":{READER_MASK}")}  # label volumes are not 0/1 calls
    if not cells:
        return None
    scores: dict[str, dict[str, float]] = {}
    if len(class_names) == 1:
        scores[class_names[0]] = {c.case_id: float(c.scores.max()) if c.scores.size else 0.0 for c in matched}
    return reader_report(cells, manifest.image_paths, manifest.patient_ids, scores, thresholds, n_resamples=config.n_resamples, seed=config.seed)
