"""A segmentation run skips a ground-truth mask it cannot use (missing, unreadable, of a shape that
cannot be fitted to the output) like an image: listed with its reason, within the suite's
``max_unreadable_share``; past it the run fails naming every such file. Real files, a real ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radtrust_demo.networks import export_thresholding_segmenter
from radtrust_engine.failures import ImageProblem
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import SuiteConfig, UnreadableImages, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

N = 20
# Rows whose mask cannot be used, with what is wrong and the kind the report gives.
BAD_MASKS = {3: ("missing", ImageProblem.NOT_FOUND), 7: ("garbage", ImageProblem.UNREADABLE), 12: ("shape", ImageProblem.SHAPE)}


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> Path:
    return export_thresholding_segmenter(tmp_path_factory.mktemp("mask-skips-model"))


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, list[float]]:
    """Twenty images with square lesions; three masks broken; the Dice of every usable case."""
    rng = np.random.default_rng(5)
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    rows, dice = ["image_path,mask_path,patient_id"], []
    for i in range(N):
        image = rng.normal(0, 0.3, (64, 64)).astype(np.float32)
        truth = np.zeros((64, 64), bool)
        y, x = rng.integers(15, 49, 2).tolist()
        truth[y - 6 : y + 6, x - 6 : x + 6] = True
        image[truth] += 3.0
        np.save(tmp_path / "img" / f"{i}.npy", image)
        problem = BAD_MASKS.get(i + 1, (None,))[0]
        if problem == "garbage":
            (tmp_path / "mask" / f"{i}.npy").write_bytes(b"not an array at all")
        elif problem == "shape":
            np.save(tmp_path / "mask" / f"{i}.npy", np.zeros((2, 64, 64), np.uint8))  # two masks, one output
        elif problem is None:
            np.save(tmp_path / "mask" / f"{i}.npy", truth.astype(np.uint8))
            predicted = image > 1.5  # what the thresholding segmenter computes
            dice.append(2 * np.logical_and(predicted, truth).sum() / (predicted.sum() + truth.sum()))
        rows.append(f"img/{i}.npy,mask/{i}.npy,p{i}")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    return tmp_path, dice


def _run(segmenter: Path, root: Path, share: float):
    manifest = read_manifest(root / "m.csv", root, label_columns=[], mask_column="mask_path")
    return evaluate(
        open_session(segmenter, select_device(prefer_gpu=False)),
        manifest,
        task="segmentation",
        class_names=["lesion"],
        thresholds={"lesion": 0.5},
        preprocessing=Preprocessing.from_spec({}),
        config=SuiteConfig(n_resamples=20, min_patients=5, max_unreadable_share=share),
    )


def test_bad_masks_are_skipped_with_their_reasons_within_the_share(segmenter, dataset):
    root, dice = dataset
    result = _run(segmenter, root, 0.2)
    report = result.report
    assert [(s["row"], s["image_path"], s["kind"]) for s in report["skipped"]] == [
        (row, f"mask/{row - 1}.npy", str(kind)) for row, (_, kind) in sorted(BAD_MASKS.items())
    ]
    assert all(s["reason"].startswith("ground-truth mask: ") for s in report["skipped"])
    assert "cannot be fitted to output shape" in report["skipped"][2]["reason"]
    assert report["dataset"]["n_evaluated"] == N - len(BAD_MASKS)
    assert sorted(result.case_index.tolist()) == [i for i in range(N) if i + 1 not in BAD_MASKS]
    overall = report["results"]["foreground"]["overall"]
    assert overall["n_cases"] == N - len(BAD_MASKS)
    assert overall["metrics"]["dice"]["value"] == pytest.approx(np.mean(dice), abs=1e-6)


def test_past_the_share_the_run_fails_naming_every_bad_mask(segmenter, dataset):
    root, _ = dataset
    with pytest.raises(UnreadableImages) as caught:
        _run(segmenter, root, 0.1)  # two of twenty may be skipped; three masks are bad
    message = str(caught.value)
    assert message.startswith("3 of 20 images could not be read")
    for row in BAD_MASKS:
        assert f"mask/{row - 1}.npy (row {row})" in message
