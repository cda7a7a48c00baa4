"""``manage.py bench foundation``: the foundation-model evidence held against references.

- ``extractor_accuracy``: the share of the documented sentence table
  (``radtrust_engine.report_sentences``, 187 rows) whose every finding the extractor reads as the
  table says (target >= 0.95).
- ``probe_auroc_vs_sklearn_abs_diff``: the engine's logistic probe (``fit_logistic``, SciPy's
  L-BFGS) against scikit-learn's ``LogisticRegression`` fitted on the same split of 2,000
  embeddings with a planted signal: the absolute difference of the held-out AUROCs (target <= 1e-9).
- ``curve_seconds_2000``: the whole label-efficiency curve (7 fractions x 5 repeats x 5 patient
  folds, with a comparator) on 2,000 embeddings of 768 dimensions (a ViT-B/16's width).
- ``mmd_seconds_2000``: the MMD drift test between two sets of 1,000 embeddings (1,000 permutations).

Not measured (reported as such): ``embedding_pass_vs_bare_ort`` and ``vit_b16_images_per_second``
need the ViT-B/16-sized demo model with an embedding output, which is not built yet.

Plain Python; the ``bench`` command parses arguments and prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from radtrust_engine.data_efficiency import label_efficiency, mmd_test, probe_scores
from radtrust_engine.metrics import auroc
from radtrust_engine.report_sentences import SENTENCES, extractor_accuracy

NOT_BUILT = "not measured: the ViT-B/16-sized demo model with an embedding output is not built yet"


def _embeddings(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cases of two per patient whose label moves the embedding along a few directions."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.random(n // 2) < 0.3, 2).astype(np.int8)
    x = rng.normal(size=(n, dim))
    x[:, :4] += 0.6 * y[:, None]
    return x, y, np.repeat(np.arange(n // 2), 2).astype(str)


def run_foundation_bench(*, quick: bool = False, log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Every figure of the module docstring; ``quick`` shrinks the sizes to a smoke run."""
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

    return {
        "extractor_accuracy": round(accuracy, 4),
        "probe_auroc_vs_sklearn_abs_diff": abs(ours - theirs),
        f"curve_seconds_{n}": round(curve_seconds, 2),
        f"mmd_seconds_{n}": round(mmd_seconds, 2),
        "embedding_pass_vs_bare_ort": NOT_BUILT,
        "vit_b16_images_per_second": NOT_BUILT,
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
            "quick": quick,
        },
    }


def format_table(result: dict[str, Any]) -> str:
    rows = [(name, value) for name, value in result.items() if name != "details"]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
