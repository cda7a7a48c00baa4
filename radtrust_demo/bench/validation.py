"""Speed and agreement figures of the validation engine (issue 3, "Speed"), measured in one process.

Each figure is compared with a reference measured in the same process, so a
noisy or slower machine moves both sides:

1. ``pipeline_vs_bare_ort``: images/s of ``evaluate`` (512x512 DICOM files
   read, preprocessed to 224x224, a ResNet-18 run by ONNX Runtime, stratified
   metrics with 1000 resamples) over ``bare_throughput`` of the same session,
   batch size and threads with the inputs already in memory, in alternating runs.
2. ``metrics_vs_fairlearn``: seconds per bootstrap resample of
   ``stratified_metrics`` over fairlearn's ``MetricFrame`` bootstrap on the
   same predictions and groupings.
3. ``max_abs_diff_vs_sklearn``: largest gap between our point estimates and
   scikit-learn's, overall and in every reported subgroup.
4. ``run_2000_seconds``: a whole validation of 2,000 generated images on two
   threads, with the share of each stage.
5. ``forward_passes_14_labels_over_1_label`` and ``suite_14_labels_over_1_label``:
   the full suite on a 14-label model over a 1-label model with the same
   backbone, on the same images: forward passes (exact) and seconds.
6. ``pipeline_vs_bare_ort_vit_b16``: figure 1 with the demo's ViT-B/16-sized
   encoder (86 M parameters, 224x224 DICOM files, 96 images, 3 rounds). Heavy
   (it exports a 340 MB model once into the cache), so it runs only when named:
   ``manage.py bench validation --only pipeline_vs_bare_ort_vit_b16``.

Plain Python (no Django): the ``bench`` management command only parses
arguments and prints. torch, fairlearn and scikit-learn are imported inside
the functions that need them.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from scipy import stats

from radtrust_demo import data as demo_data
from radtrust_demo.networks import export_tiny_classifier
from radtrust_demo.vit import VIT_B16, VIT_SMALL, export_vit
from radtrust_engine.baseline import Baseline
from radtrust_engine.drift import PSI_FLOOR, distribution_drift
from radtrust_engine.images import load_image
from radtrust_engine.loading import read_manifest
from radtrust_engine.metrics import METRIC_NAMES
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import bare_throughput, open_session, select_device
from radtrust_engine.stratification import age_band, stratified_metrics

Log = Callable[[str], None]
FIGURES = (
    "pipeline_vs_bare_ort",
    "metrics_vs_fairlearn",
    "max_abs_diff_vs_sklearn",
    "run_2000_seconds",
    "drift_vs_scipy",
    "suite_2000_seconds",
    "images_read_per_image",
    "forward_passes_14_labels_over_1_label",
    "suite_14_labels_over_1_label",
    "pipeline_vs_bare_ort_vit_b16",
)
HEAVY = ("pipeline_vs_bare_ort_vit_b16",)  # measured only when asked for by name (--only): it builds an 86 M-parameter model
GOALS = {
    "pipeline_vs_bare_ort": (">=", 0.9),
    "pipeline_vs_bare_ort_vit_b16": (">=", 0.9),
    "metrics_vs_fairlearn": ("<=", 0.01),
    "max_abs_diff_vs_sklearn": ("<=", 1e-9),
    "drift_vs_scipy": ("<=", 1.0),
    "images_read_per_image": ("<=", 1.0),
    "forward_passes_14_labels_over_1_label": ("<=", 1.0),
    "suite_14_labels_over_1_label": ("<=", 1.2),
}
FULL_SUITE = ("calibration", "drift", "explainability", "generalisation", "robustness", "uncertainty")
LABELS = 14  # as many findings as a chest radiograph model commonly gives (CheXpert, NIH ChestX-ray14)
CLASS_NAME = "finding"
THRESHOLD = 0.5
INTERSECTION = ("sex", "age_band")
# What a pixel of the synthetic 12-bit DICOM files looks like on average, for the normalisation spec.
PIXEL_MEAN, PIXEL_STD = 1800.0, 600.0


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is; ``QUICK`` is a smoke run for the tests."""

    pipeline_images: int = 480
    pipeline_rounds: int = 5
    bare_images: int | None = None  # images of each bare ORT reference run; None: as many as the pipeline run
    dicom_size: int = 512
    input_size: int = 224
    resnet_width: int = 64  # 64 is ResNet-18 itself; the quick run uses a narrow one
    batch_size: int = 32
    predictions: int = 100_000
    n_resamples: int = 1000
    fairlearn_resamples: int = 3
    run_images: int = 2000
    run_threads: int = 2
    train_images: int = 3000  # the demo CNN's training set (not timed)
    train_epochs: int = 6
    drift_values: int = 1_000_000
    drift_repeats: int = 5
    label_explain_cases: int = 32  # explainability in the 14-label figure (the suite's defaults)
    label_rise_masks: int = 500


QUICK = Sizes(
    pipeline_images=24,
    pipeline_rounds=1,
    dicom_size=96,
    input_size=64,
    resnet_width=8,
    batch_size=8,
    predictions=3000,
    n_resamples=40,
    fairlearn_resamples=2,
    run_images=48,
    train_images=128,
    train_epochs=1,
    drift_values=20_000,
    drift_repeats=2,
    label_explain_cases=4,
    label_rise_masks=50,
)


def figure(name: str, value: float, reference: float | str | None, ratio: float | None, unit: str) -> dict[str, Any]:
    """One figure with its reference, their ratio and its goal (where it has one), checked on the ratio
    or, without one, on the value."""
    goal = GOALS.get(name)
    checked = value if ratio is None else ratio
    met = None if goal is None else (checked >= goal[1] if goal[0] == ">=" else checked <= goal[1])
    return {
        "value": value,
        "reference": reference,
        "ratio": ratio,
        "unit": unit,
        "goal": None if goal is None else f"{goal[0]} {goal[1]:g}",
        "meets_goal": met,
    }


# ---------------------------------------------------------------------------
# 1. Pipeline against bare ONNX Runtime
# ---------------------------------------------------------------------------


def resnet18(*, width: int = 64, channels: int = 3) -> Any:
    """ResNet-18 (He et al. 2016: [2, 2, 2, 2] basic blocks) in plain torch, one sigmoid output, eval mode.

    Plain torch because torchvision is not installed. At ``width`` 64 and three
    channels it is the ImageNet network with a one-unit head: 11,177,025
    parameters and 1.82 GMAC (3.6 GFLOP) per 224x224 image. Seeded.
    """
    import torch  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it
    from torch import nn  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + self.down(x))

    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = width
    for stage, stride in enumerate((1, 2, 2, 2)):
        cout = width * 2**stage
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1), nn.Sigmoid()]
    return nn.Sequential(*layers).eval()


def count_macs(net: Any, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of the convolutions and linear layers for one input of ``input_shape`` (C, H, W)."""
    import torch  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it
    from torch import nn  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it

    macs = 0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs
        per_output = module.weight[0].numel() if isinstance(module, nn.Conv2d) else module.weight.shape[1]
        macs += output[0].numel() * per_output

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return macs


def resnet18_onnx(cache: Path, *, width: int = 64, input_size: int = 224, channels: int = 1) -> tuple[Path, dict[str, Any]]:
    """``resnet18`` exported once to ``cache`` (dynamic batch); returns its path and size.

    One input channel by default, as radiographs are grey (about 3.5 GFLOP per
    224x224 image; three channels add 0.16 GFLOP in the stem).
    """
    stem = f"resnet18-w{width}-c{channels}-{input_size}"
    path, meta_path = cache / f"{stem}.onnx", cache / f"{stem}.json"
    if path.exists() and meta_path.exists():
        return path, json.loads(meta_path.read_text())
    import torch  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it

    net = resnet18(width=width, channels=channels)
    macs = count_macs(net, (channels, input_size, input_size))
    cache.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        net,
        (torch.zeros(2, channels, input_size, input_size),),
        dynamo=True,
        input_names=["image"],
        output_names=["probability"],
        dynamic_shapes={"input": {0: torch.export.Dim("batch", min=1, max=1024)}},
        verbose=False,
    )
    program.save(str(path))
    meta = {
        "architecture": "ResNet-18" if width == 64 else f"ResNet-18 at width {width}",
        "parameters": sum(p.numel() for p in net.parameters()),
        "gmac_per_image": macs / 1e9,
        "gflop_per_image": 2 * macs / 1e9,
        "input": [channels, input_size, input_size],
    }
    meta_path.write_text(json.dumps(meta))  # written last: marks the export as complete
    return path, meta


def vit_onnx(cache: Path, small: bool = False) -> tuple[Path, dict[str, Any]]:
    """The demo's ViT-B/16-sized encoder (``radtrust_demo.vit``; the small one for a quick run), exported once into ``cache``."""
    shape = VIT_SMALL if small else VIT_B16
    folder = cache / f"vit-{shape.image}-{shape.depth}x{shape.width}"
    path = folder / "vit.onnx"
    if not path.exists():
        export_vit(folder, shape)
    meta = {"name": "ViT-B/16" if shape == VIT_B16 else "small ViT/16", **asdict(shape), "parameters": shape.parameters}
    return path, {**meta, "gflop_per_image": shape.gflop_per_image}


def vit_sizes(sizes: Sizes, small: bool) -> Sizes:
    """The pipeline sizes at the ViT's input side (its DICOM files are written at that size: no resize)."""
    side = (VIT_SMALL if small else VIT_B16).image
    return replace(
        sizes, dicom_size=side, input_size=side, pipeline_images=min(sizes.pipeline_images, 96), pipeline_rounds=min(sizes.pipeline_rounds, 3)
    )


def write_dicom(path: Path, pixels: np.ndarray, header: Mapping[str, str]) -> None:
    """An uncompressed (explicit VR little endian) MONOCHROME2 DICOM file of uint16 pixels."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_dicom_dataset(folder: Path, images: int, size: int, *, seed: int = 0) -> Path:
    """``images`` synthetic radiographs (a smooth gradient, noise, a bright disc on
    positives) as DICOM files and a ``manifest.csv``; reused when already written.

    The manifest has every column a header could fill, so the pipeline reads
    pixels only: the figure is about reading, preprocessing and inference.
    """
    manifest = folder / "manifest.csv"
    if manifest.exists():
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    background = PIXEL_MEAN - 400 + 800 * (0.6 * yy + 0.4 * xx)
    rows, patient = [], 0
    while len(rows) < images:
        patient += 1
        sex, age = ("F", "M")[int(rng.integers(2))], int(rng.integers(20, 91))
        site = f"site-{'abc'[int(rng.integers(3))]}"
        vendor = "Vendor B" if site == "site-c" else "Vendor A"
        label = int(rng.random() < 0.3)
        for _ in range(min(int(rng.integers(1, 4)), images - len(rows))):
            pixels = background + rng.normal(0, PIXEL_STD / 3, (size, size))
            if label:
                cy, cx, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.03, 0.08)]
                pixels += 500 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
            name = f"img{len(rows):05d}.dcm"
            header = {
                "PatientID": f"P{patient:05d}",
                "PatientSex": sex,
                "PatientAge": f"{age:03d}Y",
                "StudyDate": "20240102",
                "Manufacturer": vendor,
                "ManufacturerModelName": "Bench DR",
            }
            write_dicom(folder / name, np.clip(pixels, 0, 4095).astype(np.uint16), header)
            rows.append(
                {
                    "image_path": name,
                    "patient_id": f"P{patient:05d}",
                    CLASS_NAME: label,
                    "study_date": "2024-01-02",
                    "age": age,
                    "sex": sex,
                    "site": site,
                    "scanner_manufacturer": vendor,
                    "scanner_model": "Bench DR",
                }
            )
    partial = folder / "manifest.csv.partial"
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    partial.rename(manifest)  # only a complete dataset is ever reused
    return manifest


def _suite_config(n_resamples: int, batch_size: int) -> Any:
    return SuiteConfig(
        attributes=("sex", "age_band", "site", "scanner_manufacturer"),
        intersections=(INTERSECTION,),
        n_resamples=n_resamples,
        seed=0,
        batch_size=batch_size,
    )


def bench_pipeline(
    cache: Path,
    sizes: Sizes = Sizes(),
    *,
    threads: int | None = None,
    log: Log = print,
    network: tuple[Path, dict[str, Any]] | None = None,
    embedding_output: str | None = None,
    name: str = "pipeline_vs_bare_ort",
) -> dict[str, Any]:
    """Images/s of ``evaluate`` on DICOM files over bare ORT on the same session.

    ``network`` is another model (its ONNX file and description; the ResNet-18 by default) and
    ``embedding_output`` its embedding output, computed by the pipeline's inference stage beside
    the scores (``bench foundation``).

    Bare and pipeline runs alternate (bare, pipeline, bare, ..., bare; the same
    number of images each time unless ``sizes.bare_images`` bounds the bare runs: ORT's
    rate on one in-memory batch is steady after the first, so a few batches on each side
    measure it, where a model of 1 image/s would otherwise spend most of the
    measurement on references). Each pipeline run is divided by the mean of
    the two bare runs around it, and the figure is the median of those paired
    ratios: on a shared machine whose speed drifts by a factor of two within a
    minute (measured here), only a reference taken right next to the run is
    fair, and the median drops a round that a neighbour disturbed. Best-over-
    best is kept in the details for comparison.
    """
    model_path, model_meta = network or resnet18_onnx(cache, width=sizes.resnet_width, input_size=sizes.input_size, channels=1)
    log(f"pipeline: {sizes.pipeline_images} DICOM files of {sizes.dicom_size}x{sizes.dicom_size} (written once)")
    folder = cache / f"dicom-{sizes.pipeline_images}x{sizes.dicom_size}"
    manifest = read_manifest(write_dicom_dataset(folder, sizes.pipeline_images, sizes.dicom_size), folder, label_columns=[CLASS_NAME])
    model = open_session(model_path, select_device(threads=threads))
    spec = {"resize": [sizes.input_size] * 2, "channels": "1xHxW", "normalise": {"mean": PIXEL_MEAN, "std": PIXEL_STD}}
    preprocessing = Preprocessing.from_spec(spec)
    batch = np.stack([preprocessing.apply(load_image(manifest.absolute_path(i % len(manifest))).array) for i in range(sizes.batch_size)])
    repeats = max(2, round((sizes.bare_images or sizes.pipeline_images) / sizes.batch_size))
    config = _suite_config(sizes.n_resamples, sizes.batch_size)
    bare = [bare_throughput(model, batch, repeats).images_per_second]
    pipeline: list[float] = []
    for round_ in range(1, sizes.pipeline_rounds + 1):
        log(f"pipeline: round {round_}/{sizes.pipeline_rounds}: evaluate() between bare ORT runs of {repeats} batches")
        started = time.perf_counter()
        evaluation = evaluate(
            model,
            manifest,
            task="binary",
            class_names=[CLASS_NAME],
            thresholds={CLASS_NAME: THRESHOLD},
            preprocessing=preprocessing,
            config=config,
            embedding_output=embedding_output,
        )
        pipeline.append(len(manifest) / (time.perf_counter() - started))
        bare.append(bare_throughput(model, batch, repeats).images_per_second)
    spread = (max(bare) - min(bare)) / max(bare)
    if spread > 0.1:
        log(f"pipeline: bare ORT runs differ by {spread:.0%}; something else is using the CPU")
    paired = [p / ((bare[i] + bare[i + 1]) / 2) for i, p in enumerate(pipeline)]
    median = float(np.median(paired))
    return {
        "figure": figure(name, float(np.median(pipeline)), float(np.median(pipeline)) / median, median, "images/s"),
        "best_over_best": max(pipeline) / max(bare),
        "pipeline_images_per_second": pipeline,
        "bare_images_per_second": bare,
        "bare_spread": spread,
        "round_ratios_to_mean_of_adjacent_bare": paired,
        "images": len(manifest),
        "bare_images_per_run": repeats * sizes.batch_size,
        "dicom": f"{sizes.dicom_size}x{sizes.dicom_size} uint16",
        "preprocessing": spec,
        "batch_size": sizes.batch_size,
        "n_resamples": sizes.n_resamples,
        "threads": model.device.threads,
        "model": model_meta,
        "achieved_gflops": max(bare) * model_meta["gflop_per_image"],
        "stages_seconds": dict(evaluation.timings),
        "inference": evaluation.run_report.inference,
    }


# ---------------------------------------------------------------------------
# 2-3. Stratified metrics against fairlearn and scikit-learn
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Predictions:
    """Synthetic scores, labels, patients and attributes (age already banded)."""

    y_true: np.ndarray
    y_score: np.ndarray
    patient_id: np.ndarray
    attributes: dict[str, np.ndarray]

    @property
    def groupings(self) -> list[tuple[str, ...]]:
        return [(name,) for name in self.attributes] + [INTERSECTION]


def synthetic_predictions(n: int, *, seed: int = 0) -> Predictions:
    """``n`` cases of patients with 1-3 cases each, attributes fixed per patient.

    Scores are rounded to 3 decimals so that ties (the case scikit-learn and
    our rank formula must agree on) are frequent; site-c is made harder.
    """
    rng = np.random.default_rng(seed)
    per_patient = rng.integers(1, 4, size=n)
    patient = np.repeat(np.arange(n), per_patient)[:n]
    n_patients = int(patient[-1]) + 1

    def pick(values: Sequence[str], p: Sequence[float] | None = None) -> np.ndarray:
        return np.asarray(values)[rng.choice(len(values), size=n_patients, p=p)][patient]

    site = pick(("site-a", "site-b", "site-c", "site-d"), (0.35, 0.3, 0.2, 0.15))
    attributes = {
        "sex": pick(("F", "M")),
        "age_band": age_band(rng.integers(5, 95, size=n_patients)[patient]),
        "site": site,
        "scanner_manufacturer": pick(("Vendor A", "Vendor B", "Vendor C"), (0.5, 0.3, 0.2)),
    }
    y = (rng.random(n_patients) < 0.3)[patient].astype(np.int8)
    signal = np.where(site == "site-c", 0.6, 1.5)
    scores = 1.0 / (1.0 + np.exp(-(rng.normal(0, 1, n) + signal * (y - 0.5))))
    return Predictions(y, np.round(scores, 3), np.char.add("P", patient.astype(str)), attributes)


def _recall_at(y_true: np.ndarray, y_score: np.ndarray, *, threshold: float) -> float:
    from sklearn.metrics import recall_score  # reference implementation for the benchmark only (the demo extra)

    return float(recall_score(y_true, y_score >= threshold))


def _selection_rate_at(y_true: np.ndarray, y_score: np.ndarray, *, threshold: float) -> float:
    return float(np.mean(y_score >= threshold))


def fairlearn_frames(data: Predictions, *, n_boot: int | None = None, threshold: float = THRESHOLD, seed: int = 0) -> dict[tuple[str, ...], Any]:
    """One fairlearn ``MetricFrame`` per grouping (each attribute, and sex x age band),
    with AUROC, recall and selection rate, bootstrapped ``n_boot`` times when given."""
    from fairlearn.metrics import MetricFrame  # reference implementation for the benchmark only (the demo extra)
    from sklearn.metrics import roc_auc_score  # reference implementation for the benchmark only (the demo extra)

    metrics = {
        "auroc": roc_auc_score,
        "recall": functools.partial(_recall_at, threshold=threshold),
        "selection_rate": functools.partial(_selection_rate_at, threshold=threshold),
    }
    table = pd.DataFrame(data.attributes)
    boot = {"n_boot": n_boot, "ci_quantiles": [0.025, 0.975], "random_state": seed} if n_boot else {}
    return {
        grouping: MetricFrame(metrics=metrics, y_true=data.y_true, y_pred=data.y_score, sensitive_features=table[list(grouping)], **boot)
        for grouping in data.groupings
    }


def our_report(data: Predictions, n_resamples: int) -> Any:
    """``stratified_metrics`` on ``data``: the four attributes and sex x age band, seeded."""
    return stratified_metrics(
        data.y_true, data.y_score, data.patient_id, data.attributes, [INTERSECTION], threshold=THRESHOLD, n_resamples=n_resamples, seed=0
    )


def sklearn_max_abs_diff(data: Predictions, report: Any) -> dict[str, Any]:
    """Largest |ours - scikit-learn| over every metric, overall and per reported subgroup."""
    from sklearn import metrics as skm  # reference implementation for the benchmark only (the demo extra)

    def reference(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
        called, nan = s >= THRESHOLD, {"zero_division": np.nan}  # undefined is NaN there, None in ours
        return {
            "auroc": skm.roc_auc_score(y, s),
            "auprc": skm.average_precision_score(y, s),
            "sensitivity": skm.recall_score(y, called, **nan),
            "specificity": skm.recall_score(y, called, pos_label=0, **nan),
            "ppv": skm.precision_score(y, called, **nan),
            "npv": skm.precision_score(y, called, pos_label=0, **nan),
            "f1": skm.f1_score(y, called, **nan),
        }

    worst = {"max_abs_diff": 0.0, "metric": None, "subgroup": None}
    compared = 0
    for group in [report.overall, *report.subgroups]:
        if group.suppressed:
            continue
        mask = np.ones(data.y_true.size, dtype=bool)
        for attribute, value in zip(group.attributes, group.values):
            mask &= data.attributes[attribute] == value
        y, s = data.y_true[mask], data.y_score[mask]
        if np.unique(y).size < 2:
            continue  # AUROC undefined: ours reports None, scikit-learn warns
        for metric, expected in reference(y, s).items():
            ours = group.metrics[metric].value
            if ours is None or np.isnan(expected):  # both undefined agree; one alone is an infinite gap
                diff = 0.0 if ours is None and np.isnan(expected) else float("inf")
            else:
                diff = abs(ours - float(expected))
            compared += 1
            if diff >= worst["max_abs_diff"]:
                worst = {"max_abs_diff": diff, "metric": metric, "subgroup": group.name}
    return {**worst, "estimates_compared": compared}


def bench_metrics(sizes: Sizes = Sizes(), *, fairlearn: bool = True, log: Log = print) -> dict[str, Any]:
    """Our stratified bootstrap against fairlearn's per resample, and our point estimates against scikit-learn."""
    data = synthetic_predictions(sizes.predictions)
    n_resamples = sizes.n_resamples if fairlearn else 0
    log(f"metrics: stratified_metrics on {data.y_true.size} predictions, {n_resamples} resamples")
    started = time.perf_counter()
    report = our_report(data, n_resamples)
    ours_seconds = time.perf_counter() - started
    log("metrics: scikit-learn point estimates")
    result: dict[str, Any] = {"sklearn": sklearn_max_abs_diff(data, report)}
    result["sklearn_figure"] = figure(
        "max_abs_diff_vs_sklearn", result["sklearn"]["max_abs_diff"], "scikit-learn on the same subsets", None, "absolute difference"
    )
    groups = {"groupings": [" x ".join(g) for g in data.groupings], "subgroups": len(report.subgroups)}
    result["data"] = {"predictions": int(data.y_true.size), "patients": int(np.unique(data.patient_id).size), **groups}
    if not fairlearn:
        return result
    log("metrics: fairlearn MetricFrame, point estimates")
    started = time.perf_counter()
    fairlearn_frames(data)
    point_seconds = time.perf_counter() - started
    log(f"metrics: fairlearn MetricFrame, {sizes.fairlearn_resamples} bootstrap resamples")
    started = time.perf_counter()
    fairlearn_frames(data, n_boot=sizes.fairlearn_resamples)
    boot_seconds = time.perf_counter() - started
    # Point estimates are timed apart and taken out, so fairlearn is charged for its resamples only.
    theirs = max(boot_seconds - point_seconds, 1e-9) / sizes.fairlearn_resamples
    ours = ours_seconds / sizes.n_resamples
    result["fairlearn_figure"] = figure("metrics_vs_fairlearn", ours, theirs, ours / theirs, "s/resample")
    result["fairlearn"] = {
        "ours_seconds": ours_seconds,
        "ours_resamples": sizes.n_resamples,
        "ours_seconds_per_resample": ours,
        "ours_metrics": len(METRIC_NAMES),
        "fairlearn_point_seconds": point_seconds,
        "fairlearn_bootstrap_seconds": boot_seconds,
        "fairlearn_resamples": sizes.fairlearn_resamples,
        "fairlearn_seconds_per_resample": theirs,
        "fairlearn_metrics": ["roc_auc_score", "recall_score", "selection_rate"],
        "fairlearn_resampling": "cases (fairlearn has no patient-level bootstrap); ours resamples patients",
    }
    return result


# ---------------------------------------------------------------------------
# 4. A whole validation run of generated images
# ---------------------------------------------------------------------------


def _demo_run_inputs(cache: Path, sizes: Sizes, log: Log) -> tuple[Path, Any]:
    """The demo generator's dataset and its trained CNN, made once per size and seed in ``cache``."""
    folder = cache / f"demo-{sizes.run_images}-{sizes.train_images}"
    trained_json = folder / "model" / "trained.json"
    if not trained_json.exists():
        log(f"run: generating {sizes.run_images} demo images and training the demo CNN on {sizes.train_images}")
        demo_data.generate_dataset(folder / "data", n_images=sizes.run_images, seed=0)
        trained = demo_data.train_classifier(folder / "model", seed=0, n_train=sizes.train_images, epochs=sizes.train_epochs)
        trained_json.write_text(json.dumps(trained.to_dict()))  # written last: marks both as complete
    return folder / "data" / "manifest.csv", json.loads(trained_json.read_text())


def bench_run(cache: Path, sizes: Sizes = Sizes(), *, log: Log = print) -> dict[str, Any]:
    """Seconds of a whole run (session opened, then ``evaluate``) on ``run_threads`` threads, and stage shares.

    The demo CNN carries its sigmoid, so the activation is "none".
    """
    manifest_path, trained = _demo_run_inputs(cache, sizes, log)
    schema = trained["output_schema"]
    manifest = read_manifest(manifest_path, manifest_path.parent, label_columns=schema["class_names"])
    log(f"run: evaluate() on {len(manifest)} images, {sizes.run_threads} threads")
    started = time.perf_counter()
    model = open_session(Path(trained["onnx_path"]), select_device(prefer_gpu=False, threads=sizes.run_threads))
    opened = time.perf_counter()
    evaluation = evaluate(
        model,
        manifest,
        task="binary",
        class_names=schema["class_names"],
        thresholds=schema["thresholds"],
        preprocessing=Preprocessing.from_spec(trained["preprocessing"]),
        config=_suite_config(sizes.n_resamples, sizes.batch_size),
    )
    seconds = time.perf_counter() - started
    stages = {"session": opened - started, **{k: float(v) for k, v in evaluation.timings.items()}}
    stages["other"] = max(seconds - sum(stages.values()), 0.0)
    return {
        "figure": figure("run_2000_seconds", seconds, None, None, "s"),
        "seconds": seconds,
        "images": len(manifest),
        "threads": sizes.run_threads,
        "n_resamples": sizes.n_resamples,
        "image_size": trained["preprocessing"].get("resize"),
        "stages_seconds": stages,
        "stage_shares": {k: v / seconds for k, v in stages.items()},
        "inference": evaluation.run_report.inference,
    }


def bench_suite(cache: Path, sizes: Sizes = Sizes(), *, log: Log = print) -> dict[str, Any]:
    """Seconds per stage of the full suite (every analysis: robustness at 3 severities, TTA,
    explainability on 32 cases, drift) on the demo run, with drift against a plain run of the
    same data as its baseline; and how often each image was read from disk."""
    manifest_path, trained = _demo_run_inputs(cache, sizes, log)
    schema = trained["output_schema"]
    manifest = read_manifest(manifest_path, manifest_path.parent, label_columns=schema["class_names"])
    model = open_session(Path(trained["onnx_path"]), select_device(prefer_gpu=False, threads=sizes.run_threads))
    common = {
        "task": "binary",
        "class_names": schema["class_names"],
        "thresholds": schema["thresholds"],
        "preprocessing": Preprocessing.from_spec(trained["preprocessing"]),
    }
    plain = replace(_suite_config(sizes.n_resamples, sizes.batch_size), analyses=())
    log(f"suite: the baseline, a plain run on {len(manifest)} images")
    baseline = Baseline(table=evaluate(model, manifest, config=plain, **common).cases, source={"bench": "plain run"})
    log(f"suite: {', '.join(FULL_SUITE)} on {len(manifest)} images, {sizes.run_threads} threads")
    started = time.perf_counter()
    evaluation = evaluate(model, manifest, config=replace(plain, analyses=FULL_SUITE), baseline=baseline, **common)
    seconds = time.perf_counter() - started
    report = evaluation.run_report
    label = report.results[schema["class_names"][0]]
    return {
        "figure": figure("suite_2000_seconds", seconds, None, None, "s"),
        "reads_figure": figure("images_read_per_image", report.images_read_per_image, None, None, "reads"),
        "seconds": seconds,
        "images": len(manifest),
        "threads": sizes.run_threads,
        "stages_seconds": {k: float(v) for k, v in evaluation.timings.items()},
        "images_read": report.images_read,
        "robustness_conditions": len(label.robustness["conditions"]),
        "sampled_cases": label.robustness["n_cases"],
        "tta_augmentations": len(label.uncertainty["augmentations"]),
        "explained_cases": label.explainability["n_cases"],
        "saliency_files": len(evaluation.files),
    }


# ---------------------------------------------------------------------------
# 5. Fourteen labels against one
# ---------------------------------------------------------------------------


def labels_manifest(manifest_path: Path, label: str, labels: int) -> tuple[Path, list[str]]:
    """The demo manifest with ``labels - 1`` more findings beside ``label``, each drawn on its own
    (seeded; prevalence 5% to 50%), so that each label has positives of its own, as the findings of a
    real multi-label model do; written once beside the demo manifest."""
    names = [label, *(f"finding_{k:02d}" for k in range(1, labels))]
    out = manifest_path.with_name(f"manifest-{labels}-labels.csv")
    if not out.exists():
        table = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)
        rng = np.random.default_rng(0)
        for name, prevalence in zip(names[1:], np.linspace(0.05, 0.5, labels - 1)):
            table[name] = (rng.random(len(table)) < prevalence).astype(int).astype(str)
        partial = out.with_suffix(".partial")
        table.to_csv(partial, index=False)
        partial.rename(out)  # only a complete manifest is ever reused
    return out, names


def tiny_classifier_onnx(cache: Path, classes: int) -> Path:
    """The demo's small CNN (``export_tiny_classifier``, seed 0: the same backbone whatever the head)
    with a ``classes``-unit head of logits, exported once to ``cache``."""
    path = cache / f"tiny-classifier-{classes}.onnx"
    if not path.exists():
        (exported,) = export_tiny_classifier(cache, name=f"{path.stem}.partial.onnx", classes=classes)
        exported.rename(path)  # only a complete export is ever reused
    return path


def bench_labels(cache: Path, sizes: Sizes = Sizes(), *, log: Log = print) -> dict[str, Any]:
    """The full suite (drift against a plain run of the same model) on a 14-label model over a 1-label
    model with the same backbone, on the demo images: the forward passes the report counts, and the
    seconds of the 14-label run over the mean of the 1-label runs just before and after it (the
    machine's speed drifts)."""
    manifest_path, trained = _demo_run_inputs(cache, sizes, log)
    labelled, names = labels_manifest(manifest_path, trained["output_schema"]["class_names"][0], LABELS)
    device = select_device(prefer_gpu=False, threads=sizes.run_threads)
    plain = replace(_suite_config(sizes.n_resamples, sizes.batch_size), analyses=())
    full = replace(plain, analyses=FULL_SUITE, explain_cases=sizes.label_explain_cases, rise_masks=sizes.label_rise_masks)
    suites: dict[int, Callable[[], Any]] = {}
    for count in (1, LABELS):
        columns = names[:count]
        model = open_session(tiny_classifier_onnx(cache / "labels", count), device)
        common = {
            "manifest": read_manifest(labelled, labelled.parent, label_columns=columns),
            "task": "multilabel" if count > 1 else "binary",
            "class_names": columns,
            "thresholds": dict.fromkeys(columns, THRESHOLD),
            "preprocessing": Preprocessing.from_spec(trained["preprocessing"]),
            "activation": "sigmoid",
        }
        log(f"labels: the baseline of the {count}-label model, a plain run on {len(common['manifest'])} images")
        baseline = Baseline(table=evaluate(model, config=plain, **common).cases, source={"bench": "plain run"})
        suites[count] = functools.partial(evaluate, model, config=full, baseline=baseline, **common)
    seconds: dict[int, list[float]] = {1: [], LABELS: []}
    reports: dict[int, Any] = {}
    for count in (1, LABELS, 1):
        log(f"labels: the full suite on the {count}-label model")
        started = time.perf_counter()
        evaluation = suites[count]()
        seconds[count].append(time.perf_counter() - started)
        reports[count] = evaluation
    passes = {count: evaluation.run_report.inference["forward_passes"] for count, evaluation in reports.items()}
    one_label_seconds = float(np.mean(seconds[1]))

    def per_model(value: Callable[[Any], Any]) -> dict[str, Any]:
        return {f"{count}_labels": value(evaluation) for count, evaluation in reports.items()}

    return {
        "passes_figure": figure("forward_passes_14_labels_over_1_label", float(passes[LABELS]), passes[1], passes[LABELS] / passes[1], "passes"),
        "seconds_figure": figure("suite_14_labels_over_1_label", seconds[LABELS][0], one_label_seconds, seconds[LABELS][0] / one_label_seconds, "s"),
        "images": len(reports[1].case_index),
        "threads": sizes.run_threads,
        "suite_seconds": {f"{count}_labels": values for count, values in seconds.items()},
        "forward_passes_by_stage": per_model(lambda e: e.run_report.inference["forward_passes_by_stage"]),
        "forward_passes_per_sampled_case": per_model(lambda e: e.run_report.inference["forward_passes_per_sampled_case"]),
        "explained_cases": per_model(lambda e: _explained_cases(e.run_report)),
        "stages_seconds": per_model(lambda e: {k: float(v) for k, v in e.timings.items()}),
    }


def _explained_cases(report: Any) -> int:
    """How many distinct cases the labels explained between them (one set shared by the labels)."""
    return len({case["row"] for result in report.results.values() for case in result.explainability["cases"]})


# ---------------------------------------------------------------------------
# All figures
# ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on; the load average says whether something else was running."""
    import onnxruntime  # heavy; loaded when a model runs

    device = select_device()
    return {
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "device": device.name,
        "provider": device.providers[0],
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def bench_drift(sizes: Sizes = Sizes(), *, log: Log = print) -> dict[str, Any]:
    """``distribution_drift`` (KS and PSI sharing one sort per sample) on two samples of
    ``drift_values`` against scipy's ``ks_2samp`` plus a NumPy PSI (decile edges with
    ``np.quantile``, shares with ``np.histogram``) on the same data; best of ``drift_repeats``."""
    rng = np.random.default_rng(0)
    reference = rng.normal(0.0, 1.0, sizes.drift_values)
    current = rng.normal(0.1, 1.1, sizes.drift_values)
    log(f"drift: {sizes.drift_values:,} values per sample, best of {sizes.drift_repeats}")

    def theirs() -> tuple[float, float]:
        ks = stats.ks_2samp(reference, current)
        edges = np.concatenate([[-np.inf], np.quantile(reference, np.linspace(0, 1, 11)[1:-1]), [np.inf]])
        expected = np.maximum(np.histogram(reference, edges)[0] / reference.size, PSI_FLOOR)
        actual = np.maximum(np.histogram(current, edges)[0] / current.size, PSI_FLOOR)
        return float(ks.statistic), float(np.sum((actual - expected) * np.log(actual / expected)))

    def best(call) -> tuple[float, Any]:
        times, value = [], None
        for _ in range(sizes.drift_repeats):
            started = time.perf_counter()
            value = call()
            times.append(time.perf_counter() - started)
        return min(times), value

    ours_seconds, ours = best(lambda: distribution_drift(reference, current, feature="bench"))
    theirs_seconds, (statistic, psi) = best(theirs)
    return {
        "figure": figure("drift_vs_scipy", ours_seconds, theirs_seconds, ours_seconds / theirs_seconds, "s"),
        "values": sizes.drift_values,
        "ours_seconds": ours_seconds,
        "scipy_numpy_seconds": theirs_seconds,
        "ks_statistic_diff": abs(ours.ks_statistic - statistic),
        "psi_diff": abs(ours.psi - psi),
    }


def run_benchmarks(cache: Path, *, quick: bool = False, only: str | None = None, images: int | None = None, log: Log = print) -> dict[str, Any]:
    """Every figure (or ``only`` one): the keys a script reads, with ``figures`` and ``details``."""
    if only is not None and only not in FIGURES:
        raise ValueError(f"unknown figure {only!r}; choose one of {', '.join(FIGURES)}")
    sizes = QUICK if quick else Sizes()
    if images is not None:
        sizes = replace(sizes, pipeline_images=images)
    wanted = set([f for f in FIGURES if f not in HEAVY] if only is None else [only])
    result: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {"machine": machine(), "quick": quick}
    if "pipeline_vs_bare_ort" in wanted:
        pipeline = bench_pipeline(cache, sizes, log=log)
        figures["pipeline_vs_bare_ort"] = pipeline.pop("figure")
        details["pipeline"] = pipeline
    if wanted & {"metrics_vs_fairlearn", "max_abs_diff_vs_sklearn"}:
        metrics = bench_metrics(sizes, fairlearn="metrics_vs_fairlearn" in wanted, log=log)
        if "fairlearn_figure" in metrics:
            figures["metrics_vs_fairlearn"] = metrics.pop("fairlearn_figure")
        figures["max_abs_diff_vs_sklearn"] = metrics.pop("sklearn_figure")
        details["metrics"] = metrics
    if "run_2000_seconds" in wanted:
        run = bench_run(cache, sizes, log=log)
        figures["run_2000_seconds"] = run.pop("figure")
        details["run"] = run
    if wanted & {"suite_2000_seconds", "images_read_per_image"}:
        suite = bench_suite(cache, sizes, log=log)
        figures["suite_2000_seconds"] = suite.pop("figure")
        figures["images_read_per_image"] = suite.pop("reads_figure")
        details["suite"] = suite
    if wanted & {"forward_passes_14_labels_over_1_label", "suite_14_labels_over_1_label"}:
        labels = bench_labels(cache, sizes, log=log)
        figures["forward_passes_14_labels_over_1_label"] = labels.pop("passes_figure")
        figures["suite_14_labels_over_1_label"] = labels.pop("seconds_figure")
        details["labels"] = labels
    if "pipeline_vs_bare_ort_vit_b16" in wanted:
        vit = bench_pipeline(cache, vit_sizes(sizes, quick), log=log, network=vit_onnx(cache, quick), name="pipeline_vs_bare_ort_vit_b16")
        figures["pipeline_vs_bare_ort_vit_b16"] = vit.pop("figure")
        details["pipeline_vit_b16"] = vit
    if "drift_vs_scipy" in wanted:
        drift = bench_drift(sizes, log=log)
        figures["drift_vs_scipy"] = drift.pop("figure")
        details["drift"] = drift
    for name, entry in figures.items():
        result[name] = entry["value"] if entry["ratio"] is None else entry["ratio"]
    return {**result, "figures": figures, "details": details}


def _cell(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else ("-" if x is None else str(x)[:12])


def format_table(result: Mapping[str, Any]) -> str:
    """The figures as a small text table for people."""
    width = max(26, *(len(name) for name in result["figures"]))
    lines = [f"{'figure':<{width}} {'value':>12} {'reference':>12} {'ratio':>10}  goal"]
    for name, entry in result["figures"].items():
        met = {True: "met", False: "NOT met", None: ""}[entry["meets_goal"]]
        lines.append(
            f"{name:<{width}} {_cell(entry['value']):>12} {_cell(entry['reference']):>12} "
            f"{_cell(entry['ratio']):>10}  {entry['goal'] or ''} {met}".rstrip()
        )
    machine_ = result["details"]["machine"]
    lines.append(f"machine: {machine_['cpu_count']} CPUs, {machine_['device']}, {machine_['provider']}, onnxruntime {machine_['onnxruntime']}")
    if result["details"].get("quick"):
        lines.append("quick run: sizes for a smoke test, too small for the goals to apply")
    return "\n".join(lines)
