"""Held-out families built on the label-map machinery but unlike every training family.

* ``vessels_fluo``: vessel trees in a fluorescence-like stack. Only the vessel *wall* is
  stained, in bright puncta, so each vessel is a hollow tube whose lumen is as dark as the
  background, yet the whole vessel (wall and lumen) is the target; strongly elongated axial
  PSF, signal fading with depth, photon (Poisson) noise, bright cells as distractors. Training
  draws only solid tubes, and its fluorescence profile keeps the axial PSF under 2.2x lateral.
* ``texture``: regions defined only by an oriented texture. Every label -- tissue regions and
  targets alike -- has the same mean *and* the same standard deviation; a target differs from
  its surroundings only by the orientation, pattern or period of striped or cross-hatched
  textures. Training textures are isotropic noise and differ in strength or grain size.

Both return ``(image, labels, targets)`` like the label-map training families.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from ._primitives import oblique_unit, random_sized_tree, tube_level
from ._scene import finalize_labels, log_uniform, smooth_noise
from .appearance import _pv, add_noise, texture_bank
from .labelmaps import (
    LabelScene,
    Part,
    _write,
    make_label_scene,
    output_labels,
    partition,
    place_object,
)

logger = logging.getLogger(__name__)

Result = tuple[np.ndarray, np.ndarray, list[int]]


def _vessels(scene: LabelScene) -> list[tuple[int, int]]:
    """Two to five hollow vessel trees; returns ``(vessel label, lumen label)`` pairs."""
    rng = scene.rng
    big = float(scene.extent.max())
    out = []
    for _ in range(int(rng.integers(2, 6))):
        r_min = max(1.2, 0.45 * scene.out_sz)
        r0 = float(rng.uniform(max(3.5, r_min), 9.0))
        pts, radii = random_sized_tree(
            scene, big * rng.uniform(0.6, 1.2), r0, r_min, int(rng.integers(2, 6)), 2
        )
        res = tube_level(scene, pts, radii)
        if res is None:
            continue
        sl, level = res
        cur = scene.labels[sl]
        # Crossing vessels split along equal level, as touching look-alikes do.
        where = (level <= 1.0) & ((cur <= scene.n_regions) | (level < scene.depth[sl]))
        if np.count_nonzero(where) < 30:
            continue
        vid = scene.add(Part("vessel", target=True))
        _write(scene, sl, level, vid, where)
        wall = float(rng.uniform(1.0, 1.8))
        inner = tube_level(scene, pts, np.maximum(radii - wall, 0.3))
        lid = 0
        if inner is not None:
            isl, ilev = inner
            lumen = (ilev <= 1.0) & (scene.labels[isl] == vid) & (radii.max() - wall > 0.8)
            if lumen.any():
                lid = scene.add(Part("lumen", target=False, merge=vid))
                _write(scene, isl, ilev, lid, lumen)
        out.append((vid, lid))
    return out


def build_vessels_fluo(
    rng: np.random.Generator, shape: tuple[int, int, int], z_spacing: float
) -> Result:
    """Hollow, punctately stained vessel trees in a fluorescence-like stack."""
    scene = make_label_scene(shape, z_spacing, rng)
    partition(scene, 1, False)
    vessels = _vessels(scene)
    cells = []
    for _ in range(int(rng.integers(5, 30))):
        placed = place_object(
            scene, "blob", float(rng.uniform(4.0, 9.0)), Part("cell", target=False), tries=2
        )
        if placed is not None:
            cells.append(placed[0])
    n = max(scene.parts) + 1
    bg = float(rng.uniform(10.0, 120.0))
    peak = float(rng.uniform(800.0, 3500.0))
    mean = np.full(n, bg, np.float32)
    wall = np.zeros(n, np.float32)
    for vid, lid in vessels:
        mean[vid] = peak * rng.uniform(0.6, 1.0)
        wall[vid] = 1.0
        if lid:
            mean[lid] = bg * rng.uniform(0.9, 1.6)
    for c in cells:
        mean[c] = peak * rng.uniform(0.3, 1.1)
    lab = scene.labels
    out_shape = (shape[0], shape[1], shape[2])
    spacing = (float(z_spacing), 1.0, 1.0)
    img = _pv(mean[lab], scene.fine)
    # Punctate staining of the wall: bright dots, strong modulation, only on the wall.
    bank = texture_bank(rng, out_shape, spacing, np.array([0, 0, 1, 0, 1], bool))
    dots, haze = bank[4], bank[2]
    w = _pv(wall[lab], scene.fine)
    img *= 1.0 + w * np.float32(rng.uniform(0.3, 0.7)) * dots
    img += np.float32(bg * rng.uniform(0.1, 0.4)) * haze
    s_xy = float(rng.uniform(0.6, 1.2))
    s_z = s_xy * float(rng.uniform(2.5, 4.0)) / z_spacing
    img = ndimage.gaussian_filter(img, (s_z, s_xy, s_xy), mode="nearest")
    fall = np.linspace(1.0, rng.uniform(0.25, 0.7), out_shape[0], dtype=np.float32)
    img *= fall[:, None, None]
    np.maximum(img, 0.0, out=img)
    # Photon counting: 20-200 photons at the brightest walls, plus a little read noise.
    gain = peak / log_uniform(rng, 20.0, 200.0)
    img = rng.poisson(img / np.float32(gain)).astype(np.float32) * np.float32(gain)
    add_noise(img, rng, bg * float(rng.uniform(0.05, 0.2)), (1.0, 0.0, 0.0))
    if rng.random() < 0.3:
        np.minimum(img, np.float32(np.percentile(img, 99.5)), out=img)
    np.maximum(img, 0.0, out=img)
    scene.labels = output_labels(scene)
    labels, targets = finalize_labels(scene)
    return img.astype(np.float32, copy=False), labels, targets


def _stripes(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    direction: np.ndarray,
    period: float,
    cross: np.ndarray | None,
) -> np.ndarray:
    """Warped stripes along ``direction`` (times a second set along ``cross``: cross-hatch),
    zero mean, unit std, float32."""
    grids = []
    for ax, n in enumerate(shape):
        v = (np.arange(n, dtype=np.float32) + 0.5) * np.float32(spacing[ax])
        grids.append(v.reshape([-1 if a == ax else 1 for a in range(3)]))
    warp = smooth_noise(rng, shape, spacing, period * 4) * np.float32(period * 0.3)
    out = np.ones(shape, np.float32)
    for d in (direction, cross):
        if d is None:
            continue
        phase = d[0] * grids[0] + d[1] * grids[1] + d[2] * grids[2] + warp
        out *= np.sin(phase * np.float32(2 * np.pi / period) + np.float32(rng.uniform(0, 6.3)))
    out -= np.float32(out.mean())
    return out / max(float(out.std()), 1e-6)


def _unlike(rng: np.random.Generator, style: tuple) -> tuple:
    """A texture style of the same strength that differs in orientation, pattern or period."""
    d, period, cross = style
    u = rng.random()
    if u < 0.45:
        for _ in range(20):
            d2 = oblique_unit(rng, 0.3)
            if abs(float(d2 @ d)) < 0.6:  # at least ~53 degrees apart
                return d2, period, cross
        return np.cross(d, oblique_unit(rng, 0.3)), period, cross
    if u < 0.75:
        return d, period, None if cross is not None else oblique_unit(rng, 0.3)
    return d, period * float(rng.choice([0.5, 2.0])), cross


def build_texture(
    rng: np.random.Generator, shape: tuple[int, int, int], z_spacing: float
) -> Result:
    """Blobs told apart from their surroundings only by an oriented texture (equal mean, equal
    standard deviation)."""
    scene = make_label_scene(shape, z_spacing, rng)
    k = int(rng.integers(1, 4))
    partition(scene, k, bool(rng.random() < 0.3))
    small = float(np.min(scene.extent[1:]))
    for _ in range(int(rng.integers(2, 6))):
        kind = "superquadric" if rng.random() < 0.4 else "blob"
        size = log_uniform(rng, 24.0, max(0.6 * small, 30.0))
        place_object(scene, kind, size, Part(kind, target=True), tries=4)
    spacing = (float(z_spacing), 1.0, 1.0)
    styles: dict[int, tuple] = {}
    for r in range(1, k + 1):
        cross = oblique_unit(rng, 0.3) if rng.random() < 0.3 else None
        styles[r] = (oblique_unit(rng, 0.3), float(rng.uniform(4.0, 9.0)), cross)
    lab_f = scene.labels
    counts = np.bincount(scene.labels.ravel(), minlength=max(scene.parts) + 1)
    mean = float(rng.uniform(400.0, 2500.0))
    amp = mean * float(rng.uniform(0.12, 0.3))
    img = np.full(shape, mean, np.float32)
    for lab, part in scene.parts.items():
        if part.target:
            # Compare with the region holding most of the target's surroundings.
            sl = tuple(slice(max(b.start - 3, 0), b.stop + 3) for b in scene.boxes.get(lab, ()))
            crop = lab_f[sl]
            ring = ndimage.binary_dilation(crop == lab, iterations=2) & (crop != lab)
            near = np.bincount(crop[ring], minlength=k + 1)[1 : k + 1]
            host = int(near.argmax()) + 1 if near.any() else 1
            styles[lab] = _unlike(rng, styles[host])
        if counts[lab] == 0 or lab not in styles:
            continue
        w = _pv((lab_f == lab).astype(np.float32), scene.fine)
        img += np.float32(amp) * w * _stripes(rng, shape, spacing, *styles[lab])
    s_xy = float(rng.uniform(0.3, 0.8))
    img = ndimage.gaussian_filter(img, (s_xy / z_spacing, s_xy, s_xy), mode="nearest")
    add_noise(img, rng, amp * float(rng.uniform(0.1, 0.5)), (0.8, 0.2, 0.0))
    np.maximum(img, 0.0, out=img)
    scene.labels = output_labels(scene)
    labels, targets = finalize_labels(scene)
    return img, labels, targets


Builder = Callable[[np.random.Generator, tuple[int, int, int], float], Result]

HELDOUT_BUILDERS: dict[str, Builder] = {
    "vessels_fluo": build_vessels_fluo,
    "texture": build_texture,
}
