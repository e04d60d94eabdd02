"""Per-object measurements of a label volume (pure numpy/scipy/scikit-image).

:func:`measure_labels` returns one row per object id of a ``(Z, Y, X)`` integer label volume
as a dict of equal-length numpy columns; :func:`write_measurements_csv` writes it. Arrays are
ZYX; 2D boxes elsewhere in the package are ``(row0, col0, row1, col1)``, while the 3D bounding
boxes here are ``(z0, y0, x0, z1, y1, x1)`` in voxels with exclusive ends.

Memory follows the objects, not the volume: the bounding boxes are found block by block (one
chunk-aligned block at a time for zarr / dask / memory-mapped input), then every object is
measured from its own bounding box only.

Columns (``spacing`` is the physical voxel size ``(z, y, x)``; "units" below means its unit):

=========================== ======= =============================================================
column                      dtype   meaning
=========================== ======= =============================================================
label                       int64   object id
voxel_count                 int64   number of voxels
volume                      float64 ``voxel_count * prod(spacing)``  (units^3)
surface_area                float64 marching-cubes area of the boundary (units^2), see below
equivalent_diameter         float64 diameter of the ball of the same volume, ``(6V/pi)^(1/3)``
sphericity                  float64 ``pi^(1/3) (6V)^(2/3) / A``; 1 for a ball, lower otherwise
centroid_z/_y/_x            float64 centroid in voxel coordinates (napari data coordinates)
bbox_z0/_y0/_x0/_z1/_y1/_x1 int64   bounding box in voxels, ends exclusive
n_slices                    int64   number of slices along axis 0 (``bbox_z1 - bbox_z0``)
extent_z/_y/_x              float64 bounding-box size along each axis (units)
mean_intensity              float64 mean image value inside the object (only with ``image``)
std_intensity               float64 population std of the image inside it (only with ``image``)
box_ratio                   float64 ``|M| / |bbox(M)|`` (PropSAM paper §2.6)
convex_ratio                float64 ``|M| / |convex hull(M)|`` (paper §2.6)
inverse_rotational_inertia  float64 ball inertia / object inertia, physical units (paper §2.6)
=========================== ======= =============================================================

Surface area: marching cubes (level 0.5) on the object's mask padded with zeros and smoothed by
a Gaussian of sigma one voxel along each axis, with the smoothed values clamped so that object
voxel centres stay above the level and background centres below it. The mesh therefore has the
same topology as marching cubes on the binary mask (thin parts are kept), but without the
staircase, which alone overestimates the area of a ball by about 9 % (12 % at 2:1 anisotropy).
On voxelised balls and ellipsoids with radii of 10 voxels or more the area is within about 2 %
of the analytic value (tested within 3 % for radii 15-25 voxels, isotropic and anisotropic);
smaller or thinner objects are underestimated (a ball of radius 3 voxels by about 14 %).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .metrics import box_ratio, convex_ratio, inverse_rotational_inertia

logger = logging.getLogger(__name__)

__all__ = ["COLUMN_UNITS", "measure_labels", "validate_spacing", "write_measurements_csv"]

# Unit of each column, "" for dimensionless or voxel-valued columns; "u" is the spacing unit.
COLUMN_UNITS: dict[str, str] = {
    "label": "",
    "voxel_count": "voxels",
    "volume": "u^3",
    "surface_area": "u^2",
    "equivalent_diameter": "u",
    "sphericity": "",
    "centroid_z": "voxels",
    "centroid_y": "voxels",
    "centroid_x": "voxels",
    "bbox_z0": "voxels",
    "bbox_y0": "voxels",
    "bbox_x0": "voxels",
    "bbox_z1": "voxels",
    "bbox_y1": "voxels",
    "bbox_x1": "voxels",
    "n_slices": "slices",
    "extent_z": "u",
    "extent_y": "u",
    "extent_x": "u",
    "mean_intensity": "image",
    "std_intensity": "image",
    "box_ratio": "",
    "convex_ratio": "",
    "inverse_rotational_inertia": "",
}
_INT_COLUMNS = frozenset(
    {"label", "voxel_count", "n_slices"} | {f"bbox_{a}{e}" for a in "zyx" for e in "01"}
)
_INTENSITY_COLUMNS = ("mean_intensity", "std_intensity")

# Lazy inputs are scanned in blocks of whole chunks of about this many voxels.
_BLOCK_VOXELS = 1 << 24
# Above this label id, a block is relabelled to 1..n before find_objects, whose output list
# has one entry per id up to the maximum.
_MAX_DIRECT_ID = 1 << 20
# Gaussian sigma (voxels) and clamp margin used before marching cubes; see the module docstring.
_SMOOTH_SIGMA = 1.0
_CLAMP = 0.05
_PAD = 4  # zero padding (voxels) around an object so the smoothed field is closed


def validate_spacing(spacing: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """Check a ``(z, y, x)`` voxel size and return it as a float64 array of shape ``(3,)``.

    Args:
        spacing: Three positive finite numbers in ZYX order, or None for ``(1, 1, 1)``.

    Raises:
        ValueError: wrong number of values, or a value that is not finite and positive.
    """
    if spacing is None:
        return np.ones(3)
    try:
        sp = np.asarray(spacing, dtype=float).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"spacing must be three numbers (z, y, x), got {spacing!r}") from err
    if sp.shape != (3,):
        raise ValueError(
            f"spacing must have 3 values (z, y, x), got {sp.size}: {list(np.ravel(spacing))!r}"
        )
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing values must be finite and > 0, got {sp.tolist()!r}")
    return sp


# --------------------------------------------------------------------------- bounding boxes


def _block_objects(block: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """Bounding boxes (block coordinates) of every non-zero id in one integer block."""
    if block.dtype == bool:
        block = block.view(np.uint8)
    if not np.issubdtype(block.dtype, np.integer):
        raise ValueError(f"labels must have an integer (or bool) dtype, got {block.dtype}")
    if block.size == 0:
        return {}
    hi = int(block.max())
    if hi == 0:
        return {}
    if int(block.min()) < 0:
        raise ValueError("labels must be non-negative (0 = background)")
    if hi <= _MAX_DIRECT_ID:
        # Every integer dtype is accepted as is; no copy of an in-memory volume.
        slices = ndimage.find_objects(block, max_label=hi)
        return {i + 1: s for i, s in enumerate(slices) if s is not None}
    ids = np.unique(block)
    ids = ids[ids != 0]
    compact = np.zeros(block.shape, np.int32)
    fg = block != 0
    compact[fg] = np.searchsorted(ids, block[fg]) + 1
    slices = ndimage.find_objects(compact, max_label=len(ids))
    return {int(ids[i]): s for i, s in enumerate(slices) if s is not None}


def _block_shape(labels: Any) -> tuple[int, ...]:
    """Chunk-aligned block shape of about ``_BLOCK_VOXELS`` voxels for scanning ``labels``."""
    chunks = getattr(labels, "chunksize", None)  # dask
    if chunks is None:
        chunks = getattr(labels, "chunks", None)  # zarr
        if chunks is not None and chunks and isinstance(chunks[0], tuple):
            chunks = tuple(max(c) for c in chunks)
    if chunks is None:
        # Memory-mapped or other array-likes: whole planes, so reads stay contiguous.
        chunks = (1, *labels.shape[1:])
    block = [max(1, int(c)) for c in chunks]
    # Grow whole-chunk multiples, last axis first, while the block stays under the budget.
    for ax in range(len(block) - 1, -1, -1):
        while block[ax] < labels.shape[ax] and math.prod(block) * 2 <= _BLOCK_VOXELS:
            block[ax] = min(labels.shape[ax], block[ax] * 2)
    return tuple(block)


def _find_boxes(labels: Any) -> dict[int, tuple[slice, ...]]:
    """Bounding box of every non-zero id of a ``(Z, Y, X)`` array (numpy or lazy)."""
    if isinstance(labels, np.ndarray) and not isinstance(labels, np.memmap):
        return _block_objects(labels)
    block = _block_shape(labels)
    lo: dict[int, np.ndarray] = {}
    hi: dict[int, np.ndarray] = {}
    n_blocks = 0
    for z in range(0, labels.shape[0], block[0]):
        for y in range(0, labels.shape[1], block[1]):
            for x in range(0, labels.shape[2], block[2]):
                origin = np.array([z, y, x])
                window = tuple(
                    slice(o, min(o + b, n))
                    for o, b, n in zip(origin, block, labels.shape, strict=True)
                )
                n_blocks += 1
                for lab, sl in _block_objects(np.asarray(labels[window])).items():
                    start = origin + [s.start for s in sl]
                    stop = origin + [s.stop for s in sl]
                    if lab in lo:
                        lo[lab] = np.minimum(lo[lab], start)
                        hi[lab] = np.maximum(hi[lab], stop)
                    else:
                        lo[lab], hi[lab] = start, stop
    logger.debug("scanned %d blocks of %s for bounding boxes", n_blocks, block)
    return {
        lab: tuple(slice(int(a), int(b)) for a, b in zip(lo[lab], hi[lab], strict=True))
        for lab in sorted(lo)
    }


# --------------------------------------------------------------------------- one object


def surface_area(mask: np.ndarray, spacing: Sequence[float] | np.ndarray | None = None) -> float:
    """Boundary area of a 3D mask by smoothed marching cubes (see the module docstring).

    Args:
        mask: ``(Z, Y, X)`` bool mask of one object (cropping it to its bounding box is
            enough; it is zero-padded here so the surface is closed).
        spacing: Voxel size ``(z, y, x)``, None for 1.

    Returns:
        Area in spacing units squared; 0.0 for an empty mask.
    """
    from skimage.measure import marching_cubes, mesh_surface_area

    sp = validate_spacing(spacing)
    m = np.pad(np.asarray(mask, dtype=bool), _PAD)
    if not m.any():
        return 0.0
    field = ndimage.gaussian_filter(m.astype(np.float32), _SMOOTH_SIGMA, mode="constant")
    # The clamp keeps the binary classification of every voxel centre, so smoothing moves
    # vertices along their edges but can neither erase thin parts nor close small holes.
    field = np.where(m, np.maximum(field, 0.5 + _CLAMP), np.minimum(field, 0.5 - _CLAMP))
    verts, faces, _, _ = marching_cubes(field, level=0.5, spacing=tuple(sp))
    return float(mesh_surface_area(verts, faces))


def _measure_one(
    obj: np.ndarray,
    origin: tuple[int, int, int],
    sp: np.ndarray,
    pixels: np.ndarray | None,
) -> dict[str, float]:
    """Every column for one object cropped to its bounding box (``obj`` bool ZYX)."""
    n = int(np.count_nonzero(obj))
    volume = n * float(np.prod(sp))
    area = surface_area(obj, sp)
    coords = np.nonzero(obj)
    row: dict[str, float] = {
        "voxel_count": n,
        "volume": volume,
        "surface_area": area,
        "equivalent_diameter": (6.0 * volume / math.pi) ** (1.0 / 3.0),
        "sphericity": (
            math.pi ** (1.0 / 3.0) * (6.0 * volume) ** (2.0 / 3.0) / area if area > 0 else math.nan
        ),
    }
    for ax, name in enumerate("zyx"):
        row[f"centroid_{name}"] = origin[ax] + float(coords[ax].mean())
    for ax, name in enumerate("zyx"):
        row[f"bbox_{name}0"] = origin[ax]
        row[f"bbox_{name}1"] = origin[ax] + obj.shape[ax]
    row["n_slices"] = obj.shape[0]
    for ax, name in enumerate("zyx"):
        row[f"extent_{name}"] = obj.shape[ax] * float(sp[ax])
    if pixels is not None:
        values = pixels[obj].astype(np.float64)
        row["mean_intensity"] = float(values.mean())
        row["std_intensity"] = float(values.std())
    row["box_ratio"] = box_ratio(obj)
    row["convex_ratio"] = convex_ratio(obj)
    row["inverse_rotational_inertia"] = inverse_rotational_inertia(obj, sp)
    return row


# --------------------------------------------------------------------------- public


def measure_labels(
    labels: Any,
    image: Any | None = None,
    spacing: Sequence[float] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Measure every object of a label volume; one row per non-zero id, sorted by id.

    Args:
        labels: ``(Z, Y, X)`` integer (or bool) array, 0 = background; numpy, zarr, dask or
            any array-like with ``shape`` and numpy slicing. Lazy inputs are scanned one
            chunk-aligned block at a time and then read object by object.
        image: Optional ``(Z, Y, X)`` intensity array of the same shape (any real dtype, numpy
            or lazy); adds ``mean_intensity`` and ``std_intensity``.
        spacing: Physical voxel size ``(z, y, x)``; None means ``(1, 1, 1)``.

    Returns:
        Ordered dict ``column -> 1D numpy array`` (int64 or float64, one entry per object); the
        first column is ``label``. See the module docstring and :data:`COLUMN_UNITS` for the
        columns. An empty volume gives columns of length 0.

    Raises:
        ValueError: ``labels`` not 3D, not integer or negative; ``image`` of another shape;
            bad ``spacing``.
    """
    sp = validate_spacing(spacing)
    shape = tuple(int(s) for s in labels.shape)
    if len(shape) != 3:
        raise ValueError(f"labels must be 3D (Z, Y, X), got shape {shape}")
    if image is not None and tuple(int(s) for s in image.shape) != shape:
        raise ValueError(f"image shape {tuple(image.shape)} differs from labels shape {shape}")
    boxes = _find_boxes(labels)
    logger.info("measuring %d objects", len(boxes))
    names = [c for c in COLUMN_UNITS if image is not None or c not in _INTENSITY_COLUMNS]
    rows: list[dict[str, float]] = []
    for lab, box in boxes.items():
        crop = np.asarray(labels[box])
        obj = crop == lab  # other ids may share the bounding box
        pixels = None if image is None else np.asarray(image[box])
        origin = (box[0].start, box[1].start, box[2].start)
        row = _measure_one(obj, origin, sp, pixels)
        row["label"] = lab
        rows.append(row)
    return {
        name: np.array(
            [r[name] for r in rows], dtype=np.int64 if name in _INT_COLUMNS else np.float64
        )
        for name in names
    }


def write_measurements_csv(table: dict[str, np.ndarray], path: str | Path) -> None:
    """Write a measurement table (``column -> 1D array``) as CSV, one row per object.

    The header is the column names in the table's order; integers are written as integers,
    floats with full (repr) precision, NaN as ``nan``. The file is written to a temporary name
    and renamed, so a reader never sees a half-written file.

    Args:
        table: As returned by :func:`measure_labels` (or any dict of equal-length 1D arrays).
        path: Output ``.csv`` path.

    Raises:
        ValueError: columns of different lengths.
    """
    path = Path(path)
    columns = {k: np.asarray(v) for k, v in table.items()}
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(
            f"columns have different lengths: { {k: len(v) for k, v in columns.items()} }"
        )
    n = lengths.pop() if lengths else 0
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(columns))
        for i in range(n):
            writer.writerow([v[i].item() for v in columns.values()])
    tmp.replace(path)
    logger.info("wrote %d rows to %s", n, path)
