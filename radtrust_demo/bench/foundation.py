"""``manage.py bench foundation``: the foundation-model evidence held against references.

- ``extractor_accuracy``: the share of the documented sentence table
  (``radtrust_engine.report_sentences``, 187 rows) whose every finding the extractor reads as the
  table says (target >= 0.95).
- ``probe_auroc_vs_sklearn_abs_diff``: the engine's logistic probe (``fit_logistic``, SciPy's
  Newton or L-BFGS) against scikit-learn's ``LogisticRegression`` fitted on the same split of 2,000
  embeddings with a planted signal: the absolute difference of the held-out AUROCs (target <= 1e-9).
- ``curve_seconds_2000``: the whole label-efficiency curve (7 fractions x 5 repeats x 5 patient
  folds, with a comparator) on 2,000 embeddings of 768 dimensions (a ViT-B/16's width).
- ``mmd_seconds_2000``: the MMD drift test between two sets of 1,000 embeddings (1,000 permutations).
- ``embedding_pass_vs_bare_ort``: images/s of the validation pipeline computing the scores and the
  embeddings of ``images`` DICOM files (2,000 by default; ``--images``) with the demo's
  ViT-B/16-sized encoder (``radtrust_demo.vit``, 86 M parameters, 224x224), over bare ONNX Runtime
  on the same session, bare and pipeline runs alternating (``bench_pipeline``; target >= 0.9):
  ``rounds`` pipeline runs (2 by default; ``--rounds``), each between bare runs of ``BARE_IMAGES``
  images, so that 2,000 images at about one image per second take one pipeline pass and not three
  more for the references.
- ``vit_b16_images_per_second``: the same measurement's pipeline images/s on this machine, with
  the bare ONNX Runtime reference and the ratio beside it.

``quick`` runs the small ViT of the same architecture (64x64, 2 blocks) on 48 images instead: the
two ViT figures are then reported as not measured, the small ViT's figures in the details.

Plain Python; the ``bench`` command parses arguments and prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from radtrust_demo.bench.validation import QUICK, Sizes, bench_pipeline, vit_onnx
from radtrust_demo.vit import EMBEDDING_OUTPUT
from radtrust_engine.data_efficiency import label_efficiency, mmd_test, probe_scores
from radtrust_engine.metrics import auroc
from radtrust_engine.report_sentences import SENTENCES, extractor_accuracy

BARE_IMAGES = 256  # each bare reference run of the embedding pass: 8 batches of 32

QUICK_RUN = "not measured in a quick run (the small ViT stands in: see details.embedding_pass)"


def _embeddings(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cases of two per patient whose label moves the embedding along a few directions."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.random(n // 2) < 0.3, 2).astype(np.int8)
    x = rng.normal(size=(n, dim))
    x[:, :4] += 0.6 * y[:, None]
    return x, y, np.repeat(np.arange(n // 2), 2).astype(str)


def run_foundation_bench(
    cache: Path,
    *,
    quick: bool = False,
    images: int | None = None,
    rounds: int | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Every figure of the module docstring; ``quick`` shrinks the sizes to a smoke run. The ViT
    and its DICOM files are written once into ``cache``."""
    from sklearn.linear_model import LogisticRegression  # the reference, a bench-only dependency

    n, dim, repeats = (400, 64, 2) if quick else (2000, 768, 5)
    log(f"extractor on {len(SENTENCES)} sentences")
    accuracy = extractor_accuracy()

    log(f"probe against scikit-learn on {n} embeddings")
    x, y, patients = _embeddings(n, 64, seed=1)
    cut = int(0.8 * n)
    ours = auroc(y[cut:], probe_scores(x[:cut], y[:cut], x[cut:]))
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(x[:cut], y[:cut])
    theirs = auroc(y[cut:], reference.predict_proba(x[cut:])[:, 1])

    log(f"label-efficiency curve on {n} x {dim} embeddings, {repeats} repeats")
    x, y, patients = _embeddings(n, dim, seed=2)
    comparator = x + np.random.default_rng(3).normal(scale=2.0, size=x.shape)
    started = time.perf_counter()
    curve = label_efficiency(x, y, patients, comparator=comparator, repeats=repeats, target_auroc=0.8)
    curve_seconds = time.perf_counter() - started

    log("MMD drift test")
    half = n // 2
    started = time.perf_counter()
    drift = mmd_test(x[:half], x[half:] + 0.05, n_permutations=1000)
    mmd_seconds = time.perf_counter() - started

    sizes = replace(
        QUICK if quick else Sizes(),
        pipeline_images=images or (48 if quick else 2000),
        pipeline_rounds=rounds or (1 if quick else 2),
        bare_images=None if quick else min(BARE_IMAGES, images or 2000),
    )
    network = vit_onnx(cache, small=quick)
    side = network[1]["image"]
    log(f"embedding pass: {network[1]['name']} on {sizes.pipeline_images} DICOM files, pipeline against bare ONNX Runtime")
    passed = bench_pipeline(
        cache,
        replace(sizes, dicom_size=side, input_size=side),
        log=log,
        network=network,
        embedding_output=EMBEDDING_OUTPUT,
        name="embedding_pass_vs_bare_ort",
    )
    pass_figure = passed["figure"]
    embedding_pass = {
        "model": network[1],
        "images": passed["images"],
        "pipeline_images_per_second": pass_figure["value"],
        "bare_images_per_second": pass_figure["reference"],
        "ratio": pass_figure["ratio"],
        "rounds": passed["round_ratios_to_mean_of_adjacent_bare"],
        "pipeline_images_per_second_by_round": passed["pipeline_images_per_second"],
        "bare_images_per_second_by_run": passed["bare_images_per_second"],
        "bare_images_per_run": passed["bare_images_per_run"],
        "forward_passes": passed["inference"]["forward_passes"],
        "output_shapes": passed["inference"]["output_shapes"],
    }

    return {
        "embedding_pass_vs_bare_ort": QUICK_RUN if quick else round(pass_figure["ratio"], 3),
        "vit_b16_images_per_second": QUICK_RUN
        if quick
        else {
            "pipeline": round(pass_figure["value"], 2),
            "bare_ort": round(pass_figure["reference"], 2),
            "ratio": round(pass_figure["ratio"], 3),
        },
        "extractor_accuracy": round(accuracy, 4),
        "probe_auroc_vs_sklearn_abs_diff": abs(ours - theirs),
        f"curve_seconds_{n}": round(curve_seconds, 2),
        f"mmd_seconds_{n}": round(mmd_seconds, 2),
        "details": {
            "sentences": len(SENTENCES),
            "probe_auroc": round(ours, 4),
            "curve_auroc_by_fraction": {str(p.fraction): None if p.auroc is None else round(p.auroc, 3) for p in curve.curve},
            "labelled_cases_to_auroc_0_8": None if curve.labelled_to_target is None else round(curve.labelled_to_target),
            "comparator_labelled_cases_to_auroc_0_8": None
            if curve.comparator_labelled_to_target is None
            else round(curve.comparator_labelled_to_target),
            "mmd_p_value": round(drift.p_value, 4),
            "embedding_dimensions": dim,
            "embedding_pass": embedding_pass,
            "quick": quick,
        },
    }


def format_table(result: dict[str, Any]) -> str:
    rows = [(name, value) for name, value in result.items() if name != "details"]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
