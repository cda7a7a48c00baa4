"""Decoding in processes gives the loader thread's tensors, in its order, and so the same report;
shards of whole patients merge back into the unsharded stage 2."""

from __future__ import annotations

import numpy as np
import pytest

from radtrust_engine.decoding import decoded
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import SuiteConfig, evaluate, score_cases, score_rows
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device
from radtrust_engine.scoring import Scored, ShardCases, comparable, patient_shards

SPEC = Preprocessing.from_spec({"resize": [64, 64], "channels": "1xHxW", "normalise": {"mean": 0.0, "std": 1.0}})
CONFIG = SuiteConfig(n_resamples=30, min_patients=3, batch_size=4, max_unreadable_share=0.2, analyses=("calibration", "generalisation"))


@pytest.fixture
def dataset(write_dataset):
    """30 images of 15 patients, then a missing file and a file that is not an image (skipped, within the allowance)."""
    root = write_dataset(n=30, rows=["img/missing.npy,p90,2024-01-01,40,F,A,0", "img/broken.npy,p91,2024-01-01,50,M,B,1"])
    (root / "img" / "broken.npy").write_bytes(b"not an array")
    return root, read_manifest(root / "manifest.csv", root, label_columns=["pneumothorax"])


def test_processes_give_the_threads_tensors_in_the_same_order(dataset):
    root, manifest = dataset
    rows = list(range(len(manifest)))[::-1]  # any order given is the order returned
    paths = [str(manifest.absolute_path(i)) for i in rows]
    here = list(decoded(rows, paths, SPEC, processes=0))
    pooled = list(decoded(rows, paths, SPEC, processes=2, chunk=3))
    assert [d.row for d in pooled] == [d.row for d in here] == rows
    assert [d.problem for d in pooled] == [d.problem for d in here]
    assert sum(d.problem is not None for d in here) == 2
    for a, b in zip(here, pooled, strict=True):
        assert (a.tensor is None) == (b.tensor is None)
        if a.tensor is not None:
            assert a.tensor.dtype == b.tensor.dtype and np.array_equal(a.tensor, b.tensor)
            assert (a.stats, a.conversions) == (b.stats, b.conversions)


def test_a_run_decoded_in_processes_reports_what_a_thread_reports(dataset, onnx_files):
    _, manifest = dataset
    model = open_session(onnx_files["inline"][0], select_device(prefer_gpu=False, threads=1))
    kwargs = {"task": "binary", "class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}, "preprocessing": SPEC, "config": CONFIG}
    thread = evaluate(model, manifest, activation="sigmoid", **kwargs)
    pooled = evaluate(model, manifest, activation="sigmoid", loader_processes=2, **kwargs)
    assert thread.run_report.dataset.n_evaluated == 30 and len(thread.run_report.skipped) == 2
    assert comparable(pooled.report) == comparable(thread.report)


def test_shards_of_whole_patients_merge_into_the_unsharded_stage(dataset, onnx_files):
    _, manifest = dataset
    plan = patient_shards(manifest.patient_ids, 7)
    assert sorted(r for rows in plan for r in rows) == list(range(len(manifest)))
    for rows in plan:  # no patient straddles two shards
        others = {manifest.patient_ids[r] for shard in plan if shard is not rows for r in shard}
        assert not {manifest.patient_ids[r] for r in rows} & others
    model = open_session(onnx_files["inline"][0], select_device(prefer_gpu=False, threads=1))
    whole = score_rows(model, manifest, preprocessing=SPEC, config=CONFIG)
    parts = [Scored.from_bytes(score_rows(model, manifest, preprocessing=SPEC, config=CONFIG, rows=rows).to_bytes()) for rows in reversed(plan)]
    merged = Scored.merge(parts)
    assert merged.output.ids == whole.output.ids
    assert np.array_equal(merged.output.outputs[model.output_names[0]], whole.output.outputs[model.output_names[0]])
    assert (merged.reading.stats, merged.reading.conversions, merged.reading.skipped, merged.reading.reads) == (
        whole.reading.stats,
        whole.reading.conversions,
        whole.reading.skipped,
        whole.reading.reads,
    )


def test_a_shards_own_cases_score_as_its_rows_of_the_whole_manifest(dataset, onnx_files):
    """``score_cases`` reads the shard's paths alone: ids, skips (by their row in the run's
    manifest) and the skip allowance are what ``score_rows`` gives on those rows."""
    root, manifest = dataset
    model = open_session(onnx_files["inline"][0], select_device(prefer_gpu=False, threads=1))
    last = next(rows for rows in patient_shards(manifest.patient_ids, 7) if 30 in rows)  # holds the missing file (row 31)
    cases = ShardCases.from_dict(ShardCases.of(manifest, last).to_dict())

    alone = score_cases(model, cases, root, preprocessing=SPEC, config=CONFIG, loader_processes=2)
    in_place = score_rows(model, manifest, preprocessing=SPEC, config=CONFIG, rows=last)

    assert alone.output.ids == in_place.output.ids == [r for r in last if r < 30]
    assert np.array_equal(alone.output.outputs[model.output_names[0]], in_place.output.outputs[model.output_names[0]])
    assert [(s.row, s.image_path) for s in alone.reading.skipped] == [(r + 1, manifest.image_paths[r]) for r in last if r >= 30]
    assert alone.reading.skipped[0].row == 31 and len(cases) < len(manifest)
    assert (alone.reading.skipped, alone.reading.conversions, alone.reading.allowed_skips) == (
        in_place.reading.skipped,
        in_place.reading.conversions,
        in_place.reading.allowed_skips,
    )
    with pytest.raises(ValueError, match="within the run's manifest"):
        ShardCases.from_dict({**cases.to_dict(), "rows": [len(manifest), *cases.rows[1:]]})
