"""Pre- and post-processing of PropSAM exactly as the authors' released 3D procedure does it.

See ``docs/method.md`` for the procedure step by step. All arrays here are 2D slice planes
``(rows, cols)`` or stacks of them ``(N, rows, cols)``. Images are resized with OpenCV, the
library of the released code, so that every pixel fed to the network is the authors' pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .config import INTENSITY_MODES, PropagationConfig

# The released code adds this to the per-slice range before dividing (its ``normalize``).
_EPS = np.float32(1e-8)


@dataclass(frozen=True)
class Window:
    """A square crop window in a slice plane.

    ``row0, col0`` is the top-left pixel (may be 0-clamped), ``size`` the side of the square crop.
    The part of the window inside the image is ``[row0, min(row0 + size, H))`` x
    ``[col0, min(col0 + size, W))``; the rest is zero padding at the bottom/right.
    """

    row0: int
    col0: int
    size: int

    def clipped(self, plane_shape: tuple[int, int]) -> tuple[slice, slice]:
        """Row and column slices of the window's part inside a plane of ``plane_shape``."""
        h, w = plane_shape
        # A window that starts past the edge has an empty inside part, never a negative one.
        r0, c0 = min(self.row0, h), min(self.col0, w)
        return (
            slice(r0, max(r0, min(self.row0 + self.size, h))),
            slice(c0, max(c0, min(self.col0 + self.size, w))),
        )


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive bounding box ``(row_min, col_min, row_max, col_max)`` of a 2D mask, or None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def crop_window(
    mask: np.ndarray, ratio: float = 1.5, min_size: int = 16, offset: tuple[int, int] = (0, 0)
) -> Window:
    """Square crop around a 2D guiding mask, as the released ``center_crop`` computes it.

    The box extent is max index minus min index (``h = y2 - y1``, not ``+ 1``); the side is
    ``s = max(int(ratio * max(h, w)), min_size)``, centred on ``int((y1 + y2) / 2)``, with the
    top-left clamped at 0 (the part past the bottom/right edge is zero padding).

    Args:
        mask: ``(H, W)`` guiding mask; any value > 0 counts, not empty.
        ratio: Crop side relative to the larger box extent.
        min_size: Smallest side.
        offset: ``(row, col)`` of ``mask[0, 0]`` in the slice plane, when ``mask`` is a tile.

    Raises:
        ValueError: the mask is empty.
    """
    box = mask_bbox(np.asarray(mask) > 0)
    if box is None:
        raise ValueError("cannot crop around an empty mask")
    r0, c0, r1, c1 = box
    r0, r1, c0, c1 = r0 + offset[0], r1 + offset[0], c0 + offset[1], c1 + offset[1]
    size = max(int(ratio * max(r1 - r0, c1 - c0)), int(min_size))
    # int((a + b) / 2.0) of non-negative integers is floor division.
    cr, cc = (r0 + r1) // 2, (c0 + c1) // 2
    return Window(max(0, cr - size // 2), max(0, cc - size // 2), size)


def intensity_window(
    values: np.ndarray, mode: str = "percentile", lower: float = 0.5, upper: float = 99.5
) -> tuple[float, float]:
    """Clipping bounds ``(lo, hi)`` from the prompt's foreground intensities (released code).

    ``a, b`` are the ``lower``/``upper`` percentiles of ``values`` taken in float32 (the
    released code reads volumes as float32). ``"percentile"`` clips to ``[a, b]``;
    ``"ct-window"`` (the notebook's ``MODALITY="CT"``) makes an integer window
    ``c = int((a + b) / 2)``, ``w = int(b - a)`` and clips to ``[c - w // 2, c + w // 2]``.

    Args:
        values: Intensities of the prompt pixels on the prompt slice (any shape, real dtype).
        mode: One of :data:`INTENSITY_MODES`.
        lower: Lower percentile.
        upper: Upper percentile.

    Returns:
        ``(lo, hi)`` as float32-representable floats, ``lo < hi``.

    Raises:
        ValueError: unknown mode, no values, non-finite values, or a window of zero width.
    """
    if mode not in INTENSITY_MODES:
        raise ValueError(f"intensity must be one of {list(INTENSITY_MODES)}, got {mode!r}")
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size == 0:
        raise ValueError("no pixels to normalise from (empty prompt)")
    if not np.all(np.isfinite(values)):
        raise ValueError("image contains NaN or Inf values inside the prompt; clean them first")
    a, b = np.percentile(values, lower), np.percentile(values, upper)
    if mode == "ct-window":
        center, width = int((a + b) / 2.0), int(b - a)
        lo, hi = float(center - width // 2), float(center + width // 2)
        if not hi > lo:
            raise ValueError(
                f"the ct-window intensity window is empty: the prompt's intensities span "
                f"{float(b - a):g} (< 2 grey levels); ct-window is for CT in Hounsfield units, "
                "use intensity='percentile' for this image"
            )
        return lo, hi
    if not b > a:
        if values.size < 2:
            raise ValueError(
                f"the prompt is too small ({values.size} px) to take an intensity window "
                "from; paint or draw a larger prompt"
            )
        raise ValueError(
            f"normalisation range is zero: intensities under the prompt are constant ({a}); "
            "the object cannot be told apart from itself"
        )
    return float(a), float(b)


def percentile_range(
    values: np.ndarray, lower: float = 0.5, upper: float = 99.5
) -> tuple[float, float]:
    """``intensity_window(values, "percentile", lower, upper)``: percentiles of ``values``."""
    return intensity_window(values, "percentile", lower, upper)


def clipped_extremes(
    block: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice min and max of ``clip(block, lo, hi)`` where a window already decides them.

    A window that holds a value ``<= lo`` fixes its whole slice's clipped minimum to ``lo``
    (clipping bounds every value), and likewise for the maximum. A window whose values all clip
    to ``lo`` scales to 0 whatever the slice's maximum, so it needs no more either (the common
    case past a bright object's ends). Only the remaining slices need reading beyond the window.

    Args:
        block: ``(N, h, w)`` float32 raw intensities of a window of ``N`` slices.
        lo: Lower clipping bound.
        hi: Upper clipping bound.

    Returns:
        ``(mins, maxs, decided)``: ``(N,)`` float32 clipped extremes of the window, and ``(N,)``
        bool, True where scaling the window with them gives the whole slice's result for
        certain.
    """
    flat = block.reshape(len(block), -1)
    mins = np.clip(flat.min(axis=1), np.float32(lo), np.float32(hi))
    maxs = np.clip(flat.max(axis=1), np.float32(lo), np.float32(hi))
    at_lo = mins <= np.float32(lo)
    decided = at_lo & ((maxs >= np.float32(hi)) | (maxs <= np.float32(lo)))
    return mins.astype(np.float32), maxs.astype(np.float32), decided


def slices_to_uint8(
    block: np.ndarray,
    lo: float,
    hi: float,
    mins: np.ndarray | None = None,
    maxs: np.ndarray | None = None,
) -> np.ndarray:
    """Clip to ``[lo, hi]``, then min-max scale each slice by its own range to uint8.

    This is the released ``normalize(window_transform(slice))``: ``(x - min) / (max - min +
    1e-8) * 255`` in float32, truncated by ``astype(uint8)``; ``min``/``max`` are those of the
    *whole* clipped slice, so pass them when ``block`` is only a window of each slice.

    Args:
        block: ``(N, h, w)`` raw intensities (any real dtype; used as float32).
        lo: Lower clipping bound.
        hi: Upper clipping bound.
        mins: ``(N,)`` clipped minimum of each whole slice (None: the block's own).
        maxs: ``(N,)`` clipped maximum of each whole slice (None: the block's own).

    Returns:
        ``(N, h, w)`` uint8.
    """
    x = np.clip(np.asarray(block, dtype=np.float32), np.float32(lo), np.float32(hi))
    flat = x.reshape(len(x), -1)
    mn = flat.min(axis=1) if mins is None else np.asarray(mins, np.float32)
    mx = flat.max(axis=1) if maxs is None else np.asarray(maxs, np.float32)
    denom = (mx - mn).astype(np.float32) + _EPS
    out = (x - mn[:, None, None]) / denom[:, None, None] * np.float32(255.0)
    return out.astype(np.uint8)


def to_uint8_range(image: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Deprecated: one global ``(vmin, vmax)`` scaling; the procedure uses :func:`slices_to_uint8`.

    Kept for one release for scripts that imported it. Returns float32 integer values.
    """
    x = (np.clip(image.astype(np.float32), vmin, vmax) - vmin) / (vmax - vmin) * 255.0
    return np.floor(x).astype(np.float32)


def crop_planes(planes: np.ndarray, window: Window) -> np.ndarray:
    """Cut ``window`` out of ``(N, H, W)`` planes, zero-padding past the bottom/right edge.

    Returns:
        ``(N, size, size)`` array of the planes' dtype.
    """
    n, h, w = planes.shape
    rs, cs = window.clipped((h, w))
    out = np.zeros((n, window.size, window.size), planes.dtype)
    out[:, : rs.stop - rs.start, : cs.stop - cs.start] = planes[:, rs, cs]
    return out


def pad_to_window(block: np.ndarray, window: Window) -> np.ndarray:
    """Zero-pad an ``(N, h, w)`` block read from the window's in-image part to the full square.

    Returns:
        ``(N, size, size)`` array of the block's dtype.
    """
    n, h, w = block.shape
    out = np.zeros((n, window.size, window.size), block.dtype)
    out[:, :h, :w] = block
    return out


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """OpenCV bilinear resize of ``(N, s, s)`` uint8 images to ``(N, size, size)`` uint8.

    The released code resizes the uint8 crop (albumentations ``A.Resize``, i.e.
    ``cv2.INTER_LINEAR``), so the network sees OpenCV's fixed-point rounding.
    """
    images = np.asarray(images, dtype=np.uint8)
    if images.shape[-2:] == (size, size):
        return images.copy()
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_LINEAR) for im in images])


def resize_nearest_np(masks: np.ndarray, shape: int | tuple[int, int]) -> np.ndarray:
    """OpenCV ``INTER_NEAREST`` resize of ``(N, h, w)`` masks to ``shape``; returns bool.

    OpenCV takes source pixel ``floor(x * (1 / (dst / src)))``, computed in double; torch's
    ``nearest`` computes the scale in float and picks different rows for some sizes.
    """
    rows, cols = (shape, shape) if isinstance(shape, int) else shape
    masks = np.asarray(masks, dtype=np.uint8)
    if masks.shape[-2:] == (rows, cols):
        return masks.astype(bool)
    out = [cv2.resize(m, (cols, rows), interpolation=cv2.INTER_NEAREST) for m in masks]
    return np.stack(out).astype(bool)


def scale_to_unit(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """0..255 -> [-1, 1] as albumentations' ``Normalize(mean=0.5, std=0.5)`` computes it.

    ``(x - 127.5) * float32(1 / 127.5)`` in float32: equal to ``(x / 255 - 0.5) / 0.5`` up to the
    last bit, and that last bit can flip a near-tie of a network's argmax.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    x = x.to(torch.float32)
    return (x - 127.5) * torch.tensor(np.float32(1.0 / 127.5), device=x.device)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float bilinear resize of ``(N, s, s)`` images to ``(N, size, size)`` (Box2Mask crops)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def resize_masks(x: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour resize of ``(N, s, s)`` masks, then ``> 0.5`` (float {0, 1})."""
    out = resize_nearest_np((x.detach().cpu().numpy() > 0.5), size)
    return torch.from_numpy(out.astype(np.float32)).to(x.device)


def merge_deep_supervision(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Average deep-supervision logits upsampled to the top resolution (released code).

    Args:
        outputs: list of ``(B, 2, h_i, w_i)`` logits, highest resolution first.

    Returns:
        ``(B, 2, h_0, w_0)`` float32 mean logits (bilinear, ``align_corners=True``).
    """
    size = outputs[0].shape[-2:]
    ups = [outputs[0].float()] + [
        F.interpolate(o.float(), size=size, mode="bilinear", align_corners=True)
        for o in outputs[1:]
    ]
    return torch.mean(torch.stack(ups, dim=0), dim=0)


def resize_nearest(masks: torch.Tensor, size: int | tuple[int, int]) -> np.ndarray:
    """``INTER_NEAREST`` resize of ``(N, S, S)`` label maps back to crop size; returns bool."""
    return resize_nearest_np(masks.detach().cpu().numpy() > 0, size)


@dataclass(frozen=True)
class Guide:
    """A guiding slice prepared for PropMask, from a plane held in memory.

    Attributes:
        window: The crop window around the guiding mask.
        bounds: The intensity window ``(lo, hi)`` taken from the mask's pixels.
        image: ``(size, size)`` uint8 guiding crop, scaled by the plane's own range.
        mask: ``(size, size)`` bool guiding mask.
    """

    window: Window
    bounds: tuple[float, float]
    image: np.ndarray
    mask: np.ndarray


def prepare_guide(plane: np.ndarray, mask: np.ndarray, config: PropagationConfig) -> Guide:
    """Crop, intensity window, per-slice uint8 and padding of one guide (the released steps).

    The propagation engine does the same lazily on volumes (``propagation._Engine``); this is
    the in-memory form that image series and find-similar use.

    Args:
        plane: ``(H, W)`` raw intensities of the guiding image.
        mask: ``(H, W)`` bool guiding mask, not empty.
        config: ``crop_ratio``, ``min_crop``, ``intensity`` and the percentiles.

    Raises:
        ValueError: as :func:`intensity_window` and :func:`crop_window`.
    """
    plane = np.asarray(plane, dtype=np.float32)
    window = crop_window(mask, config.crop_ratio, config.min_crop)
    bounds = intensity_window(
        plane[mask], config.intensity, config.lower_percentile, config.upper_percentile
    )
    image = crop_planes(slices_to_uint8(plane[None], *bounds), window)[0]
    return Guide(window, bounds, image, crop_planes(np.asarray(mask, bool)[None], window)[0])
