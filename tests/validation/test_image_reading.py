"""Image reading with the DICOM standard's pixel semantics, on the files pydicom and nibabel ship.

Every file pydicom ships (its own and the pydicom-data package's) is either read with the right
semantics or skipped with a specific reason; none crashes. Same images stored in different
transfer syntaxes, photometric interpretations or byte orders read the same. No database.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.data.data_manager import DATA_ROOT, DataTypes, external_data_sources
from pydicom.pixels import apply_color_lut, apply_modality_lut

from radtrust_engine.failures import ImageProblem
from radtrust_engine.images import ImageError, load_image, read_image_header, skipped_message
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.report import ImageConversions, SkippedImage

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the odd values its test files hold on purpose

TWO_D = Preprocessing.from_spec({})


def _pydicom_files() -> list[str]:
    """The names of every file pydicom ships: its own test files and the pydicom-data package's
    (listed here, then found with ``get_testdata_file``, which looks locally before it would download)."""
    local = [p.name for p in (Path(DATA_ROOT) / "test_files").glob("*") if p.is_file()]
    external = [Path(p).name for p in external_data_sources()["pydicom-data"].get_paths("*", DataTypes.DATASET)]
    return sorted(set(local) | set(external))


def _read(name: str, spec: dict | None = None):
    return load_image(get_testdata_file(name), Preprocessing.from_spec(spec or {}))


def _pixels(name: str, spec: dict | None = None) -> np.ndarray:
    return _read(name, spec).array


# Every file pydicom ships that a run skips under the default spec, with why; every other file is read.
MULTI_FRAME = [
    "OBXXXX1A_2frame.dcm",
    "OBXXXX1A_expb_2frame.dcm",
    "OBXXXX1A_rle_2frame.dcm",
    "SC_rgb_16bit_2frame.dcm",
    "SC_rgb_2frame.dcm",
    "SC_rgb_32bit_2frame.dcm",
    "SC_rgb_expb_16bit_2frame.dcm",
    "SC_rgb_expb_2frame.dcm",
    "SC_rgb_expb_32bit_2frame.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "color3d_jpeg_baseline.dcm",
    "eCT_Supplemental.dcm",
    "emri_small.dcm",
    "emri_small_RLE.dcm",
    "emri_small_big_endian.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
    "examples_ybr_color.dcm",
    "liver.dcm",  # 3 frames: once read as 3 colour channels
    "liver_expb.dcm",
    "rtdose.dcm",
    "rtdose_expb.dcm",
    "rtdose_rle.dcm",
]
NO_PIXELS = [
    "UN_sequence.dcm",
    "empty_charset_LEI.dcm",
    "nested_priv_SQ.dcm",
    "no_meta_group_length.dcm",
    "priv_SQ.dcm",
    "reportsi.dcm",
    "reportsi_with_empty_number_tags.dcm",
    "rtplan.dcm",
    "rtplan_truncated.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
]
UNREADABLE = {
    "ExplVR_BigEndNoMeta.dcm": "DICM",  # no file meta: not a DICOM file as the standard writes one
    "ExplVR_LitEndNoMeta.dcm": "DICM",
    "OT-PAL-8-face.dcm": "DICM",
    "no_meta.dcm": "DICM",
    "rtstruct.dcm": "DICM",
    "badVR.dcm": "Number of Frames '1A'",
    "meta_missing_tsyntax.dcm": "no Transfer Syntax UID",
    "MR_truncated.dcm": "Explicit VR Little Endian (1.2.840.10008.1.2.1)",  # pixel data shorter than the header says
    "JPEG-lossy.dcm": "JPEG Extended (Process 2 and 4)",  # a stream libjpeg refuses: named by its transfer syntax
    "JPEG2000-embedded-sequence-delimiter.dcm": "JPEG 2000 Image Compression",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated",
}
NOT_IMAGES = ["README.txt", "crayons.icc", "rtplan.dump", "rtstruct.dump", "test1.json", "test_PN.json", "zipMR.gz"]
SKIPPED = {
    **dict.fromkeys(MULTI_FRAME, (ImageProblem.MULTI_FRAME, "refused by the preprocessing spec's 'frames' rule")),
    **dict.fromkeys(NO_PIXELS, (ImageProblem.NO_PIXELS, "without an image")),
    **{name: (ImageProblem.UNREADABLE, fragment) for name, fragment in UNREADABLE.items()},
    **dict.fromkeys(NOT_IMAGES, (ImageProblem.UNSUPPORTED_TYPE, "unsupported image type")),
}


@pytest.mark.parametrize("name", _pydicom_files())
def test_every_file_pydicom_ships_is_read_or_skipped_with_its_reason(name):
    path = get_testdata_file(name)
    try:
        image = load_image(path, TWO_D)
    except ImageError as exc:
        assert name in SKIPPED, f"{name} skipped: {exc.reason}"
        kind, fragment = SKIPPED[name]
        assert (exc.kind, fragment in exc.reason) == (kind, True), exc.reason
        assert os.path.dirname(path) not in exc.reason  # the file's name, never where it lies
        return
    assert name not in SKIPPED, f"{name} was read, expected {SKIPPED[name]}"
    assert image.array.dtype == np.float32 and image.array.ndim in (2, 3) and np.isfinite(image.array).all()
    if image.array.ndim == 3:
        assert image.array.shape[-1] == 3  # colour; frames never become channels
    header = read_image_header(path, TWO_D)  # the pre-flight check sees what the run reads
    assert (header.shape, header.conversions) == (image.array.shape, image.conversions)


def test_every_photometric_interpretation_and_transfer_syntax_shipped_is_read():
    read_photometric, read_syntaxes, shipped_photometric, shipped_syntaxes = set(), set(), set(), set()
    for name in _pydicom_files():
        if name in NOT_IMAGES or name in NO_PIXELS or name in UNREADABLE:
            continue
        ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
        shipped_photometric.add(ds.PhotometricInterpretation)
        shipped_syntaxes.add(ds.file_meta.TransferSyntaxUID.name)
        spec = {"frames": "first"} if name in MULTI_FRAME else {}
        _read(name, spec)  # raises if it cannot be read
        read_photometric.add(ds.PhotometricInterpretation)
        read_syntaxes.add(ds.file_meta.TransferSyntaxUID.name)
    assert (
        read_photometric
        == shipped_photometric
        == {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}
    )
    assert read_syntaxes == shipped_syntaxes
    assert {
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
        "JPEG-LS Lossless Image Compression",
    } <= read_syntaxes
    assert {"JPEG Extended (Process 2 and 4)", "JPEG 2000 Image Compression", "RLE Lossless", "Deflated Explicit VR Little Endian"} <= read_syntaxes


# --- Semantics: the same image read the same whatever its encoding -----------------------------


def _monochrome2_twin(tmp_path: Path, name: str) -> Path:
    """The MONOCHROME1 file ``name`` stored as MONOCHROME2: the same picture, each stored value mirrored."""
    ds = pydicom.dcmread(get_testdata_file(name))
    top = 2**ds.BitsStored - 1
    ds.PixelData = (top - ds.pixel_array.astype(np.int64)).astype(ds.pixel_array.dtype).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.save_as(tmp_path / "mono2.dcm")
    return tmp_path / "mono2.dcm"


@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "RG3_UNCR.dcm"])
def test_monochrome1_reads_like_the_same_image_stored_as_monochrome2(tmp_path, name):
    """An Agfa CR (MONOCHROME1: lowest value white) reads as the same picture stored as MONOCHROME2."""
    twin = _monochrome2_twin(tmp_path, name)
    stored = pydicom.dcmread(get_testdata_file(name)).pixel_array.ravel().astype(float)
    as_monochrome2 = load_image(twin).array.ravel().astype(float)
    assert np.corrcoef(stored, as_monochrome2)[0, 1] == pytest.approx(-1.0)  # what reading the stored values gives
    image = _read(name)
    assert image.conversions == ("MONOCHROME1 inverted",)
    assert np.corrcoef(image.array.ravel(), as_monochrome2)[0, 1] == pytest.approx(1.0)
    np.testing.assert_array_equal(image.array.ravel(), as_monochrome2)
    windowed, twin_windowed = _read(name, {"window": "header"}), load_image(twin, Preprocessing.from_spec({"window": "header"}))
    assert windowed.conversions == ("VOI window from header", "MONOCHROME1 inverted")
    assert np.corrcoef(windowed.array.ravel(), twin_windowed.array.ravel())[0, 1] > 0.99
    assert 0 <= windowed.array.min() and windowed.array.max() <= 1


@pytest.mark.parametrize(
    ("reference", "others"),
    [
        ("MR_small.dcm", ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"]),
        ("MR_small.dcm", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm"]),
        ("RG1_UNCR.dcm", ["RG1_J2KR.dcm"]),
        ("RG3_UNCR.dcm", ["RG3_J2KR.dcm"]),
        ("693_UNCR.dcm", ["693_J2KR.dcm"]),
        ("MR2_UNCR.dcm", ["MR2_J2KR.dcm"]),
        ("US1_UNCR.dcm", ["US1_J2KR.dcm"]),  # YBR_RCT (reversible colour) -> RGB, lossless
        ("JPEG2000_UNC.dcm", ["JPEG2000.dcm"]),
        ("OBXXXX1A.dcm", ["OBXXXX1A_expb.dcm", "OBXXXX1A_rle.dcm"]),  # palette, big-endian tables too
        ("gdcm-US-ALOKA-16.dcm", ["gdcm-US-ALOKA-16_big.dcm"]),  # segmented 16-bit palette
        ("SC_rgb.dcm", ["SC_rgb_expb.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_gdcm_KY.dcm"]),
        ("SC_rgb_16bit.dcm", ["SC_rgb_expb_16bit.dcm", "SC_rgb_rle_16bit.dcm"]),
        ("SC_rgb_32bit.dcm", ["SC_rgb_expb_32bit.dcm", "SC_rgb_rle_32bit.dcm"]),
    ],
)
def test_lossless_encodings_of_one_image_read_identically(reference, others):
    expected = _pixels(reference)
    for name in others:
        np.testing.assert_array_equal(_pixels(name), expected, err_msg=name)


@pytest.mark.parametrize(
    "name",
    [
        "SC_ybr_full_uncompressed.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_rgb_dcmtk_+eb+cy+s2.dcm",
        "SC_rgb_dcmtk_+eb+cy+n1.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_jls_lossy_line.dcm",
    ],
)
def test_ybr_and_lossy_colour_read_as_the_rgb_picture(name):
    """YBR becomes RGB once (never twice, never not at all): each channel follows the RGB original."""
    rgb, image = _pixels("SC_rgb.dcm"), _read(name)
    assert image.array.shape == rgb.shape
    for channel in range(3):
        assert np.corrcoef(image.array[..., channel].ravel(), rgb[..., channel].ravel())[0, 1] > 0.97
    assert np.abs(image.array - rgb).mean() < 3  # grey levels of 255
    ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    assert image.conversions == (() if ds.PhotometricInterpretation == "RGB" else (f"{ds.PhotometricInterpretation} → RGB",))


def test_lossy_jpeg_2000_colour_follows_the_original():
    original, ict = _pixels("US1_UNCR.dcm"), _read("US1_J2KI.dcm")
    assert ict.conversions == ("YBR_ICT → RGB",)
    assert all(np.corrcoef(ict.array[..., c].ravel(), original[..., c].ravel())[0, 1] > 0.99 for c in range(3))


def test_palette_colour_is_rgb_through_the_palette():
    image = _read("OBXXXX1A.dcm")
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"))
    assert image.conversions == ("palette → RGB",) and image.array.shape == (*ds.pixel_array.shape, 3)
    np.testing.assert_array_equal(image.array, apply_color_lut(ds.pixel_array, ds))
    assert len(np.unique(image.array.reshape(-1, 3), axis=0)) > 1  # colours, not palette indices


def test_modality_lut_rescale_and_table():
    ct = _read("CT_small.dcm")
    raw = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array
    assert ct.conversions == ("modality LUT slope 1 intercept -1024",)
    np.testing.assert_array_equal(ct.array, raw.astype(np.float32) - 1024)
    table = _read("mlut_18.dcm")
    ds = pydicom.dcmread(get_testdata_file("mlut_18.dcm"))
    assert table.conversions == ("modality LUT table",)
    np.testing.assert_array_equal(table.array, apply_modality_lut(ds.pixel_array, ds))
    mr = _read("MR2_UNCR.dcm")
    assert mr.conversions == ("modality LUT slope 3.77411 intercept 6.1e-05",)


def test_voi_lut_table_and_window_give_zero_to_one():
    lut = _read("vlut_04.dcm", {"window": "header"})
    assert lut.conversions == ("VOI LUT table from header",) and (lut.array.min(), lut.array.max()) == (0.0, 1.0)
    window = _read("MR_small.dcm", {"window": "header"})
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)  # LINEAR (PS3.3 C.11.2.1.2.1)
    expected = np.clip((ds.pixel_array - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(window.array, expected, atol=1e-6)
    with pytest.raises(ImageError) as caught:
        _read("CT_small.dcm", {"window": "header"})
    assert caught.value.kind == ImageProblem.NO_VOI and "has none" in caught.value.reason
    with pytest.raises(ImageError) as caught:
        _read("SC_rgb.dcm", {"window": "header"})
    assert caught.value.kind == ImageProblem.NO_VOI and "grey images" in caught.value.reason


# --- The frames rule -------------------------------------------------------------------------------


def test_a_three_frame_file_is_never_taken_for_three_colour_channels():
    with pytest.raises(ImageError) as caught:
        _read("liver.dcm")  # 3 frames of 512 x 512
    assert caught.value.kind == ImageProblem.MULTI_FRAME and caught.value.reason.startswith("3 frames, refused")
    frames = pydicom.dcmread(get_testdata_file("liver.dcm")).pixel_array
    second = _read("liver.dcm", {"frames": {"index": 1}})
    assert second.array.shape == (512, 512) and second.conversions == ("frame 1 of 3",)
    np.testing.assert_array_equal(second.array, frames[1])
    with pytest.raises(ImageError) as caught:
        _read("liver.dcm", {"frames": {"index": 3}})
    assert caught.value.kind == ImageProblem.NO_SUCH_FRAME and "(0 to 2)" in caught.value.reason


def test_frames_of_every_encoding_read_the_same_and_stack_as_a_volume():
    third = _pixels("emri_small.dcm", {"frames": {"index": 3}})
    for name in ("emri_small_RLE.dcm", "emri_small_big_endian.dcm", "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm"):
        np.testing.assert_array_equal(_pixels(name, {"frames": {"index": 3}}), third, err_msg=name)
    volume = _read("emri_small.dcm", {"frames": "volume", "resize": [10, 32, 32]})
    assert volume.array.shape == (10, 64, 64) and volume.conversions == ("volume of 10 frames",) and volume.volume
    np.testing.assert_array_equal(volume.array[3], third)
    with pytest.raises(ImageError) as caught:
        _read("CT_small.dcm", {"frames": "volume", "resize": [10, 32, 32]})
    assert caught.value.kind == ImageProblem.SHAPE and "needs a DxHxW volume, got a 2D image" in caught.value.reason
    with pytest.raises(ImageError) as caught:
        _read("SC_rgb_2frame.dcm", {"frames": "volume", "resize": [2, 32, 32]})
    assert caught.value.kind == ImageProblem.SHAPE and "volumes are grey" in caught.value.reason
    with pytest.raises(ValueError, match="needs 'resize' as \\[depth, height, width\\]"):
        Preprocessing.from_spec({"frames": "volume"})


def test_an_enhanced_ct_frame_gets_its_functional_groups_rescale():
    ds = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    assert "RescaleSlope" not in ds  # only in the shared functional group
    first = _read("eCT_Supplemental.dcm", {"frames": "first"})
    assert first.conversions == ("frame 0 of 2", "modality LUT slope 1 intercept -1024")
    np.testing.assert_array_equal(first.array, ds.pixel_array[0].astype(np.float32) - 1024)


NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"


@pytest.mark.parametrize("name", ["example4d.nii.gz", "example_nifti2.nii.gz", "functional.nii"])
def test_a_4d_nifti_follows_the_frames_rule(name):
    path = NIBABEL_DATA / name
    volumes = nibabel.load(path).get_fdata(dtype=np.float32)
    for spec in ({}, {"resize": [8, 8, 8]}):
        with pytest.raises(ImageError) as caught:
            load_image(path, Preprocessing.from_spec(spec))
        assert caught.value.kind == ImageProblem.MULTI_FRAME and f"{volumes.shape[3]} frames, refused" in caught.value.reason
    picked = load_image(path, Preprocessing.from_spec({"frames": {"index": 1}, "resize": [8, 8, 8]}))
    assert picked.conversions == (f"frame 1 of {volumes.shape[3]}",) and picked.volume
    np.testing.assert_array_equal(picked.array, volumes[..., 1])
    with pytest.raises(ImageError) as caught:  # a 2D spec takes no volume, whatever the frame
        load_image(path, Preprocessing.from_spec({"frames": "first"}))
    assert caught.value.kind == ImageProblem.SHAPE
    with pytest.raises(ImageError) as caught:
        load_image(path, Preprocessing.from_spec({"frames": "volume", "resize": [8, 8, 8]}))
    assert caught.value.kind == ImageProblem.MULTI_FRAME and "pick one" in caught.value.reason


def test_a_nifti_of_three_slices_is_a_volume_not_colour():
    path = NIBABEL_DATA / "resampled_anat_moved.nii"  # 17 x 21 x 3
    with pytest.raises(ImageError) as caught:
        load_image(path, TWO_D)
    assert caught.value.kind == ImageProblem.SHAPE and "a volume of shape 17x21x3 does not fit a 2D spec" in caught.value.reason
    assert read_image_header(path, Preprocessing.from_spec({"resize": [8, 8, 8]})).volume


def test_an_animated_png_follows_the_frames_rule(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((4, 5), 10 * (k + 1), np.uint8)) for k in range(3)]
    frames[0].save(tmp_path / "a.png", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "a.png", TWO_D)
    assert caught.value.kind == ImageProblem.MULTI_FRAME
    picked = load_image(tmp_path / "a.png", Preprocessing.from_spec({"frames": {"index": 2}}))
    assert picked.conversions == ("frame 2 of 3",) and (picked.array == 30).all()


def test_the_frames_rule_round_trips_and_the_default_is_left_out():
    for spec in ({"frames": "first"}, {"frames": {"index": 4}}, {"frames": "volume", "resize": [4, 8, 8]}, {"window": "header"}):
        assert Preprocessing.from_spec(spec).to_dict() == spec
    assert Preprocessing.from_spec({"frames": "refuse"}).to_dict() == {}
    for bad in ("all", {"index": -1}, {"index": True}, {"frame": 1}):
        with pytest.raises(ValueError, match="'frames' must be"):
            Preprocessing.from_spec({"frames": bad})


# --- Records --------------------------------------------------------------------------------------


def test_conversions_are_counted_and_rows_given_as_ranges():
    cases = [(1, ("a",)), (2, ("a",)), (3, ("a", "b")), (4, ()), (5, ("a",)), (6, ("a",)), (9, ("a",))]
    conversions = ImageConversions.collect(cases)
    assert conversions.counts == {"a": 6, "b": 1}
    assert [(c.applied, c.rows) for c in conversions.cases] == [(("a",), "1-2, 5-6, 9"), (("a", "b"), "3")]
    assert ImageConversions.from_dict(conversions.to_dict()) == conversions


def test_a_failure_names_the_first_hundred_skipped_files_and_counts_the_rest():
    skipped = [SkippedImage(row=i + 1, image_path=f"img/{i}.dcm", reason="file not found", kind="not_found") for i in range(150)]
    message = skipped_message(skipped, 400, 4)
    assert message.startswith("150 of 400 images could not be read or do not fit the preprocessing spec (the suite's max_unreadable_share allows 4)")
    assert "img/0.dcm (row 1), img/1.dcm (row 2)" in message and "img/99.dcm (row 100): file not found" in message
    assert "img/100.dcm" not in message and message.endswith("; and 50 more")


def _retagged(tmp_path: Path, name: str, **elements) -> Path:
    ds = pydicom.dcmread(get_testdata_file(name))
    for keyword, value in elements.items():
        setattr(ds.file_meta if keyword == "TransferSyntaxUID" else ds, keyword, value)
    ds.save_as(tmp_path / "retagged.dcm")
    return tmp_path / "retagged.dcm"


@pytest.mark.parametrize(
    ("syntax", "named"),
    [
        ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100)"),
        ("1.2.3.4.5", "1.2.3.4.5 (not a standard transfer syntax)"),
    ],
)
def test_a_transfer_syntax_without_a_decoder_is_skipped_by_its_name(tmp_path, syntax, named):
    path = _retagged(tmp_path, "MR_small_jp2klossless.dcm", TransferSyntaxUID=syntax)
    for read in (load_image, read_image_header):
        with pytest.raises(ImageError) as caught:
            read(path, TWO_D)
        assert caught.value.kind == ImageProblem.NO_DECODER
        assert caught.value.reason == f"transfer syntax {named} cannot be decoded: no decoder exists for it"


def test_a_decoder_that_is_not_installed_is_named(monkeypatch):
    from radtrust_engine import dicom_pixels

    class Missing:
        is_available = False

    monkeypatch.setattr(dicom_pixels, "get_decoder", lambda uid: Missing())
    with pytest.raises(ImageError) as caught:
        _read("JPGExtended.dcm")
    assert caught.value.kind == ImageProblem.NO_DECODER
    assert "transfer syntax JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51) cannot be decoded: no decoder for it is installed" in str(
        caught.value
    )


def test_a_photometric_interpretation_the_engine_does_not_convert_is_skipped(tmp_path):
    with pytest.raises(ImageError) as caught:
        load_image(_retagged(tmp_path, "SC_rgb.dcm", PhotometricInterpretation="YBR_PARTIAL_422"), TWO_D)
    assert caught.value.kind == ImageProblem.PHOTOMETRIC and "'YBR_PARTIAL_422' is not one the engine converts" in caught.value.reason
    with pytest.raises(ImageError) as caught:
        load_image(_retagged(tmp_path, "CT_small.dcm", PhotometricInterpretation="RGB"), TWO_D)
    assert caught.value.kind == ImageProblem.PHOTOMETRIC and "RGB with 1 samples per pixel" in caught.value.reason
