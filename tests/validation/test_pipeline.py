"""The engine's whole evaluation on real files and real ONNX models: multi-label, segmentation, DICOM headers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import recall_score, roc_auc_score

from radtrust_demo.networks import export_thresholding_segmenter, export_tiny_classifier
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import ModelOutputError, SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline-models")
    return {
        "multilabel": export_tiny_classifier(root / "ml", seed=3, classes=3)[0],
        "binary": export_tiny_classifier(root / "bin", seed=4)[0],
        "segmenter": export_thresholding_segmenter(root / "seg"),
    }


def _session(path: Path):
    return open_session(path, select_device(prefer_gpu=False))


def _images(root: Path, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    images = rng.normal(0, 1, (n, 64, 64)).astype(np.float32)
    for i, image in enumerate(images):
        np.save(root / "img" / f"{i}.npy", image)
    return images


def test_multilabel_reports_each_label_against_sklearn(models, tmp_path):
    n = 90
    images = _images(tmp_path, n, 0)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (n, 3))
    names = ["effusion", "nodule", "pneumothorax"]
    rows = ["image_path,patient_id,sex," + ",".join(names)]
    rows += [f"img/{i}.npy,p{i // 3},{'FM'[i % 2]}," + ",".join(map(str, labels[i])) for i in range(n)]
    (tmp_path / "m.csv").write_text("\n".join(rows))
    manifest = read_manifest(tmp_path / "m.csv", tmp_path, label_columns=names, class_names=names)
    thresholds = {"effusion": 0.3, "nodule": 0.5, "pneumothorax": 0.7}
    result = evaluate(
        _session(models["multilabel"]),
        manifest,
        task="multilabel",
        class_names=names,
        thresholds=thresholds,
        preprocessing=Preprocessing.from_spec({}),
        config=SuiteConfig(n_resamples=30, min_patients=5, batch_size=16),
        activation="sigmoid",
    )
    import onnxruntime as ort

    logits = ort.InferenceSession(str(models["multilabel"])).run(None, {"image": images[:, None]})[0].astype(np.float64)
    probabilities = 1 / (1 + np.exp(-logits))
    assert set(result.report["results"]) == set(names)
    for k, name in enumerate(names):
        overall = result.report["results"][name]["overall"]["metrics"]
        assert overall["auroc"]["value"] == pytest.approx(roc_auc_score(labels[:, k], probabilities[:, k]), abs=1e-6)
        assert overall["sensitivity"]["value"] == pytest.approx(recall_score(labels[:, k], probabilities[:, k] >= thresholds[name]), abs=1e-9)
        assert result.report["results"][name]["threshold"] == thresholds[name]
        assert {s["grouping"] for s in result.report["results"][name]["subgroups"]} == {"sex"}
    assert result.report["dataset"]["prevalence"]["nodule"] == pytest.approx(labels[:, 1].mean())


def test_output_columns_must_match_the_class_names(models, tmp_path):
    _images(tmp_path, 4, 0)
    (tmp_path / "m.csv").write_text("image_path,patient_id,a,b\n" + "".join(f"img/{i}.npy,p{i},0,1\n" for i in range(4)))
    manifest = read_manifest(tmp_path / "m.csv", tmp_path, label_columns=["a", "b"])
    with pytest.raises(ModelOutputError, match=r"output has shape \[4, 1\], but the output schema names 2 class"):
        evaluate(
            _session(models["binary"]),
            manifest,
            task="multilabel",
            class_names=["a", "b"],
            thresholds={},
            preprocessing=Preprocessing.from_spec({}),
            config=SuiteConfig(n_resamples=0),
        )


def test_segmentation_dice_and_iou_match_an_independent_computation(models, tmp_path):
    n = 40
    rng = np.random.default_rng(2)
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    dice, iou = [], []
    rows = ["image_path,mask_path,patient_id,site"]
    for i in range(n):
        image = rng.normal(0, 0.3, (64, 64)).astype(np.float32)
        truth = np.zeros((64, 64), bool)
        y, x, r = rng.integers(15, 49, 2).tolist() + [int(rng.integers(4, 10))]
        truth[y - r : y + r, x - r : x + r] = True
        image[truth] += 3.0
        np.save(tmp_path / "img" / f"{i}.npy", image)
        np.save(tmp_path / "mask" / f"{i}.npy", truth.astype(np.uint8))
        predicted = image > 1.5  # what the thresholding segmenter computes
        both = np.logical_and(predicted, truth).sum()
        dice.append(2 * both / (predicted.sum() + truth.sum()))
        iou.append(both / np.logical_or(predicted, truth).sum())
        rows.append(f"img/{i}.npy,mask/{i}.npy,p{i // 2},{'AB'[i % 2]}")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    manifest = read_manifest(tmp_path / "m.csv", tmp_path, label_columns=[], mask_column="mask_path")
    result = evaluate(
        _session(models["segmenter"]),
        manifest,
        task="segmentation",
        class_names=["lesion"],
        thresholds={"lesion": 0.5},
        preprocessing=Preprocessing.from_spec({}),
        config=SuiteConfig(n_resamples=50, min_patients=5),
    )
    overall = result.report["results"]["foreground"]["overall"]["metrics"]
    assert overall["dice"]["value"] == pytest.approx(np.mean(dice), abs=1e-6)
    assert overall["iou"]["value"] == pytest.approx(np.mean(iou), abs=1e-6)
    assert overall["dice"]["ci_low"] <= overall["dice"]["value"] <= overall["dice"]["ci_high"]
    site_a = next(s for s in result.report["results"]["foreground"]["subgroups"] if s["name"] == "site=A")
    assert site_a["metrics"]["dice"]["value"] == pytest.approx(np.mean(dice[0::2]), abs=1e-6)


def test_a_segmentation_manifest_checks_mask_paths_like_image_paths(tmp_path):
    from radtrust_engine.loading import ManifestError

    _images(tmp_path, 1, 0)
    (tmp_path / "m.csv").write_text("image_path,mask_path,patient_id\nimg/0.npy,../mask.npy,p0\n")
    with pytest.raises(ManifestError, match="row 1: mask_path contains '..'") as caught:
        read_manifest(tmp_path / "m.csv", tmp_path, label_columns=[], mask_column="mask_path")
    assert "mask.npy" not in str(caught.value)  # a path that would leave the dataset is not quoted


def test_dicom_header_attributes_fill_the_strata(models, tmp_path):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    (tmp_path / "img").mkdir()
    rows = ["image_path,patient_id,pneumothorax"]
    for i in range(24):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.Manufacturer = ["Acme", "Globex"][i % 2]
        ds.PatientSex = "FM"[i % 2]
        ds.PatientAge = f"{30 + i:03d}Y"
        ds.Rows = ds.Columns = 64
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.random.default_rng(i).integers(0, 4000, (64, 64), dtype=np.uint16).tobytes()
        ds.save_as(tmp_path / "img" / f"{i}.dcm", enforce_file_format=True)
        rows.append(f"img/{i}.dcm,p{i},{i % 2}")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    manifest = read_manifest(tmp_path / "m.csv", tmp_path, label_columns=["pneumothorax"])
    result = evaluate(
        _session(models["binary"]),
        manifest,
        task="binary",
        class_names=["pneumothorax"],
        thresholds={"pneumothorax": 0.5},
        preprocessing=Preprocessing.from_spec({"normalise": "minmax"}),
        config=SuiteConfig(n_resamples=20, min_patients=5),
    )
    filled = result.report["dataset"]["header_fill"]["filled"]
    assert (filled["scanner_manufacturer"], filled["sex"], filled["age"]) == (24, 24, 24)
    names = {s["name"] for s in result.report["results"]["pneumothorax"]["subgroups"]}
    assert {"scanner_manufacturer=Acme", "scanner_manufacturer=Globex", "sex=F", "age_band=18-39"} <= names
    assert result.report["dataset"]["attributes_not_collected"] == ["race_ethnicity", "site"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"age_edges": [40, 18]}, "increasing"),
        ({"confidence": 1}, "below 1"),
        ({"intersections": [["sex", "sex"]]}, "twice"),
        ({"max_unreadable_share": 2}, "between 0 and 1"),
    ],
)
def test_suite_config_errors_name_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        SuiteConfig.from_dict(options)


def test_suite_config_round_trips():
    config = SuiteConfig.from_dict({"attributes": ["site"], "intersections": [["site", "age_band"]], "n_resamples": 7})
    assert SuiteConfig.from_dict(config.to_dict()) == config


def test_nifti_volumes_are_segmented_in_3d(tmp_path):
    """A volume spec resizes (D, H, W) NIfTI volumes trilinearly; 3D masks are scored as volumes."""
    import nibabel

    model = export_thresholding_segmenter(tmp_path / "model", volume=(8, 16, 16))
    rng = np.random.default_rng(5)
    (tmp_path / "vol").mkdir()
    rows = ["image_path,mask_path,patient_id"]
    dice = []
    for i in range(12):
        volume = rng.normal(0, 0.3, (16, 32, 32)).astype(np.float32)
        truth = np.zeros(volume.shape, bool)
        truth[4:12, 8 + i : 20 + i, 6:22] = True
        volume[truth] += 3.0
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "vol" / f"{i}.nii.gz")
        nibabel.save(nibabel.Nifti1Image(truth.astype(np.uint8), np.eye(4)), tmp_path / "vol" / f"{i}-mask.nii.gz")
        rows.append(f"vol/{i}.nii.gz,vol/{i}-mask.nii.gz,p{i}")
        small = Preprocessing.from_spec({"resize": [8, 16, 16]}).apply(volume)[0] > 1.5
        from radtrust_engine.segmentation import fit_mask

        fitted = fit_mask(truth, (8, 16, 16))
        dice.append(2 * np.logical_and(small, fitted).sum() / (small.sum() + fitted.sum()))
    (tmp_path / "m.csv").write_text("\n".join(rows))
    manifest = read_manifest(tmp_path / "m.csv", tmp_path, label_columns=[], mask_column="mask_path")
    result = evaluate(
        _session(model),
        manifest,
        task="segmentation",
        class_names=["lesion"],
        thresholds={"lesion": 0.5},
        preprocessing=Preprocessing.from_spec({"resize": [8, 16, 16]}),
        config=SuiteConfig(n_resamples=20, min_patients=3),
    )
    overall = result.report["results"]["foreground"]["overall"]
    assert overall["n_cases"] == 12 and overall["metrics"]["dice"]["value"] == pytest.approx(np.mean(dice), abs=1e-6)
    assert 0.5 < overall["metrics"]["dice"]["value"] <= 1.0


def test_a_volume_without_a_volume_spec_gets_a_hint():
    with pytest.raises(ValueError, match=r"give 'resize' as \[depth, height, width\]"):
        Preprocessing.from_spec({}).apply(np.zeros((16, 32, 32), np.float32))
    with pytest.raises(ValueError, match="one channel"):
        Preprocessing.from_spec({"resize": [8, 16, 16], "channels": "3xHxW"})


def test_calibration_is_reported_per_label_and_logits_say_why_not(models, tmp_path):
    n = 60
    _images(tmp_path, n, 4)
    labels = np.random.default_rng(6).integers(0, 2, n)
    (tmp_path / "m.csv").write_text("image_path,patient_id,x\n" + "".join(f"img/{i}.npy,p{i // 2},{labels[i]}\n" for i in range(n)))
    manifest = read_manifest(tmp_path / "m.csv", tmp_path, label_columns=["x"])
    common = {
        "task": "binary",
        "class_names": ["x"],
        "thresholds": {"x": 0.5},
        "preprocessing": Preprocessing.from_spec({}),
        "config": SuiteConfig(n_resamples=20, min_patients=5, calibration_bins=5),
    }
    mapped = evaluate(_session(models["binary"]), manifest, activation="sigmoid", **common).report
    calibration = mapped["results"]["x"]["calibration"]
    assert mapped["output_mapping"].startswith("a sigmoid was applied")
    assert calibration["n_bins"] == 5 and calibration["brier"]["value"] is not None and "uniform" in calibration["binning"]
    raw = evaluate(_session(models["binary"]), manifest, activation="none", **common).report
    assert "logits" in raw["results"]["x"]["calibration"]["error"]
    assert raw["results"]["x"]["overall"]["metrics"]["auroc"]["value"] == mapped["results"]["x"]["overall"]["metrics"]["auroc"]["value"]
