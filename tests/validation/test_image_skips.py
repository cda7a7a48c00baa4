"""A run skips each file it cannot read or that does not fit the spec, and goes on within the suite's
share; past it, the run fails naming every such file, not the first. The pre-flight check of the
headers skips the same files for the same reasons. Real files, a real ONNX model, no database."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radtrust_demo.networks import export_tiny_classifier
from radtrust_engine.failures import ImageProblem
from radtrust_engine.images import check_images
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import SuiteConfig, UnreadableImages, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

SPEC = Preprocessing.from_spec({"resize": [64, 64], "channels": "1xHxW", "normalise": "minmax"})
NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"
# The ten files a run cannot use, as (relative path, kind); rows follow the forty good images.
BAD = [
    ("bad/multiframe-0.dcm", ImageProblem.MULTI_FRAME),
    ("bad/multiframe-1.dcm", ImageProblem.MULTI_FRAME),
    ("bad/multiframe-2.dcm", ImageProblem.MULTI_FRAME),
    ("bad/4d-0.nii.gz", ImageProblem.MULTI_FRAME),
    ("bad/4d-1.nii.gz", ImageProblem.MULTI_FRAME),
    ("bad/gone-0.npy", ImageProblem.NOT_FOUND),
    ("bad/gone-1.npy", ImageProblem.NOT_FOUND),
    ("bad/garbage.dcm", ImageProblem.UNREADABLE),
    ("bad/jpeg-extended.dcm", ImageProblem.UNREADABLE),  # its header is fine: only decoding its stream fails
    ("bad/volume.nii.gz", ImageProblem.SHAPE),
]
GOOD_DICOM = ["dcm/ct-0.dcm", "dcm/ct-1.dcm", "dcm/mono1-0.dcm", "dcm/mono1-1.dcm"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Forty NPY images, four DICOM images that need converting (CT rescale, MONOCHROME1), and ten bad files."""
    root = tmp_path_factory.mktemp("skips")
    for folder in ("img", "dcm", "bad"):
        (root / folder).mkdir()
    rng = np.random.default_rng(0)
    rows = ["image_path,patient_id,pneumothorax"]
    for i in range(40):
        label = i % 3 == 0
        image = rng.normal(0, 1, (64, 64)).astype(np.float32) + 3 * label * (np.arange(64) > 32)
        np.save(root / "img" / f"{i}.npy", image)
        rows.append(f"img/{i}.npy,p{i // 2},{int(label)}")
    for k in range(2):
        shutil.copy(get_testdata_file("CT_small.dcm"), root / f"dcm/ct-{k}.dcm")
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(root / f"dcm/mono1-{k}.dcm")
        shutil.copy(NIBABEL_DATA / "example4d.nii.gz", root / f"bad/4d-{k}.nii.gz")
    for k in range(3):
        shutil.copy(get_testdata_file("emri_small.dcm"), root / f"bad/multiframe-{k}.dcm")
    (root / "bad/garbage.dcm").write_bytes(b"\0" * 300)
    shutil.copy(get_testdata_file("JPEG-lossy.dcm"), root / "bad/jpeg-extended.dcm")
    shutil.copy(NIBABEL_DATA / "standard.nii.gz", root / "bad/volume.nii.gz")
    rows += [f"{path},q{k},{k % 2}" for k, path in enumerate(GOOD_DICOM)]
    rows += [f"{path},r{k},{k % 2}" for k, (path, _) in enumerate(BAD)]
    (root / "m.csv").write_text("\n".join(rows))
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return open_session(export_tiny_classifier(tmp_path_factory.mktemp("model"), seed=4)[0], select_device(prefer_gpu=False))


def _evaluate(model, dataset: Path, share: float):
    manifest = read_manifest(dataset / "m.csv", dataset, label_columns=["pneumothorax"])
    return evaluate(
        model,
        manifest,
        task="binary",
        class_names=["pneumothorax"],
        thresholds={"pneumothorax": 0.5},
        preprocessing=SPEC,
        config=SuiteConfig(n_resamples=20, min_patients=3, max_unreadable_share=share),
    )


BAD_ROWS = {45 + k: (path, kind) for k, (path, kind) in enumerate(BAD)}  # 40 images and 4 DICOM files come first


def test_a_run_past_the_share_fails_naming_all_ten_files(model, dataset):
    with pytest.raises(UnreadableImages) as caught:
        _evaluate(model, dataset, share=0.0)
    message = str(caught.value)
    assert message.startswith("10 of 54 images could not be read or do not fit the preprocessing spec (the suite's max_unreadable_share allows 0)")
    for row, (path, _) in BAD_ROWS.items():
        assert f"{path} (row {row})" in message
    assert "bad/multiframe-0.dcm (row 45), bad/multiframe-1.dcm (row 46), bad/multiframe-2.dcm (row 47): 10 frames, refused" in message
    assert "JPEG Extended (Process 2 and 4)" in message  # the transfer syntax named, not only its UID
    assert str(dataset) not in message and "and 0 more" not in message


def test_within_the_share_the_run_goes_on_and_reports_skips_and_conversions(model, dataset):
    report = _evaluate(model, dataset, share=0.2).run_report  # 0.2 of 54 allows 10
    assert {s.row: (s.image_path, s.kind) for s in report.skipped} == BAD_ROWS
    assert report.dataset.n_evaluated == 44
    conversions = report.dataset.conversions
    assert conversions.counts == {"modality LUT slope 1 intercept -1024": 2, "MONOCHROME1 inverted": 2}
    assert [(c.applied, c.rows) for c in conversions.cases] == [
        (("modality LUT slope 1 intercept -1024",), "41-42"),
        (("MONOCHROME1 inverted",), "43-44"),
    ]
    assert report.to_dict()["dataset"]["conversions"]["counts"]["MONOCHROME1 inverted"] == 2


def test_the_header_check_skips_what_the_run_skips_before_any_inference(model, dataset):
    manifest = read_manifest(dataset / "m.csv", dataset, label_columns=["pneumothorax"])
    check = check_images(manifest, SPEC)
    run = _evaluate(model, dataset, share=0.2).run_report
    header_only = {row for row, (path, _) in BAD_ROWS.items() if path != "bad/jpeg-extended.dcm"}  # a corrupt stream shows only when decoded
    assert {s.row for s in check.skipped} == header_only
    assert {(s.row, s.reason, s.kind) for s in check.skipped} <= {(s.row, s.reason, s.kind) for s in run.skipped}
    assert check.conversions == run.dataset.conversions
    assert check.problems() == {"multi_frame": 5, "not_found": 2, "unreadable": 1, "shape": 1}
    assert check.exceeds(0.1) and not check.exceeds(0.2)
