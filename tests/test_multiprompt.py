"""Several prompts for one object: API forms, the engine's rounds and the error messages."""

from __future__ import annotations

import numpy as np
import pytest

import napari_propsam as ps
from conftest import ThresholdPredictor, dice, ellipsoid_volume
from napari_propsam.prompt_checks import collect_prompts


@pytest.fixture(scope="module")
def long_object():
    return ellipsoid_volume(shape=(60, 64, 64), center=(30, 32, 30), radii=(25, 12, 10))


def _run(image, predictor=None, **kw):
    out = np.zeros(image.shape, bool)
    ups = list(ps.propagate(image, predictor=predictor or ThresholdPredictor(), **kw))
    for u in ups:
        if u.final:
            ps.apply_update(out, u)
    return out, ups


def test_list_and_volume_forms_agree_and_cover_the_object(long_object):
    image, truth = long_object
    masks = [truth[10], truth[30], truth[50]]
    listed, _ = _run(image, slice_index=[50, 10, 30], mask=[masks[2], masks[0], masks[1]],
                     thickness=3)  # fmt: skip
    vol = np.zeros_like(truth)
    vol[[10, 30, 50]] = truth[[10, 30, 50]]
    from_volume, _ = _run(image, mask=vol, thickness=3)
    assert np.array_equal(listed, from_volume)
    assert dice(listed, truth) > 0.98


def test_one_prompt_in_a_list_is_the_single_prompt(long_object):
    image, truth = long_object
    a, _ = _run(image, slice_index=30, mask=truth[30], thickness=4)
    b, _ = _run(image, slice_index=[30], mask=[truth[30]], thickness=4)
    assert np.array_equal(a, b)


class _Shrinking(ThresholdPredictor):
    """Predicts the threshold mask minus its outer ring: never the prompt's exact shape."""

    def predict(self, tasks):
        from scipy import ndimage

        return [np.stack([ndimage.binary_erosion(p) for p in o]) for o in super().predict(tasks)]


def test_prompt_slices_keep_their_prompt_and_the_gap_between_is_closed(long_object):
    image, truth = long_object
    prompts = {12: truth[12].copy(), 40: truth[40].copy()}
    prompts[40][:, 30:] = False  # half an object: a shape the network would not predict
    out, ups = _run(
        image, predictor=_Shrinking(), slice_index=list(prompts), mask=list(prompts.values()),
        thickness=2, min_area=10,
    )  # fmt: skip
    for s, m in prompts.items():
        assert np.array_equal(out[s], m)
    reached = {u.index for u in ups if u.final}
    assert set(range(12, 41)) <= reached  # 28 slices between prompts, K = 2 per round


def test_both_prompts_guide_the_first_round(long_object):
    image, truth = long_object
    _, ups = _run(image, slice_index=[15, 45], mask=[truth[15], truth[45]], thickness=3)
    first_pass = {u.index for u in ups if not u.final and u.progress == ups[0].progress}
    assert first_pass == {12, 13, 14, 16, 17, 18, 42, 43, 44, 46, 47, 48}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"slice_index": [10, 20], "mask": "one"}, "2 prompt slices need 2 masks"),
        ({"slice_index": [10, 10], "mask": "two"}, "more than one prompt"),
        ({"slice_index": [10, 20], "box": [(20, 20, 40, 40)]}, "need 2 boxes"),
        ({"mask": np.zeros((5, 64, 64), bool)}, "must be a"),
        ({"mask": "empty-volume"}, "empty"),
        ({"box": (1, 2, 3, 4), "mask": "one"}, "exactly one prompt"),
    ],
)
def test_bad_prompt_sets_get_clear_messages(long_object, kw, message):
    image, truth = long_object
    kw = dict(kw)
    if isinstance(kw.get("mask"), str):
        kw["mask"] = {
            "one": [truth[10]],
            "two": [truth[10], truth[10]],
            "empty-volume": np.zeros_like(truth),
        }[kw["mask"]]
    with pytest.raises(ValueError, match=message):
        ps.propagate(image, predictor=ThresholdPredictor(), **kw)


def test_prompts_apart_in_projection_are_refused():
    a = np.zeros((64, 64), bool)
    b = np.zeros((64, 64), bool)
    a[5:15, 5:15] = True
    b[45:60, 45:60] = True
    with pytest.raises(ValueError, match="different objects"):
        collect_prompts([3, 4], None, [a, b], (64, 64), (20, 64, 64), 0, int)
    with pytest.raises(ValueError, match="different objects"):
        collect_prompts([3, 5], [(5, 5, 15, 15), (45, 45, 60, 60)], None, (64, 64),
                        (20, 64, 64), 0, int)  # fmt: skip
    # Far apart in slices, an oblique object may drift by half its size per slice.
    idx, _, _ = collect_prompts([3, 9], [(5, 5, 15, 15), (45, 45, 60, 60)], None, (64, 64),
                                (20, 64, 64), 0, int)  # fmt: skip
    assert idx == [3, 9]
    # A prompt that drifts a little (regions widened by half their size) is one object.
    idx, boxes, _ = collect_prompts([9, 3], [(5, 5, 15, 15), (16, 16, 26, 26)], None, (64, 64),
                                    (20, 64, 64), 0, int)  # fmt: skip
    assert idx == [3, 9] and boxes == [(16, 16, 26, 26), (5, 5, 15, 15)]
