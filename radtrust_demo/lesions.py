"""Generated 3D chest CT with planted nodules, two readers who disagree at a known rate, and two tiny
3D ONNX models (a nodule detector and a nodule segmenter), for the demo and the tests.

1. ``write_nodule_volumes``: small CT-like NIfTI volumes (a crop of lung at about -800 HU with noise) with 0 to 2 spherical nodules (+60 HU, radius 2 to 4 voxels) per volume; the
   ground-truth label volume, an annotations CSV of the nodules' centres and radii (voxels), and
   two readers: reader ``a`` says what was planted, reader ``b`` flips the nodule call of a known
   share of the volumes (``disagreement``) and draws each label volume one voxel smaller (eroded),
   so the inter-reader Dice is below 1 by construction.
2. ``detector_onnx``: boxes are the cells of a fixed grid over the volume; each cell's score is the
   sigmoid of its brightest windowed voxel; labels are all 0. It follows the detection output
   contract (``boxes [N, 6]``, ``scores [N]``, ``labels [N]``).
3. ``segmenter_onnx``: a 1x1x1 convolution and a sigmoid: a voxel brighter than the nodules' window
   level is a nodule. Any volume size (the sliding window gives it ``patch``-sized windows).
Plain NumPy, nibabel and onnx (no torch, no Django).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHAPE = (24, 48, 48)  # z, y, x voxels
SPACING = (2.0, 1.0, 1.0)  # mm, z y x
CELL = (8, 8, 8)  # the detector's grid cell, voxels
WINDOW = {"center": -300, "width": 1400}  # lung window: -1000 HU -> 0, +400 HU -> 1
PREPROCESSING = {"window": WINDOW}
LABEL = "nodule"
DETECTOR_SCHEMA = {
    "class_names": [LABEL],
    "thresholds": {LABEL: 0.5},
    "detection": {"match_by": "distance", "max_distance": 8.0, "nms_iou": 0.3, "max_detections": 50},
}
SEGMENTER_SCHEMA = {
    "class_names": [LABEL],
    "thresholds": {LABEL: 0.5},
    "task": "volume_segmentation",
    "volume": {"spacing": list(SPACING), "patch": [16, 32, 32], "overlap": 0.25, "tolerance_mm": 2.0},
}


@dataclass(frozen=True)
class NoduleDataset:
    """Where the generated files are and what was planted."""

    root: Path
    manifest: Path  # one manifest for both tasks: a detection run reads ``annotations``, a volume run ``mask_path``
    n_volumes: int
    n_nodules: int
    reader_flips: int  # volumes whose nodule call reader b flipped


def _nifti(path: Path, array: np.ndarray, spacing: tuple[float, float, float]) -> None:
    import nibabel

    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine), str(path))


def write_nodule_volumes(root: Path, *, n_volumes: int = 12, disagreement: float = 0.25, seed: int = 21) -> NoduleDataset:
    """Write the volumes, label volumes, annotations and the manifest under ``root`` (module docstring, step 1)."""
    from scipy.ndimage import binary_erosion

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("volumes", "labels", "reader-b"):
        (root / folder).mkdir(exist_ok=True)
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    flips = set(rng.choice(n_volumes, size=round(disagreement * n_volumes), replace=False).tolist())
    rows, lesions = [], []
    n_nodules = 0
    for i in range(n_volumes):
        volume = rng.normal(-800.0, 40.0, SHAPE).astype(np.float32)
        labels = np.zeros(SHAPE, dtype=np.uint8)
        name = f"volumes/ct-{i:02d}.nii.gz"
        count = int(rng.integers(0, 3))
        for _ in range(count):
            radius = float(rng.uniform(2.0, 4.0))
            centre = [float(rng.uniform(radius + 6, n - radius - 6)) for n in SHAPE]
            distance = np.sqrt(((z - centre[0]) * SPACING[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
            solid = distance <= radius - 0.7  # the rim is partial volume: fainter than the window level
            volume[solid] = 60.0 + rng.normal(0, 10, int(solid.sum()))
            volume[(distance <= radius) & ~solid] = -400.0
            labels[distance <= radius] = 1
            lesions.append(
                {
                    "case_id": name,
                    "label": LABEL,
                    "x": round(centre[2], 2),
                    "y": round(centre[1], 2),
                    "z": round(centre[0], 2),
                    "radius": round(radius, 2),
                }
            )
        n_nodules += count
        if count == 0:
            lesions.append({"case_id": name, "label": "", "x": "", "y": "", "z": "", "radius": ""})
        _nifti(root / name, volume, SPACING)
        _nifti(root / f"labels/ct-{i:02d}.nii.gz", labels, SPACING)
        _nifti(root / f"reader-b/ct-{i:02d}.nii.gz", binary_erosion(labels > 0).astype(np.uint8), SPACING)
        seen = int(count > 0)
        rows.append(
            {
                "image_path": name,
                "patient_id": f"p{i:02d}",
                "sex": "F" if i % 2 else "M",
                "age": 45 + 2 * i,
                "site": "st-anna",
                "annotations": "annotations.csv",
                "mask_path": f"labels/ct-{i:02d}.nii.gz",
                f"reader:a:{LABEL}": seen,
                f"reader:b:{LABEL}": 1 - seen if i in flips else seen,
                "reader:a:mask": f"labels/ct-{i:02d}.nii.gz",
                "reader:b:mask": f"reader-b/ct-{i:02d}.nii.gz",
            }
        )
    _csv(root / "annotations.csv", lesions)
    _csv(root / "manifest.csv", rows)
    return NoduleDataset(root, root / "manifest.csv", n_volumes, n_nodules, len(flips))


def _csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _windowed(hu: float) -> float:
    low = WINDOW["center"] - WINDOW["width"] / 2
    return (hu - low) / WINDOW["width"]


def detector_onnx(path: Path, *, shape: tuple[int, ...] = SHAPE, cell: tuple[int, ...] = CELL) -> Path:
    """The grid detector (module docstring, step 2) as an ONNX file at ``path``, for volumes of
    ``shape`` (z, y, x) or, given a 2D ``shape`` (y, x) and ``cell``, for 2D images."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    grid = [n // c for n, c in zip(shape, cell, strict=True)]
    boxes = []
    for index in np.ndindex(*grid):  # row-major, as MaxPool's output is flattened
        low = [i * c for i, c in zip(index, cell, strict=True)][::-1]  # boxes are x, y[, z]
        boxes.append([*low, *[v + c for v, c in zip(low, cell[::-1], strict=True)]])
    n = len(boxes)
    level = _windowed(-100.0)  # brighter than any lung voxel, darker than a nodule
    initializers = [
        numpy_helper.from_array(np.asarray(boxes, dtype=np.float32), "grid_boxes"),
        numpy_helper.from_array(np.zeros(n, dtype=np.int64), "grid_labels"),
        numpy_helper.from_array(np.asarray([n], dtype=np.int64), "flat"),
        numpy_helper.from_array(np.asarray(level, dtype=np.float32), "level"),
        numpy_helper.from_array(np.asarray(20.0, dtype=np.float32), "gain"),
    ]
    nodes = [
        helper.make_node("MaxPool", ["volume"], ["pooled"], kernel_shape=list(cell), strides=list(cell)),
        helper.make_node("Reshape", ["pooled", "flat"], ["peak"]),
        helper.make_node("Sub", ["peak", "level"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["scores"]),
        helper.make_node("Identity", ["grid_boxes"], ["boxes"]),
        helper.make_node("Identity", ["grid_labels"], ["labels"]),
    ]
    graph = helper.make_graph(
        nodes,
        "radtrust-demo-nodule-detector",
        [helper.make_tensor_value_info("volume", TensorProto.FLOAT, [1, 1, *shape])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n, 2 * len(shape)]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [n]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="radtrust-demo")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def segmenter_onnx(path: Path) -> Path:
    """The voxel segmenter (module docstring, step 3) as an ONNX file at ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    gain = 30.0
    initializers = [
        numpy_helper.from_array(np.full((1, 1, 1, 1, 1), gain, dtype=np.float32), "weight"),
        numpy_helper.from_array(np.asarray([-gain * _windowed(-100.0)], dtype=np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["volume", "weight", "bias"], ["logit"], kernel_shape=[1, 1, 1]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "radtrust-demo-nodule-segmenter",
        [helper.make_tensor_value_info("volume", TensorProto.FLOAT, [1, 1, "depth", "height", "width"])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [1, 1, "depth", "height", "width"])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="radtrust-demo")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
