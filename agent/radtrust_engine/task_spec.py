"""What a version's task is, and how its outputs are read beyond classification and 2D segmentation.

The foundation model's registry task decides the kind of its versions' runs: ``binary``,
``multilabel``, ``segmentation`` or ``detection`` (a lesion detector: boxes or points, 2D images or
3D volumes, ``radtrust_engine.detection``). A segmentation model's version may declare in its
output schema (``ModelVersion.output_schema``) that it segments 3D volumes through sliding windows
(``"task": "volume_segmentation"``, ``radtrust_engine.volumes``); no schema turns a model into
another task's:

    {"class_names": ["nodule"], "thresholds": {"nodule": 0.5},
     "detection": {"match_by": "distance", "max_distance": 5, "nms_iou": 0.5, "max_detections": 100},
     "volume": {"spacing": [2, 1, 1], "patch": [32, 64, 64], "overlap": 0.5, "max_voxels": 50000000}}

- ``task``: left out (the model's task), ``volume_segmentation`` on a segmentation model, or
  ``detection`` on a detection model (the same as leaving it out).
- ``detection``: suppression and matching (``detection.DetectionConfig``'s fields); a detection
  model's only.
- ``volume``: the model's voxel spacing in mm (z, y, x), its window (``patch``, voxels), the windows'
  overlap, the largest volume read (voxels; a larger one is skipped) and the surface-Dice tolerance
  (``tolerance_mm``). Required for ``volume_segmentation``; for 3D detection optional (the volume is
  then given to the model whole, at its own spacing).

One parser (``TaskSpec.from_schema``) serves the registry, which refuses a schema that disagrees
with the model's task when the version is registered (the schema and the model's task never change
afterwards), and the worker, which reads it for the run. Plain Python (no Django).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .detection import DetectionConfig
from .volumes import MAX_VOXELS

VERSION_TASKS = ("detection", "volume_segmentation")
"""The tasks whose runs take their own stages (``pipeline_detection``, ``pipeline_volumes``)."""
SCHEMA_TASKS = {"detection": "detection", "volume_segmentation": "segmentation"}
"""What a schema's ``task`` may say, and the foundation model's task each needs."""
SCHEMA_KEYS = ("task", "detection", "volume")
GROUND_TRUTH_COLUMNS = {"segmentation": "mask_path", "volume_segmentation": "mask_path", "detection": "annotations"}
"""The manifest column naming each case's ground truth, for tasks whose truth is a file, not 0/1 labels."""


@dataclass(frozen=True)
class VolumeSpec:
    """How a 3D model sees a volume (module docstring, ``volume``)."""

    spacing: tuple[float, float, float] | None = None
    patch: tuple[int, int, int] | None = None
    overlap: float = 0.5
    max_voxels: int = MAX_VOXELS
    tolerance_mm: float = 1.0

    @classmethod
    def from_dict(cls, data: Any) -> VolumeSpec:
        if not isinstance(data, Mapping):
            raise ValueError('"volume" must be an object such as {"spacing": [2, 1, 1], "patch": [32, 64, 64]}')
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f'"volume": unknown key(s) {", ".join(unknown)}')
        spacing = data.get("spacing")
        patch = data.get("patch")
        if spacing is not None and not _triple(spacing, lambda v: _number(v) and 0 < v <= 100):
            raise ValueError('"volume.spacing" gives three voxel sizes in mm (z, y, x), each above 0 and at most 100')
        if patch is not None and not _triple(patch, lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024):
            raise ValueError('"volume.patch" gives the model\'s window as three whole numbers of voxels (depth, height, width), 1 to 1024')
        overlap = data.get("overlap", 0.5)
        if not _number(overlap) or not 0 <= overlap < 1:
            raise ValueError('"volume.overlap" is the share two windows overlap, from 0 up to (not including) 1')
        max_voxels = data.get("max_voxels", MAX_VOXELS)
        if not isinstance(max_voxels, int) or isinstance(max_voxels, bool) or not 1 <= max_voxels <= MAX_VOXELS:
            raise ValueError(f'"volume.max_voxels" is a whole number from 1 to {MAX_VOXELS}')
        tolerance = data.get("tolerance_mm", 1.0)
        if not _number(tolerance) or not 0 < tolerance <= 100:
            raise ValueError('"volume.tolerance_mm" is the surface-Dice tolerance in mm, above 0 and at most 100')
        return cls(
            spacing=None if spacing is None else tuple(float(v) for v in spacing),
            patch=None if patch is None else tuple(int(v) for v in patch),
            overlap=float(overlap),
            max_voxels=max_voxels,
            tolerance_mm=float(tolerance),
        )


@dataclass(frozen=True)
class TaskSpec:
    """A version's task and the settings its outputs are read with."""

    task: str
    detection: DetectionConfig | None = None
    volume: VolumeSpec | None = None

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any], model_task: str) -> TaskSpec:
        """The task of a version whose foundation model has ``model_task``; ``ValueError`` naming the
        key when the schema's ``task``, ``detection`` or ``volume`` disagrees with it or cannot be used."""
        task = model_task
        if "task" in schema:
            declared = schema["task"]
            if not isinstance(declared, str) or declared not in SCHEMA_TASKS:
                raise ValueError(f'"task" is one of {", ".join(SCHEMA_TASKS)} (leave it out for the model\'s own task)')
            if SCHEMA_TASKS[declared] != model_task:
                raise ValueError(
                    f'"task": "{declared}" needs a foundation model whose task is {SCHEMA_TASKS[declared]}, and this one\'s is '
                    f"{model_task}: register the version under a {SCHEMA_TASKS[declared]} model"
                )
            task = declared
        if task not in VERSION_TASKS:
            for key in ("detection", "volume"):
                if key in schema:
                    raise ValueError(f'"{key}" applies to a detection model\'s version or a "task": "volume_segmentation" one')
            return cls(task=task)
        volume = VolumeSpec.from_dict(schema["volume"]) if "volume" in schema else None
        if task == "volume_segmentation":
            if volume is None or volume.spacing is None or volume.patch is None:
                raise ValueError('"task": "volume_segmentation" needs "volume" with the model\'s "spacing" and "patch"')
            if "detection" in schema:
                raise ValueError('"detection" applies to a detection model\'s version')
            return cls(task=task, volume=volume)
        raw = schema.get("detection", {})
        if not isinstance(raw, Mapping):
            raise ValueError('"detection" must be an object such as {"match_by": "iou", "iou_threshold": 0.3}')
        known = {f.name for f in fields(DetectionConfig)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f'"detection": unknown key(s) {", ".join(unknown)}; allowed: {", ".join(sorted(known))}')
        try:
            config = DetectionConfig(**raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f'"detection": {exc}') from None
        return cls(task=task, detection=config, volume=volume)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _triple(value: Any, ok) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 3 and all(ok(v) for v in value)
