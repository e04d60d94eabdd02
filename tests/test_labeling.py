"""Writing streamed objects into a labels volume: replace, preserve, restore, re-propagate."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import ThresholdPredictor, dice, ellipsoid_volume, make_tiny_bundle
from napari_propsam.labeling import (
    ObjectEdit,
    ObjectFailed,
    ObjectFinished,
    ObjectPrompt,
    ObjectStarted,
    ObjectUpdate,
    apply_change,
    assign_label_ids,
    max_label,
    next_free_label,
    sketch_masks,
    stream_objects,
)
from napari_propsam.propagation import SliceUpdate


def _upd(index, offset, mask, final=False, axis=0):
    return SliceUpdate(axis, index, offset, np.asarray(mask, bool), 0.5, final)


def _write(labels, edit, update):
    apply_change(labels, edit.change(labels, update))


def test_update_replaces_the_object_inside_its_window_only():
    labels = np.zeros((3, 8, 8), np.int32)
    labels[1, 0, 0] = 5  # the object's own voxel outside the window: untouched
    labels[1, 3, 3] = 5  # inside the window, not in the mask: removed
    edit = ObjectEdit(labels.shape, 5)
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True
    _write(labels, edit, _upd(1, (2, 2), mask))
    assert labels[1, 2, 2] == 5 and labels[1, 3, 3] == 5  # (3,3) is mask[1,1]
    mask2 = np.zeros((4, 4), bool)
    mask2[0, 0] = True
    _write(labels, edit, _upd(1, (2, 2), mask2))
    assert labels[1, 3, 3] == 0 and labels[1, 2, 2] == 5 and labels[1, 0, 0] == 5
    assert labels.sum() == 10


def test_other_labels_are_kept_unless_overwrite():
    labels = np.zeros((2, 6, 6), np.int32)
    labels[0, 2:4, 2:4] = 7
    full = np.ones((6, 6), bool)
    kept = labels.copy()
    edit = ObjectEdit(labels.shape, 3)
    _write(labels, edit, _upd(0, (0, 0), full))
    assert (labels[0][kept[0] == 7] == 7).all() and (labels[0][kept[0] == 0] == 3).all()

    labels = kept.copy()
    edit = ObjectEdit(labels.shape, 3, overwrite=True)
    _write(labels, edit, _upd(0, (0, 0), full))
    assert (labels[0] == 3).all()
    # A later update that drops those voxels gives them back to label 7, not to background.
    _write(labels, edit, _upd(0, (0, 0), np.zeros((6, 6), bool), final=True))
    np.testing.assert_array_equal(labels, kept)


def test_restore_returns_exactly_to_the_state_before_the_object():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(6, 10, 12)).astype(np.uint16)
    before = labels.copy()
    edit = ObjectEdit(labels.shape, 2, overwrite=True)
    for i, (r, c, h, w) in enumerate([(1, 1, 4, 4), (0, 0, 8, 9), (2, 3, 8, 9)]):
        _write(labels, edit, _upd(i % 3 + 1, (r, c), rng.random((h, w)) > 0.4))
    _write(labels, edit, _upd(2, (0, 0), rng.random((10, 12)) > 0.5))  # window grows
    assert not np.array_equal(labels, before)
    apply_change(labels, edit.restore(labels))
    np.testing.assert_array_equal(labels, before)
    assert edit.slices == [1, 2, 3]
    z, y, x = edit.bounding_box()
    assert (z.start, z.stop, y.start, x.start, y.stop, x.stop) == (1, 4, 0, 0, 10, 12)


def test_windows_past_the_plane_edge_and_other_axes():
    labels = np.zeros((4, 5, 6), np.int32)
    edit = ObjectEdit(labels.shape, 1)
    # axis 2: plane is (Z, Y) = (4, 5); a 4x4 window at (2, 3) hangs over both edges.
    _write(labels, edit, _upd(5, (2, 3), np.ones((4, 4), bool), axis=2))
    assert labels[2:4, 3:5, 5].all() and labels.sum() == 4


def test_whole_slice_final_update_clears_the_object_elsewhere_on_that_slice():
    labels = np.zeros((5, 8, 8), np.int32)
    labels[:, 0:2, 0:2] = 4  # old object on every slice
    labels[2, 6, 6] = 9  # another object
    edit = ObjectEdit(labels.shape, 4, whole_slice=True)
    mask = np.ones((2, 2), bool)
    _write(labels, edit, _upd(2, (4, 4), mask))  # streaming: window only
    assert labels[2, 0, 0] == 4
    _write(labels, edit, _upd(2, (4, 4), mask, final=True))  # final: whole plane
    assert labels[2, 0:2, 0:2].sum() == 0 and labels[2, 4:6, 4:6].all() and labels[2, 6, 6] == 9
    assert (labels[[0, 1, 3, 4], 0:2, 0:2] == 4).all()  # slices not reached stay


def test_label_ids():
    labels = np.zeros((2, 3, 3), np.int32)
    labels[0, 0, 0] = 4
    assert next_free_label(labels) == 5
    assert next_free_label(labels, [9]) == 10
    assert next_free_label(np.zeros((2, 2, 2), np.uint8)) == 1
    assert assign_label_ids(labels, [None, 7, None]) == [8, 7, 9]
    assert assign_label_ids(labels, [None, None], reused={1: 2}) == [5, 2]
    with pytest.raises(ValueError):
        ObjectEdit(labels.shape, 0)


class _ChunkReads:
    """A chunked labels array-like that records the size of every read."""

    def __init__(self, data: np.ndarray, chunks: tuple[int, int, int]) -> None:
        self.data, self.chunks = data, chunks
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads: list[int] = []

    def __getitem__(self, idx):
        out = np.asarray(self.data[idx])
        self.reads.append(out.size)
        return out


def test_label_ids_of_a_lazy_volume_are_read_chunk_by_chunk():
    data = np.zeros((16, 32, 32), np.int32)
    data[13, 30, 2] = 41
    lazy = _ChunkReads(data, (4, 16, 16))
    assert max_label(lazy) == 41
    assert lazy.reads and max(lazy.reads) <= 4 * 16 * 16  # never the whole volume at once
    assert next_free_label(lazy, [7]) == 42
    assert assign_label_ids(lazy, [None, 3]) == [42, 3]
    assert max_label(np.zeros((0, 4, 4), np.uint8)) == 0


def test_sketch_masks_fill_closed_outlines():
    plane = np.zeros((12, 12), np.int32)
    plane[2, 2:7] = plane[6, 2:7] = plane[2:7, 2] = plane[2:7, 6] = 3  # square outline
    plane[9, 9] = 5
    masks = sketch_masks(plane)
    assert list(masks) == [3, 5]
    assert masks[3][2:7, 2:7].all() and masks[3].sum() == 25 and masks[5].sum() == 1
    with pytest.raises(ValueError):
        sketch_masks(np.zeros((2, 2, 2)))


def test_stream_objects_runs_prompts_in_order_and_reports_bad_ones():
    image, truth = ellipsoid_volume(shape=(24, 32, 32), center=(12, 16, 16), radii=(7, 8, 8))
    prompts = [
        ObjectPrompt(0, 12, 1, mask=truth[12], name="a"),
        # Box2Mask on a constant corner region: the core rejects it, the run goes on.
        ObjectPrompt(0, 12, 2, box=(0, 0, 1, 1), name="bad"),
        ObjectPrompt(1, 16, 3, mask=truth[:, 16], name="b"),
    ]
    events = list(
        stream_objects(
            image,
            prompts,
            model=make_tiny_bundle(fg_bias=5),
            predictor=ThresholdPredictor(),
            thickness=4,
        )
    )
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "ObjectStarted" and kinds[-1] == "ObjectFinished"
    assert [e.position for e in events if isinstance(e, ObjectFinished)] == [0, 2]
    assert [e.position for e in events if isinstance(e, ObjectFailed)] == [1]
    outs = {0: np.zeros(image.shape, np.int32), 2: np.zeros(image.shape, np.int32)}
    edits = {}
    for e in events:
        if isinstance(e, ObjectStarted):
            edits[e.position] = ObjectEdit(image.shape, e.prompt.label_id)
        elif isinstance(e, ObjectUpdate):
            out = outs[e.position]
            apply_change(out, edits[e.position].change(out, e.update))
    assert dice(outs[0] == 1, truth) > 0.9  # from a sketch on axis 0
    assert dice(outs[2] == 3, truth) > 0.9  # from a sketch on axis 1


def test_stream_objects_stops_when_cancelled():
    image, truth = ellipsoid_volume(shape=(24, 32, 32), center=(12, 16, 16), radii=(7, 8, 8))
    cancel = threading.Event()
    prompts = [ObjectPrompt(0, 12, 1, mask=truth[12]), ObjectPrompt(0, 12, 2, mask=truth[12])]
    seen = []
    for e in stream_objects(
        image, prompts, predictor=ThresholdPredictor(), cancel=cancel, thickness=2, max_batch=2
    ):
        seen.append(e)
        if isinstance(e, ObjectUpdate):
            cancel.set()
    assert [type(e).__name__ for e in seen] == ["ObjectStarted", "ObjectUpdate"]
