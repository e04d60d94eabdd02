"""Reading and writing volumes: tif (memory-mapped when possible), zarr, OME-Zarr and npy.

Reads are lazy so that volumes larger than RAM only pay for the chunks that are touched.
Arrays are ZYX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def read_volume(path: str | Path) -> Any:
    """Open a tif (memory-mapped when possible) or a zarr array lazily."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            return tifffile.memmap(str(path), mode="r")
        except ValueError:  # compressed or tiled: read through tifffile's zarr store
            import zarr

            store = tifffile.imread(str(path), aszarr=True)
            return zarr.open(store, mode="r")
    if path.suffix.lower() in (".npy",):
        return np.load(path, mmap_mode="r")
    import zarr

    arr = zarr.open(str(path), mode="r")
    if hasattr(arr, "shape"):
        return arr
    # An OME-Zarr group: the full-resolution level is "0".
    return arr["0"]


def write_volume(path: str | Path, data: np.ndarray) -> None:
    """Write labels as tif or zarr (by suffix), atomically for tif."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tmp = path.with_name(path.name + ".tmp")
        tifffile.imwrite(str(tmp), data, compression="zlib")
        tmp.replace(path)
    elif path.suffix.lower() == ".npy":
        np.save(path, data)
    else:
        import zarr

        z = zarr.open_array(
            str(path), mode="w", shape=data.shape, dtype=data.dtype, chunks=(32, 256, 256)
        )
        z[:] = data


__all__ = ["read_volume", "write_volume"]
