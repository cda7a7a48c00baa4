"""``manage.py bench foundation --quick``: every figure present, the probe equal to scikit-learn's,
and the embedding pass run through the pipeline with the small ViT (one forward pass per image)."""

from __future__ import annotations

import pytest

from radtrust_demo.bench.foundation import QUICK_RUN, run_foundation_bench

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


def test_the_quick_foundation_bench_measures_every_figure(tmp_path):
    result = run_foundation_bench(tmp_path, quick=True, images=24)
    assert result["probe_auroc_vs_sklearn_abs_diff"] <= 1e-9
    assert result["extractor_accuracy"] >= 0.95
    assert result["curve_seconds_400"] > 0 and result["mmd_seconds_400"] > 0
    assert result["embedding_pass_vs_bare_ort"] == result["vit_b16_images_per_second"] == QUICK_RUN
    passed = result["details"]["embedding_pass"]
    assert passed["model"]["name"] == "small ViT/16" and passed["images"] == 24
    assert passed["forward_passes"] == 24  # scores and embeddings from one pass per image
    assert passed["output_shapes"] == {"logits": [24, 1], "embedding": [24, 64]}
    assert passed["pipeline_images_per_second"] > 0 and passed["bare_images_per_second"] > 0


def test_the_vit_pipeline_figure_runs_only_when_named(tmp_path):
    from radtrust_demo.bench import validation

    assert "pipeline_vs_bare_ort_vit_b16" in validation.HEAVY
    result = validation.run_benchmarks(tmp_path, quick=True, only="pipeline_vs_bare_ort_vit_b16")
    figure = result["figures"]["pipeline_vs_bare_ort_vit_b16"]
    assert result["pipeline_vs_bare_ort_vit_b16"] == figure["ratio"] > 0 and figure["goal"] == ">= 0.9"
    vit = result["details"]["pipeline_vit_b16"]
    assert vit["model"]["name"] == "small ViT/16" and vit["images"] == validation.QUICK.pipeline_images  # the quick run's stand-in
    assert vit["inference"]["forward_passes"] == vit["images"]
