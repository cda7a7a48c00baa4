"""NPY arrays with a leading axis of frames follow the preprocessing spec's ``frames`` rule as DICOM
and NIfTI files do: refused by default (skipped with the reason), or one frame picked ("first",
``{"index": k}``); with a volume spec a 4D array's leading axis holds volumes. Channel layouts
((1|3, H, W), (H, W, 3|4)) are never read as frames."""

from __future__ import annotations

import numpy as np
import pytest

from radtrust_engine.failures import ImageProblem
from radtrust_engine.images import ImageError, load_image, npy_frames, read_image_header
from radtrust_engine.preprocessing import Preprocessing


def _spec(**extra) -> Preprocessing:
    return Preprocessing.from_spec({"resize": [32, 32], **extra})


def _frames(tmp_path, shape) -> tuple[str, np.ndarray]:
    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    path = tmp_path / "frames.npy"
    np.save(path, array)
    return str(path), array


@pytest.mark.parametrize(
    "shape, frames",
    [((5, 32, 32), 5), ((2, 32, 32), 2), ((4, 32, 32, 3), 4), ((32, 32), 1), ((3, 32, 32), 1), ((1, 32, 32), 1), ((32, 32, 3), 1)],
)
def test_a_2d_spec_reads_a_leading_axis_of_frames_but_never_a_channel_axis(shape, frames):
    assert npy_frames(shape, _spec()) == frames


def test_without_a_spec_an_array_is_read_as_it_is():
    assert npy_frames((5, 32, 32), None) == 1  # masks are read without one


def test_frames_are_refused_by_default_with_the_reason(tmp_path):
    path, _ = _frames(tmp_path, (5, 32, 32))
    for read in (load_image, read_image_header):
        with pytest.raises(ImageError, match="5 frames, refused by the preprocessing spec's 'frames' rule") as caught:
            read(path, _spec())
        assert caught.value.kind == ImageProblem.MULTI_FRAME


def test_first_and_index_pick_one_frame_and_say_so(tmp_path):
    path, array = _frames(tmp_path, (5, 32, 32))
    first = load_image(path, _spec(frames="first"))
    assert np.array_equal(first.array, array[0])
    assert first.conversions == ("frame 0 of 5",)
    third = load_image(path, _spec(frames={"index": 2}))
    assert np.array_equal(third.array, array[2])
    assert read_image_header(path, _spec(frames={"index": 2})).shape == (32, 32)


def test_an_index_past_the_last_frame_is_refused(tmp_path):
    path, _ = _frames(tmp_path, (5, 32, 32))
    with pytest.raises(ImageError, match="asks for frame 7, but the file has 5") as caught:
        load_image(path, _spec(frames={"index": 7}))
    assert caught.value.kind == ImageProblem.NO_SUCH_FRAME


def test_colour_frames_keep_their_channels(tmp_path):
    path, array = _frames(tmp_path, (4, 32, 32, 3))
    image = load_image(path, _spec(frames={"index": 1}))
    assert np.array_equal(image.array, array[1])


def test_a_channel_first_rgb_array_is_not_taken_for_frames(tmp_path):
    path, array = _frames(tmp_path, (3, 32, 32))
    image = load_image(path, _spec())  # the default rule refuses frames; three channels are read
    assert np.array_equal(image.array, array)
    assert image.conversions == ()


def test_a_volume_spec_reads_a_3d_array_as_a_volume_and_4d_as_frames_of_volumes(tmp_path):
    volume_spec = {"resize": [8, 32, 32], "frames": "volume"}
    path, array = _frames(tmp_path, (8, 32, 32))
    assert np.array_equal(load_image(path, Preprocessing.from_spec(volume_spec)).array, array)
    path, array = _frames(tmp_path, (3, 8, 32, 32))
    with pytest.raises(ImageError, match="holds 3 volumes; pick one") as caught:
        load_image(path, Preprocessing.from_spec(volume_spec))
    assert caught.value.kind == ImageProblem.MULTI_FRAME
    picked = load_image(path, Preprocessing.from_spec({"resize": [8, 32, 32], "frames": {"index": 2}}))
    assert np.array_equal(picked.array, array[2])
    assert picked.conversions == ("frame 2 of 3",)
