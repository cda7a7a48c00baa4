"""Dataset manifests, image readers and the preprocessing spec, on real files.

No database: the engine is plain Python and NumPy.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radtrust_engine.images import ImageError, fill_attributes_from_headers, load_image, read_dicom_attributes
from radtrust_engine.loading import ManifestError, parse_age, read_manifest
from radtrust_engine.preprocessing import Preprocessing, check_against_signature

LABELS = ["effusion", "nodule"]
HEADER = "image_path,patient_id,study_date,effusion,nodule,age,sex,site"


# ---------------------------------------------------------------------------
# File writers
# ---------------------------------------------------------------------------


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    slope: float | None = None,
    intercept: float | None = None,
    header: dict[str, str] | None = None,
) -> Path:
    """An uncompressed 16-bit MONOCHROME2 CT file."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope = str(slope)
    if intercept is not None:
        ds.RescaleIntercept = str(intercept)
    for keyword, value in (header or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


HEADER_VALUES = {
    "Manufacturer": "Acme Medical",
    "ManufacturerModelName": "Scanix 9",
    "PatientSex": "F",
    "PatientAge": "045Y",
    "StudyDate": "20240131",
}


def write_csv(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    folder = tmp_path / "dataset"
    folder.mkdir()
    return folder


def manifest_error(path: Path, root: Path, **kwargs) -> str:
    with pytest.raises(ManifestError) as info:
        read_manifest(path, root, label_columns=kwargs.pop("label_columns", LABELS), **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------
# Image readers
# ---------------------------------------------------------------------------


def test_dicom_applies_rescale_and_returns_header_attributes(tmp_path):
    raw = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
    path = write_dicom(tmp_path / "ct.dcm", raw, slope=2, intercept=-1024, header=HEADER_VALUES)

    image = load_image(path)

    assert image.format == "dicom"
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, raw.astype(np.float32) * 2 - 1024)
    assert image.attributes == {
        "scanner_manufacturer": "Acme Medical",
        "scanner_model": "Scanix 9",
        "sex": "F",
        "age": 45.0,
        "study_date": "2024-01-31",
    }
    assert json.loads(json.dumps(image.to_dict()))["shape"] == [3, 4]
    bare = load_image(path, attributes=False)  # a run's loader: the same pixels, the header attributes left to the headers stage
    assert bare.attributes == {} and bare.array.tobytes() == image.array.tobytes()


def test_dicom_without_rescale_or_header_values(tmp_path):
    raw = np.full((5, 6), 700, dtype=np.uint16)
    image = load_image(write_dicom(tmp_path / "plain.dcm", raw))
    np.testing.assert_array_equal(image.array, raw.astype(np.float32))
    assert image.attributes == {}


def test_dicom_header_is_read_without_pixels(tmp_path):
    path = write_dicom(tmp_path / "h.dcm", np.zeros((4, 4), np.uint16), header=HEADER_VALUES)
    assert read_dicom_attributes(path)["scanner_model"] == "Scanix 9"


def test_dicom_without_suffix_is_recognised(tmp_path):
    path = write_dicom(tmp_path / "IM0001", np.ones((2, 2), np.uint16))
    assert load_image(path).format == "dicom"


def test_dicom_age_strings():
    assert parse_age("045Y") == 45
    assert parse_age("006M") == 0.5
    assert parse_age("014D") == pytest.approx(14 / 365.25)
    assert parse_age(" ") is None
    with pytest.raises(ValueError, match="age"):
        parse_age("old")


def test_garbage_dicom_is_an_image_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.dcm"
    path.write_bytes(b"this is not a DICOM file at all" * 10)
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert "unreadable DICOM" in str(info.value)


def test_dicom_with_truncated_pixel_data_is_an_image_error(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", np.ones((64, 64), np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])
    with pytest.raises(ImageError, match="cut.dcm: unreadable DICOM"):
        load_image(path)


def test_png_grey_rgb_and_rgba(tmp_path):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    rgb = np.stack([grey, grey + 1, grey + 2], axis=-1)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "c.png")
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 9, np.uint8)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    deep = np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000
    Image.fromarray(deep).save(tmp_path / "d.png")

    np.testing.assert_array_equal(load_image(tmp_path / "g.png").array, grey.astype(np.float32))
    np.testing.assert_array_equal(load_image(tmp_path / "c.png").array, rgb.astype(np.float32))
    np.testing.assert_array_equal(load_image(tmp_path / "a.png").array, rgb.astype(np.float32))
    np.testing.assert_array_equal(load_image(tmp_path / "d.png").array, deep.astype(np.float32))
    assert load_image(tmp_path / "g.png").array.dtype == np.float32


def test_corrupt_png_is_an_image_error(tmp_path):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "bad.png").write_bytes(data[:40])
    with pytest.raises(ImageError, match="bad.png: unreadable PNG"):
        load_image(tmp_path / "bad.png")


def test_npy_numeric(tmp_path):
    array = np.arange(6, dtype=np.int16).reshape(2, 3)
    np.save(tmp_path / "x.npy", array)
    image = load_image(tmp_path / "x.npy")
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array, array)


class _Payload:
    """Unpickling this would create the file named in ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_npy_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    array = np.empty(1, dtype=object)
    array[0] = _Payload(str(marker))
    with (tmp_path / "evil.npy").open("wb") as handle:
        np.save(handle, array, allow_pickle=True)

    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "evil.npy")

    assert "pickle" in str(info.value) and "evil.npy" in str(info.value)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(str(marker))))  # the gadget is live: unpickling it would run code
    assert marker.exists()


def test_npy_with_nan_is_refused(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(ImageError, match="NaN or infinite"):
        load_image(tmp_path / "nan.npy")


def test_truncated_npy_is_an_image_error(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((100, 100)))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:500])
    with pytest.raises(ImageError, match="t.npy: unreadable NPY"):
        load_image(tmp_path / "t.npy")


def test_nifti_volume(tmp_path):
    import nibabel

    volume = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    for name in ("v.nii", "v.nii.gz"):
        nibabel.save(nibabel.Nifti1Image(volume, affine=np.eye(4)), tmp_path / name)
        image = load_image(tmp_path / name)
        assert image.format == "nifti"
        assert image.array.dtype == np.float32
        np.testing.assert_array_equal(image.array, volume)


def test_nifti_without_nibabel_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "v.nii.gz").write_bytes(b"\0" * 400)
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import nibabel now fails
    with pytest.raises(ImageError, match="pip install nibabel"):
        load_image(tmp_path / "v.nii.gz")


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(ImageError, match="gone.dcm: file not found"):
        load_image(tmp_path / "gone.dcm")
    (tmp_path / "scan.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ImageError, match="unsupported image type"):
        load_image(tmp_path / "scan.jpg")


# ---------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------


def test_read_manifest_csv(root):
    path = write_csv(
        root / "manifest.csv",
        HEADER,
        "a/1.dcm,P1,2024-01-31,1,0,045Y,F,north",
        "a/2.png,P1,20240201,0,1,,M,",
        "3.npy,P2,,1.0,1.0,61.5,,south",
    )

    manifest = read_manifest(path, root, label_columns=LABELS)

    assert len(manifest) == 3
    assert manifest.image_paths == ["a/1.dcm", "a/2.png", "3.npy"]
    assert manifest.label_names == ("effusion", "nodule")
    np.testing.assert_array_equal(manifest.labels, [[1, 0], [0, 1], [1, 1]])
    assert manifest.patient_ids == ["P1", "P1", "P2"]
    assert manifest.study_dates == ["2024-01-31", "2024-02-01", None]
    assert manifest.attributes["age"] == [45.0, None, 61.5]
    assert manifest.attributes["sex"] == ["F", "M", None]
    assert manifest.attributes["site"] == ["north", None, "south"]
    assert manifest.attributes["scanner_model"] == [None, None, None]
    assert manifest.absolute_path(0) == root.resolve() / "a" / "1.dcm"
    assert json.loads(json.dumps(manifest.to_dict()))["labels"] == [[1, 0], [0, 1], [1, 1]]


def test_read_manifest_parquet(root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "image_path": ["x.npy", "y.npy"],
            "patient_id": ["P1", "P2"],
            "effusion": [True, False],
            "nodule": [0, 1],
            "age": [30, None],
            "scanner_manufacturer": ["Acme", "Other"],
        }
    )
    pq.write_table(table, root / "m.parquet")

    manifest = read_manifest(root / "m.parquet", root, label_columns=LABELS)

    np.testing.assert_array_equal(manifest.labels, [[1, 0], [0, 1]])
    assert manifest.attributes["age"] == [30.0, None]
    assert manifest.attributes["scanner_manufacturer"] == ["Acme", "Other"]


@pytest.mark.parametrize("column", ["image_path", "patient_id", "nodule"])
def test_missing_column_is_named(root, column):
    columns = ["image_path", "patient_id", "effusion", "nodule"]
    values = ["x.png", "P1", "0", "1"]
    keep = [i for i, c in enumerate(columns) if c != column]
    path = write_csv(root / "m.csv", ",".join(columns[i] for i in keep), ",".join(values[i] for i in keep))
    message = manifest_error(path, root)
    assert f"no column {column!r}" in message


def test_custom_required_column(root):
    path = write_csv(root / "m.csv", "image_path,patient_id,effusion,nodule", "x.png,P1,0,1")
    assert "no column 'study_date'" in manifest_error(path, root, required=("image_path", "patient_id", "study_date"))


@pytest.mark.parametrize("value", ["2", "yes", "", "-1", "0.5"])
def test_label_not_zero_or_one_names_row_and_column_but_not_the_cell(root, value):
    path = write_csv(root / "m.csv", HEADER, "x.png,P1,,0,1,,,", f"y.png,P2,,1,{value},,,")
    message = manifest_error(path, root)
    assert "row 2" in message and "'nodule'" in message and "must be 0 or 1" in message
    assert repr(value) not in message  # a cell is the file's content: never echoed


def test_label_column_outside_output_schema(root):
    path = write_csv(root / "m.csv", HEADER, "x.png,P1,,0,1,,,")
    message = manifest_error(path, root, class_names=["effusion", "pneumothorax"])
    assert "'nodule'" in message and "class names" in message and "'pneumothorax'" in message


def test_a_manifest_without_labels_is_read_only_where_no_label_is_needed(root):
    """Generated reports against reference reports need no label column; every other reader does."""
    path = write_csv(root / "m.csv", "image_path,patient_id,site", "x.png,P1,north", "y.png,P2,south")
    assert "no label columns given" in manifest_error(path, root, label_columns=())
    manifest = read_manifest(path, root, label_columns=(), labels_needed=False)
    assert (manifest.image_paths, manifest.patient_ids, manifest.attributes["site"]) == (["x.png", "y.png"], ["P1", "P2"], ["north", "south"])
    assert manifest.label_names == () and manifest.labels.shape == (2, 0)


def test_empty_manifest(root):
    header_only = write_csv(root / "h.csv", HEADER)
    assert "empty" in manifest_error(header_only, root)
    nothing = root / "n.csv"
    nothing.write_text("")
    assert "empty" in manifest_error(nothing, root)


def test_duplicate_image_rows_name_both_rows(root):
    path = write_csv(root / "m.csv", HEADER, "a/x.png,P1,,0,1,,,", "b.png,P1,,0,1,,,", "a/./x.png,P2,,1,0,,,")
    message = manifest_error(path, root)
    assert "listed twice" in message and "rows 1 and 3" in message and "a/x.png" in message


def test_empty_required_cell_names_row_and_column(root):
    path = write_csv(root / "m.csv", HEADER, "x.png,P1,,0,1,,,", "y.png, ,,0,1,,,")
    message = manifest_error(path, root)
    assert "row 2" in message and "'patient_id' is empty" in message


@pytest.mark.parametrize(
    "cell,expected",
    [("2024-13-01", "study date"), ("soon", "study date")],
)
def test_bad_study_date_names_row(root, cell, expected):
    path = write_csv(root / "m.csv", HEADER, f"x.png,P1,{cell},0,1,,,")
    message = manifest_error(path, root)
    assert "row 1" in message and expected in message and "'study_date'" in message and cell not in message


def test_bad_age_names_row(root):
    path = write_csv(root / "m.csv", HEADER, "x.png,P1,,0,1,,,", "y.png,P1,,0,1,ancient,,")
    message = manifest_error(path, root)
    assert "row 2" in message and "'age'" in message and "ancient" not in message


@pytest.mark.parametrize(
    "image_path,reason",
    [
        ("/etc/passwd", "absolute"),
        ("C:\\data\\x.dcm", "absolute"),
        ("../outside.png", "'..'"),
        ("a/../../outside.png", "'..'"),
        ("a\\..\\..\\outside.png", "'..'"),
    ],
)
def test_path_escaping_the_root_names_the_row(root, image_path, reason):
    path = root / "m.csv"
    path.write_text(f'{HEADER}\nok.png,P1,,0,1,,,\n"{image_path}",P2,,0,1,,,\n')
    message = manifest_error(path, root)
    assert "row 2" in message and reason in message


def test_symlink_leading_outside_the_root_is_refused(root, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.npy").write_bytes(b"")
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "inner").mkdir()
    (root / "ok").symlink_to(root / "inner", target_is_directory=True)
    path = write_csv(root / "m.csv", HEADER, "ok/x.png,P1,,0,1,,,", "link/secret.npy,P2,,0,1,,,")
    message = manifest_error(path, root)
    assert "row 2" in message and "outside the dataset root" in message and "link/secret.npy" in message


def test_root_must_be_a_folder(tmp_path):
    path = write_csv(tmp_path / "m.csv", HEADER, "x.png,P1,,0,1,,,")
    assert "is not a folder" in manifest_error(path, tmp_path / "missing")


def test_ragged_csv_row_is_named(root):
    path = write_csv(root / "m.csv", HEADER, "x.png,P1,,0,1,,,", "y.png,P2,0,1")
    assert "row 2" in manifest_error(path, root)


def test_unsupported_manifest_format(root):
    (root / "m.xlsx").write_bytes(b"")
    assert "unsupported format" in manifest_error(root / "m.xlsx", root)


# ---------------------------------------------------------------------------
# Attributes from DICOM headers
# ---------------------------------------------------------------------------


def test_fill_attributes_from_headers(root):
    write_dicom(root / "a.dcm", np.zeros((4, 4), np.uint16), header=HEADER_VALUES)
    write_dicom(root / "b.dcm", np.zeros((4, 4), np.uint16), header=HEADER_VALUES)
    (root / "c.dcm").write_bytes(b"not dicom")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "d.png")
    path = write_csv(
        root / "m.csv",
        HEADER,
        "a.dcm,P1,,0,1,,,",
        "b.dcm,P2,2020-05-05,0,1,70,M,",  # the manifest wins where it has a value
        "c.dcm,P3,,0,1,,,",
        "d.png,P4,,0,1,,,",
    )
    manifest = read_manifest(path, root, label_columns=LABELS)

    result = fill_attributes_from_headers(manifest)

    filled = result.manifest
    assert filled.attributes["scanner_manufacturer"] == ["Acme Medical", "Acme Medical", None, None]
    assert filled.attributes["scanner_model"] == ["Scanix 9", "Scanix 9", None, None]
    assert filled.attributes["sex"] == ["F", "M", None, None]
    assert filled.attributes["age"] == [45.0, 70.0, None, None]
    assert filled.study_dates == ["2024-01-31", "2020-05-05", None, None]
    assert result.filled == {
        "scanner_manufacturer": 2,
        "scanner_model": 2,
        "sex": 1,
        "age": 1,
        "study_date": 1,
    }
    assert [row for row, _ in result.unreadable] == [3]
    assert "c.dcm" in result.unreadable[0][1]
    assert manifest.attributes["sex"] == [None, "M", None, None]  # the input is left alone
    assert json.loads(json.dumps(result.to_dict()))["unreadable"][0]["row"] == 3


# ---------------------------------------------------------------------------
# Preprocessing spec
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,named",
    [
        ({"normalize": "minmax"}, "did you mean 'normalise'"),
        ({"crop": [10, 10]}, "'crop'"),
        ({"resize": [224]}, "'resize'"),
        ({"resize": [0, 224]}, "'resize'"),
        ({"resize": [224.0, 224]}, "'resize'"),
        ({"window": {"center": 40}}, "'window'"),
        ({"window": {"center": 40, "width": 0}}, "'window.width'"),
        ({"window": {"center": "40", "width": 400}}, "'window.center'"),
        ({"normalise": "zscore"}, "'normalise'"),
        ({"normalise": {"mean": 0.5, "std": 0}}, "'normalise.std'"),
        ({"normalise": {"mean": float("nan"), "std": 1}}, "'normalise.mean'"),
        ({"normalise": {"mean": [0.1, 0.2, 0.3], "std": 1}, "channels": "1xHxW"}, "'normalise.mean'"),
        ({"channels": "2xHxW"}, "'channels'"),
    ],
)
def test_bad_spec_is_refused_naming_the_key(spec, named):
    with pytest.raises(ValueError) as info:
        Preprocessing.from_spec(spec)
    assert named in str(info.value)


def test_spec_round_trips():
    spec = {
        "resize": [64, 32],
        "window": {"center": 40.0, "width": 400.0},
        "normalise": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "channels": "3xHxW",
    }
    assert Preprocessing.from_spec(spec).to_dict() == spec
    assert Preprocessing.from_spec(None).to_dict() == {}


def test_window_clips_and_scales_hounsfield_units():
    pre = Preprocessing.from_spec({"window": {"center": 40, "width": 400}})
    out = pre.apply(np.array([[-1000.0, -160.0, 40.0, 240.0, 3000.0]]))
    np.testing.assert_allclose(out, [[[0.0, 0.0, 0.5, 1.0, 1.0]]])
    assert out.dtype == np.float32


def test_normalise_mean_std_and_minmax():
    image = np.array([[0.0, 50.0], [100.0, 150.0]])
    out = Preprocessing.from_spec({"normalise": {"mean": 50, "std": 25}}).apply(image)
    np.testing.assert_allclose(out[0], [[-2.0, 0.0], [2.0, 4.0]])
    out = Preprocessing.from_spec({"normalise": "minmax"}).apply(image)
    np.testing.assert_allclose(out[0], [[0.0, 1 / 3], [2 / 3, 1.0]], rtol=1e-6)
    flat = Preprocessing.from_spec({"normalise": "minmax"}).apply(np.full((3, 3), 7.0))
    np.testing.assert_array_equal(flat, np.zeros((1, 3, 3)))


def test_normalise_per_channel():
    pre = Preprocessing.from_spec({"channels": "3xHxW", "normalise": {"mean": [1, 2, 3], "std": [1, 2, 4]}})
    out = pre.apply(np.full((2, 2), 5.0))
    np.testing.assert_allclose(out[:, 0, 0], [4.0, 1.5, 0.5])


@pytest.mark.parametrize("shape", [(512, 512), (37, 53), (10, 300), (224, 224)])
def test_resize_yields_the_requested_shape(shape):
    pre = Preprocessing.from_spec({"resize": [224, 224]})
    out = pre.apply(np.random.default_rng(0).random(shape))
    assert out.shape == (1, 224, 224)
    assert pre.output_shape(shape) == (1, 224, 224)


def test_resize_is_bilinear():
    ramp = np.tile(np.linspace(0.0, 1.0, 5), (5, 1))
    out = Preprocessing.from_spec({"resize": [9, 9]}).apply(ramp)[0]
    np.testing.assert_allclose(out, np.tile(np.linspace(0.0, 1.0, 9), (9, 1)), atol=1e-6)
    constant = Preprocessing.from_spec({"resize": [7, 3]}).apply(np.full((20, 20), 3.5))
    np.testing.assert_allclose(constant, 3.5)


def test_grey_is_replicated_to_three_channels():
    image = np.random.default_rng(1).random((40, 30))
    out = Preprocessing.from_spec({"resize": [16, 16], "channels": "3xHxW"}).apply(image)
    assert out.shape == (3, 16, 16)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def test_colour_becomes_grey_for_one_channel_models():
    rgb = np.zeros((4, 4, 3))
    rgb[..., 0] = 100.0
    out = Preprocessing.from_spec({"channels": "1xHxW"}).apply(rgb)
    assert out.shape == (1, 4, 4)
    np.testing.assert_allclose(out, 29.9, rtol=1e-6)


def test_layouts_accepted_and_volumes_refused():
    pre = Preprocessing.from_spec({})
    assert pre.apply(np.zeros((8, 6, 3))).shape == (3, 8, 6)
    assert pre.apply(np.zeros((8, 6, 4))).shape == (3, 8, 6)
    assert pre.apply(np.zeros((1, 8, 6))).shape == (1, 8, 6)
    with pytest.raises(ValueError, match="not a 2D image"):
        pre.apply(np.zeros((20, 8, 6)))


def test_signature_match_with_batch_dimension():
    check_against_signature((1, 64, 64), ["batch", 1, 64, 64])
    check_against_signature((1, 64, 64), [None, 1, 64, 64])
    check_against_signature((3, 224, 224), [3, 224, 224])
    check_against_signature((1, 100, 120), ["N", 1, "H", "W"])


def test_signature_mismatch_explains_what_to_change():
    pre = Preprocessing.from_spec({"resize": [224, 224], "channels": "3xHxW"})
    with pytest.raises(ValueError) as info:
        check_against_signature(pre.output_shape((512, 512)), ["batch", 1, 64, 64])
    message = str(info.value)
    assert "model expects 1x64x64" in message
    assert "preprocessing yields 3x224x224" in message
    assert "channels 3 != 1" in message and "height 224 != 64" in message
    assert '"channels": "1xHxW"' in message and '"resize": [64, 64]' in message


def test_signature_rank_mismatch():
    with pytest.raises(ValueError, match="5 dimensions"):
        check_against_signature((1, 64, 64), [1, 1, 8, 64, 64])


def test_engine_modules_do_not_import_django():
    code = (
        "import sys, radtrust_engine.loading, radtrust_engine.images, radtrust_engine.preprocessing, "
        "radtrust_engine.runner, radtrust_engine.pipeline, radtrust_engine.segmentation; "
        "assert 'django' not in sys.modules, 'django imported'"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    root = Path(__file__).parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("allocated", "stored", "signed"), [(16, 16, 0), (16, 12, 0), (16, 12, 1), (16, 16, 1), (8, 8, 0), (8, 7, 1)])
def test_native_pixel_fast_path_equals_pydicom(tmp_path, allocated, stored, signed):
    """The uncompressed fast path decodes exactly as ``pixel_array`` does, high bits included."""
    import io

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    from radtrust_engine.dicom_pixels import native_pixels

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 7, 5, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, stored, stored - 1, signed
    raw = np.random.default_rng(allocated + stored + signed).integers(0, 2**allocated, 35, dtype=np.uint64)
    ds.PixelData = raw.astype(f"<u{allocated // 8}").tobytes()  # every bit set at random, unused ones too
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    read = pydicom.dcmread(buffer)
    fast = native_pixels(read)
    assert fast is not None and fast.dtype == read.pixel_array.dtype
    np.testing.assert_array_equal(fast, read.pixel_array)


def test_native_pixel_fast_path_declines_compressed_and_colour(tmp_path):
    import pydicom
    from pydicom.dataset import FileMetaDataset

    from radtrust_engine.dicom_pixels import native_pixels

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"  # JPEG baseline
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = ds.BitsStored = 8
    ds.PixelData = b"\x00" * 4
    assert native_pixels(ds) is None
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SamplesPerPixel = 3
    assert native_pixels(ds) is None


@pytest.mark.parametrize(
    "shape, size",
    [
        ((1, 512, 512), (224, 224)),
        ((3, 336, 503), (125, 390)),
        ((1, 64, 64), (224, 224)),
        ((3, 1, 9), (4, 2)),
        ((1, 2, 2), (5, 5)),
        ((1, 37, 101), (1, 1)),
    ],
)
def test_fast_resize_equals_scipy_zoom_within_float32_rounding(shape, size):
    """The separable resize samples where scipy's zoom does, with its weights and shape."""
    from scipy import ndimage

    from radtrust_engine.preprocessing import zoom_bilinear

    rng = np.random.default_rng(sum(shape) + sum(size))
    for x in (rng.normal(0, 1000, shape), rng.integers(0, 4096, shape), rng.normal(0, 1e-20, shape)):
        x = x.astype(np.float32)
        expected = ndimage.zoom(x, (1.0, size[0] / shape[1], size[1] / shape[2]), order=1, mode="nearest", prefilter=False)
        got = zoom_bilinear(x, size)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=4 * np.finfo(np.float32).eps * float(np.abs(x).max()))
