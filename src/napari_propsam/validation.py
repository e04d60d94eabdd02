"""Validation of the scripting API's arguments, shared by every entry point.

Each function checks one argument and raises a ``ValueError`` (or ``TypeError``) that names the
parameter and says what is expected, before any work. ``napari_propsam.api``, batch runs and
find-similar all validate through here, so a message reads the same everywhere. Arrays are
ZYX; boxes are ``(row0, col0, row1, col1)`` in the prompt plane.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_all_finite", "check_box", "check_index", "check_mask", "check_spacing"]


def check_spacing(spacing: Any) -> tuple[float, float, float] | None:
    """Voxel size ``(z, y, x)`` from one number or three positive finite numbers (None stays
    None: unknown units)."""
    if spacing is None:
        return None
    try:
        vals = np.atleast_1d(np.asarray(spacing, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(
            f"spacing must be a positive number or 3 numbers (z, y, x), got {spacing!r}"
        ) from None
    if vals.size == 1:
        vals = np.repeat(vals, 3)
    if vals.shape != (3,):
        raise ValueError(
            f"spacing must have 3 values (z, y, x), got {np.asarray(spacing).tolist()}"
        )
    if not np.all(np.isfinite(vals)) or np.any(vals <= 0):
        raise ValueError(f"spacing must be positive and finite, got {vals.tolist()}")
    return tuple(float(v) for v in vals)  # type: ignore[return-value]


def check_index(slice_index: Any, n: int, axis: int) -> int:
    """``slice_index`` as an int in ``[0, n)`` along ``axis`` (whole numbers only)."""
    whole = (
        isinstance(slice_index, numbers.Real)
        and not isinstance(slice_index, bool | np.bool_)
        and math.isfinite(float(slice_index))
        and float(slice_index).is_integer()
    )
    if not whole:
        raise ValueError(
            f"slice_index must be a whole number, the prompt slice along axis {axis} "
            f"(0..{n - 1}), got {slice_index!r}"
        )
    idx = int(slice_index)
    if not 0 <= idx < n:
        raise ValueError(f"slice_index {idx} is out of range for axis {axis} with {n} slices")
    return idx


def check_box(box: Any) -> tuple[float, float, float, float]:
    """``box`` as 4 floats, or a ValueError that says what a box is."""
    expected = "box must be 4 numbers (row0, col0, row1, col1) in the prompt plane"
    if isinstance(box, str | bytes):
        raise ValueError(f"{expected}, got {box!r}")
    try:
        vals = np.asarray(box, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{expected}, got {box!r}") from None
    if vals.size != 4:
        raise ValueError(f"{expected}, got {vals.size} numbers: {box!r}")
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"{expected}, finite; got {box!r}")
    return tuple(float(v) for v in vals)  # type: ignore[return-value]


def check_mask(mask: Any, plane_shape: tuple[int, int]) -> np.ndarray:
    """``mask`` as an array of booleans or numbers of the plane's shape, else a ValueError."""
    arr = np.asarray(mask)
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"mask must be a 2D array of booleans or numbers (non-zero = object) of the plane's "
            f"shape {tuple(plane_shape)}, got dtype {arr.dtype} ({type(mask).__name__})"
        )
    if arr.shape != tuple(plane_shape):
        raise ValueError(
            f"mask must have the prompt plane's shape {tuple(plane_shape)}, got shape {arr.shape}"
        )
    return arr


def check_all_finite(image: Any) -> None:
    """In-memory float volumes are checked whole up front; lazy ones block by block as read.

    A ``np.memmap`` counts as lazy: checking it whole would read the entire file from disk.
    """
    if (
        isinstance(image, np.ndarray)
        and not isinstance(image, np.memmap)
        and image.dtype.kind == "f"
    ):
        if not np.isfinite(image).all():
            raise ValueError("image contains NaN or Inf values; replace them, e.g. np.nan_to_num")
