"""Training samples for PropMask and Box2Mask (docs/method.md, "Training"), cut from labelled
volumes.

A :class:`LabelledVolume` is any ``(Z, Y, X)`` image with instance labels; synthetic volumes and a
user's own annotated volumes (fine-tuning) both become one. Samplers return torch tensors at the
network input size, already normalised and augmented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..config import PropagationConfig
from ..transforms import (
    crop_planes,
    crop_window,
    intensity_window,
    resize_nearest_np,
    resize_uint8,
    scale_to_unit,
    slices_to_uint8,
)


@dataclass
class LabelledVolume:
    """A training volume.

    Attributes:
        image: ``(Z, Y, X)`` float32 raw intensities.
        labels: ``(Z, Y, X)`` int32 instance labels, 0 = background.
        targets: Label ids to sample objects from.
        spacing: ``(z, y, x)`` voxel size.
        name: For logs.
    """

    image: np.ndarray
    labels: np.ndarray
    targets: tuple[int, ...]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    name: str = ""
    _boxes: dict[int, tuple[slice, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        objs = ndimage.find_objects(self.labels)
        self._boxes = {i + 1: b for i, b in enumerate(objs) if b is not None}
        self.targets = tuple(t for t in self.targets if t in self._boxes)

    def bbox(self, label: int) -> tuple[slice, ...]:
        """3D bounding box of one object."""
        return self._boxes[label]


@dataclass(frozen=True)
class TaskConfig:
    """Sampling and augmentation of training samples.

    Attributes:
        input_size: Network input side.
        n_adjacent: Adjacent slices per PropMask task.
        thickness: Propagation thickness in spacing units (K = thickness / spacing, capped).
        max_neighbours: Cap on K.
        crop_scale: Range of the crop side relative to the guiding box's larger side.
        min_crop: Smallest crop side.
        box_jitter: Range of the Box2Mask box scale (width and height independently).
        perturb_prob: Probability of a slightly wrong guiding mask (eroded, dilated, shifted).
        flip_prob: Probability of each flip.
        rotate_prob: Probability of a rotation up to ``max_rotation`` degrees.
        max_rotation: Largest rotation in degrees.
        intensity_prob: Probability of a brightness/contrast change of up to +-0.2.
        candidate_window_prob: Box2Mask: probability of normalising with an inference-style
            candidate window (crop percentiles) instead of the true foreground's percentiles.
        min_area: Smallest object area (px) on a sampled guide/box slice.
        ct_window_prob: Probability of the ``"ct-window"`` intensity branch instead of
            ``"percentile"``, so the weights serve both.
    """

    input_size: int = 96
    n_adjacent: int = 4
    # The engine's own defaults (declared once, in config.py), so training samples the
    # neighbour count and the crop the way inference will.
    thickness: float = PropagationConfig.thickness
    max_neighbours: int = PropagationConfig.max_neighbours
    crop_scale: tuple[float, float] = (1.0, 2.0)
    min_crop: int = PropagationConfig.min_crop
    box_jitter: tuple[float, float] = (1.0, 1.25)
    perturb_prob: float = 0.5
    flip_prob: float = 0.5
    rotate_prob: float = 0.5
    max_rotation: float = 45.0
    intensity_prob: float = 0.5
    candidate_window_prob: float = 0.5
    min_area: int = 12
    ct_window_prob: float = 0.25


def _plane(vol: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(vol, index, axis=axis)


def _perturb(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slightly wrong guiding mask, as propagation feeds back its own predictions."""
    kind = rng.integers(3)
    r = int(rng.integers(1, 4))
    if kind == 0:
        out = ndimage.binary_erosion(mask, iterations=r)
        return out if out.sum() >= 4 else mask
    if kind == 1:
        return ndimage.binary_dilation(mask, iterations=r)
    dr, dc = rng.integers(-r, r + 1, size=2)
    return np.roll(mask, (int(dr), int(dc)), axis=(0, 1))


def _geometric(x: torch.Tensor, rng: np.random.Generator, cfg: TaskConfig) -> torch.Tensor:
    """Same flips/rotation for all channels of ``(C, S, S)``; rotation fills with zeros."""
    if rng.random() < cfg.flip_prob:
        x = x.flip(-1)
    if rng.random() < cfg.flip_prob:
        x = x.flip(-2)
    if rng.random() < cfg.rotate_prob:
        ang = math.radians(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        theta = torch.tensor(
            [[math.cos(ang), -math.sin(ang), 0.0], [math.sin(ang), math.cos(ang), 0.0]],
            dtype=x.dtype,
        )[None]
        grid = F.affine_grid(theta, (1, *x.shape), align_corners=False)
        x = F.grid_sample(
            x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )[0]
    return x


def _intensity(x: torch.Tensor, rng: np.random.Generator, cfg: TaskConfig) -> torch.Tensor:
    """Brightness/contrast +-0.2 on [-1, 1] images."""
    if rng.random() < cfg.intensity_prob:
        x = x * (1.0 + rng.uniform(-0.2, 0.2)) + rng.uniform(-0.2, 0.2)
    return x


def _resize(x: np.ndarray, size: int, mode: str = "bilinear") -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    if mode == "nearest":
        return F.interpolate(t, size=(size, size), mode="nearest")[:, 0]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def _pick_slice(
    vol: LabelledVolume, label: int, axis: int, rng: np.random.Generator, min_area: int
) -> int | None:
    box = vol.bbox(label)
    sub = vol.labels[box] == label
    areas = sub.sum(axis=tuple(i for i in range(3) if i != axis))
    ok = np.flatnonzero(areas >= min_area)
    if ok.size == 0:
        return None
    return int(box[axis].start + ok[rng.integers(ok.size)])


def sample_propmask_task(
    vol: LabelledVolume, rng: np.random.Generator, cfg: TaskConfig
) -> dict[str, torch.Tensor] | None:
    """One PropMask task: guiding slice + mask, ``n_adjacent`` slices within K, their masks.

    Returns:
        ``guide_x (1, S, S)``, ``guide_m (S, S)``, ``adj_x (n, 1, S, S)``, ``adj_y (n, S, S)``
        float32 tensors, or None if the drawn object has no usable slice.
    """
    if not vol.targets:
        return None
    label = int(vol.targets[rng.integers(len(vol.targets))])
    axis = int(rng.integers(3))
    g = _pick_slice(vol, label, axis, rng, cfg.min_area)
    if g is None:
        return None
    n = vol.labels.shape[axis]
    prop = PropagationConfig(thickness=cfg.thickness, max_neighbours=cfg.max_neighbours)
    k = prop.neighbours(vol.spacing[axis])
    choices = [s for s in range(max(0, g - k), min(n, g + k + 1)) if s != g]
    if not choices:
        return None
    adj = rng.choice(choices, size=cfg.n_adjacent, replace=len(choices) < cfg.n_adjacent)
    gmask = _plane(vol.labels, axis, g) == label
    true_guide = gmask
    if rng.random() < cfg.perturb_prob:
        gmask = _perturb(gmask, rng)
    ratio = rng.uniform(*cfg.crop_scale)
    win = crop_window(gmask, ratio, cfg.min_crop)
    # Jitter the centre a little: the guiding mask is never perfectly centred in practice.
    # Clamped so the window keeps the pixel it was centred on: near the bottom/right edge an
    # unclamped jitter could start the window past the plane (an empty crop).
    jit = int(win.size * 0.1)
    h, w = gmask.shape
    row0 = win.row0 + int(rng.integers(-jit, jit + 1))
    col0 = win.col0 + int(rng.integers(-jit, jit + 1))
    win = type(win)(
        int(np.clip(row0, 0, min(h - 1, win.row0 + win.size // 2))),
        int(np.clip(col0, 0, min(w - 1, win.col0 + win.size // 2))),
        win.size,
    )
    mode = "ct-window" if rng.random() < cfg.ct_window_prob else "percentile"
    try:
        lo, hi = intensity_window(_plane(vol.image, axis, g)[true_guide], mode)
    except ValueError:
        return None
    slices = [g, *adj.tolist()]
    imgs = np.stack([_plane(vol.image, axis, s) for s in slices])
    labs = np.stack([_plane(vol.labels, axis, s) == label for s in slices])
    labs[0] = gmask
    # The inference transforms: whole-slice uint8 scaling, crop, OpenCV resizes.
    imgs = crop_planes(slices_to_uint8(imgs, lo, hi), win)
    labs = crop_planes(labs, win)
    size = cfg.input_size
    x = scale_to_unit(resize_uint8(imgs, size))
    y = torch.from_numpy(resize_nearest_np(labs, size).astype(np.float32))
    # Rotation fills with zeros; shift so the fill is -1, the value of crop padding at inference.
    both = _geometric(torch.cat([x + 1.0, y]), rng, cfg)
    x, y = both[: len(slices)] - 1.0, (both[len(slices) :] > 0.5).float()
    x = _intensity(x, rng, cfg)
    return {"guide_x": x[:1], "guide_m": y[0], "adj_x": x[1:, None], "adj_y": y[1:]}


def sample_box2mask(
    vol: LabelledVolume, rng: np.random.Generator, cfg: TaskConfig
) -> dict[str, torch.Tensor] | None:
    """One Box2Mask sample: a jittered box crop (3 channels) and the object's mask in it.

    Returns:
        ``x (3, S, S)`` and ``y (S, S)`` float32 tensors, or None.
    """
    if not vol.targets:
        return None
    label = int(vol.targets[rng.integers(len(vol.targets))])
    axis = int(rng.integers(3))
    s = _pick_slice(vol, label, axis, rng, max(cfg.min_area, 16))
    if s is None:
        return None
    img = _plane(vol.image, axis, s)
    mask = _plane(vol.labels, axis, s) == label
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = img.shape
    sh, sw = rng.uniform(*cfg.box_jitter, size=2)
    hh, hw = (r1 - r0) * sh / 2, (c1 - c0) * sw / 2
    # The user's box is not centred either: shift by up to the extra margin.
    cr = (r0 + r1) / 2 + rng.uniform(-1, 1) * (hh - (r1 - r0) / 2)
    cc = (c0 + c1) / 2 + rng.uniform(-1, 1) * (hw - (c1 - c0) / 2)
    br0, br1 = max(0, math.floor(cr - hh)), min(h, math.ceil(cr + hh))
    bc0, bc1 = max(0, math.floor(cc - hw)), min(w, math.ceil(cc + hw))
    crop, target = img[br0:br1, bc0:bc1], mask[br0:br1, bc0:bc1]
    if rng.random() < cfg.candidate_window_prob:
        lo, hi = np.percentile(crop, [rng.uniform(5, 20), rng.uniform(90, 95)])
    else:
        lo, hi = np.percentile(crop[target], [0.5, 99.5])
    if not hi > lo:
        return None
    x = 2.0 * (np.clip(crop, lo, hi) - lo) / (hi - lo) - 1.0
    size = cfg.input_size
    xt = _resize(x[None], size)
    yt = (_resize(target[None].astype(np.float32), size) > 0.5).float()
    # Rotation must fill with -1 (dark) like the constant fill of the papers: shift to >= 0 first.
    both = _geometric(torch.cat([xt + 1.0, yt]), rng, cfg)
    xt, yt = both[:1] - 1.0, (both[1] > 0.5).float()
    xt = _intensity(xt, rng, cfg)
    return {"x": xt.expand(3, -1, -1).contiguous(), "y": yt}
