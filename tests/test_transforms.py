"""Crop geometry, normalisation and the neighbour (K) arithmetic of docs/method.md."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from napari_propsam.config import BoxConfig, PropagationConfig, split_options
from napari_propsam.transforms import (
    Window,
    clipped_extremes,
    crop_planes,
    crop_window,
    intensity_window,
    mask_bbox,
    merge_deep_supervision,
    percentile_range,
    resize_masks,
    resize_nearest_np,
    resize_uint8,
    scale_to_unit,
    slices_to_uint8,
)


def _mask(shape, r0, c0, r1, c1):
    m = np.zeros(shape, bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


def test_bbox_is_inclusive():
    assert mask_bbox(_mask((50, 50), 10, 12, 19, 15)) == (10, 12, 19, 15)
    assert mask_bbox(np.zeros((5, 5), bool)) is None


def test_crop_is_square_1p5_times_max_minus_min_centred():
    m = _mask((200, 200), 80, 90, 119, 109)  # rows 80..119: max - min = 39 (released h)
    w = crop_window(m)
    assert w.size == 58  # int(1.5 * 39), not int(1.5 * 40)
    assert (w.row0, w.col0) == ((80 + 119) // 2 - 29, (90 + 109) // 2 - 29)


def test_crop_minimum_side():
    assert crop_window(_mask((100, 100), 50, 50, 52, 53)).size == 16


def test_crop_of_mean_votes_uses_any_positive_value():
    votes = np.zeros((50, 50), np.float32)
    votes[10:20, 10:20] = 0.25  # below 0.5 but still part of the crop box
    votes[12:14, 12:14] = 1.0
    assert crop_window(votes) == crop_window(votes > 0)


def test_crop_clamped_at_zero_and_padded_at_edge():
    m = _mask((64, 64), 0, 50, 19, 63)
    w = crop_window(m)
    assert w.row0 == 0 and w.size == 28  # int(1.5 * 19)
    rows, cols = w.clipped((64, 64))
    assert rows == slice(0, 28) and cols.stop == 64
    planes = np.ones((2, 64, 64), np.float32)
    crop = crop_planes(planes, w)
    assert crop.shape == (2, 28, 28)
    inside = 64 - w.col0
    assert crop[:, :, :inside].min() == 1 and crop[:, :, inside:].max() == 0


def test_crop_with_tile_offset_equals_full_plane():
    full = _mask((120, 120), 40, 60, 70, 99)
    tile = full[30:100, 50:110]
    assert crop_window(tile, offset=(30, 50)) == crop_window(full)


def test_crop_of_empty_mask_raises():
    with pytest.raises(ValueError, match="empty"):
        crop_window(np.zeros((8, 8), bool))


def test_percentile_window_and_per_slice_uint8_truncation():
    vals = np.arange(1001, dtype=np.float32)
    vmin, vmax = percentile_range(vals)
    assert vmin == pytest.approx(5.0) and vmax == pytest.approx(995.0)
    # Slice 0 reaches both bounds; slice 1 does not and is stretched by its own range.
    block = np.array([[[0.0, 5.0, 500.0, 995.0, 2000.0]], [[100.0, 200.0, 300.0, 300.0, 300.0]]])
    out = slices_to_uint8(block, vmin, vmax)
    assert out.dtype == np.uint8
    # (x - min) / (max - min + 1e-8) * 255 in float32, truncated: 495 / 990 * 255 = 127.5 -> 127
    np.testing.assert_array_equal(out[0, 0], [0, 0, 127, 255, 255])
    np.testing.assert_array_equal(out[1, 0], [0, 127, 255, 255, 255])
    np.testing.assert_allclose(scale_to_unit(torch.tensor([0.0, 255.0])).numpy(), [-1, 1])


def test_whole_slice_range_can_be_given_for_a_window():
    plane = np.linspace(0, 1000, 100, dtype=np.float32).reshape(1, 10, 10)
    window = plane[:, 4:6, 4:6]
    full = slices_to_uint8(plane, 100.0, 900.0)[:, 4:6, 4:6]
    mins, maxs, decided = clipped_extremes(window, 100.0, 900.0)
    assert not decided[0]  # the window alone cannot tell the slice's range
    pmins, pmaxs, pdecided = clipped_extremes(plane, 100.0, 900.0)
    assert pdecided[0] and pmins[0] == 100 and pmaxs[0] == 900
    np.testing.assert_array_equal(slices_to_uint8(window, 100.0, 900.0, pmins, pmaxs), full)
    assert not np.array_equal(slices_to_uint8(window, 100.0, 900.0), full)


def test_ct_window_is_integer_centre_and_width():
    vals = np.array([10.2, 20.0, 30.0, 50.9], np.float32)
    a, b = np.percentile(vals, 0.5), np.percentile(vals, 99.5)
    center, width = int((a + b) / 2), int(b - a)
    lo, hi = intensity_window(vals, "ct-window")
    assert (lo, hi) == (center - width // 2, center + width // 2)
    assert intensity_window(vals, "percentile") == (pytest.approx(a), pytest.approx(b))


def test_ct_window_refuses_a_range_below_two_grey_levels():
    with pytest.raises(ValueError, match="percentile"):
        intensity_window(np.array([0.1, 0.5, 0.9], np.float32), "ct-window")
    with pytest.raises(ValueError, match="intensity must be one of"):
        intensity_window(np.array([1.0, 2.0]), "hu")


@pytest.mark.parametrize("bad", [np.array([3.0, 3.0, 3.0]), np.array([1.0, np.nan]), np.array([])])
def test_normalisation_rejects_constant_nan_and_empty(bad):
    with pytest.raises(ValueError):
        percentile_range(bad)


def test_one_pixel_prompt_is_called_too_small():
    with pytest.raises(ValueError, match="too small"):
        percentile_range(np.array([7.0]))


def _opencv_nearest_index(src: int, dst: int) -> np.ndarray:
    """OpenCV's INTER_NEAREST source index: floor(x * (1 / (dst / src))) in double, clamped."""
    scale = 1.0 / (dst / src)
    return np.minimum(np.floor(np.arange(dst) * scale).astype(int), src - 1)


def test_nearest_resize_back_picks_opencvs_source_pixels_on_every_size():
    """Network output (96 or 224 px) back to every crop size 16..1024, rows and columns."""
    differ_from_torch = 0
    for net in (96, 224):
        ramp = np.zeros((1, net, net), np.uint8)
        for size in range(16, 1025):
            idx = _opencv_nearest_index(net, size)
            # Row r of a one-row-hot map lands exactly on the target rows that pick r.
            for r in np.unique(idx)[:: max(1, net // 8)]:
                ramp[:] = 0
                ramp[0, r] = 1
                out = resize_nearest_np(ramp, size)[0]
                np.testing.assert_array_equal(out[:, 0], idx == r)
            torch_idx = torch.nn.functional.interpolate(
                torch.arange(net, dtype=torch.float32)[None, None, :, None],
                size=(size, 1),
                mode="nearest",
            )[0, 0, :, 0].numpy()
            differ_from_torch += int(np.any(torch_idx != idx))
    assert differ_from_torch > 0  # the reason torch's nearest is not used


def test_nearest_resize_to_network_matches_opencv_formula_on_every_size():
    for size in range(16, 1025):
        for net in (96, 224):
            idx = _opencv_nearest_index(size, net)
            crop = np.zeros((1, size, size), bool)
            crop[0, idx[net // 3]] = True
            out = resize_nearest_np(crop, net)[0]
            np.testing.assert_array_equal(out[:, 0], idx == idx[net // 3])


def test_bilinear_uint8_resize_is_opencvs_on_every_size():
    """Every crop size 16..1024 -> 96 and 224: bit-equal to OpenCV on a uint8 crop, and
    uint8-rounded (a float bilinear resize differs)."""
    rng = np.random.default_rng(0)
    for size in range(16, 1025):
        crop = rng.integers(0, 256, (1, size, size), dtype=np.uint8)
        for net in (96, 224):
            out = resize_uint8(crop, net)
            assert out.dtype == np.uint8 and out.shape == (1, net, net)
            expected = cv2.resize(crop[0], (net, net), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_array_equal(out[0], expected)


def test_mask_resize_is_nearest_then_half():
    m = torch.zeros(1, 4, 4)
    m[0, :2] = 1
    out = resize_masks(m, 8)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert out[0, :4].min() == 1 and out[0, 4:].max() == 0


def test_deep_supervision_average():
    a = torch.zeros(1, 2, 8, 8)
    b = torch.ones(1, 2, 4, 4) * 2
    merged = merge_deep_supervision([a, b])
    assert merged.shape == (1, 2, 8, 8)
    torch.testing.assert_close(merged, torch.ones(1, 2, 8, 8))


@pytest.mark.parametrize(
    ("thickness", "spacing", "k"),
    [
        (20, None, 20),
        (20, 1.0, 20),
        (20, 0.5, 40),
        (20, 0.1, 40),
        (20, 2.5, 8),
        (20, 3.0, 6),
        (20, 30.0, 1),
        (10, 0.1, 40),
        (20, 0.2, 40),
        (5, None, 5),
    ],
)
def test_neighbours_per_side(thickness, spacing, k):
    assert PropagationConfig(thickness=thickness).neighbours(spacing) == k


def test_neighbours_cap_is_configurable():
    assert PropagationConfig(max_neighbours=8).neighbours(0.1) == 8


@pytest.mark.parametrize(
    "kw",
    [
        {"thickness": 0},
        {"thickness": float("nan")},
        {"min_area": -1},
        {"crop_ratio": 0.5},
        {"max_batch": 0},
    ],
)
def test_bad_config_rejected(kw):
    with pytest.raises(ValueError):
        PropagationConfig(**kw)


def test_split_options_routes_and_rejects_unknown():
    prop, box = split_options({"thickness": 7, "vmin_percentiles": [5, 10]})
    assert prop.thickness == 7 and box.vmin_percentiles == (5, 10)
    with pytest.raises(TypeError, match="unknown option"):
        split_options({"thicknes": 3})


def test_box_candidates_grid():
    assert len(BoxConfig().candidates) == 9
    assert Window(1, 2, 3).clipped((2, 10)) == (slice(1, 2), slice(2, 5))


def test_a_window_past_the_edge_crops_to_zero_padding():
    # A window starting beyond the plane has no inside part; the crop is all padding.
    assert Window(70, 80, 8).clipped((64, 64)) == (slice(64, 64), slice(64, 64))
    crop = crop_planes(np.ones((2, 64, 64), np.uint8), Window(70, 10, 8))
    assert crop.shape == (2, 8, 8) and not crop.any()
