"""The propagation loop, driven by a deterministic stub predictor."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ThresholdPredictor, dice, ellipsoid_volume
from napari_propsam.api import apply_update
from napari_propsam.config import PropagationConfig
from napari_propsam.propagation import SmallPromptWarning, _VoteTile, propagate_mask
from napari_propsam.volume import SliceReader


def run(image, index, prompt, axis=0, predictor=None, **kw):
    predictor = predictor or ThresholdPredictor()
    ups = list(
        propagate_mask(SliceReader(image, axis), index, prompt, predictor, PropagationConfig(**kw))
    )
    out = np.zeros(image.shape, bool)
    for u in ups:
        if u.final:
            apply_update(out, u)
    return out, ups, predictor


def test_both_directions_recover_the_object(ellipsoid):
    image, truth = ellipsoid
    out, ups, _ = run(image, 24, truth[24], thickness=4)
    assert dice(out, truth) > 0.97
    idx = {u.index for u in ups}
    assert min(idx) < 24 - 10 and max(idx) > 24 + 10


def test_area_stop_ends_before_the_volume_ends():
    image, truth = ellipsoid_volume(shape=(80, 64, 64), center=(40, 32, 32), radii=(12, 12, 12))
    out, ups, _ = run(image, 40, truth[40], thickness=3, min_area=20)
    reached = [u.index for u in ups]
    # Object spans 29..51; a front stops at the first guide whose area is below min_area, so it
    # reaches at most one more round (K = 3) past the object.
    assert min(reached) >= 29 - 2 * 3 and max(reached) <= 51 + 2 * 3
    assert dice(out, truth) > 0.95


def test_min_area_zero_runs_to_the_volume_end_only_while_votes_exist():
    image, truth = ellipsoid_volume(shape=(40, 48, 48), center=(20, 24, 24), radii=(25, 10, 10))
    out, ups, _ = run(image, 20, truth[20], thickness=5, min_area=0)
    reached = {u.index for u in ups}
    assert 0 in reached and 39 in reached  # the object runs off both ends of the volume
    assert dice(out, truth) > 0.95


def test_prompt_on_first_slice_goes_one_way():
    image, truth = ellipsoid_volume(shape=(30, 48, 48), center=(0, 24, 24), radii=(12, 10, 10))
    out, ups, _ = run(image, 0, truth[0], thickness=4)
    assert min(u.index for u in ups) == 0
    assert dice(out, truth) > 0.95


@pytest.mark.parametrize("axis", [1, 2])
def test_other_axes(axis, ellipsoid):
    image, truth = ellipsoid
    c = (24, 32, 30)[axis]
    out, ups, _ = run(image, c, truth.take(c, axis=axis), axis=axis, thickness=4)
    assert all(u.axis == axis for u in ups)
    assert dice(out, truth) > 0.95


def test_both_directions_share_one_forward_pass(ellipsoid):
    image, truth = ellipsoid
    _, _, pred = run(image, 24, truth[24], thickness=3)
    assert pred.calls[0] == [6]  # round 1: one guide, 3 neighbours per side
    assert pred.calls[1] == [6, 6]  # round 2: the low and the high guide together


def test_max_batch_bounds_every_forward_pass(ellipsoid):
    image, truth = ellipsoid
    _, _, pred = run(image, 24, truth[24], thickness=6, max_batch=5)
    assert max(sum(c) for c in pred.calls) <= 5


def test_streaming_order_and_final_pass(ellipsoid):
    image, truth = ellipsoid
    _, ups, _ = run(image, 24, truth[24], thickness=3)
    live = [u for u in ups if not u.final]
    final = [u for u in ups if u.final]
    assert ups[-1].final and ups[-1].progress == 1.0
    assert all(not u.final for u in ups[: len(live)])  # final updates come last
    assert sorted(u.index for u in live[:6]) == [21, 22, 23, 25, 26, 27]  # nearest first
    assert len({u.index for u in final}) == len(final)  # one final update per slice
    prog = [u.progress for u in ups]
    assert all(b >= a - 1e-9 for a, b in zip(prog, prog[1:], strict=False))


def test_component_not_touching_the_prompt_is_removed():
    image, truth = ellipsoid_volume(shape=(40, 64, 64), center=(20, 32, 24), radii=(10, 10, 10))
    # A look-alike blob beside the object, within the crop windows, never touching it.
    blob = np.zeros_like(truth)
    blob[22:27, 30:36, 36:40] = True
    image = image + blob * 100
    out, ups, _ = run(image, 20, truth[20], thickness=3)
    streamed = np.zeros_like(truth)
    for u in ups:
        if not u.final:
            apply_update(streamed, u)
    assert (streamed & blob).any()  # it was predicted while streaming...
    assert not (out & blob).any()  # ...and removed by the final filter
    assert dice(out, truth) > 0.95


def test_component_filter_can_be_disabled():
    image, truth = ellipsoid_volume(shape=(40, 64, 64), center=(20, 32, 24), radii=(10, 10, 10))
    blob = np.zeros_like(truth)
    blob[22:27, 30:36, 36:40] = True
    out, _, _ = run(image + blob * 100, 20, truth[20], thickness=3, keep_prompt_component=False)
    assert (out & blob).any()


def test_votes_sum_per_pixel_and_count_per_slice():
    tile = _VoteTile(slice(2, 6), slice(3, 7))
    a = np.zeros((4, 4), bool)
    a[0, 0] = True
    tile.add(slice(2, 6), slice(3, 7), a)
    tile.add(slice(0, 4), slice(5, 9), np.zeros((4, 4), bool), weight=2)  # grows the tile
    assert tile.offset == (0, 3) and tile.sum.shape == (6, 6)
    assert tile.count == 3  # one count per prediction of the slice, padded copies included
    assert tile.sum[2, 0] == 1 and tile.total == 1
    win, mask = tile.guide(1.5, 4, (64, 64))
    # The crop is around any vote; the guide is the mean vote above 0.5: 1 / 3 is not.
    assert (win.row0, win.col0, win.size) == (0, 1, 4) and not mask.any()


class _Counting:
    def __init__(self, data):
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.voxels_read = 0

    def __getitem__(self, idx):
        out = np.asarray(self.data[idx])
        self.voxels_read += out.size
        return out


@pytest.mark.parametrize(
    ("bright_at", "whole"), [((10, 10), False), ((250, 250), True), ((40, 60), False)]
)
def test_slice_range_is_the_whole_slices_and_read_only_as_far_as_needed(bright_at, whole):
    from napari_propsam.propagation import _SliceRanges
    from napari_propsam.transforms import clipped_extremes

    plane = np.full((1, 256, 256), 50.0, np.float32)
    plane[0, 20:30, 20:30] = 100.0  # the window: inside the clip bounds, so it can't decide
    plane[0, bright_at[0], bright_at[1]] = 500.0  # the slice's maximum, somewhere
    plane[0, 0, 0] = 0.0  # the slice's minimum
    reader = SliceReader(_Counting(plane))
    ranges = _SliceRanges(reader, 10.0, 400.0)
    rows, cols = slice(20, 30), slice(20, 30)
    mins, maxs = ranges.of(plane[:, rows, cols], 0, rows, cols)
    emins, emaxs, _ = clipped_extremes(plane, 10.0, 400.0)
    assert (mins[0], maxs[0]) == (emins[0], emaxs[0]) == (10.0, 400.0)
    read = reader.image.voxels_read
    assert (read >= plane.size) if whole else (read < plane.size / 4)


def test_slice_range_without_the_bounds_anywhere_is_the_clipped_extremes():
    from napari_propsam.propagation import _SliceRanges

    plane = np.linspace(100, 200, 64 * 64, dtype=np.float32).reshape(1, 64, 64)
    ranges = _SliceRanges(SliceReader(plane), 0.0, 1000.0)
    mins, maxs = ranges.of(plane[:, 30:34, 30:34], 0, slice(30, 34), slice(30, 34))
    assert (mins[0], maxs[0]) == (100.0, 200.0)


def test_next_rounds_guide_is_the_mean_vote_above_half():
    """A frontier slice predicted once as stripes guides the next round with those stripes."""

    class Striped(ThresholdPredictor):
        def __init__(self):
            super().__init__()
            self.guides: list[np.ndarray] = []

        def predict(self, tasks):
            self.guides.extend(np.asarray(t.guide_mask, bool) for t in tasks)
            out = super().predict(tasks)
            return [o & (np.arange(o.shape[-1]) % 2 == 0) for o in out]

    image, truth = ellipsoid_volume(shape=(40, 48, 48), center=(20, 24, 24), radii=(15, 10, 10))
    pred = Striped()
    run(image, 20, truth[20], thickness=3, predictor=pred, min_area=10, max_rounds=2)
    first, later = pred.guides[0], pred.guides[1:]
    assert (first[:, 1:] & first[:, :-1]).any()  # the prompt: a solid disc
    assert later and all(g.any() and not (g[:, 1:] & g[:, :-1]).any() for g in later)


def test_a_prompt_below_min_area_warns_that_propagation_will_stop_early():
    image, truth = ellipsoid_volume(shape=(40, 48, 48), center=(20, 24, 24), radii=(12, 4, 4))
    with pytest.warns(SmallPromptWarning, match="lower min_area"):
        run(image, 20, truth[20], thickness=3)  # about 50 px < 100
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallPromptWarning)
        run(image, 20, truth[20], thickness=3, min_area=20)  # no warning once lowered
