"""One undo step per object on a napari Labels layer.

``Labels.data_setitem`` records every write as a history *atom*. An atom recorded while the layer's
history is blocked is *staged*, and committing the stage turns all staged atoms into one undo
item. ``Labels.block_history()`` does this for a ``with`` block, but an object arrives as many
worker yields across many event-loop turns, so we use the same mechanism the brush uses for a
stroke spanning many mouse events: ``_begin_stroke`` / ``_commit_stroke`` / ``_abort_stroke``
(napari >= 0.9). Older napari has only the underlying ``_block_history`` flag and
``_staged_history`` list, which we drive directly.

This module is the ONE place that touches napari's private API: the undo stage above, the
layer's slice state (:func:`_slice_is_current`) and the ``__wrapped__`` unwrap of the plugin
proxy (:func:`real_object`). :data:`PRIVATE_API` lists what it relies on, and
``tests/_widgets/test_history.py`` fails the day the installed napari changes any of it.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import numpy as np
from napari.layers import Labels

from ..labeling import Change, ObjectEdit, apply_change

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The private members of ``napari.layers.Labels`` used here (napari >= 0.9; older napari takes
#: the ``_staged_history`` / ``_commit_staged_history`` branch instead of the stroke methods).
PRIVATE_API: tuple[str, ...] = (
    "_begin_stroke",
    "_commit_stroke",
    "_abort_stroke",
    "_block_history",
    "_save_history",
    "_slice_input",
    "_slice",
)
_OLD_PRIVATE_API = ("_block_history", "_staged_history", "_commit_staged_history", "_save_history")


def real_object(obj: T) -> T:
    """The object behind napari's ``PublicOnlyProxy``, or ``obj`` itself.

    napari hands plugin widgets a proxy of the viewer; layers reached through it are proxies too,
    which warn on (and may one day refuse) the private history calls of this module. The widget
    is part of this package, so it works on the real objects.
    """
    return getattr(obj, "__wrapped__", obj)


def missing_private_api(layer: Labels) -> list[str]:
    """The members of :data:`PRIVATE_API` that ``layer`` lacks (empty: this module works).

    With napari < 0.9 (no stroke methods) the older members are checked instead.
    """
    layer = real_object(layer)
    names = PRIVATE_API if hasattr(layer, "_begin_stroke") else _OLD_PRIVATE_API
    return [name for name in names if not hasattr(layer, name)]


def _slice_is_current(layer: Labels) -> bool:
    """Whether napari's view of ``layer`` is its displayed plane (``data_setitem`` updates it).

    A hidden layer is not sliced: its view is a placeholder that ``data_setitem`` cannot index.
    """
    if not layer.visible:
        return False
    try:
        want = tuple(int(layer.data.shape[d]) for d in layer._slice_input.displayed)
        return tuple(layer._slice.image.raw.shape[: len(want)]) == want
    except (AttributeError, IndexError, TypeError):  # another napari: let it handle the write
        return True


class UndoGroup:
    """Groups the ``data_setitem`` calls of one object into one undo item.

    Args:
        layer: The output Labels layer.
    """

    def __init__(self, layer: Labels) -> None:
        # A layer reached through napari's plugin proxy would warn on each private call.
        self.layer = real_object(layer)
        self.active = False

    def begin(self) -> None:
        """Start staging history atoms."""
        if hasattr(self.layer, "_begin_stroke"):
            self.layer._begin_stroke()
        else:  # pragma: no cover - napari < 0.9
            self.layer._block_history = True
        self.active = True

    def write(self, change: Change | None) -> None:
        """Write a change through ``data_setitem`` (so it is undoable) into the open group."""
        if change is None or not len(change):
            return
        if not self.layer._block_history:
            # Something (e.g. a brush stroke the user finished mid-run) committed the stage;
            # keep grouping the rest rather than making one undo item per slice.
            logger.debug("undo stage was committed by someone else; reopening it")
            self.begin()
        if _slice_is_current(self.layer):
            self.layer.data_setitem(change.indices, change.values)
            return
        # napari does not slice a hidden layer, and data_setitem then fails on its empty view
        # after the object was computed. Record the same history atom and write the data;
        # napari slices the layer afresh when it is shown again.
        values = np.asarray(change.values, dtype=self.layer.data.dtype)
        before = np.array(self.layer.data[change.indices], copy=True)
        self.layer._save_history((change.indices, before, values))
        self.layer.data[change.indices] = values

    def commit(self) -> None:
        """Close the group: everything since :meth:`begin` becomes one undo item."""
        if not self.active:
            return
        if hasattr(self.layer, "_commit_stroke"):
            self.layer._commit_stroke()
        else:  # pragma: no cover - napari < 0.9
            self.layer._block_history = False
            self.layer._commit_staged_history()
        self.active = False

    def abort(self, edit: ObjectEdit | None) -> None:
        """Drop the group and put the layer back exactly as before :meth:`begin`.

        napari replays the staged atoms backwards; ``edit``'s baseline then confirms the result
        (and repairs it if the stage had been committed by someone else in between).
        """
        if self.active:
            if hasattr(self.layer, "_abort_stroke"):
                self.layer._abort_stroke()
            else:  # pragma: no cover - napari < 0.9
                for indices, before, _after in reversed(self.layer._staged_history):
                    self.layer.data[indices] = before
                self.layer._staged_history = []
                self.layer._block_history = False
            self.active = False
        if edit is not None:
            residue = edit.restore(self.layer.data)
            if residue is not None:
                logger.warning("restoring %d voxels the undo stage did not cover", len(residue))
                apply_change(self.layer.data, residue)
        self.layer.refresh()
