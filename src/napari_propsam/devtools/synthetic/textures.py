"""Background textures: 2D images bundled with scikit-image swept through 3D, and procedural noise.

Only images that ship inside the scikit-image wheel are used (no download); if one cannot be
loaded it is skipped and procedural textures take over.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from scipy import ndimage

from ._scene import Look, Scene, log_uniform, paint, smooth_noise
from .shapes import random_blob

logger = logging.getLogger(__name__)

#: Grey images bundled with scikit-image (loaded offline).
SKIMAGE_TEXTURES = ("brick", "grass", "gravel", "moon", "camera", "cell", "clock")


@functools.cache
def skimage_texture(name: str) -> np.ndarray | None:
    """A bundled scikit-image picture as a zero-mean, unit-std float32 ``(H, W)`` texture.

    Large-scale shading is removed so the picture acts as texture rather than a gradient.
    Returns None if it cannot be loaded.
    """
    try:
        import skimage.data

        img = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
    except Exception as exc:  # a missing optional file must not break data generation
        logger.debug("scikit-image texture %r unavailable: %s", name, exc)
        return None
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    img = img - ndimage.gaussian_filter(img, 24.0)
    std = float(img.std())
    if std < 1e-6:
        return None
    return (img - img.mean()) / std


def swept_texture(scene: Scene, tex: np.ndarray) -> np.ndarray:
    """Sweep a 2D texture through the volume, drifting and turning slowly with depth.

    Neighbouring slices show nearly the same pattern (as real tissue does), shifted and rotated
    progressively, so it is not a simple extrusion.

    Returns:
        float32 ``(Z, Y, X)``.
    """
    rng = scene.rng
    zc, yc, xc = (
        (np.arange(n, dtype=np.float32) + 0.5) * np.float32(s) - np.float32(n * s / 2)
        for n, s in zip(scene.shape, scene.spacing, strict=True)
    )
    scale = np.float32(log_uniform(rng, 0.5, 2.5))
    theta = zc * np.float32(rng.uniform(-0.012, 0.012)) + np.float32(rng.uniform(0, 2 * np.pi))
    vel = rng.uniform(-0.6, 0.6, 2).astype(np.float32)
    cos = np.cos(theta)[:, None, None]
    sin = np.sin(theta)[:, None, None]
    y = yc[None, :, None] * scale
    x = xc[None, None, :] * scale
    h, w = tex.shape
    rows = cos * y - sin * x + (zc * vel[0])[:, None, None] + np.float32(h / 2)
    cols = sin * y + cos * x + (zc * vel[1])[:, None, None] + np.float32(w / 2)
    out = ndimage.map_coordinates(tex, np.stack([rows, cols]), order=1, mode="mirror")
    return out.astype(np.float32, copy=False)


def fractal_noise(scene: Scene, corr: float, octaves: int = 3, decay: float = 0.55) -> np.ndarray:
    """Sum of smooth noise octaves from correlation length ``corr`` downwards, unit std."""
    out = np.zeros(scene.shape, np.float32)
    amp = 1.0
    for k in range(octaves):
        out += np.float32(amp) * smooth_noise(
            scene.rng, scene.shape, scene.spacing, max(corr / 2**k, 1.0)
        )
        amp *= decay
    return out / max(float(out.std()), 1e-6)


def cellular_noise(scene: Scene, cell: float) -> np.ndarray:
    """Voronoi-like texture (distance to random seed points), unit std, float32."""
    rng = scene.rng
    n = max(int(np.prod(scene.extent) / cell**3), 8)
    seeds = np.ones(scene.shape, bool)
    idx = tuple(rng.integers(0, s, n) for s in scene.shape)
    seeds[idx] = False
    d = ndimage.distance_transform_edt(seeds, sampling=scene.spacing).astype(np.float32)
    d -= d.mean()
    return d / max(float(d.std()), 1e-6)


def fibre_noise(scene: Scene, period: float) -> np.ndarray:
    """Warped parallel bands (muscle fibres, wood-like layering), unit std, float32."""
    rng = scene.rng
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    dz, dy, dx = scene.offsets(
        (slice(0, scene.shape[0]), slice(0, scene.shape[1]), slice(0, scene.shape[2])),
        np.zeros(3),
    )
    phase = direction[0] * dz + direction[1] * dy + direction[2] * dx
    warp = smooth_noise(rng, scene.shape, scene.spacing, period * 3) * np.float32(period * 0.6)
    out = np.sin((phase + warp) * np.float32(2 * np.pi / period)).astype(np.float32)
    return out / max(float(out.std()), 1e-6)


def texture_field(scene: Scene, pictures: bool = True) -> np.ndarray:
    """One random background texture, unit std, float32 ``(Z, Y, X)``.

    ``pictures=False`` excludes the scikit-image pictures (whose craters or coins could pass for
    unlabelled objects of the family).
    """
    rng = scene.rng
    choice = rng.random()
    if choice < 0.4 and pictures:
        names = list(SKIMAGE_TEXTURES)
        rng.shuffle(names)
        for name in names:
            tex = skimage_texture(name)
            if tex is not None:
                out = swept_texture(scene, tex)
                return out / max(float(out.std()), 1e-6)
    if choice < 0.75:
        return fractal_noise(scene, log_uniform(rng, 3.0, 30.0), octaves=int(rng.integers(2, 5)))
    if choice < 0.9:
        return cellular_noise(scene, log_uniform(rng, 5.0, 20.0))
    return fibre_noise(scene, log_uniform(rng, 3.0, 12.0))


def paint_background(
    scene: Scene, texture: float, compartments: int, body: bool, pictures: bool = True
) -> None:
    """Fill ``scene.image`` with a tissue background.

    Args:
        scene: Scene whose image holds the base level.
        texture: Texture amplitude as a fraction of ``scene.contrast``.
        compartments: Number of large unlabelled soft-edged tissue regions of other grey levels.
        body: Darken the volume outside a large ellipse (air around a body, as in CT).
        pictures: Allow scikit-image pictures as texture.
    """
    rng = scene.rng
    c = scene.contrast
    small = float(np.min(scene.extent[1:]))
    for _ in range(compartments):
        blob = random_blob(
            scene, (0.25 * small, 0.6 * small), "smooth", aspect=0.35, truncation=0.6, max_frac=0.9
        )
        sl = blob.crop(scene)
        if sl is None:
            continue
        look = Look(
            contrast=float(rng.uniform(-0.6, 0.6) * c),
            texture=0.0,
            edge=float(rng.uniform(0.5, 4.0)),
        )
        paint(scene, sl, blob.level(scene, sl), look, label=None)
    if texture > 0:
        scene.image += np.float32(texture * c) * texture_field(scene, pictures)
    if body:
        ext = scene.extent
        dz, dy, dx = scene.offsets(
            (slice(0, scene.shape[0]), slice(0, scene.shape[1]), slice(0, scene.shape[2])),
            ext / 2 + rng.normal(0, 0.05, 3) * ext,
        )
        ry, rx = ext[1:] * rng.uniform(0.5, 0.75, 2)
        r = np.sqrt((dy / np.float32(ry)) ** 2 + (dx / np.float32(rx)) ** 2)
        air = np.clip((r - 1.0) * np.float32(max(ry, rx) / 2.0), 0.0, 1.0)
        air = np.broadcast_to(air, scene.shape)
        scene.image *= 1.0 - np.float32(0.9) * air
