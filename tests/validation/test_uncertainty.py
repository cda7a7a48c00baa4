"""Test-time augmentation views: label-preserving, shape-keeping, edge-padded."""

from __future__ import annotations

import numpy as np
import pytest

from radtrust_engine.uncertainty import AUGMENTATIONS, augment


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_views_keep_shape_and_leave_the_input_alone(name):
    batch = np.arange(2 * 1 * 6 * 7, dtype=np.float32).reshape(2, 1, 6, 7)
    before = batch.copy()
    view = augment(batch, name)
    assert view.shape == batch.shape and view.flags.c_contiguous
    np.testing.assert_array_equal(batch, before)


def test_shifts_move_content_and_pad_with_the_edge():
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 1, 6)
    assert augment(x, "shift_right").ravel().tolist() == [0, 0, 0, 1, 2, 3]
    assert augment(x, "shift_left").ravel().tolist() == [2, 3, 4, 5, 5, 5]
    assert augment(x, "flip").ravel().tolist() == [5, 4, 3, 2, 1, 0]
    column = np.arange(5, dtype=np.float32).reshape(1, 1, 5, 1)
    assert augment(column, "shift_down").ravel().tolist() == [0, 0, 0, 1, 2]
    assert augment(column, "shift_up").ravel().tolist() == [2, 3, 4, 4, 4]
