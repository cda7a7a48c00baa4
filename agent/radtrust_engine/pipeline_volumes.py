"""A validation run of a 3D segmentation model (task ``volume_segmentation``), and what detection
runs share with it: reading a volume of the manifest and assembling the run's report.

The manifest lists one volume per row (``image_path``: a DICOM series folder or a NIfTI file) with
its ground-truth label volume (``mask_path``: NIfTI on the volume's grid, 0 background, ``k`` the
``k``-th class name), the patient and the usual attributes; readers' label volumes may sit in
``reader:<name>:mask`` columns. Stages (``radtrust_engine.pipeline`` dispatches here):

1. ``inference``: each volume is read (``read_volume``: series checks, the size limit), its
   intensities set by the version's preprocessing spec (window, normalise; ``volume_tensor``),
   resampled to the model's spacing and segmented window by window with Gaussian blending
   (``volumes.segment_volume``): one volume in memory at a time.
2. ``metrics``: per volume and structure Dice, HD95, surface Dice and the volume error; per
   structure their means with patient-level BCa intervals (``volumes.evaluate_volumes``).
3. readers: with two or more readers' label volumes, the mean inter-reader Dice per structure,
   the ceiling the model's Dice is read against (``readers.dice_ceiling``).

A volume that cannot be used (missing slices, uneven spacing, a mixed series, above the size limit,
a mask of another shape) is skipped and listed with its reason; the run fails
(``UnreadableImages``) only when no volume is left. Plain Python (no Django).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radtrust_engine.baseline import CaseTable
from radtrust_engine.loading import Manifest
from radtrust_engine.paths import PathRefused, resolve_within
from radtrust_engine.pipeline import ENGINE_VERSION, Evaluation, Progress, SuiteConfig, UnreadableImages, case_strata, dataset_info, drift_section
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.readers import READER_PREFIX, dice_ceiling
from radtrust_engine.report import ImageConversions, RunReport, SkippedImage
from radtrust_engine.runner import ModelSession
from radtrust_engine.task_spec import VolumeSpec
from radtrust_engine.volumes import Volume, VolumeCase, VolumeError, VolumeSettings, evaluate_volumes, read_dicom_series, read_nifti

NIFTI_SUFFIXES = (".nii", ".nii.gz")
READER_MASK = "mask"  # reader columns ``reader:<name>:mask`` hold each reader's label volume


def is_volume_path(path: Path) -> bool:
    """A DICOM series folder or a NIfTI file: read as a volume, not as a 2D image."""
    return path.is_dir() or path.name.lower().endswith(NIFTI_SUFFIXES)


def read_volume(path: Path, *, max_voxels: int) -> Volume:
    """The volume at ``path``: every file of a folder as one DICOM series, or a NIfTI file;
    ``VolumeError`` with the reason otherwise (the case is skipped)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return read_dicom_series(files, max_voxels=max_voxels)
    if not path.exists():
        raise VolumeError("no file or folder at this path")
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise VolumeError("a volume is a DICOM series folder or a NIfTI file (.nii, .nii.gz)")
    return read_nifti(path, max_voxels=max_voxels)


def read_label_volume(path: Path, shape: Sequence[int], *, max_voxels: int) -> np.ndarray:
    """A label volume (NIfTI, whole numbers) on a volume's grid of ``shape`` (z, y, x)."""
    labels = read_volume(path, max_voxels=max_voxels).array
    if labels.shape != tuple(shape):
        raise VolumeError(f"the label volume {list(labels.shape)} and the volume {list(shape)} differ in shape (z, y, x)")
    if not np.all(np.equal(np.mod(labels, 1), 0)) or labels.min() < 0:
        raise VolumeError("a label volume holds whole numbers: 0 background, k the k-th class")
    return labels.astype(np.int16)


def volume_tensor(preprocessing: Preprocessing, array: np.ndarray) -> np.ndarray:
    """The spec's intensity steps (window, normalise) on a whole volume ``(z, y, x)``; its resize is
    not applied (a 3D model sees the volume at its spacing, through windows)."""
    return preprocessing_for(preprocessing, array.shape).apply(array)[0]


def preprocessing_for(preprocessing: Preprocessing, shape: Sequence[int]) -> Preprocessing:
    """The spec as a volume spec of ``shape``: its resize leaves the volume as it is."""
    return dataclasses.replace(preprocessing, resize=tuple(int(n) for n in shape), channels=None, frames="refuse")


def inside(manifest: Manifest, relative: str) -> Path:
    """A path named in the manifest, if it stays inside the dataset folder; ``VolumeError`` otherwise."""
    try:
        resolve_within(manifest.root / relative, [manifest.root])
    except PathRefused:
        raise VolumeError("the path resolves outside the dataset folder") from None
    return manifest.root / relative


def skipped_rows(manifest: Manifest, skipped: Sequence[Mapping[str, str]], rows: Mapping[str, int]) -> list[SkippedImage]:
    """The engine's skipped cases (``case_id``, ``reason``) as the report's list, by manifest row."""
    return [SkippedImage(row=rows[s["case_id"]] + 1, image_path=s["case_id"], reason=s["reason"]) for s in skipped]


def model_refused(exc: Exception, shape: Sequence[int]) -> str:
    """Why the model could not run on an input: its shape and the runtime's first line, shortened."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"the model could not run on an input of shape {list(shape)} ({type(exc).__name__}: {first})"


def nothing_evaluated(skipped: Sequence[SkippedImage], total: int) -> UnreadableImages:
    """The run's failure when every case was skipped: how many, and the first reasons."""
    shown = "; ".join(f"row {s.row} ({s.image_path}): {s.reason}" for s in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return UnreadableImages(f"none of the {total} case(s) could be evaluated: {shown}{more}")


def task_evaluation(
    model: ModelSession,
    manifest: Manifest,
    *,
    task: str,
    rows: np.ndarray,
    skipped: Sequence[SkippedImage],
    config: SuiteConfig,
    preprocessing: Preprocessing,
    activation: str,
    timings: dict[str, float],
    sections: Mapping[str, Any],
    cases: CaseTable | None = None,
    passes: Mapping[str, int] | None = None,
) -> Evaluation:
    """The run's report for a detection or volume run: the dataset evaluated, the skipped cases,
    the model's forward passes (by stage: all in ``inference`` unless ``passes`` splits them), the
    task's own ``sections`` (``detection``, ``volumes``, ``readers``, ``drift``) and the case table
    a later run's drift is measured against (detection runs)."""
    _, missing = case_strata(manifest, rows, config)
    run_report = RunReport(
        engine_version=ENGINE_VERSION,
        task=task,
        config=config.to_dict(),
        preprocessing=preprocessing.to_dict(),
        activation=activation,
        model=model.to_dict(),
        dataset=dataset_info(manifest, rows, missing, [], {"filled": {}, "unreadable": []}, ImageConversions.collect([])),
        skipped=tuple(skipped),
        inference={"forward_passes": model.forward_passes, "forward_passes_by_stage": dict(passes or {"inference": model.forward_passes})},
        results={},
        images_read=len(manifest),
        images_read_per_image=1.0,
        **sections,
    )
    return Evaluation(run_report=run_report, timings=timings, scores=np.empty(0), case_index=rows, cases=cases)


def evaluate_volume_segmentation(
    model: ModelSession,
    manifest: Manifest,
    *,
    spec: VolumeSpec,
    class_names: Sequence[str],
    thresholds: Mapping[str, float],
    preprocessing: Preprocessing,
    config: SuiteConfig,
    activation: str = "none",
    progress: Progress | None = None,
) -> Evaluation:
    """Segment every volume of ``manifest`` and score it against its label volume (module docstring)."""
    if manifest.mask_paths is None:
        raise UnreadableImages("a volume segmentation run needs a manifest with a mask_path column (the ground-truth label volumes)")
    settings = VolumeSettings(
        spacing=spec.spacing,
        window=spec.patch,
        overlap=spec.overlap,
        max_voxels=spec.max_voxels,
        threshold=float(thresholds.get(class_names[0], 0.5)) if class_names else 0.5,
        tolerance_mm=spec.tolerance_mm,
    )
    row_of = {path: i for i, path in enumerate(manifest.image_paths)}
    timings: dict[str, float] = {}
    total = len(manifest)

    def cases() -> Iterator[VolumeCase]:
        for index, path in enumerate(manifest.image_paths):
            if progress:
                progress("inference", index / total)
            yield VolumeCase(path, manifest.patient_ids[index], lambda index=index: _volume_and_truth(manifest, index, preprocessing, spec))

    def forward(patch: np.ndarray) -> np.ndarray:
        try:
            output = model.forward(patch, model.output_names[:1])[0]
        except Exception as exc:  # ONNX Runtime's own errors (a window the graph refuses): this volume is skipped
            raise VolumeError(model_refused(exc, patch.shape)) from None
        return _activated(output, activation)

    started = time.perf_counter()
    try:
        section = evaluate_volumes(
            cases(), forward, settings, class_names, n_resamples=config.n_resamples, seed=config.seed, confidence=config.confidence
        )
    except VolumeError as exc:  # every volume was skipped; the message lists the first reasons
        raise UnreadableImages(f"none of the {total} volume(s) could be evaluated: {exc}") from None
    timings["inference"] = time.perf_counter() - started
    skipped = skipped_rows(manifest, section.pop("skipped"), row_of)
    # per-volume rows name their image like every per-case list, so a reader who is not the data's steward sees them without it
    section["volumes"] = [{"image_path": v.pop("case_id"), **v} for v in section["volumes"]]
    rows = np.asarray(sorted(row_of[v["image_path"]] for v in section["volumes"]), dtype=np.int64)
    started = time.perf_counter()
    section["settings"] = {**dataclasses.asdict(spec), "threshold": settings.threshold}
    readers = reader_dice(manifest, rows, class_names, spec)
    timings["metrics"] = time.perf_counter() - started
    return task_evaluation(
        model,
        manifest,
        task="volume_segmentation",
        rows=rows,
        skipped=skipped,
        config=config,
        preprocessing=preprocessing,
        activation=activation,
        timings=timings,
        sections={
            "volumes": section,
            "readers": readers,
            **({"drift": drift_section(None, None, thresholds, config)} if "drift" in config.analyses else {}),  # says why it does not apply
        },
    )


def _volume_and_truth(manifest: Manifest, index: int, preprocessing: Preprocessing, spec: VolumeSpec) -> tuple[Volume, np.ndarray]:
    volume = read_volume(inside(manifest, manifest.image_paths[index]), max_voxels=spec.max_voxels)
    truth = read_label_volume(inside(manifest, manifest.mask_paths[index]), volume.array.shape, max_voxels=spec.max_voxels)
    try:
        tensor = volume_tensor(preprocessing, volume.array)
    except ValueError as exc:
        raise VolumeError(f"preprocessing: {exc}") from None
    return Volume(tensor, volume.spacing), truth


def _activated(output: np.ndarray, activation: str) -> np.ndarray:
    """The model's window output as probabilities (``activation`` as the output schema says)."""
    x = np.asarray(output, dtype=np.float32)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if activation == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return x


def reader_dice(manifest: Manifest, rows: np.ndarray, class_names: Sequence[str], spec: VolumeSpec) -> dict[str, Any] | None:
    """Per structure the mean inter-reader Dice over the evaluated volumes with two or more readers'
    label volumes (``reader:<name>:mask`` columns); volumes whose reader masks cannot be read are
    listed with the reason. None when the manifest has fewer than two reader mask columns."""
    columns = sorted(c for c in (manifest.reader_cells or {}) if c.startswith(READER_PREFIX) and c.endswith(f":{READER_MASK}"))
    if len(columns) < 2:
        return None
    readers = [c[len(READER_PREFIX) : -len(READER_MASK) - 1] for c in columns]
    masks: list[dict[str, np.ndarray]] = []
    skipped = []
    for index in rows:
        try:
            volumes = {}
            for reader, column in zip(readers, columns, strict=True):
                cell = manifest.reader_cells[column][index]
                if not isinstance(cell, str) or not cell.strip():
                    raise VolumeError(f"reader {reader} has no label volume for this case")
                volumes[reader] = read_volume(inside(manifest, cell.strip()), max_voxels=spec.max_voxels).array
            shapes = {v.shape for v in volumes.values()}
            if len(shapes) > 1:
                raise VolumeError("the readers' label volumes differ in shape")
        except VolumeError as exc:
            skipped.append({"image_path": manifest.image_paths[index], "reason": str(exc)})
            continue
        masks.append(volumes)
    ceiling = {}
    for k, name in enumerate(class_names, start=1):
        value = dice_ceiling({r: m == k for r, m in case.items()} for case in masks)
        ceiling[name] = None if value is None else round(value, 4)
    return {
        READER_MASK: {
            "statistic": "mean inter-reader Dice",
            "readers": readers,
            "n_cases": len(masks),
            "dice_ceiling": ceiling,
            "skipped": skipped,
        }
    }
