"""Figures of runs that scale out (issue 22): shards merged, workers and decoding processes, memory.

Each figure is measured in fresh processes started with ``spawn`` (a worker as it runs), on
generated data written once under the cache folder:

1. ``shard_merge_equal``: a run scored in shards of whole patients (``pipeline.score_cases`` on
   each shard's own cases, as a shard's worker reads them, stored and read back as bytes,
   ``Scored.merge``) and evaluated on the merged table,
   against the same run scored whole: their reports without the inference's own seconds, rates
   and batch count (``scoring.comparable``) are equal.
2. ``sharded_speedup_2_workers``: the shards scored and merged by one worker process against two,
   each with one ONNX Runtime thread and decoding on its loader thread, each reading its shards'
   own cases (``scoring.ShardCases``), never the manifest; wall time from the first
   worker's start of work to the merged table. A worker's start, model loading and exit are
   paid once, not per run: they are excluded (every worker is ready before any starts, and the
   processes exit after the table is merged).
3. ``loader_processes_speedup``: DICOM images decoded and preprocessed by ``decoding.decoded``
   with two processes against one (the pool's start excluded: paid once per run).
4. ``rss_growth_mb_10k_to_100k`` and ``time_ratio_100k_over_10k``: a whole run (a child process
   each) over 10,000 and 100,000 small generated images: the growth of its peak resident memory
   and the ratio of its seconds.
5. ``dicomweb_vs_files``: a run over DICOMweb from a local Orthanc with a cold cache, as a share
   of the same run over files (the warm-cache share beside it), from the bench module that
   defines ``dicomweb_vs_files(n_instances)``; null with the reason when none does or it fails.

On a machine that other work loads, the two speedups measure the share of two cores this bench
got, not the code: the load average is printed beside them.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pkgutil
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import radtrust_demo.bench as bench_package
from radtrust_demo.bench.validation import CLASS_NAME, PIXEL_MEAN, PIXEL_STD, machine, write_dicom_dataset
from radtrust_demo.networks import export_tiny_classifier
from radtrust_engine.decoding import decoded
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import SuiteConfig, evaluate, score_cases
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device
from radtrust_engine.scoring import Scored, ShardCases, comparable, patient_shards

Log = Callable[[str], None]
GOALS = {
    "shard_merge_equal": ("==", True),
    "sharded_speedup_2_workers": (">=", 1.6),
    "loader_processes_speedup": (">=", 1.6),
    "rss_growth_mb_10k_to_100k": ("<=", 150.0),
    "time_ratio_100k_over_10k": ("<=", 10.5),
    "dicomweb_vs_files": (">=", 0.5),
}
INPUT = 64  # the tiny classifier's input side
SPEC = {"resize": [INPUT, INPUT], "channels": "1xHxW", "normalise": {"mean": PIXEL_MEAN, "std": PIXEL_STD}}
SMALL_SPEC = {"resize": [INPUT, INPUT], "channels": "1xHxW", "normalise": {"mean": 128.0, "std": 64.0}}


@dataclass(frozen=True)
class Sizes:
    """``FULL`` are the issue's sizes; the default is a run of a minute or two for CI."""

    merge_images: int = 400
    worker_images: int = 480
    worker_shards: int = 8
    dicom_size: int = 256
    decode_images: int = 480
    run_small: int = 1_000
    run_large: int = 10_000
    small_side: int = 16
    n_resamples: int = 200
    dicomweb_instances: int = 200


FULL = Sizes(merge_images=2000, worker_images=2000, decode_images=2000, dicom_size=512, run_small=10_000, run_large=100_000, dicomweb_instances=2000)


def _figure(name: str, value: Any, unit: str, **details: Any) -> dict[str, Any]:
    kind, goal = GOALS[name]
    if value is None or isinstance(value, bool) != isinstance(goal, bool):
        met = None if value is None else value == goal
    elif kind == "==":
        met = value == goal
    else:
        met = value >= goal if kind == ">=" else value <= goal
    return {"value": value, "unit": unit, "goal": f"{kind} {goal}", "meets_goal": met, **details}


def _config(n_resamples: int, batch_size: int = 32) -> SuiteConfig:
    return SuiteConfig(
        attributes=("sex", "age_band", "site", "scanner_manufacturer"),
        n_resamples=n_resamples,
        batch_size=batch_size,
        analyses=("calibration", "generalisation"),
    )


def _model_path(cache: Path) -> Path:
    folder = cache / "tiny-classifier"
    path = folder / "model.onnx"
    if not path.exists():
        export_tiny_classifier(folder, seed=0)
    return path


def _evaluate_kwargs(spec: Mapping[str, Any], config: SuiteConfig) -> dict[str, Any]:
    return {
        "task": "binary",
        "class_names": [CLASS_NAME],
        "thresholds": {CLASS_NAME: 0.5},
        "preprocessing": Preprocessing.from_spec(dict(spec)),
        "config": config,
        "activation": "sigmoid",
    }


# ---------------------------------------------------------------------------
# 1. Shards merged against the run scored whole
# ---------------------------------------------------------------------------


def bench_merge(cache: Path, sizes: Sizes, *, log: Log) -> dict[str, Any]:
    folder = cache / f"dicom-{sizes.merge_images}x{sizes.dicom_size}"
    manifest = read_manifest(write_dicom_dataset(folder, sizes.merge_images, sizes.dicom_size), folder, label_columns=[CLASS_NAME])
    model = open_session(_model_path(cache), select_device(prefer_gpu=False))
    config = _config(sizes.n_resamples)
    kwargs = _evaluate_kwargs(SPEC, config)
    plan = patient_shards(manifest.patient_ids, max(1, len(manifest) // sizes.worker_shards))
    log(f"merge: {len(manifest)} images whole, then in {len(plan)} shards of whole patients")
    whole = evaluate(model, manifest, **kwargs)
    parts = [
        Scored.from_bytes(score_cases(model, ShardCases.of(manifest, rows), folder, preprocessing=kwargs["preprocessing"], config=config).to_bytes())
        for rows in plan
    ]
    merged = evaluate(model, manifest, scored=Scored.merge(parts), **kwargs)
    equal = comparable(merged.report) == comparable(whole.report)
    return _figure("shard_merge_equal", equal, "bool", images=len(manifest), shards=len(plan), n_resamples=sizes.n_resamples)


# ---------------------------------------------------------------------------
# 2. Two single-threaded workers against one
# ---------------------------------------------------------------------------


def _worker(model_path: str, folder: str, shards: list[dict[str, Any]], ready: Any, results: Any) -> None:
    """One worker process: its own session on one thread, its shards' own cases scored in turn once
    every worker is ready (``ready``, a barrier), as warm workers would take them."""
    model = open_session(Path(model_path), select_device(prefer_gpu=False, threads=1))
    preprocessing = Preprocessing.from_spec(SPEC)
    config = _config(0)
    ready.wait()  # no worker scores while another still starts: starting is paid once per worker, not per run
    started = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    scored = [
        score_cases(model, ShardCases.from_dict(cases), Path(folder), preprocessing=preprocessing, config=config).to_bytes() for cases in shards
    ]
    results.put((started, time.monotonic(), scored))


def _workers_seconds(model_path: Path, folder: Path, plan: list[dict[str, Any]], workers: int) -> float:
    """From the first worker's start of work to the merged table, with ``workers`` processes sharing the
    shards; the processes' exit (about a second of interpreter teardown here) comes after."""
    context = multiprocessing.get_context("spawn")
    results, ready = context.Queue(), context.Barrier(workers)
    processes = [context.Process(target=_worker, args=(str(model_path), str(folder), plan[w::workers], ready, results)) for w in range(workers)]
    for process in processes:
        process.start()
    done = [results.get() for _ in processes]
    Scored.merge([Scored.from_bytes(data) for _, _, parts in done for data in parts])
    seconds = time.monotonic() - min(start for start, _, _ in done)
    for process in processes:
        process.join()
    return seconds


def bench_workers(cache: Path, sizes: Sizes, *, log: Log) -> dict[str, Any]:
    folder = cache / f"dicom-{sizes.worker_images}x{sizes.dicom_size}"
    manifest = read_manifest(write_dicom_dataset(folder, sizes.worker_images, sizes.dicom_size), folder, label_columns=[CLASS_NAME])
    plan = [ShardCases.of(manifest, rows).to_dict() for rows in patient_shards(manifest.patient_ids, max(1, len(manifest) // sizes.worker_shards))]
    model_path = _model_path(cache)
    log(f"workers: {len(manifest)} images in {len(plan)} shards, one worker then two (one thread each)")
    one = _workers_seconds(model_path, folder, plan, 1)
    two = _workers_seconds(model_path, folder, plan, 2)
    return _figure(
        "sharded_speedup_2_workers",
        one / two,
        "x",
        one_worker_seconds=one,
        two_workers_seconds=two,
        images=len(manifest),
        shards=len(plan),
        dicom=f"{sizes.dicom_size}x{sizes.dicom_size} uint16",
    )


# ---------------------------------------------------------------------------
# 3. Decoding in two processes against one
# ---------------------------------------------------------------------------


def _decode_rate(rows: list[int], paths: list[str], preprocessing: Preprocessing, processes: int, chunk: int) -> float:
    """Images/s after the first chunk arrived (the pool's start is paid once per run)."""
    first = None
    count = 0
    for _ in decoded(rows, paths, preprocessing, processes=processes, chunk=chunk):
        count += 1
        if count == chunk:
            first = time.perf_counter()
    return (count - chunk) / (time.perf_counter() - first)


def bench_decoding(cache: Path, sizes: Sizes, *, log: Log) -> dict[str, Any]:
    folder = cache / f"dicom-{sizes.decode_images}x{sizes.dicom_size}"
    manifest = read_manifest(write_dicom_dataset(folder, sizes.decode_images, sizes.dicom_size), folder, label_columns=[CLASS_NAME])
    rows = list(range(len(manifest)))
    paths = [str(manifest.absolute_path(i)) for i in rows]
    preprocessing = Preprocessing.from_spec(SPEC)
    log(f"decoding: {len(rows)} DICOM files of {sizes.dicom_size}x{sizes.dicom_size}, one process then two")
    one = _decode_rate(rows, paths, preprocessing, 1, 16)
    two = _decode_rate(rows, paths, preprocessing, 2, 16)
    return _figure("loader_processes_speedup", two / one, "x", one_process_images_per_second=one, two_processes_images_per_second=two)


# ---------------------------------------------------------------------------
# 4. Memory and time from a small run to a ten times larger one
# ---------------------------------------------------------------------------


def write_small_dataset(folder: Path, images: int, side: int) -> Path:
    """``images`` small uint8 NPY images (1-3 per patient) and their manifest; reused once written."""
    manifest = folder / "manifest.csv"
    if manifest.exists():
        return manifest
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["image_path,patient_id,finding,age,sex,site,scanner_manufacturer"]
    patient = 0
    while len(lines) <= images:
        patient += 1
        label, sex, age, site = int(rng.random() < 0.3), "FM"[int(rng.integers(2))], int(rng.integers(20, 91)), "abc"[int(rng.integers(3))]
        for _ in range(min(int(rng.integers(1, 4)), images + 1 - len(lines))):
            i = len(lines) - 1
            pixels = rng.integers(0, 200, (side, side), dtype=np.uint8)
            if label:
                pixels[side // 4 : side // 2, side // 4 : side // 2] += 55
            np.save(folder / "img" / f"{i}.npy", pixels)
            lines.append(f"img/{i}.npy,P{patient},{label},{age},{sex},site-{site},Vendor {site.upper()}")
    partial = folder / "manifest.csv.partial"
    partial.write_text("\n".join(lines) + "\n")
    partial.rename(manifest)
    return manifest


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``). Not ``ru_maxrss``, which Linux carries over
    ``exec`` from the parent: a child started by a large parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best there is


def _run_child(model_path: str, folder: str, n_resamples: int, results: Any) -> None:
    """A whole run in a fresh process: its seconds and its peak resident memory (MB) before and after."""
    manifest = read_manifest(Path(folder) / "manifest.csv", Path(folder), label_columns=[CLASS_NAME])
    model = open_session(Path(model_path), select_device(prefer_gpu=False))
    before = peak_rss_mb()
    started = time.perf_counter()
    evaluate(model, manifest, **_evaluate_kwargs(SMALL_SPEC, _config(n_resamples)))
    results.put((time.perf_counter() - started, before, peak_rss_mb()))


def _run_in_child(model_path: Path, folder: Path, n_resamples: int) -> tuple[float, float, float]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_run_child, args=(str(model_path), str(folder), n_resamples, results))
    process.start()
    outcome = results.get()
    process.join()
    return outcome


def bench_growth(cache: Path, sizes: Sizes, *, log: Log) -> dict[str, dict[str, Any]]:
    model_path = _model_path(cache)
    measured = {}
    for n in (sizes.run_small, sizes.run_large):
        folder = cache / f"small-{n}x{sizes.small_side}"
        log(f"growth: writing or reusing {n:,} images of {sizes.small_side}x{sizes.small_side}, then a run over them in a fresh process")
        write_small_dataset(folder, n, sizes.small_side)
        measured[n] = _run_in_child(model_path, folder, sizes.n_resamples)
    (small_s, _, small_peak), (large_s, _, large_peak) = measured[sizes.run_small], measured[sizes.run_large]
    details = {
        "images": [sizes.run_small, sizes.run_large],
        "seconds": [small_s, large_s],
        "peak_rss_mb": [small_peak, large_peak],
        "rss_after_model_load_mb": [measured[n][1] for n in (sizes.run_small, sizes.run_large)],
        "n_resamples": sizes.n_resamples,
    }
    return {
        "rss_growth_mb_10k_to_100k": _figure("rss_growth_mb_10k_to_100k", large_peak - small_peak, "MB", **details),
        "time_ratio_100k_over_10k": _figure("time_ratio_100k_over_10k", large_s / small_s, "x", **details),
    }


# ---------------------------------------------------------------------------
# 5. DICOMweb against files
# ---------------------------------------------------------------------------


def bench_dicomweb(sizes: Sizes, *, log: Log) -> dict[str, Any]:
    """The figure of the bench module that defines ``dicomweb_vs_files``, or null with the reason."""
    for module in pkgutil.iter_modules(bench_package.__path__):
        if module.name == "scale":
            continue
        found = getattr(importlib.import_module(f"radtrust_demo.bench.{module.name}"), "dicomweb_vs_files", None)
        if found is not None:
            log(f"dicomweb: {sizes.dicomweb_instances} instances (radtrust_demo.bench.{module.name})")
            try:
                result = found(sizes.dicomweb_instances)
            except Exception as exc:  # no Orthanc on this machine, and the like: said, not faked
                return _figure("dicomweb_vs_files", None, "x", reason=f"{type(exc).__name__}: {exc}")
            if not isinstance(result, Mapping):
                return _figure("dicomweb_vs_files", result, "x", source=f"radtrust_demo.bench.{module.name}")
            warm = result.get("dicomweb_vs_files_warm")
            return _figure(
                "dicomweb_vs_files",
                result.get("value", result.get("dicomweb_vs_files_cold")),
                "x",
                cache="cold",
                warm=warm,
                warm_goal=">= 0.95",
                warm_meets_goal=None if warm is None else warm >= 0.95,
                source=f"radtrust_demo.bench.{module.name}",
                result=result,
            )
    return _figure("dicomweb_vs_files", None, "x", reason="no bench module defines dicomweb_vs_files(n_instances) yet")


# ---------------------------------------------------------------------------


def run_scale_bench(cache: Path, *, full: bool = False, log: Log = print) -> dict[str, Any]:
    """Every figure: the keys a script reads, with ``figures`` and ``details``."""
    sizes = FULL if full else Sizes()
    load = os.getloadavg()[0]
    figures: dict[str, Any] = {}
    figures["shard_merge_equal"] = bench_merge(cache, sizes, log=log)
    figures["sharded_speedup_2_workers"] = bench_workers(cache, sizes, log=log)
    figures["loader_processes_speedup"] = bench_decoding(cache, sizes, log=log)
    figures.update(bench_growth(cache, sizes, log=log))
    figures["dicomweb_vs_files"] = bench_dicomweb(sizes, log=log)
    details = {"machine": machine(), "full": full, "load_average_1min_before": load, "load_average_1min_after": os.getloadavg()[0]}
    return {**{name: entry["value"] for name, entry in figures.items()}, "figures": figures, "details": details}


def format_table(result: Mapping[str, Any]) -> str:
    lines = [f"{'figure':<28} {'value':>10}  goal"]
    for name, entry in result["figures"].items():
        value = entry["value"]
        shown = "-" if value is None else (str(value) if isinstance(value, bool) else f"{value:.3g}")
        met = {True: "met", False: "NOT met", None: entry.get("reason", "")}[entry["meets_goal"]]
        lines.append(f"{name:<28} {shown:>10}  {entry['goal']} {met}".rstrip())
    details = result["details"]
    lines.append(f"load average (1 min) before/after: {details['load_average_1min_before']:.2f}/{details['load_average_1min_after']:.2f}")
    if not details["full"]:
        lines.append("CI sizes: run with --full for the issue's sizes (10,000 and 100,000 images, 2,000 DICOM files)")
    return "\n".join(lines)
