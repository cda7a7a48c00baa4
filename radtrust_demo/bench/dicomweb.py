"""``dicomweb_vs_files``: a validation run reading its instances from a local Orthanc over DICOMweb,
against the same run reading the same DICOM files from disk (issue 22).

The data are the demo generator's radiographs (64x64 DICOM, each image its own study, so every
instance is one WADO-RS request: the archive's worst case) and the model is the tiny CNN the
tests use, so reading, not inference, dominates and the figure shows what DICOMweb costs. Both
sides run ``pipeline.evaluate`` on the same cases in the same order (the frozen manifest's):

- ``files``: the manifest over the files on disk (attributes from the headers, as for a PACS).
- ``cold``: an empty cache, ``dicomweb.retrieve`` (``RADTRUST_DICOMWEB_WORKERS`` parallel
  requests) then ``evaluate`` over the cache, timed together.
- ``warm``: the same with every instance already in the cache (a re-run).

Resolving the query (QIDO-RS) happens at run creation, not in the run, and is reported apart.
Rounds alternate the three so a machine that slows down moves all of them; medians are kept.
Plain Python with Orthanc as a subprocess (``radtrust_demo.orthanc``); no Django.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from radtrust_demo.data import generate_dataset
from radtrust_demo.networks import export_tiny_classifier
from radtrust_demo.orthanc import orthanc
from radtrust_demo.pacs import dicom_files, header_manifest, sop_labels
from radtrust_engine.dicomweb import DicomwebQuery, cached_manifest, dicomweb_client, label, labels_table, resolve, retrieve
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device

GOALS = {"dicomweb_vs_files_cold": 0.5, "dicomweb_vs_files_warm": 0.95}  # at least this share of the files' throughput
LABEL = "nodule"
WORKERS = 4  # parallel WADO-RS requests, as RADTRUST_DICOMWEB_WORKERS defaults to
ROUNDS = 3


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)  # stdout is the JSON of ``manage.py bench ... --json``


def dicomweb_vs_files(
    n_instances: int = 2000, *, rounds: int = ROUNDS, workers: int = WORKERS, log: Callable[[str], None] = _stderr
) -> dict[str, Any]:
    """Images/s of a run over DICOMweb (cold and warm cache) as shares of the same run over files (see the module docstring);
    ``value`` is the cold-cache share, the figure with the harder goal."""
    with tempfile.TemporaryDirectory(prefix="radtrust-dicomweb-bench-") as folder:
        tmp = Path(folder)
        log(f"dicomweb: generating {n_instances} DICOM radiographs")
        root = tmp / "data"
        generate_dataset(root, n_images=n_instances, seed=11, label=LABEL)
        files = dicom_files(root, [LABEL])
        model = open_session(export_tiny_classifier(tmp / "model", seed=1)[0], select_device(prefer_gpu=False, threads=2))
        config = SuiteConfig(analyses=(), n_resamples=200, attributes=("sex", "age_band", "scanner_manufacturer"), intersections=())

        def run(manifest) -> int:
            evaluation = evaluate(
                model, manifest, task="binary", class_names=[LABEL], thresholds={LABEL: 0.5}, preprocessing=Preprocessing(), config=config
            )
            return evaluation.run_report.dataset.n_evaluated

        with orthanc(tmp / "orthanc") as pacs:
            log(f"dicomweb: loading Orthanc ({pacs.url})")
            pacs.upload(root / f.path for f in files)
            client = dicomweb_client(pacs.dicomweb_url, auth=pacs.auth)
            started = time.perf_counter()
            frozen = label(resolve(client, DicomwebQuery(modality="DX"), limit=n_instances), labels_table(sop_labels(files)))
            resolve_seconds = time.perf_counter() - started
            on_disk = read_manifest(header_manifest(root, files, [i.sop_uid for i in frozen.instances]), root, label_columns=[LABEL])

            seconds: dict[str, list[float]] = {"files": [], "cold": [], "warm": []}
            retrieval: list[float] = []
            for number in range(rounds):
                cache = tmp / f"cache-{number}"
                started = time.perf_counter()
                assert run(on_disk) == n_instances
                seconds["files"].append(time.perf_counter() - started)
                for kind in ("cold", "warm"):
                    started = time.perf_counter()
                    fetched = retrieve(client, frozen, cache, workers=workers)
                    if kind == "cold":
                        retrieval.append(time.perf_counter() - started)
                    assert not fetched.skipped and fetched.from_cache == (n_instances if kind == "warm" else 0)
                    assert run(cached_manifest(frozen, cache)) == n_instances
                    seconds[kind].append(time.perf_counter() - started)
                shutil.rmtree(cache)
                log(f"dicomweb: round {number + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items()))

    median = {kind: statistics.median(values) for kind, values in seconds.items()}
    rate = {kind: n_instances / value for kind, value in median.items()}
    ratios = {"dicomweb_vs_files_cold": rate["cold"] / rate["files"], "dicomweb_vs_files_warm": rate["warm"] / rate["files"]}
    return {
        "value": round(ratios["dicomweb_vs_files_cold"], 3),
        **{name: round(value, 3) for name, value in ratios.items()},
        "meets_goals": {name: ratios[name] >= goal for name, goal in GOALS.items()},
        "goals": {name: f">= {goal}" for name, goal in GOALS.items()},
        "images_per_second": {kind: round(value, 1) for kind, value in rate.items()},
        "seconds": {kind: [round(v, 3) for v in values] for kind, values in seconds.items()},
        "retrieval_seconds_cold": round(statistics.median(retrieval), 3),
        "resolve_seconds": round(resolve_seconds, 3),
        "instances": n_instances,
        "rounds": rounds,
        "workers": workers,
        "model": "tiny CNN (2 conv layers) on 64x64 DICOM radiographs, 2 ONNX Runtime threads",
    }
