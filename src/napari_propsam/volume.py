"""Lazy, axis-aware access to a 3D volume (numpy, dask, zarr or anything sliceable).

The engine reads only the slices and windows it needs, so a volume larger than RAM works as long
as its array type reads lazily on basic indexing (zarr, dask, h5py, numpy memmap, tifffile's
zarr store).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def check_volume(image: Any) -> tuple[int, int, int]:
    """Validate that ``image`` is a 3D greyscale ZYX volume and return its shape.

    Raises:
        ValueError: not 3D, RGB(A), complex or non-numeric, or with an empty axis. The message
            says how to pass a 3D view.
    """
    if not hasattr(image, "shape") or not hasattr(image, "__getitem__"):
        raise ValueError(
            f"image must be a 3D array (Z, Y, X) with a shape, such as a numpy, dask or zarr "
            f"array, got {type(image).__name__}; for nested lists pass np.asarray(image)"
        )
    shape = tuple(int(s) for s in image.shape)
    ndim = len(shape)
    if ndim == 2:
        raise ValueError(
            f"image is 2D {shape}; PropSAM needs a 3D stack (Z, Y, X). For one 2D image there is "
            "nothing to propagate; for a series of 2D images stack them: np.stack(images)"
        )
    if ndim == 4:
        raise ValueError(
            f"image is 4D {shape}; pass a 3D view, e.g. image[t] for one time point or "
            "image[:, c] / image[..., c] for one channel"
        )
    if ndim != 3:
        raise ValueError(f"image must be 3D (Z, Y, X), got {ndim}D with shape {shape}")
    if shape[-1] in (3, 4):
        raise ValueError(
            f"image shape {shape} looks like an RGB(A) 2D image (last axis {shape[-1]}); convert "
            "it to greyscale (e.g. image.mean(axis=-1)) and pass a 3D greyscale stack"
        )
    if min(shape) < 1:
        raise ValueError(f"image has an empty axis: {shape}")
    dtype = np.dtype(getattr(image, "dtype", np.float32))
    if dtype.kind not in "biuf":
        raise ValueError(f"image dtype {dtype} is not a real number type")
    return shape  # type: ignore[return-value]


class SliceReader:
    """Reads windows of slices along one axis of a 3D volume.

    Slice planes keep the order of the two remaining axes: for ``axis=1`` a plane is ``(Z, X)``.

    Args:
        image: ``(Z, Y, X)`` array-like with basic indexing.
        axis: Propagation axis, 0, 1 or 2.
    """

    def __init__(self, image: Any, axis: int = 0) -> None:
        shape = check_volume(image)
        if (
            isinstance(axis, bool | np.bool_)
            or not isinstance(axis, int | np.integer)
            or axis not in (0, 1, 2, -1, -2, -3)
        ):
            raise ValueError(f"axis must be the integer 0, 1 or 2, got {axis!r}")
        self.image = image
        self.axis = int(axis) % 3
        self.shape = shape
        self.n_slices = shape[self.axis]
        self.plane_shape: tuple[int, int] = tuple(  # type: ignore[assignment]
            s for i, s in enumerate(shape) if i != self.axis
        )
        self._check_finite = np.dtype(getattr(image, "dtype", np.float32)).kind == "f"

    def read(self, start: int, stop: int, rows: slice, cols: slice) -> np.ndarray:
        """Slices ``[start, stop)`` restricted to the plane window ``rows x cols``.

        Returns:
            ``(stop - start, h, w)`` float32 copy.

        Raises:
            ValueError: the window holds NaN or Inf.
        """
        index: list[slice] = [rows, cols]
        index.insert(self.axis, slice(start, stop))
        block = np.asarray(self.image[tuple(index)], dtype=np.float32)
        block = np.moveaxis(block, self.axis, 0)
        if self._check_finite and not np.all(np.isfinite(block)):
            raise ValueError(
                f"image contains NaN or Inf values (slices {start}..{stop - 1} along axis "
                f"{self.axis}); replace them, e.g. np.nan_to_num(image)"
            )
        return np.ascontiguousarray(block)

    def plane(self, index: int) -> np.ndarray:
        """The whole slice ``index`` as ``(H, W)`` float32."""
        return self.read(index, index + 1, slice(None), slice(None))[0]
