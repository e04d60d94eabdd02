"""Random-walker one-slice baseline on a synthetic noisy sphere."""

from __future__ import annotations

import numpy as np
import pytest

from napari_propsam.devtools.baselines import random_walker_from_slice
from napari_propsam.metrics import dice

SHAPE = (40, 56, 64)
# Off-centre in a non-cubic volume, so a wrong axis order cannot still line up with the truth.
CENTRE = (18, 26, 36)
RADIUS = 10


@pytest.fixture(scope="module")
def sphere() -> tuple[np.ndarray, np.ndarray]:
    grids = np.ogrid[tuple(slice(0, n) for n in SHAPE)]
    truth = sum((g - c) ** 2 for g, c in zip(grids, CENTRE, strict=True)) <= RADIUS**2
    rng = np.random.default_rng(1234)
    image = (100.0 * truth + rng.normal(0.0, 25.0, SHAPE)).astype(np.float32)
    return image, truth


def _prompt_plane(truth: np.ndarray, axis: int) -> np.ndarray:
    index = [slice(None)] * 3
    index[axis] = CENTRE[axis]
    return truth[tuple(index)]


def _box_of(plane: np.ndarray) -> tuple[int, int, int, int]:
    rr, cc = np.nonzero(plane)
    return int(rr.min()), int(cc.min()), int(rr.max()) + 1, int(cc.max()) + 1


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_mask_prompt(sphere, axis):
    image, truth = sphere
    plane = _prompt_plane(truth, axis)
    seg = random_walker_from_slice(image, slice_index=CENTRE[axis], axis=axis, mask=plane)
    assert seg.shape == image.shape and seg.dtype == bool
    assert dice(seg, truth) > 0.8
    # The prompt slice reproduces the prompt mask.
    np.testing.assert_array_equal(_prompt_plane(seg, axis), plane)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_box_prompt(sphere, axis):
    image, truth = sphere
    box = _box_of(_prompt_plane(truth, axis))
    seg = random_walker_from_slice(image, slice_index=CENTRE[axis], axis=axis, box=box)
    assert seg.shape == image.shape and seg.dtype == bool
    assert dice(seg, truth) > 0.7
    # Nothing outside the ROI (bbox + margin in-plane) on the prompt slice.
    r0, c0, r1, c1 = box
    plane = _prompt_plane(seg, axis)
    assert not plane[: r0 - 5].any() and not plane[r1 + 5 :].any()
    assert not plane[:, : c0 - 5].any() and not plane[:, c1 + 5 :].any()


def test_inputs_not_modified_and_integer_dtype(sphere):
    image, truth = sphere
    img16 = np.clip(image + 100, 0, None).astype(np.uint16)
    plane = _prompt_plane(truth, 0).copy()
    img_before, plane_before = img16.copy(), plane.copy()
    seg = random_walker_from_slice(img16, slice_index=CENTRE[0], mask=plane)
    np.testing.assert_array_equal(img16, img_before)
    np.testing.assert_array_equal(plane, plane_before)
    assert dice(seg, truth) > 0.8
    seg_box = random_walker_from_slice(img16, slice_index=CENTRE[0], box=_box_of(plane))
    np.testing.assert_array_equal(img16, img_before)
    assert seg_box.dtype == bool


class _RecordingArray:
    """Array-like that records every read, standing in for a zarr/dask volume."""

    def __init__(self, data: np.ndarray):
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.reads: list[tuple[int, ...]] = []

    def __getitem__(self, key):
        out = self._data[key]
        self.reads.append(out.shape)
        return out

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole volume was materialised")


def test_reads_only_the_roi(sphere):
    image, truth = sphere
    lazy = _RecordingArray(image)
    plane = _prompt_plane(truth, 0)
    seg = random_walker_from_slice(lazy, slice_index=CENTRE[0], mask=plane, max_extent=12)
    assert len(lazy.reads) == 1
    # 21 x 21 bbox + 25% margin per side -> 33 x 33 in-plane, +/- 12 slices along the axis.
    assert lazy.reads[0] == (25, 33, 33)
    assert dice(seg, truth) > 0.8


def test_prompt_on_volume_border():
    # Object cut by the field of view: prompt on slice 0, where the ROI is clipped.
    shape = (24, 40, 40)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    truth = zz**2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 9**2
    rng = np.random.default_rng(7)
    image = 100.0 * truth + rng.normal(0.0, 10.0, shape)
    seg = random_walker_from_slice(image, slice_index=0, mask=truth[0])
    np.testing.assert_array_equal(seg[0], truth[0])
    assert dice(seg, truth) > 0.8
    seg_neg = random_walker_from_slice(image, slice_index=-shape[0], mask=truth[0])
    np.testing.assert_array_equal(seg_neg, seg)


def test_invalid_prompts(sphere):
    image, truth = sphere
    plane = _prompt_plane(truth, 0)
    with pytest.raises(ValueError):  # box entirely outside the slice
        random_walker_from_slice(image, slice_index=CENTRE[0], box=(100, 100, 120, 130))
    with pytest.raises(ValueError):  # negative side
        random_walker_from_slice(image, slice_index=CENTRE[0], box=(-20, -20, -5, -5))
    with pytest.raises(ValueError):  # neither prompt
        random_walker_from_slice(image, slice_index=CENTRE[0])
    with pytest.raises(ValueError):  # both prompts
        random_walker_from_slice(image, slice_index=CENTRE[0], mask=plane, box=_box_of(plane))
    with pytest.raises(ValueError):  # mask of the wrong plane shape
        random_walker_from_slice(image, slice_index=CENTRE[0], mask=plane.T)
    with pytest.raises(ValueError):  # empty mask
        random_walker_from_slice(image, slice_index=CENTRE[0], mask=np.zeros_like(plane))
    with pytest.raises(ValueError):
        random_walker_from_slice(image, slice_index=SHAPE[0], mask=plane)
    with pytest.raises(ValueError):
        random_walker_from_slice(image, slice_index=0, axis=3, mask=plane)
    with pytest.raises(ValueError):
        random_walker_from_slice(image[0], slice_index=0, mask=plane)


def test_constant_image_returns_prompt_slice():
    image = np.full((10, 20, 20), 5.0)
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:10, 6:12] = True
    seg = random_walker_from_slice(image, slice_index=4, mask=mask)
    assert seg.sum() == mask.sum()
    np.testing.assert_array_equal(seg[4], mask)
