"""``manage.py bench volumes`` on quick sizes: one JSON object whose figures follow from their details."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from radtrust_demo.bench import volumes as bv

pytestmark = pytest.mark.slow  # a benchmark at small size

KEYS = (
    "froc_vs_reference_abs_diff",
    "dice_vs_reference_abs_diff",
    "sliding_window_vs_bare_ort",
    "peak_rss_growth_mb_10_to_100_volumes",
    "kappa_vs_sklearn_abs_diff",
)


def test_quick_command_prints_the_five_figures_with_their_goals(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    out, err = StringIO(), StringIO()
    call_command("bench", "volumes", "--json", "--quick", stdout=out, stderr=err)
    result = json.loads(out.getvalue())
    assert set(result["figures"]) == set(KEYS)
    details = result["details"]
    froc = details["froc_vs_reference_abs_diff"]
    assert result["froc_vs_reference_abs_diff"] == max(abs(a - b) for a, b in zip(froc["engine"], froc["reference"], strict=True))
    assert result["froc_vs_reference_abs_diff"] <= 1e-9
    assert result["dice_vs_reference_abs_diff"] <= 1e-9
    assert result["kappa_vs_sklearn_abs_diff"] <= 1e-12
    memory = details["peak_rss_growth_mb_10_to_100_volumes"]
    assert result["peak_rss_growth_mb_10_to_100_volumes"] == memory["peak_mb_100"] - memory["peak_mb_10"]
    assert details["sliding_window_vs_bare_ort"]["windows"] > 1
    assert "bench: froc:" in err.getvalue()


def test_the_reference_froc_sees_a_different_matching():
    """The reference is independent: a looser IoU changes its answer."""
    images = bv.simulated_detection(30, seed=4)
    assert bv.reference_froc(images, iou=0.3) != bv.reference_froc(images, iou=0.9)
