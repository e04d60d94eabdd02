"""Which voxels of a label id belong to the object being corrected.

A label id is not always one object: ids merged by hand, or an id the user reuses, can stand for
several separate objects. When one of them is re-propagated (or a prompt is run again under its
old id), only that object's voxels may be replaced. :func:`owned_component` finds them: the 3D
connected components of the id that the prompt touches on its slice. Everything else carrying
the same id is another object and is kept (see :class:`napari_propsam.labeling.ObjectEdit`).

The search reads only a window around the object, grown until the components no longer reach
its border, so a huge lazy (zarr/dask) labels volume is never read whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .prompt_checks import normalize_box

logger = logging.getLogger(__name__)

__all__ = ["OwnedRegion", "owned_by_prompt", "owned_component", "prompt_seed"]

# Full (26-) connectivity: parts of one object that touch only at an edge or corner stay one.
_STRUCTURE = ndimage.generate_binary_structure(3, 3)


@dataclass(frozen=True)
class OwnedRegion:
    """Voxels of a ``(Z, Y, X)`` labels volume that one object owns.

    Attributes:
        bbox: ``(z, y, x)`` slices of the region's bounding box in the volume.
        mask: ``(bz, by, bx)`` bool array of the bbox shape, True on owned voxels.
        n_objects: How many separate 3D components the prompt touched (more than one: the id
            stands for several objects on the prompt slice).
    """

    bbox: tuple[slice, slice, slice]
    mask: np.ndarray
    n_objects: int = 0

    @property
    def voxels(self) -> int:
        """Number of owned voxels."""
        return int(np.count_nonzero(self.mask))

    def window(self, axis: int, index: int, rows: slice, cols: slice) -> np.ndarray:
        """``(h, w)`` bool: which voxels of the plane window ``rows x cols`` on slice ``index``
        of ``axis`` are owned (``rows``/``cols`` have explicit, in-volume starts and stops)."""
        out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), bool)
        s_ax = self.bbox[axis]
        if not s_ax.start <= index < s_ax.stop:
            return out
        r_ax, c_ax = (a for a in range(3) if a != axis)
        br, bc = self.bbox[r_ax], self.bbox[c_ax]
        r0, r1 = max(rows.start, br.start), min(rows.stop, br.stop)
        c0, c1 = max(cols.start, bc.start), min(cols.stop, bc.stop)
        if r0 >= r1 or c0 >= c1:
            return out
        plane = np.take(self.mask, index - s_ax.start, axis=axis)
        out[r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start] = plane[
            r0 - br.start : r1 - br.start, c0 - bc.start : c1 - bc.start
        ]
        return out


def prompt_seed(
    plane_shape: tuple[int, int],
    box: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """``(H, W)`` bool region of a prompt: its mask, or its box's rectangle (clipped)."""
    if mask is not None:
        return np.asarray(mask, bool)
    seed = np.zeros(tuple(plane_shape), bool)
    if box is not None:
        r0, c0, r1, c1 = normalize_box(box, tuple(plane_shape))
        seed[r0:r1, c0:c1] = True
    return seed


def _box_around(seed: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(seed.any(axis=1))
    cols = np.flatnonzero(seed.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def owned_component(
    labels: Any,
    label_id: int,
    axis: int,
    index: int,
    seed: np.ndarray,
    max_rounds: int = 64,
) -> OwnedRegion:
    """The 3D connected components of ``label_id`` that touch ``seed`` on slice ``index``.

    Args:
        labels: ``(Z, Y, X)`` integer labels (numpy, zarr, dask: only a window is read).
        label_id: The object's id.
        axis: Axis of the prompt slice.
        index: Prompt slice along ``axis``.
        seed: ``(H, W)`` bool prompt region in the slice plane (a mask, or a box's rectangle).
        max_rounds: Safety cap on window growth steps.

    Returns:
        The owned voxels (empty when ``label_id`` does not touch ``seed``).
    """
    shape = tuple(int(s) for s in labels.shape)
    seed = np.asarray(seed, bool)
    empty = OwnedRegion((slice(0, 0),) * 3, np.zeros((0, 0, 0), bool))  # type: ignore[arg-type]
    if not seed.any():
        return empty
    r_ax, c_ax = (a for a in range(3) if a != axis)
    r0, c0, r1, c1 = _box_around(seed)
    lo = [0, 0, 0]
    hi = [0, 0, 0]
    lo[axis], hi[axis] = index, index + 1
    lo[r_ax], hi[r_ax], lo[c_ax], hi[c_ax] = r0, r1, c0, c1
    for _ in range(max_rounds):
        # Grow by the window's own size on every side (at least 8 voxels): few rounds to cover
        # a large object, little over-read for a small one.
        grow = [max(8, h - low) for low, h in zip(lo, hi, strict=True)]
        lo = [max(0, low - g) for low, g in zip(lo, grow, strict=True)]
        hi = [min(s, h + g) for h, g, s in zip(hi, grow, shape, strict=True)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        same = np.asarray(labels[box]) == label_id
        comp, _n = ndimage.label(same, structure=_STRUCTURE)
        seed_idx: list[Any] = [
            slice(r0 - lo[r_ax], r1 - lo[r_ax]),
            slice(c0 - lo[c_ax], c1 - lo[c_ax]),
        ]
        seed_idx.insert(axis, index - lo[axis])
        ids = np.unique(comp[tuple(seed_idx)][seed[r0:r1, c0:c1]])
        ids = ids[ids > 0]
        if ids.size == 0:
            return empty
        owned = np.isin(comp, ids)
        if not _reaches_inner_border(owned, lo, hi, shape):
            return _tight(owned, lo, int(ids.size))
    logger.warning("object %d: ownership search stopped after %d rounds", label_id, max_rounds)
    return _tight(owned, lo, int(ids.size))


def _reaches_inner_border(owned: np.ndarray, lo: list[int], hi: list[int], shape: tuple) -> bool:
    """Whether the owned voxels touch a window face that is not the volume's edge."""
    for ax in range(3):
        if lo[ax] > 0 and np.take(owned, 0, axis=ax).any():
            return True
        if hi[ax] < shape[ax] and np.take(owned, -1, axis=ax).any():
            return True
    return False


def _tight(owned: np.ndarray, lo: list[int], n_objects: int) -> OwnedRegion:
    where = [
        np.flatnonzero(owned.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    bbox = tuple(slice(lo[ax] + int(w[0]), lo[ax] + int(w[-1]) + 1) for ax, w in enumerate(where))
    local = tuple(slice(int(w[0]), int(w[-1]) + 1) for w in where)
    return OwnedRegion(bbox, np.ascontiguousarray(owned[local]), n_objects)  # type: ignore[arg-type]


def owned_by_prompt(labels: Any, prompt: Any) -> OwnedRegion:
    """:func:`owned_component` for a :class:`~napari_propsam.labeling.ObjectPrompt`: the voxels
    of ``prompt.label_id`` in ``labels`` (``(Z, Y, X)``) that its box or mask touches."""
    plane = tuple(int(s) for a, s in enumerate(labels.shape) if a != prompt.axis)
    seed = prompt_seed(plane, prompt.box, prompt.mask)  # type: ignore[arg-type]
    return owned_component(labels, prompt.label_id, prompt.axis, prompt.index, seed)
