"""The napari private API behind ``_history``: these fail the day napari changes it."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels
from qtpy.QtCore import QCoreApplication

from napari_propsam._widgets._history import (
    PRIVATE_API,
    UndoGroup,
    missing_private_api,
    real_object,
)
from napari_propsam.labeling import Change


def _plane_change(index: int, value: int, shape=(8, 12, 16)) -> Change:
    """Every voxel of a 4x5 patch of plane ``index`` set to ``value``."""
    zz, yy, xx = np.meshgrid([index], np.arange(2, 6), np.arange(3, 8), indexing="ij")
    idx = (zz.ravel(), yy.ravel(), xx.ravel())
    return Change(idx, np.full(idx[0].size, value, np.int32))


def PublicOnlyProxyOf(layer):  # noqa: N802 - reads like the class it builds
    """``layer`` as a plugin sees it (napari's proxy): the group must still use the real one."""
    from napari.utils._proxies import PublicOnlyProxy

    return PublicOnlyProxy(layer)


def test_labels_has_every_private_member_we_use():
    layer = Labels(np.zeros((4, 5, 6), np.int32))
    assert missing_private_api(layer) == []
    for name in PRIVATE_API:
        assert hasattr(layer, name), f"napari.layers.Labels lost {name}"
    for method in ("_begin_stroke", "_commit_stroke", "_abort_stroke", "_save_history"):
        assert callable(getattr(layer, method))
    assert isinstance(layer._block_history, bool)
    assert tuple(layer._slice_input.displayed) == (1, 2)
    assert layer._slice.image.raw.ndim == 2


def test_the_plugin_proxy_unwraps_to_the_real_viewer_and_layer(viewer):
    from napari.utils._proxies import PublicOnlyProxy

    layer = viewer.add_labels(np.zeros((4, 5, 6), np.int32))
    proxy = PublicOnlyProxy(viewer)
    assert real_object(proxy) is viewer
    assert real_object(proxy.layers[0]) is layer
    assert real_object(layer) is layer  # a real object is left alone
    assert missing_private_api(proxy.layers[0]) == []


def test_a_streamed_write_is_undone_by_one_undo(viewer):
    layer = viewer.add_labels(np.zeros((8, 12, 16), np.int32))
    viewer.dims.set_current_step(0, 3)
    group = UndoGroup(PublicOnlyProxyOf(layer))
    group.begin()
    for index in range(1, 6):  # one object arriving over several event-loop turns
        group.write(_plane_change(index, 4))
        QCoreApplication.processEvents()
    group.commit()
    assert (layer.data == 4).sum() == 5 * 4 * 5
    assert len(layer._undo_history) == 1
    layer.undo()
    assert not layer.data.any()
    layer.redo()
    assert (layer.data == 4).sum() == 5 * 4 * 5


def test_a_write_to_a_hidden_layer_is_undoable_too(viewer):
    layer = viewer.add_labels(np.zeros((8, 12, 16), np.int32))
    layer.visible = False  # napari does not slice it: the fallback writes and records the atom
    group = UndoGroup(layer)
    group.begin()
    group.write(_plane_change(2, 9))
    group.write(_plane_change(6, 9))
    group.commit()
    layer.visible = True
    assert (layer.data == 9).sum() == 2 * 4 * 5
    layer.undo()
    assert not layer.data.any()


def test_an_aborted_group_leaves_the_layer_and_its_history_as_they_were(viewer):
    base = np.zeros((8, 12, 16), np.int32)
    base[0, :2, :2] = 3
    layer = viewer.add_labels(base.copy())
    group = UndoGroup(layer)
    group.begin()
    group.write(_plane_change(1, 4))
    group.write(_plane_change(2, 4))
    group.abort(None)
    np.testing.assert_array_equal(layer.data, base)
    assert len(layer._undo_history) == 0 and not layer._block_history
