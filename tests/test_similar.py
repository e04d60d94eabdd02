"""Find similar: windowing, stitching, instance split, size filter, events, cancel, bad input.

The ThresholdPredictor stand-in marks the bright pixels of every window, so these tests check the
search logic (not the network) on deterministic scenes of bright balls in noise.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import ThresholdPredictor, dice, make_tiny_bundle
from napari_propsam.labeling import ObjectFinished, ObjectStarted, ObjectUpdate
from napari_propsam.similar import (
    SimilarConfig,
    SimilarFound,
    detect_similar,
    find_similar,
    find_similar_stream,
    similarity_map,
    split_instances,
)
from napari_propsam.similar._search import _starts

SHAPE = (20, 96, 96)
# (z, y, x, radius): four balls across slice 10, one that only exists on slices 1..5.
BALLS = [(10, 20, 20, 6), (10, 20, 70, 6), (10, 70, 25, 7), (10, 72, 72, 5), (3, 48, 48, 5)]


def balls_volume(balls=BALLS, shape=SHAPE, noise=4.0, seed=0):
    """``(image float32, labels int32)``: bright balls (100) in noisy background (0)."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    labels = np.zeros(shape, np.int32)
    for i, (z, y, x, r) in enumerate(balls, start=1):
        d = (grids[0] - z) ** 2 + (grids[1] - y) ** 2 + (grids[2] - x) ** 2
        labels[d <= r * r] = i
    rng = np.random.default_rng(seed)
    image = ((labels > 0) * 100.0 + rng.normal(0, noise, shape)).astype(np.float32)
    return image, labels


def iou(a, b):
    return float((a & b).sum()) / float((a | b).sum())


def test_window_starts_cover_the_span_inside_the_plane():
    assert _starts(0, 96, 30, 15, 96) == [0, 15, 30, 45, 60, 66]
    assert _starts(10, 20, 30, 15, 96) == [0]  # a span smaller than a window: one, clamped
    assert _starts(80, 96, 30, 15, 96) == [66]  # kept inside the plane, not padded
    assert _starts(0, 10, 30, 15, 10) == [0]  # plane smaller than the window: padded


def test_detect_finds_the_other_objects_not_the_example():
    image, labels = balls_volume()
    plane, truth = image[10], labels[10]
    pred = ThresholdPredictor()
    found = detect_similar(plane, [truth == 1], predictor=pred)
    assert len(found) == 3
    for tid in (2, 3, 4):
        assert max(iou(f, truth == tid) for f in found) > 0.8
    assert not any((f & (truth == 1)).any() for f in found)
    # Batched: one task (the example) per forward pass, at most max_batch windows each.
    assert all(len(c) == 1 and c[0] <= 32 for c in pred.calls)
    small = ThresholdPredictor()
    detect_similar(plane, [truth == 1], predictor=small, max_batch=4)
    assert max(c[0] for c in small.calls) == 4 and len(small.calls) > 1


def test_votes_are_stitched_from_overlapping_windows():
    image, labels = balls_volume()
    vote = similarity_map(image[10], [labels[10] == 1], ThresholdPredictor())
    assert vote.shape == (96, 96) and vote.dtype == np.float32
    assert vote.min() >= 0 and vote.max() <= 1
    assert (vote[labels[10] > 0] > 0.5).mean() > 0.9
    assert (vote[labels[10] == 0] < 0.1).mean() > 0.98


def test_region_limits_the_search():
    image, labels = balls_volume()
    found = detect_similar(
        image[10], labels[10] == 1, predictor=ThresholdPredictor(), region=(0, 48, 48, 96)
    )
    assert len(found) == 1 and iou(found[0], labels[10] == 2) > 0.8


def test_size_filter_drops_specks_and_giants():
    fg = np.zeros((80, 80), bool)
    example = np.zeros_like(fg)
    example[5:15, 5:15] = True  # area 100
    fg[30:40, 30:40] = True  # like the example
    fg[60:62, 60:62] = True  # speck, 4 px < 25
    fg[45:80, 0:25] = True  # giant, 875 px > 400
    got = split_instances(fg, [example], SimilarConfig(split_touching=False))
    assert [int(g.sum()) for g in got] == [100]
    wide = split_instances(fg, [example], SimilarConfig(split_touching=False, max_area_factor=9))
    assert sorted(int(g.sum()) for g in wide) == [100, 875]


def test_touching_objects_are_split_by_the_watershed():
    yy, xx = np.mgrid[:60, :80]
    a = (yy - 30) ** 2 + (xx - 25) ** 2 <= 100
    b = (yy - 30) ** 2 + (xx - 43) ** 2 <= 100  # overlaps a: one 8-connected blob
    example = (yy - 10) ** 2 + (xx - 10) ** 2 <= 100
    fg = (a | b) & ~example
    split = split_instances(fg, [example])
    assert len(split) == 2
    assert max(iou(s, a) for s in split) > 0.75 and max(iou(s, b) for s in split) > 0.75
    whole = split_instances(fg, [example], SimilarConfig(split_touching=False))
    assert len(whole) == 1


def test_stream_yields_found_then_object_events_with_consecutive_ids():
    image, labels = balls_volume()
    events = list(
        find_similar_stream(
            image,
            slice_index=10,
            examples_mask=(labels[10] == 1) * 7,
            predictor=ThresholdPredictor(),
            start_label=5,
            thickness=3,
        )
    )
    first = events[0]
    assert isinstance(first, SimilarFound)
    assert first.n_examples == 1 and first.n_found == 3 and first.searched == (10,)
    assert [p.label_id for p in first.prompts] == [5, 6, 7, 8]
    assert first.prompts[0].name == "example 1" and first.prompts[1].name == "similar 1"
    assert all(p.mask.shape == (96, 96) and p.index == 10 for p in first.prompts)
    starts = [e for e in events if isinstance(e, ObjectStarted)]
    assert [s.position for s in starts] == [0, 1, 2, 3] and starts[0].total == 4
    assert sum(isinstance(e, ObjectFinished) for e in events) == 4
    assert isinstance(events[-1], ObjectFinished)
    assert all(isinstance(e, SimilarFound) for e in events[:1])
    assert not any(isinstance(e, SimilarFound) for e in events[1:])


def test_find_similar_labels_every_object_in_3d():
    image, labels = balls_volume()
    out = find_similar(
        image,
        slice_index=10,
        examples_mask=labels[10] == 2,
        predictor=ThresholdPredictor(),
        thickness=3,
        min_area=5,
    )
    assert out.dtype == np.int32 and out.shape == SHAPE
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}
    for lid in (1, 2, 3, 4):
        truth_id = int(np.bincount(labels[out == lid]).argmax())
        assert dice(out == lid, labels == truth_id) > 0.9
    assert (out[labels == 2] == 1).mean() > 0.95  # the example is object 1
    flat = find_similar(
        image,
        slice_index=10,
        examples_mask=labels[10] == 2,
        predictor=ThresholdPredictor(),
        propagate_3d=False,
    )
    assert set(np.unique(flat[10])) == {0, 1, 2, 3, 4} and not flat[:10].any()


def test_several_examples_from_a_labels_plane():
    image, labels = balls_volume()
    ex = np.where(np.isin(labels[10], (1, 3)), labels[10], 0)
    (found,) = list(
        find_similar_stream(
            image,
            slice_index=10,
            examples_mask=ex,
            predictor=ThresholdPredictor(),
            propagate_3d=False,
        )
    )
    assert found.n_examples == 2 and found.n_found == 2
    new = found.prompts[2:]
    for tid in (2, 4):
        assert max(iou(p.mask, labels[10] == tid) for p in new) > 0.8


def test_slice_range_finds_objects_off_the_example_slice_once():
    image, labels = balls_volume()
    gen = find_similar_stream(
        image,
        slice_index=10,
        examples_mask=labels[10] == 1,
        predictor=ThresholdPredictor(),
        slice_range=(0, 20),
        slice_step=2,
        propagate_3d=False,
    )
    (found,) = list(gen)
    assert 10 in found.searched and 2 in found.searched and len(found.searched) == 10
    # Balls 2-4 once each (they cross several searched slices) plus ball 5 (slices 1..5 only).
    assert found.n_found == 4
    ball5 = [p for p in found.prompts if (p.mask & (labels[p.index] == 5)).any()]
    assert len(ball5) == 1 and ball5[0].index in (2, 4)
    assert not any((p.mask & (labels[p.index] == 1)).any() for p in found.prompts[1:])


def test_box_examples_go_through_box2mask():
    image, labels = balls_volume()
    bundle = make_tiny_bundle(fg_bias=10.0)  # Box2Mask fills the box
    (found,) = list(
        find_similar_stream(
            image,
            slice_index=10,
            boxes=[(16, 16, 25, 25)],
            model=bundle,
            predictor=ThresholdPredictor(),
            propagate_3d=False,
        )
    )
    assert found.n_examples == 1 and found.prompts[0].mask[16:25, 16:25].all()
    assert found.prompts[0].mask.sum() == 81 and found.n_found == 3


def test_cancel_stops_during_search_and_between_objects():
    image, labels = balls_volume()
    cancel = threading.Event()
    cancel.set()
    gen = find_similar_stream(
        image,
        slice_index=10,
        examples_mask=labels[10] == 1,
        predictor=ThresholdPredictor(),
        cancel=cancel,
    )
    assert list(gen) == []
    cancel = threading.Event()
    events = []
    for e in find_similar_stream(
        image,
        slice_index=10,
        examples_mask=labels[10] == 1,
        predictor=ThresholdPredictor(),
        cancel=cancel,
        thickness=3,
    ):
        events.append(e)
        if isinstance(e, ObjectUpdate) and e.position == 1:
            cancel.set()
    assert sum(isinstance(e, ObjectStarted) for e in events) == 2
    assert sum(isinstance(e, ObjectFinished) for e in events) == 1


def test_bad_examples_raise_clear_errors():
    image, labels = balls_volume()
    pred = ThresholdPredictor()
    sparse = np.zeros(SHAPE, np.int32)
    sparse[10][labels[10] == 1] = 1
    sparse[12][labels[12] == 2] = 2
    with pytest.raises(ValueError, match="span slices \\[10, 12\\] along axis 0"):
        find_similar_stream(image, examples_mask=sparse, predictor=pred)
    on_y = np.zeros(SHAPE, np.int32)
    on_y[8:12, 20, 15:25] = 1
    with pytest.raises(ValueError, match="pass axis=1"):
        find_similar_stream(image, examples_mask=on_y, predictor=pred)
    with pytest.raises(ValueError, match="not on slice_index 9"):
        find_similar_stream(
            image, slice_index=9, examples_mask=sparse * (sparse == 1), predictor=pred
        )
    with pytest.raises(ValueError, match="empty"):
        find_similar_stream(image, examples_mask=np.zeros(SHAPE, np.int32), predictor=pred)
    with pytest.raises(ValueError, match="no examples"):
        find_similar_stream(image, slice_index=10, predictor=pred)
    with pytest.raises(ValueError, match="slice_index is required"):
        find_similar_stream(image, examples_mask=labels[10] == 1, predictor=pred)
    with pytest.raises(ValueError, match="slice_range"):
        find_similar_stream(
            image,
            slice_index=10,
            examples_mask=labels[10] == 1,
            predictor=pred,
            slice_range=(5, 50),
        )
    with pytest.raises(TypeError, match="unknown option"):
        find_similar_stream(
            image, slice_index=10, examples_mask=labels[10] == 1, predictor=pred, strid=0.3
        )
    with pytest.raises(ValueError, match="no examples"):
        detect_similar(image[10], np.zeros((96, 96), np.int32), predictor=pred)


def test_sparse_volume_examples_infer_the_slice():
    image, labels = balls_volume()
    sparse = np.zeros(SHAPE, np.int32)
    sparse[10][labels[10] == 4] = 3
    (found,) = list(
        find_similar_stream(
            image, examples_mask=sparse, predictor=ThresholdPredictor(), propagate_3d=False
        )
    )
    assert found.searched == (10,) and found.prompts[0].index == 10 and found.n_found == 3
