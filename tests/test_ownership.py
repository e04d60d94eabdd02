"""Ownership of a label id's voxels: only the object being corrected is replaced (issue 13.1)."""

from __future__ import annotations

import numpy as np
import zarr

from napari_propsam.labeling import ObjectEdit, apply_change
from napari_propsam.ownership import owned_component
from napari_propsam.propagation import SliceUpdate


def _two_objects_under_one_id() -> np.ndarray:
    labels = np.zeros((30, 40, 50), np.int32)
    labels[5:20, 5:15, 5:15] = 1  # object A
    labels[8:25, 20:35, 30:45] = 1  # object B: same id, merged by hand, separate in 3D
    labels[10, 2:4, 2:4] = 7  # an unrelated object
    return labels


def test_the_owned_component_is_the_one_the_prompt_touches():
    labels = _two_objects_under_one_id()
    seed = labels[12] == 1
    seed[:, 20:] = False  # the prompt is on A only
    owned = owned_component(labels, 1, 0, 12, seed)
    assert owned.bbox == (slice(5, 20), slice(5, 15), slice(5, 15))
    assert owned.voxels == 15 * 10 * 10 and owned.mask.all()
    assert owned_component(labels, 1, 0, 12, np.zeros_like(seed)).voxels == 0
    assert owned_component(labels, 3, 0, 12, seed).voxels == 0  # id not under the prompt


def test_ownership_grows_its_window_over_a_long_thin_object_and_reads_zarr_lazily(tmp_path):
    labels = np.zeros((64, 64, 64), np.uint16)
    labels[2:62, 30, 30] = 5  # a 60-voxel thread along z, found from one voxel on slice 40
    labels[2:62, 50, 50] = 5  # a second thread under the same id
    store = zarr.create_array(tmp_path / "l.zarr", shape=labels.shape, chunks=(8, 8, 8),
                              dtype=labels.dtype)  # fmt: skip
    store[...] = labels
    seed = np.zeros((64, 64), bool)
    seed[30, 30] = True
    for source in (labels, store):
        owned = owned_component(source, 5, 0, 40, seed)
        assert owned.bbox == (slice(2, 62), slice(30, 31), slice(30, 31))
        assert owned.voxels == 60
    # Along another axis: the plane of axis 2 is (Z, Y); the thread crosses slice x=30.
    seed_zy = np.zeros((64, 64), bool)
    seed_zy[40, 30] = True
    assert owned_component(labels, 5, 2, 30, seed_zy).voxels == 60


def test_a_whole_slice_replacement_keeps_another_object_under_the_same_id():
    labels = _two_objects_under_one_id()
    before = labels.copy()
    seed = np.zeros(labels.shape[1:], bool)
    seed[6:14, 6:14] = True  # the repainted object A on slice 12
    owned = owned_component(labels, 1, 0, 12, seed)
    edit = ObjectEdit(labels.shape, 1, whole_slice=True, owned=owned)
    for z in range(9, 16):  # the new run reaches slices 9..15 and predicts a small square
        mask = np.zeros((20, 20), bool)
        mask[3:9, 3:9] = True
        apply_change(labels, edit.change(labels, SliceUpdate(0, z, (5, 5), mask, 1.0, True)))
    b_voxels = before[:, 20:, 25:] == 1
    np.testing.assert_array_equal(labels[:, 20:, 25:] == 1, b_voxels)  # B untouched
    assert (labels == 7).sum() == (before == 7).sum()
    for z in range(9, 16):  # A replaced on the reached slices
        assert (labels[z, :, :20] == 1).sum() == 36
    np.testing.assert_array_equal(labels[:9], before[:9])
    apply_change(labels, edit.restore(labels))
    np.testing.assert_array_equal(labels, before)


def test_without_ownership_every_voxel_of_the_id_is_the_objects():
    labels = _two_objects_under_one_id()
    edit = ObjectEdit(labels.shape, 1, whole_slice=True)
    mask = np.zeros((40, 50), bool)
    apply_change(labels, edit.change(labels, SliceUpdate(0, 12, (0, 0), mask, 1.0, True)))
    assert not (labels[12] == 1).any()  # the documented default: the id is one object


def test_a_prompt_over_two_objects_of_one_id_counts_them():
    labels = _two_objects_under_one_id()
    seed = labels[12] == 1  # the whole id on slice 12: A and B
    owned = owned_component(labels, 1, 0, 12, seed)
    assert owned.n_objects == 2 and owned.voxels == (labels == 1).sum()
