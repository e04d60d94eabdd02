"""Prompt validation: boxes and masks on one slice plane.

Boxes are ``(row0, col0, row1, col1)`` in the 2D plane left after removing the propagation axis,
half-open in pixel units (``row0 <= r < row1``), like a napari rectangle's corners; corners may
come in any order and as floats (they are rounded outwards).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from .transforms import mask_bbox

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


def normalize_box(box: Sequence[float], plane_shape: tuple[int, int]) -> Box:
    """Validate a box and clip it to the plane.

    Args:
        box: ``(row0, col0, row1, col1)``, any corner order, floats allowed.
        plane_shape: ``(H, W)`` of the slice plane.

    Returns:
        Integer ``(row0, col0, row1, col1)`` with ``0 <= row0 < row1 <= H`` (same for columns).

    Raises:
        ValueError: wrong length, non-finite, zero area, or entirely outside the plane.
    """
    vals = [float(v) for v in np.asarray(box, dtype=float).ravel()]
    if len(vals) != 4:
        raise ValueError(f"box must be (row0, col0, row1, col1), got {len(vals)} numbers")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"box has non-finite coordinates: {vals}")
    r0, r1 = sorted((vals[0], vals[2]))
    c0, c1 = sorted((vals[1], vals[3]))
    if r1 - r0 <= 0 or c1 - c0 <= 0:
        raise ValueError(f"box {tuple(vals)} has zero area")
    h, w = plane_shape
    ir0, ic0 = max(0, math.floor(r0)), max(0, math.floor(c0))
    ir1, ic1 = min(h, math.ceil(r1)), min(w, math.ceil(c1))
    if ir1 <= ir0 or ic1 <= ic0:
        raise ValueError(f"box {tuple(vals)} lies outside the slice of shape {plane_shape}")
    if (ir0, ic0, ir1, ic1) != (math.floor(r0), math.floor(c0), math.ceil(r1), math.ceil(c1)):
        logger.info("box clipped to the slice: %s", (ir0, ic0, ir1, ic1))
    return ir0, ic0, ir1, ic1


def prepare_mask(
    mask: np.ndarray, plane_shape: tuple[int, int], fill_holes: bool = True
) -> np.ndarray:
    """Validate a 2D prompt mask (a painted sketch or a closed outline) and fill it.

    Args:
        mask: ``(H, W)`` array, non-zero = object (bool, int labels or float).
        plane_shape: Expected ``(H, W)``.
        fill_holes: Fill regions enclosed by the sketch, so a freehand closed contour becomes
            the area it encloses.

    Returns:
        ``(H, W)`` bool copy.

    Raises:
        ValueError: wrong shape, non-finite values or an empty mask.
    """
    arr = np.asarray(mask)
    if arr.shape != tuple(plane_shape):
        raise ValueError(
            f"mask shape {arr.shape} does not match the slice plane {tuple(plane_shape)}"
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("mask contains NaN or Inf")
    out = arr != 0
    if not out.any():
        raise ValueError("mask is empty: paint the object on the prompt slice")
    if fill_holes:
        out = ndimage.binary_fill_holes(out)
    return out


def _is_many(value: Any) -> bool:
    """True for a sequence of slice indices (not one integer)."""
    return value is not None and not np.isscalar(value) and np.ndim(value) == 1


def _count(prompts: Any) -> int | None:
    """Number of per-slice prompts in a list/tuple/stacked array, None for a single prompt."""
    if isinstance(prompts, (list, tuple)):
        return len(prompts)
    if isinstance(prompts, np.ndarray) and prompts.ndim >= 2 and prompts.dtype != object:
        return len(prompts)
    return None


def check_apart(indices: list[int], regions: list[Box]) -> None:
    """Refuse prompts whose regions do not overlap in projection: likely different objects.

    Consecutive prompts (by slice) are compared. Each region is widened by half its size per
    slice between them (a structure may drift by about half its width from one slice to the
    next, as an oblique tube in a thick-slice stack does), so only prompts that no single
    object could join are refused.

    Args:
        indices: Prompt slices.
        regions: ``(row0, col0, row1, col1)`` bounding box of each prompt in its plane.

    Raises:
        ValueError: two consecutive prompts too far apart; the message names their slices.
    """
    order = np.argsort(indices)
    for a, b in zip(order, order[1:], strict=False):
        (r0, c0, r1, c1), (s0, d0, s1, d1) = regions[a], regions[b]
        gap = abs(int(indices[b]) - int(indices[a]))
        mr = math.ceil(max(r1 - r0, s1 - s0) / 2 * gap)
        mc = math.ceil(max(c1 - c0, d1 - d0) / 2 * gap)
        if r1 + mr <= s0 or s1 + mr <= r0 or c1 + mc <= d0 or d1 + mc <= c0:
            raise ValueError(
                f"the prompts on slices {indices[a]} and {indices[b]} do not overlap in "
                "projection, even allowing the object to drift by half its size per slice, so "
                "they probably mark different objects; segment each object on its own, or "
                "check the slice indices"
            )


def _volume_prompts(
    mask: Any, volume_shape: tuple[int, int, int], axis: int
) -> tuple[list[int], list[np.ndarray]]:
    """The non-empty slices along ``axis`` of a ``(Z, Y, X)`` mask, as indices and planes."""
    vol = np.asarray(mask)
    if vol.shape != tuple(volume_shape):
        raise ValueError(
            f"without slice_index, mask must be a {tuple(volume_shape)} volume whose "
            f"non-empty slices are the prompts; got shape {vol.shape}"
        )
    moved = np.moveaxis(vol != 0, axis, 0)
    idx = [int(i) for i in np.flatnonzero(moved.reshape(len(moved), -1).any(axis=1))]
    if not idx:
        raise ValueError("mask is empty: paint the object on at least one slice")
    return idx, [moved[i] for i in idx]


def collect_prompts(
    slice_index: Any,
    box: Any,
    mask: Any,
    plane_shape: tuple[int, int],
    volume_shape: tuple[int, int, int],
    axis: int,
    check_index: Callable[[Any], int],
    check_box: Callable[[Any], Any] = lambda b: b,
    check_mask: Callable[[Any], Any] = lambda m: m,
) -> tuple[list[int], list[Box] | None, list[np.ndarray] | None]:
    """Validate one or several prompts of one object.

    Accepted forms (planes are ``(H, W)`` after removing ``axis`` from the ZYX volume; boxes are
    ``(row0, col0, row1, col1)``):

    - ``slice_index=i`` with ``box=(4 numbers)`` or ``mask=(H, W)``;
    - ``slice_index=[i, j, ...]`` with ``box=[b_i, b_j, ...]`` or ``mask=[m_i, m_j, ...]``;
    - ``mask=(Z, Y, X)`` volume-shaped and ``slice_index`` omitted: every non-empty slice along
      ``axis`` is a prompt.

    Args:
        slice_index: One index, a sequence of indices, or None (3D mask only).
        box: Box(es) or None.
        mask: Mask(s) or None.
        plane_shape: ``(H, W)`` of a slice plane.
        volume_shape: ``(Z, Y, X)`` of the volume.
        axis: Propagation axis.
        check_index: Validates one index, returning it as int.
        check_box: Validates one box before it is clipped (returns it).
        check_mask: Validates one mask before it is filled (returns it).

    Returns:
        ``(indices, boxes, masks)`` sorted by slice; exactly one of ``boxes``/``masks`` is set.

    Raises:
        ValueError: no or two kinds of prompt, mismatched lengths, a repeated slice, empty or
            misshapen masks, or prompts that do not overlap in projection.
    """
    if (box is None) == (mask is None):
        raise ValueError(
            "give exactly one prompt: box=(row0, col0, row1, col1) or mask=2D array "
            "(or lists of them with slice_index=[...], or a 3D mask)"
        )
    if mask is not None and slice_index is None:
        slice_index, mask = _volume_prompts(mask, volume_shape, axis)
    if slice_index is None:
        raise ValueError("slice_index is required with a box prompt (an integer or a list)")
    many = _is_many(slice_index)
    indices = [check_index(i) for i in (slice_index if many else [slice_index])]
    prompts = (box if box is not None else mask) if many else [box if box is not None else mask]
    count = _count(prompts) if many else 1
    if count != len(indices):
        raise ValueError(
            f"{len(indices)} prompt slices need {len(indices)} "
            f"{'boxes' if box is not None else 'masks'} (a list, one per slice), got "
            f"{'one' if count is None else count}"
        )
    if len(set(indices)) != len(indices):
        dup = sorted({i for i in indices if indices.count(i) > 1})
        raise ValueError(f"slice(s) {dup} have more than one prompt; give one per slice")
    order = sorted(range(len(indices)), key=indices.__getitem__)
    indices = [indices[i] for i in order]
    if box is not None:
        boxes = [normalize_box(check_box(prompts[i]), plane_shape) for i in order]
        check_apart(indices, boxes)
        return indices, boxes, None
    masks = [prepare_mask(check_mask(prompts[i]), plane_shape) for i in order]
    regions = []
    for m in masks:
        r0, c0, r1, c1 = mask_bbox(m)  # type: ignore[misc]  # prepare_mask refuses empty masks
        regions.append((r0, c0, r1 + 1, c1 + 1))
    check_apart(indices, regions)
    return indices, None, masks
