"""``manage.py bench volumes``: the detection, 3D-volume and reader-agreement figures of issue 21.

1. ``froc_vs_reference_abs_diff``: simulated images with lesion boxes and scored detections (hits
   near lesions, duplicates, false positives, tied scores); the engine's FROC sensitivities at 1/8
   to 8 FP per image against a direct implementation from the definition written here: for every
   distinct score, keep the detections at or above it, match them afresh (greedy by score, IoU
   >= 0.3, each lesion once), count found lesions and false positives, and take the best
   sensitivity whose FP per image is within the rate. The largest absolute difference.
2. ``dice_vs_reference_abs_diff``: ``volumes.volume_scores`` Dice against ``2|A and B| / (|A| + |B|)``
   counted here, on pairs of random ellipsoids. The largest absolute difference.
3. ``sliding_window_vs_bare_ort``: a small 3D convolutional ONNX model over volumes through
   ``volumes.segment_volume`` (windows, Gaussian blending, labels) against bare ONNX Runtime on the
   same windows; bare seconds / pipeline seconds (1.0: no overhead), the median of 9 rounds in which
   bare and pipeline alternate volume by volume.
4. ``peak_rss_growth_mb_10_to_100_volumes``: ``volumes.evaluate_volumes`` over 10 generated volumes,
   then over 100: how far the process's peak resident memory rose in between (memory must not
   grow with the number of volumes, only with one volume's size).
5. ``kappa_vs_sklearn_abs_diff``: ``readers.cohen_kappa`` against scikit-learn's
   ``cohen_kappa_score`` on random reader pairs. The largest absolute difference.

Plain Python (no Django); the ``bench`` command parses arguments and prints.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radtrust_demo.bench.validation import machine
from radtrust_engine.detection import FP_RATES, DetectionConfig, Detections, Lesions, MatchedCase, froc, iou_matrix, match
from radtrust_engine.readers import cohen_kappa
from radtrust_engine.runner import open_session, select_device
from radtrust_engine.volumes import Volume, VolumeCase, VolumeSettings, evaluate_volumes, segment_volume, volume_scores, window_starts

Log = Callable[[str], None]
GOALS = {
    "froc_vs_reference_abs_diff": ("<=", 1e-9),
    "dice_vs_reference_abs_diff": ("<=", 1e-9),
    "sliding_window_vs_bare_ort": (">=", 0.85),
    "peak_rss_growth_mb_10_to_100_volumes": ("<=", 100.0),
    "kappa_vs_sklearn_abs_diff": ("<=", 1e-12),
}


@dataclass(frozen=True)
class Sizes:
    images: int = 400
    volume: tuple[int, int, int] = (64, 128, 128)
    window: tuple[int, int, int] = (32, 64, 64)
    timed_volumes: int = 3
    rounds: int = 9
    memory_volume: tuple[int, int, int] = (48, 96, 96)
    kappa_pairs: int = 200


QUICK = Sizes(images=60, volume=(24, 48, 48), window=(16, 32, 32), timed_volumes=1, rounds=2, memory_volume=(16, 32, 32), kappa_pairs=20)


def figure(name: str, value: float, reference: str, unit: str) -> dict[str, Any]:
    """One figure with its goal (an upper or a lower bound) and whether it is met."""
    sense, goal = GOALS[name]
    met = value <= goal if sense == "<=" else value >= goal
    return {"value": value, "reference": reference, "unit": unit, "goal": f"{sense} {goal:g}", "meets_goal": bool(met)}


# ---------------------------------------------------------------------------
# 1. FROC against the definition
# ---------------------------------------------------------------------------


def simulated_detection(n_images: int, seed: int = 0) -> list[tuple[Lesions, Detections]]:
    """Images of 256 x 256 with 0-3 lesions; hits near lesions (some duplicated), false positives,
    scores rounded to two decimals so that ties occur."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        n = int(rng.integers(0, 4))
        corners = rng.uniform(0, 220, (n, 2))
        sides = rng.uniform(6, 30, (n, 1))
        lesions = np.c_[corners, corners + sides]
        boxes, scores = [], []
        for box in lesions:
            for _ in range(int(rng.integers(0, 3))):  # missed, found, or found twice
                boxes.append(box + rng.normal(0, 2, 4))
                scores.append(rng.uniform(0.3, 1.0))
        for _ in range(int(rng.poisson(2))):
            corner = rng.uniform(0, 220, 2)
            boxes.append(np.r_[corner, corner + rng.uniform(6, 30)])
            scores.append(rng.uniform(0.0, 0.8))
        detections = Detections(np.asarray(boxes).reshape(-1, 4), np.round(scores, 2), np.zeros(len(boxes), dtype=np.int64))
        images.append((Lesions(lesions, np.zeros(n, dtype=np.int64)), detections))
    return images


def _reference_match(boxes: np.ndarray, scores: np.ndarray, lesions: np.ndarray, threshold: float) -> tuple[int, int]:
    """Found lesions and false positives of the detections given, greedy by score (the definition)."""
    taken: set[int] = set()
    false_positives = 0
    for i in sorted(range(len(scores)), key=lambda k: (-scores[k], k)):
        best, best_iou = -1, -1.0
        for j in range(len(lesions)):
            if j in taken:
                continue
            overlap = iou_matrix(boxes[i : i + 1], lesions[j : j + 1])[0, 0]
            if overlap >= threshold and overlap > best_iou:
                best, best_iou = j, overlap
        if best < 0:
            false_positives += 1
        else:
            taken.add(best)
    return len(taken), false_positives


def reference_froc(images: list[tuple[Lesions, Detections]], rates=FP_RATES, iou: float = 0.3) -> list[float]:
    n_lesions = sum(len(lesions.boxes) for lesions, _ in images)
    thresholds = sorted({float(s) for _, d in images for s in d.scores} | {np.inf}, reverse=True)
    points = []
    for t in thresholds:
        found = fps = 0
        for lesions, d in images:
            keep = d.scores >= t
            f, p = _reference_match(d.boxes[keep], d.scores[keep], lesions.boxes, iou)
            found, fps = found + f, fps + p
        points.append((fps / len(images), found / n_lesions))
    return [max((s for fp, s in points if fp <= rate), default=0.0) for rate in rates]


def bench_froc(sizes: Sizes, log: Log) -> dict[str, Any]:
    images = simulated_detection(sizes.images)
    config = DetectionConfig(iou_threshold=0.3)
    cases = [
        MatchedCase(f"i{k}", f"p{k // 2}", d.scores, match(d, lesions, config), len(lesions.boxes), lesions.sizes)
        for k, (lesions, d) in enumerate(images)
    ]
    engine = froc(cases, n_resamples=0)
    log(f"froc: {len(images)} images, {engine.n_lesions} lesions, {engine.n_detections} detections")
    reference = reference_froc(images)
    diff = max(abs(a - b) for a, b in zip(engine.sensitivity, reference, strict=True))
    return {"figure": diff, "engine": list(engine.sensitivity), "reference": reference, "cpm": engine.cpm, "images": len(images)}


# ---------------------------------------------------------------------------
# 2. Dice against the count; 5. kappa against scikit-learn
# ---------------------------------------------------------------------------


def _ellipsoid(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    grid = np.indices(shape).transpose(1, 2, 3, 0).astype(np.float64)
    centre = rng.uniform(0.3, 0.7, 3) * np.asarray(shape)
    radii = rng.uniform(0.1, 0.3, 3) * np.asarray(shape)
    return np.sum(((grid - centre) / radii) ** 2, axis=-1) <= 1.0


def bench_dice(sizes: Sizes) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    diffs = []
    for _ in range(10):
        a, b = _ellipsoid(sizes.memory_volume, rng), _ellipsoid(sizes.memory_volume, rng)
        reference = 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
        diffs.append(abs(volume_scores(a, b, (1.0, 0.8, 0.8)).dice - reference))
    return {"figure": max(diffs), "pairs": len(diffs)}


def bench_kappa(sizes: Sizes) -> dict[str, Any]:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(2)
    diffs = []
    for _ in range(sizes.kappa_pairs):
        n = int(rng.integers(20, 2000))
        truth = rng.random(n) < rng.uniform(0.05, 0.6)
        a = truth ^ (rng.random(n) < rng.uniform(0, 0.3))
        b = truth ^ (rng.random(n) < rng.uniform(0, 0.3))
        diffs.append(abs(cohen_kappa(a, b) - cohen_kappa_score(a, b)))
    return {"figure": max(diffs), "pairs": len(diffs)}


# ---------------------------------------------------------------------------
# 3. Sliding windows against bare ONNX Runtime
# ---------------------------------------------------------------------------


def export_tiny_3d_segmenter(path: Path, channels: int = 8, seed: int = 0) -> Path:
    """A two-layer 3D convolutional network (1 -> ``channels`` -> 1, ReLU, sigmoid), random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.normal(0, 0.3, (channels, 1, 3, 3, 3))).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(channels, np.float32), "b1")
    w2 = numpy_helper.from_array((rng.normal(0, 0.3, (1, channels, 3, 3, 3))).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(np.zeros(1, np.float32), "b2")
    nodes = [
        helper.make_node("Conv", ["volume", "w1", "b1"], ["h"], pads=[1] * 6),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["logit"], pads=[1] * 6),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    dims = ["batch", 1, "z", "y", "x"]
    graph = helper.make_graph(
        nodes,
        "tiny3d",
        [helper.make_tensor_value_info("volume", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, dims)],
        [w1, b1, w2, b2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def bench_sliding_window(sizes: Sizes, log: Log) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        model = open_session(export_tiny_3d_segmenter(Path(folder) / "tiny3d.onnx"), select_device())
    rng = np.random.default_rng(3)
    volumes = [Volume(rng.normal(0, 1, sizes.volume).astype(np.float32), (1.0, 1.0, 1.0)) for _ in range(sizes.timed_volumes)]
    settings = VolumeSettings(spacing=(1.0, 1.0, 1.0), window=sizes.window, overlap=0.5)

    def forward(patch: np.ndarray) -> np.ndarray:
        return model.forward(patch)[0]

    def windows_of(volume: Volume) -> list[np.ndarray]:
        grid = [window_starts(n, w, settings.overlap) for n, w in zip(volume.array.shape, settings.window, strict=True)]
        cut = []
        for z in grid[0]:
            for y in grid[1]:
                for x in grid[2]:
                    region = (slice(z, z + settings.window[0]), slice(y, y + settings.window[1]), slice(x, x + settings.window[2]))
                    cut.append(np.ascontiguousarray(volume.array[region])[None, None])
        return cut

    windows = [windows_of(volume) for volume in volumes]

    def pipeline(volume: Volume) -> float:
        started = time.perf_counter()
        segment_volume(forward, volume, settings)
        return time.perf_counter() - started

    def bare(cut: list[np.ndarray]) -> float:
        started = time.perf_counter()
        for window in cut:
            model.session.run(None, {model.input_name: window})
        return time.perf_counter() - started

    for volume, cut in zip(volumes, windows, strict=True):  # warm-up: the session's first runs allocate
        pipeline(volume)
        bare(cut)
    ratios, bare_runs, pipeline_runs = [], [], []
    for _ in range(sizes.rounds):  # bare and pipeline alternate volume by volume, so a load that comes and goes hits both
        b = p = 0.0
        for volume, cut in zip(volumes, windows, strict=True):
            b += bare(cut)
            p += pipeline(volume)
        bare_runs.append(b)
        pipeline_runs.append(p)
        ratios.append(b / p)
    log(f"sliding window: {sum(map(len, windows))} windows of {sizes.window} over {len(volumes)} volume(s), ratio {statistics.median(ratios):.3f}")
    return {
        "figure": statistics.median(ratios),
        "windows": sum(map(len, windows)),
        "bare_seconds": bare_runs,
        "pipeline_seconds": pipeline_runs,
        "device": model.device.name,
    }


# ---------------------------------------------------------------------------
# 4. Peak memory against the number of volumes
# ---------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def bench_memory(sizes: Sizes, log: Log) -> dict[str, Any]:
    shape = sizes.memory_volume

    def case(k: int) -> VolumeCase:
        def read() -> tuple[Volume, np.ndarray]:
            rng = np.random.default_rng(k)
            truth = _ellipsoid(shape, rng)
            image = truth.astype(np.float32) + rng.normal(0, 0.3, shape).astype(np.float32)
            return Volume(image, (2.0, 1.0, 1.0)), truth.astype(np.uint8)

        return VolumeCase(f"v{k}", f"p{k}", read)

    def forward(patch: np.ndarray) -> np.ndarray:
        return (patch > 0.5).astype(np.float32)

    settings = VolumeSettings(spacing=(2.0, 1.0, 1.0), window=(shape[0] // 2, shape[1] // 2, shape[2] // 2))
    evaluate_volumes([case(k) for k in range(10)], forward, settings, ["lesion"], n_resamples=200)
    after_10 = _peak_rss_mb()
    report = evaluate_volumes([case(k) for k in range(100)], forward, settings, ["lesion"], n_resamples=200)
    after_100 = _peak_rss_mb()
    log(f"memory: peak {after_10:.0f} MB after 10 volumes, {after_100:.0f} MB after 100")
    return {
        "figure": after_100 - after_10,
        "peak_mb_10": after_10,
        "peak_mb_100": after_100,
        "volume": list(shape),
        "dice": report["structures"]["lesion"]["dice"],
    }


def run_volumes_bench(*, quick: bool = False, log: Log = print) -> dict[str, Any]:
    """The five figures (keys a script reads), with ``figures`` and ``details``."""
    sizes = QUICK if quick else Sizes()
    memory = bench_memory(sizes, log)  # first: the peak it reads is the process's so far
    parts = {
        "froc_vs_reference_abs_diff": (bench_froc(sizes, log), "direct FROC from the definition, re-matched at every threshold", ""),
        "dice_vs_reference_abs_diff": (bench_dice(sizes), "2|A and B| / (|A| + |B|) counted in NumPy", ""),
        "sliding_window_vs_bare_ort": (bench_sliding_window(sizes, log), "bare ONNX Runtime on the same windows", "ratio"),
        "peak_rss_growth_mb_10_to_100_volumes": (memory, "peak RSS after 10 volumes", "MB"),
        "kappa_vs_sklearn_abs_diff": (bench_kappa(sizes), "sklearn.metrics.cohen_kappa_score", ""),
    }
    figures = {name: figure(name, float(detail.pop("figure")), reference, unit) for name, (detail, reference, unit) in parts.items()}
    details = {"machine": machine(), "quick": quick, **{name: detail for name, (detail, _, _) in parts.items()}}
    return {**{name: entry["value"] for name, entry in figures.items()}, "figures": figures, "details": details}


def format_table(result: dict[str, Any]) -> str:
    """The figures as a small text table for people."""
    width = max(len(name) for name in result["figures"])
    lines = [f"{'figure':<{width}} {'value':>10}  goal"]
    for name, entry in result["figures"].items():
        lines.append(f"{name:<{width}} {entry['value']:>10.4g}  {entry['goal']} {'met' if entry['meets_goal'] else 'NOT met'}")
    return "\n".join(lines)
