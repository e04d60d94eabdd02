"""Classical one-slice baseline: scikit-image's random walker seeded from the prompt slice.

This is what a user without a learned model would reach for: a box or mask on one slice, a
3D region of interest around it, seeds from the prompt, and ``skimage.segmentation.random_walker``
to fill in the other slices. The benchmark compares PropSAM against it.

Runtime note: the walker's conjugate-gradient solver spends its time in BLAS vector operations;
on a machine whose cores are busy, a multi-threaded OpenBLAS can make it 10x slower than one
thread (set ``OPENBLAS_NUM_THREADS=1`` for benchmark runs on shared machines).
"""

from __future__ import annotations

import logging
import math
import operator
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.segmentation import random_walker

from ..prompt_checks import normalize_box, prepare_mask
from ..transforms import mask_bbox

logger = logging.getLogger(__name__)

__all__ = ["random_walker_from_slice"]

_FG, _BG = 1, 2
# Above this many ROI voxels the random walker takes minutes and gigabytes; we only warn,
# because the caller may know their machine.
_LARGE_ROI = 8_000_000


def _box_seed(plane: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Foreground seeds inside a box prompt on the prompt slice.

    The object is assumed to fill the box around its centre. Seeds are the pixels of the central
    ellipse (semi-axes 30% of the box half-sizes) whose intensity is within 2.5 robust standard
    deviations of the median of a smaller core ellipse (semi-axes 15%), connected to the pixel
    closest to that median. The intensity test keeps background that shows through the centre
    (ring-shaped or off-centre objects) from being seeded as object; the centre pixel itself is
    always kept so that there is at least one seed.

    Args:
        plane: ``(h, w)`` float ROI plane, normalised to ``[0, 1]``.
        box: ``(row0, col0, row1, col1)`` in ``plane`` coordinates, half-open.

    Returns:
        ``(h, w)`` bool seed mask (inside the box).
    """
    r0, c0, r1, c1 = box
    rows, cols = np.ogrid[: plane.shape[0], : plane.shape[1]]
    cr, cc = (r0 + r1 - 1) / 2.0, (c0 + c1 - 1) / 2.0
    hr, hc = max((r1 - r0) / 2.0, 0.5), max((c1 - c0) / 2.0, 0.5)
    rho2 = ((rows - cr) / hr) ** 2 + ((cols - cc) / hc) ** 2
    centre = (int(round(cr)), int(round(cc)))
    core = rho2 <= 0.15**2
    core[centre] = True
    region = rho2 <= 0.30**2
    region[centre] = True
    vals = plane[core]
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med)))
    # 1.4826 * MAD estimates the standard deviation; the floor keeps a flat object from
    # collapsing to pixels that equal the median exactly.
    tol = max(2.5 * 1.4826 * mad, 0.05)
    cand = region & (np.abs(plane - med) <= tol)
    lab, _ = ndimage.label(cand)
    # Start from the core pixel closest to the median so a noisy centre pixel does not
    # disconnect the seed.
    core_idx = np.argwhere(core & cand)
    if core_idx.size:
        best = core_idx[np.argmin(np.abs(plane[tuple(core_idx.T)] - med))]
        seed = lab == lab[tuple(best)]
    else:
        seed = np.zeros_like(cand)
    seed[centre] = True
    return seed


def _box_to_mask(plane: np.ndarray, box: tuple[int, int, int, int], beta: float) -> np.ndarray:
    """2D random walker on the prompt slice: box prompt -> object mask.

    Args:
        plane: ``(h, w)`` float ROI plane in ``[0, 1]``.
        box: ``(row0, col0, row1, col1)`` in ``plane`` coordinates, half-open.
        beta: Random-walker edge penalty.

    Returns:
        ``(h, w)`` bool mask inside the box: the walker's foreground connected to the seed,
        holes filled.
    """
    r0, c0, r1, c1 = box
    seed = _box_seed(plane, box)
    lab = np.full(plane.shape, _BG, dtype=np.int32)
    lab[r0:r1, c0:c1] = 0
    lab[seed] = _FG
    if (lab == 0).any():
        seg = random_walker(plane, lab, beta=beta, mode="cg_j", tol=1e-4, copy=False) == _FG
    else:
        seg = lab == _FG
    comp, _ = ndimage.label(seg)
    keep = np.unique(comp[seed])
    return ndimage.binary_fill_holes(np.isin(comp, keep[keep > 0]))


def _check_args(
    image: Any,
    slice_index: int,
    axis: int,
    mask: np.ndarray | None,
    box: Sequence[float] | None,
    margin: float,
    max_extent: int | None,
) -> tuple[tuple[int, int, int], int, int]:
    """Validated ``(shape, axis, slice index)`` of :func:`random_walker_from_slice`."""
    shape = tuple(int(s) for s in image.shape)
    if len(shape) != 3:
        raise ValueError(f"image must be 3D (Z, Y, X), got shape {shape}")
    axis = operator.index(axis)
    if not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    axis %= 3
    depth = shape[axis]
    idx = operator.index(slice_index)
    if not -depth <= idx < depth:
        raise ValueError(f"slice_index {slice_index} out of range for axis {axis} of size {depth}")
    idx %= depth
    if (mask is None) == (box is None):
        raise ValueError("give exactly one of mask or box")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be >= 0, got {margin}")
    if max_extent is not None and operator.index(max_extent) < 0:
        raise ValueError(f"max_extent must be >= 0, got {max_extent}")
    return shape, axis, idx  # type: ignore[return-value]


def _walk_3d(data: np.ndarray, k: int, plane_lab: np.ndarray, beta: float) -> np.ndarray:
    """3D random walker on the ``(n, h, w)`` ROI seeded by slice ``k`` and the ROI's faces.

    Returns:
        ``(n, h, w)`` bool: the object pieces connected to a foreground seed.
    """
    labels = np.zeros(data.shape, dtype=np.int32)
    for ax in range(3):
        first = [slice(None)] * 3
        last = [slice(None)] * 3
        first[ax], last[ax] = 0, -1
        labels[tuple(first)] = _BG
        labels[tuple(last)] = _BG
    # The prompt slice is the only place we know the answer: it overrides the face seeds.
    labels[k] = plane_lab
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # With the CG solver's tolerance, probabilities overshoot [0, 1] by a little on most
        # inputs; only the arg-max is used, so skimage's warning about it is noise here.
        warnings.filterwarnings("ignore", message="The probability range is outside")
        seg = random_walker(data, labels, beta=beta, mode="cg_j", tol=1e-3, copy=False)
    logger.debug("random walker on ROI %s took %.2f s", data.shape, time.perf_counter() - t0)
    fg = seg == _FG
    # Keep only object pieces connected to a foreground seed; stray walker regions elsewhere
    # in the ROI are not what the prompt pointed at.
    comp, n_comp = ndimage.label(fg)
    if n_comp > 1:
        keep = np.unique(comp[k][plane_lab == _FG])
        fg = np.isin(comp, keep[keep > 0])
    return fg


def _roi(
    plane_shape: tuple[int, int],
    depth: int,
    idx: int,
    mask: np.ndarray | None,
    box: Sequence[float] | None,
    margin: float,
    max_extent: int | None,
) -> tuple[np.ndarray | None, tuple[int, int, int, int], tuple[int, int, int, int, int, int]]:
    """The prompt (a filled mask, or None for a box), its box ``(row0, col0, row1, col1)`` and
    the ROI ``(row0, row1, col0, col1, slice0, slice1)``: the box enlarged by ``margin`` per
    side (at least 2 px) and ``max_extent`` slices on each side of ``idx``, clipped."""
    if mask is not None:
        prompt = prepare_mask(mask, plane_shape)
        pr0, pc0, last_r, last_c = mask_bbox(prompt)  # inclusive; prepare_mask refuses empty
        pr1, pc1 = last_r + 1, last_c + 1
    else:
        prompt = None
        pr0, pc0, pr1, pc1 = normalize_box(box, plane_shape)
    h, w = pr1 - pr0, pc1 - pc0
    mr = max(2, math.ceil(margin * h))
    mc = max(2, math.ceil(margin * w))
    r0, r1 = max(0, pr0 - mr), min(plane_shape[0], pr1 + mr)
    c0, c1 = max(0, pc0 - mc), min(plane_shape[1], pc1 + mc)
    ext = max(h, w) if max_extent is None else int(max_extent)
    a0, a1 = max(0, idx - ext), min(depth, idx + ext + 1)
    return prompt, (pr0, pc0, pr1, pc1), (r0, r1, c0, c1, a0, a1)


def _read_roi(image: Any, roi: tuple[slice, slice, slice], axis: int) -> np.ndarray:
    """The ROI as float64 ``(n, h, w)`` with ``axis`` first; NaN/Inf become the ROI median."""
    # Basic indexing reads only the ROI chunks from zarr/dask; np.asarray then materialises it.
    data = np.asarray(image[roi])
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"image must have a real numeric dtype, got {data.dtype}")
    # Work in (axis, rows, cols) order; moveaxis keeps the remaining axes in order.
    data = np.moveaxis(data, axis, 0).astype(np.float64)
    if data.size > _LARGE_ROI:
        logger.warning("random walker ROI of %d voxels %s may be slow", data.size, data.shape)
    finite = np.isfinite(data)
    if not finite.all():
        # NaN would poison the whole linear system; treat missing data as the ROI median.
        data[~finite] = np.median(data[finite]) if finite.any() else 0.0
    return data


def random_walker_from_slice(
    image: np.ndarray,
    *,
    slice_index: int,
    axis: int = 0,
    mask: np.ndarray | None = None,
    box: Sequence[float] | None = None,
    margin: float = 0.25,
    max_extent: int | None = None,
    beta: float = 130.0,
) -> np.ndarray:
    """Segment a 3D object with a random walker seeded from one prompted slice.

    Region of interest (ROI): in-plane, the prompt's bounding box enlarged by ``margin`` times
    its size on each side (at least 2 pixels, so there is a background ring); along ``axis``,
    ``slice_index +/- max_extent`` slices. Both are clipped to the volume. Only the ROI is read
    from ``image``, so a zarr or dask array is never loaded in full.

    Seeds (labels for ``skimage.segmentation.random_walker``):

    * background: all six faces of the ROI box, and the prompt-slice pixels outside the prompt
      (outside the mask, or outside the box);
    * foreground: the prompt mask. A box is first turned into a mask on the prompt slice by a
      2D random walker (foreground seed: the central part of the box whose intensity matches
      the box centre, see :func:`_box_seed`; background: outside the box), like PropSAM's
      Box2Mask step; that mask then seeds the 3D walker. Seeding the 3D walker with the small
      central seed directly undersegments badly on noisy data (DSC ~0.2 on a noisy sphere
      instead of ~0.98), because the object's whole surface leaks to the background seeds.

    Every pixel of the prompt slice is thus labelled (object or background).

    Prompt-slice seeds take precedence over face seeds, so a prompt touching the ROI border
    (object cut by the field of view) keeps its foreground. Intensities are clipped to the
    0.5/99.5 percentiles of the ROI and scaled to ``[0, 1]``; the walker runs with the
    Jacobi-preconditioned conjugate gradient (``mode="cg_j"``), which needs no extra package
    and is much faster and lighter than the direct solver on 3D ROIs. Finally only the
    foreground components that touch a foreground seed are kept.

    Args:
        image: ``(Z, Y, X)`` volume, any real dtype (numpy, zarr or dask array). Not modified.
        slice_index: Index of the prompt slice along ``axis`` (negative counts from the end).
        axis: Axis the prompt slice is taken across (0, 1 or 2).
        mask: ``(H, W)`` prompt mask on that slice, ``H, W`` being the two remaining axes in
            order; non-zero = object (holes are filled). Exclusive with ``box``.
        box: ``(row0, col0, row1, col1)`` on that slice, half-open, rows/cols of the remaining
            axes; floats and any corner order are accepted (see
            :func:`napari_propsam.prompt_checks.normalize_box`).
        margin: In-plane ROI enlargement per side, as a fraction of the prompt's bbox size.
        max_extent: Half-depth of the ROI along ``axis`` in slices; default the larger side of
            the prompt's in-plane bbox (assumes a roughly isotropic object).
        beta: Random-walker edge penalty (skimage scales it by the data's standard deviation).

    Returns:
        ``image.shape`` bool array, True inside the segmented object.

    Raises:
        ValueError: not a 3D image, bad axis/slice index, neither or both of mask/box, a box
            outside the slice, an empty or wrongly shaped mask, bad ``margin``/``max_extent``.
    """
    shape, axis, idx = _check_args(image, slice_index, axis, mask, box, margin, max_extent)
    plane_axes = tuple(a for a in range(3) if a != axis)
    plane_shape = (shape[plane_axes[0]], shape[plane_axes[1]])
    prompt, (pr0, pc0, pr1, pc1), (r0, r1, c0, c1, a0, a1) = _roi(
        plane_shape, shape[axis], idx, mask, box, margin, max_extent
    )
    roi: list[slice] = [slice(None)] * 3
    roi[axis], roi[plane_axes[0]], roi[plane_axes[1]] = slice(a0, a1), slice(r0, r1), slice(c0, c1)
    data = _read_roi(image, tuple(roi), axis)
    crop = None if prompt is None else prompt[r0:r1, c0:c1]
    box_roi = (pr0 - r0, pc0 - c0, pr1 - r0, pc1 - c0)  # prompt bbox in ROI-plane coords
    fg = _segment_roi(data, idx - a0, crop, box_roi, beta)
    out = np.zeros(shape, dtype=bool)
    out[tuple(roi)] = np.moveaxis(fg, 0, axis)
    return out


def _segment_roi(
    data: np.ndarray,
    k: int,
    crop: np.ndarray | None,
    box_roi: tuple[int, int, int, int],
    beta: float,
) -> np.ndarray:
    """The object in the ``(n, h, w)`` ROI prompted on its slice ``k``.

    Args:
        data: The ROI, float64, the prompt axis first.
        k: Prompt slice within the ROI.
        crop: ``(h, w)`` prompt mask cropped to the ROI plane, or None for a box prompt.
        box_roi: The prompt's ``(row0, col0, row1, col1)`` in ROI-plane coordinates.
        beta: Random-walker edge penalty.

    Returns:
        ``(n, h, w)`` bool.
    """
    lo, hi = np.percentile(data, (0.5, 99.5))
    if hi <= lo:
        # A flat ROI has no edges to follow (and skimage would divide by a zero std): return
        # the prompt itself on the prompt slice.
        logger.warning("ROI intensities are constant; returning the prompt slice only")
        fg = np.zeros(data.shape, dtype=bool)
        if crop is not None:
            fg[k] = crop
        else:
            fg[k, box_roi[0] : box_roi[2], box_roi[1] : box_roi[3]] = True
        return fg
    data = np.clip((data - lo) / (hi - lo), 0.0, 1.0)
    # A box becomes a mask on the prompt slice first (2D walker): seeding the 3D walker with
    # only a box's small central seed loses the object through its noisy 3D surface.
    fg_plane = crop if crop is not None else _box_to_mask(data[k], box_roi, beta)
    return _walk_3d(data, k, np.where(fg_plane, _FG, _BG).astype(np.int32), beta)
