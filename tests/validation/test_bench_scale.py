"""``bench scale``'s building blocks on tiny sizes: the merge figure compares real reports, the
decoding and growth figures measure real runs, and the DICOMweb figure is a number from the
module that measures it or null with its reason, never made up. Timings are never asserted."""

from __future__ import annotations

from dataclasses import replace

import pytest

from radtrust_demo.bench import scale

pytestmark = pytest.mark.slow  # benchmarks at small size

TINY = replace(scale.Sizes(), merge_images=40, worker_shards=4, dicom_size=64, decode_images=48, run_small=30, run_large=60, n_resamples=20)


def test_the_merge_figure_compares_a_sharded_and_a_whole_report(tmp_path):
    figure = scale.bench_merge(tmp_path, TINY, log=lambda message: None)
    assert figure["value"] is True and figure["meets_goal"] is True
    assert figure["images"] == 40 and figure["shards"] >= 4


def test_the_workers_figure_times_ready_workers_to_the_merged_table(tmp_path):
    # Every worker waits at the barrier until all are ready; a worker that never reached it would hang the figure.
    figure = scale.bench_workers(tmp_path, replace(TINY, worker_images=24), log=lambda message: None)
    assert figure["one_worker_seconds"] > 0 and figure["two_workers_seconds"] > 0
    assert figure["images"] == 24 and figure["shards"] >= 2


def test_the_decoding_and_growth_figures_come_from_real_runs(tmp_path):
    decoding = scale.bench_decoding(tmp_path, TINY, log=lambda message: None)
    assert decoding["one_process_images_per_second"] > 0 and decoding["two_processes_images_per_second"] > 0
    growth = scale.bench_growth(tmp_path, TINY, log=lambda message: None)
    details = growth["time_ratio_100k_over_10k"]
    assert details["images"] == [30, 60] and all(peak > 0 for peak in details["peak_rss_mb"])
    assert growth["rss_growth_mb_10k_to_100k"]["value"] == details["peak_rss_mb"][1] - details["peak_rss_mb"][0]


def test_the_dicomweb_figure_is_measured_or_null_with_a_reason(monkeypatch):
    monkeypatch.setattr(scale, "bench_package", type("Empty", (), {"__path__": []}))
    figure = scale.bench_dicomweb(TINY, log=lambda message: None)
    assert (figure["value"], figure["meets_goal"]) == (None, None) and "dicomweb_vs_files" in figure["reason"]
