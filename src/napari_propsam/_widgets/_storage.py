"""Labels arrays the widget creates, sized so huge volumes never have to fit in memory.

napari opens big zarr/dask images lazily, and the core reads only the slices an object needs, so
the one thing that would still need the whole volume in RAM is a numpy output layer of the
image's shape. Above :data:`LAZY_LABELS_BYTES` the widget's new Labels layers are chunked zarr
arrays in a temporary directory instead: napari's ``Labels`` reads them plane by plane, and
``data_setitem`` (hence undo) writes through zarr's coordinate indexing. The directories are
removed when Python exits.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: New labels layers bigger than this many bytes are zarr-backed (module-level: tests lower it).
LAZY_LABELS_BYTES = 512 * 2**20
#: Chunk shape of those zarr arrays (clipped to the volume): a few slices deep so propagation
#: along any axis touches a moderate number of chunks, and a displayed plane reads few of them.
LAZY_CHUNKS = (8, 256, 256)

_temp_dirs: list[str] = []


def _cleanup() -> None:
    for path in _temp_dirs:
        shutil.rmtree(path, ignore_errors=True)
    _temp_dirs.clear()


atexit.register(_cleanup)


def new_labels_data(shape: Sequence[int], dtype: Any = np.int32) -> Any:
    """An all-zero labels array: numpy when small, a temporary chunked zarr array when large.

    Args:
        shape: Shape of the labels (the image's shape).
        dtype: Integer dtype.

    Returns:
        A numpy array, or a ``zarr.Array`` in a temporary directory above
        :data:`LAZY_LABELS_BYTES`.
    """
    shape = tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if nbytes <= LAZY_LABELS_BYTES:
        return np.zeros(shape, dtype)
    import zarr

    path = tempfile.mkdtemp(prefix="napari-propsam-labels-")
    _temp_dirs.append(path)
    chunks = tuple(min(c, s) for c, s in zip(LAZY_CHUNKS, shape, strict=False))
    chunks += shape[len(chunks) :]
    logger.info(
        "labels of %.1f GiB: using a zarr array in %s (chunks %s)", nbytes / 2**30, path, chunks
    )
    return zarr.open_array(
        store=path, mode="w", shape=shape, chunks=chunks, dtype=dtype, fill_value=0
    )
