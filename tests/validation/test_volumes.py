"""3D volumes: series reading and its refusals, NIfTI, resampling, sliding windows and the metrics."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy.spatial.distance import cdist

from radtrust_engine.volumes import (
    Volume,
    VolumeError,
    read_dicom_series,
    read_nifti,
    resample,
    sliding_window,
    structure_scores,
    volume_scores,
    volume_summary,
    window_starts,
)

ORIENTATION = [1.0, 0.0, 0.0, 0.0, 0.8, -0.6]  # an oblique slice: the normal is (0, 0.6, 0.8)


def write_series(root, positions, *, series=None, size=(8, 6), orientation=ORIENTATION, spacing=(0.7, 0.7)):
    """One file per slice, written in reverse order; slice k's pixels all equal k * 10."""
    root.mkdir(parents=True, exist_ok=True)
    normal = np.cross(orientation[:3], orientation[3:])
    uid = generate_uid()
    paths = []
    for k, along in reversed(list(enumerate(positions))):
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series[k] if series else uid
        ds.Modality = "CT"
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = [float(v) for v in np.array([5.0, -3.0, 10.0]) + along * normal]
        ds.PixelSpacing = list(spacing)
        ds.Rows, ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -5
        ds.PixelData = np.full(size, k * 10, dtype=np.uint16).tobytes()
        path = root / f"s{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_a_series_is_sorted_along_its_normal_with_its_spacing(tmp_path):
    volume = read_dicom_series(write_series(tmp_path / "ok", [0.0, 2.5, 5.0, 7.5]))
    assert volume.array.shape == (4, 8, 6)
    assert volume.array[:, 0, 0].tolist() == [-5.0, 5.0, 15.0, 25.0]  # slice order, rescale applied
    assert volume.spacing == pytest.approx((2.5, 0.7, 0.7))


@pytest.mark.parametrize(
    ("positions", "kwargs", "reason"),
    [
        ([0.0, 2.5, 7.5, 10.0], {}, "1 slice.s. missing"),
        ([0.0, 2.5, 4.0, 7.5], {}, "inconsistent slice spacing"),
        ([0.0, 2.5, 2.5, 5.0], {}, "share one position"),
        ([0.0, 2.5, 5.0], {"series": ["1.2.3", "1.2.3", "1.2.4"]}, "mix 2 series"),
        ([0.0], {}, "at least two slices"),
    ],
)
def test_a_broken_series_is_refused_with_the_reason(tmp_path, positions, kwargs, reason):
    with pytest.raises(VolumeError, match=reason):
        read_dicom_series(write_series(tmp_path / "bad", positions, **kwargs))


def test_a_slice_with_another_orientation_or_size_is_refused(tmp_path):
    tilted = write_series(tmp_path / "t", [0.0, 2.5, 5.0])
    ds = pydicom.dcmread(tilted[0])
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.save_as(tilted[0])
    with pytest.raises(VolumeError, match="orientation differs"):
        read_dicom_series(tilted)
    paths = write_series(tmp_path / "a", [0.0, 2.5]) + write_series(tmp_path / "b", [5.0], size=(4, 4))
    ds = pydicom.dcmread(paths[-1])
    ds.SeriesInstanceUID = pydicom.dcmread(paths[0]).SeriesInstanceUID
    ds.save_as(paths[-1])
    with pytest.raises(VolumeError, match="size differs"):
        read_dicom_series(paths)


def test_a_volume_above_the_limit_is_refused_before_its_pixels_are_read(tmp_path):
    with pytest.raises(VolumeError, match="above the limit of 100"):
        read_dicom_series(write_series(tmp_path / "big", [0.0, 2.5, 5.0]), max_voxels=100)


def test_nifti_is_read_as_z_y_x_with_its_spacing(tmp_path):
    import nibabel

    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # x, y, z
    image = nibabel.Nifti1Image(data, np.diag([0.8, 0.9, 3.0, 1.0]))
    nibabel.save(image, tmp_path / "v.nii.gz")
    volume = read_nifti(tmp_path / "v.nii.gz")
    assert volume.array.shape == (6, 5, 4)
    assert volume.array[2, 3, 1] == data[1, 3, 2]
    assert volume.spacing == pytest.approx((3.0, 0.9, 0.8))
    with pytest.raises(VolumeError, match="above the limit"):
        read_nifti(tmp_path / "v.nii.gz", max_voxels=10)


def test_resampling_to_the_model_spacing():
    volume = Volume(np.random.default_rng(0).random((10, 20, 20)).astype(np.float32), (3.0, 1.0, 1.0))
    out = resample(volume, (1.5, 2.0, 2.0))
    assert out.array.shape == (20, 10, 10) and out.spacing == (1.5, 2.0, 2.0)
    mask = Volume((volume.array > 0.5).astype(np.float32), volume.spacing)
    assert set(np.unique(resample(mask, (1.5, 2.0, 2.0), mask=True).array)) <= {0.0, 1.0}


def test_window_starts_cover_the_axis_and_end_flush():
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert window_starts(3, 4, 0.5) == [0]


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_sliding_window_of_a_pointwise_model_reproduces_it_exactly(overlap):
    array = np.random.default_rng(1).random((13, 21, 9)).astype(np.float32)
    calls = []

    def predict(patch):
        calls.append(patch.shape)
        return np.concatenate([2 * patch[0], -patch[0]])

    out = sliding_window(array, predict, (8, 8, 8), overlap=overlap)
    assert out.shape == (2, 13, 21, 9)
    np.testing.assert_allclose(out[0], 2 * array, rtol=1e-5)
    np.testing.assert_allclose(out[1], -array, rtol=1e-5)
    assert set(calls) == {(1, 1, 8, 8, 8)}


def _sphere(shape, centre, radius):
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius


def _reference_hd95(pred, truth, spacing):
    from scipy.ndimage import binary_erosion

    def surface(m):
        return np.argwhere(m & ~binary_erosion(m)) * np.asarray(spacing)

    d = cdist(surface(pred), surface(truth))
    return max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))


def test_volume_scores_against_direct_definitions():
    spacing = (2.0, 0.8, 0.8)
    truth = _sphere((16, 24, 24), (8, 12, 12), 5)
    pred = _sphere((16, 24, 24), (8, 13, 11), 5)
    scores = volume_scores(pred, truth, spacing, tolerance_mm=1.0)
    assert abs(scores.dice - 2 * (pred & truth).sum() / (pred.sum() + truth.sum())) <= 1e-12
    assert scores.hd95 == pytest.approx(_reference_hd95(pred, truth, spacing), abs=1e-9)
    assert 0 < scores.surface_dice < 1
    assert volume_scores(pred, truth, spacing, tolerance_mm=100).surface_dice == 1.0
    assert scores.volume_ml == pytest.approx(pred.sum() * 2.0 * 0.8 * 0.8 / 1000)
    empty = volume_scores(np.zeros_like(truth), truth, spacing)
    assert empty.hd95 is None and empty.dice == 0.0 and empty.volume_error == -1.0
    labels = truth.astype(int) + 2 * _sphere(truth.shape, (3, 3, 3), 2)
    assert set(structure_scores(labels, labels, spacing, ["liver", "lesion"])) == {"liver", "lesion"}


def test_volume_summary_means_with_patient_intervals():
    rng = np.random.default_rng(2)
    scores = []
    for _ in range(30):
        truth = _sphere((12, 12, 12), (6, 6, 6), 3)
        shift = rng.integers(0, 3, 3)
        scores.append(volume_scores(_sphere((12, 12, 12), 6 + shift, 3), truth, (1.0, 1.0, 1.0)))
    summary = volume_summary(scores, [f"p{i // 2}" for i in range(30)], n_resamples=300)
    assert summary["dice"]["mean"] == pytest.approx(np.mean([s.dice for s in scores]), abs=1e-4)
    assert summary["dice"]["low"] < summary["dice"]["mean"] < summary["dice"]["high"]
    assert summary["hd95"]["n_volumes"] == 30


def test_volumes_through_a_model_are_scored_and_oversized_ones_skipped():
    from radtrust_engine.volumes import VolumeCase, VolumeSettings, evaluate_volumes

    def forward(window):  # a thresholding "model": probability 1 where the voxel is bright
        return (window > 0.5).astype(np.float32)

    def case(i, shape):
        def read():
            truth = _sphere(shape, [n // 2 for n in shape], 3)
            return Volume(truth.astype(np.float32), (2.0, 1.0, 1.0)), truth.astype(np.uint8)

        return VolumeCase(f"v{i}", f"p{i}", read)

    settings = VolumeSettings(spacing=(1.0, 1.0, 1.0), window=(8, 16, 16), max_voxels=20_000)
    report = evaluate_volumes([case(i, (10, 20, 20)) for i in range(4)] + [case(9, (40, 40, 40))], forward, settings, ["nodule"], n_resamples=50)
    assert report["n_volumes"] == 4
    assert report["skipped"][0]["case_id"] == "v9" and "above the limit" in report["skipped"][0]["reason"]
    assert report["structures"]["nodule"]["dice"]["mean"] > 0.9
    with pytest.raises(VolumeError, match="no volume could be evaluated"):
        evaluate_volumes([case(9, (40, 40, 40))], forward, settings, ["nodule"])
