"""2D image series: nearest-annotated guidance, batching, ids, reading folders, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile
from skimage import io

from conftest import ThresholdPredictor, dice
from napari_propsam.series import (
    SeriesUpdate,
    nearest_guides,
    propagate_series,
    propagate_series_stream,
    read_series,
)


class GuideEcho:
    """Stand-in that predicts the guiding mask itself, so the output shows which guide was used."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def predict(self, tasks):
        self.calls.append([len(t.adjacent) for t in tasks])
        return [np.repeat((t.guide_mask > 0.5)[None], len(t.adjacent), axis=0) for t in tasks]


def disc_series(n=6, shape=(64, 64), radius=10, seed=0):
    """``(images, truth)``: one bright disc per image, drifting 1 px right per image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.stack([(yy - 32) ** 2 + (xx - 24 - i) ** 2 <= radius**2 for i in range(n)])
    images = (truth * 100.0 + rng.normal(0, 3, (n, *shape))).astype(np.float32)
    return images, truth


def test_nearest_annotated_image_guides_ties_go_earlier():
    assert nearest_guides(7, [5, 1]) == {0: 1, 2: 1, 3: 1, 4: 5, 6: 5}
    assert nearest_guides(3, []) == {}


def test_every_image_is_guided_directly_by_the_nearest_annotation():
    images = np.zeros((7, 40, 40), np.float32)
    images[:, 5:35, 5:35] = 50.0
    images += np.linspace(0, 1, 40, dtype=np.float32)  # not constant under the masks
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b = np.zeros((40, 40), bool)
    b[22:30, 22:32] = True
    echo = GuideEcho()
    out = propagate_series(images, {1: a, 5: b}, predictor=echo, max_batch=2)
    assert out.shape == (7, 40, 40) and out.dtype == np.int32
    for t in (0, 1, 2, 3):  # 3 is as far from 1 as from 5: the earlier guide wins
        assert ((out[t] == 1) == a).all()
    for t in (4, 5, 6):
        assert ((out[t] == 1) == b).all()
    assert all(sum(c) <= 2 for c in echo.calls) and sum(map(sum, echo.calls)) == 5


def test_series_of_moving_discs_with_threshold_stand_in():
    images, truth = disc_series()
    out = propagate_series(images, {0: truth[0]}, predictor=ThresholdPredictor())
    for i in range(len(images)):
        assert dice(out[i] == 1, truth[i]) > 0.95


def test_several_ids_propagate_separately_smaller_id_keeps_overlaps():
    images, truth = disc_series(n=3)
    ann = np.zeros((64, 64), np.int32)
    ann[truth[0]] = 4
    ann[5:12, 5:12] = 2  # a second object elsewhere
    images[:, 5:12, 5:12] += 100.0
    echo = GuideEcho()
    out = propagate_series(images, {0: ann}, predictor=echo)
    assert set(np.unique(out[1])) == {0, 2, 4} and (out[1] == ann).all()
    # One task per (guide, id) per forward pass.
    assert echo.calls == [[2, 2]]


def test_stream_order_annotated_first_then_by_index():
    images, truth = disc_series(n=5)
    ups = list(
        propagate_series_stream(images, {3: truth[3]}, predictor=ThresholdPredictor(), max_batch=1)
    )
    assert all(isinstance(u, SeriesUpdate) for u in ups)
    assert [u.index for u in ups] == [3, 0, 1, 2, 4]
    assert [u.progress for u in ups] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    index, mask, progress = ups[1]  # a plain tuple too
    assert index == 0 and mask.shape == (64, 64) and mask.dtype == np.int32


def test_rgb_series_and_list_input_match_grey():
    images, truth = disc_series(n=3)
    grey = propagate_series(images, {0: truth[0]}, predictor=ThresholdPredictor())
    rgb = np.repeat(images[..., None], 3, axis=-1)
    assert (propagate_series(rgb, {0: truth[0]}, predictor=ThresholdPredictor()) == grey).all()
    as_list = [im for im in rgb]
    assert (propagate_series(as_list, {0: truth[0]}, predictor=ThresholdPredictor()) == grey).all()


def test_read_series_natural_order_and_folder_input(tmp_path):
    images, truth = disc_series(n=3)
    scaled = np.clip(images * 2, 0, 255).astype(np.uint8)
    for name, i in (("img10.png", 2), ("img2.png", 1), ("img1.png", 0)):
        io.imsave(tmp_path / name, scaled[i], check_contrast=False)
    (tmp_path / "notes.txt").write_text("ignored")
    got = read_series(tmp_path)
    assert got.shape == (3, 64, 64) and got.dtype == np.float32
    assert (got == scaled.astype(np.float32)).all()
    out = propagate_series(tmp_path, {0: truth[0]}, predictor=ThresholdPredictor())
    assert dice(out[2] == 1, truth[2]) > 0.9
    tifffile.imwrite(tmp_path / "img11.tif", np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"img11.tif \(3\) is 32x32 but img1.png \(0\) is 64x64"):
        read_series(tmp_path)


def test_bad_series_input_raises(tmp_path):
    images, truth = disc_series(n=3)
    pred = ThresholdPredictor()
    with pytest.raises(ValueError, match="no images in"):
        read_series(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        read_series(tmp_path / "missing")
    with pytest.raises(ValueError, match="out of range for a series of 3"):
        propagate_series_stream(images, {3: truth[0]}, predictor=pred)
    with pytest.raises(ValueError, match="out of range"):
        propagate_series_stream(images, {-1: truth[0]}, predictor=pred)
    with pytest.raises(ValueError, match="shape"):
        propagate_series_stream(images, {0: truth[0][:10]}, predictor=pred)
    with pytest.raises(ValueError, match="annotations are empty"):
        propagate_series_stream(images, {0: np.zeros((64, 64), bool)}, predictor=pred)
    with pytest.raises(ValueError, match="no annotations"):
        propagate_series_stream(images, {}, predictor=pred)
    with pytest.raises(ValueError, match="one size"):
        propagate_series_stream([images[0], images[1][:50]], {0: truth[0]}, predictor=pred)
    with pytest.raises(ValueError, match="constant"):
        propagate_series_stream(np.ones((2, 64, 64)), {0: truth[0]}, predictor=pred)
    with pytest.raises(TypeError, match="unknown option"):
        propagate_series_stream(images, {0: truth[0]}, predictor=pred, strid=1)


def test_cancel_stops_before_the_next_forward_pass():
    images, truth = disc_series(n=6)
    cancel = threading.Event()
    got = []
    for u in propagate_series_stream(
        images, {0: truth[0]}, predictor=ThresholdPredictor(), max_batch=1, cancel=cancel
    ):
        got.append(u.index)
        if u.index == 2:
            cancel.set()
    assert got == [0, 1, 2]
