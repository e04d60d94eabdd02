"""Acquisition effects: point-spread blur, bias field, intensity drift, ring and streak
artefacts, Gaussian and Poisson noise."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._scene import Scene, smooth_noise

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArtefactRates:
    """Probabilities of each optional artefact (blur and Gaussian noise are always applied) and
    a factor on the ring and streak amplitudes."""

    bias: float = 0.5
    drift: float = 0.6
    rings: float = 0.35
    streaks: float = 0.25
    poisson: float = 0.5
    strength: float = 1.0


def blur(scene: Scene, sigma_xy: float) -> None:
    """Point-spread blur; thick slices also average over the slice (partial-volume effect)."""
    sz = scene.sz
    # A slab of thickness sz averaged is roughly a Gaussian of sigma sz / sqrt(12), i.e. 0.29
    # voxel along Z, on top of the in-plane PSF.
    sig_z = np.sqrt((sigma_xy / sz) ** 2 + (0.29 if sz > 1.0 else 0.0) ** 2)
    sig = (sig_z, sigma_xy / scene.spacing[1], sigma_xy / scene.spacing[2])
    ndimage.gaussian_filter(scene.image, sig, output=scene.image, mode="nearest")


def bias_field(scene: Scene, strength: float) -> None:
    """Smooth multiplicative shading of relative amplitude ``strength``."""
    field = smooth_noise(scene.rng, scene.shape, scene.spacing, float(scene.extent.max()) * 0.6)
    scene.image *= 1.0 + np.float32(strength) * np.clip(field, -2.5, 2.5)


def drift(scene: Scene, gain: float, offset: float) -> None:
    """Intensity drift along the stack: linear plus a slow oscillation, gain and offset."""
    rng = scene.rng
    z = np.linspace(-0.5, 0.5, scene.shape[0], dtype=np.float32)
    wave = np.sin(2 * np.pi * (rng.uniform(0.3, 2.0) * z + rng.uniform()))
    g = 1.0 + gain * z + 0.3 * gain * wave
    o = offset * z
    scene.image *= g.astype(np.float32)[:, None, None]
    scene.image += o.astype(np.float32)[:, None, None]


def rings(scene: Scene, amplitude: float) -> None:
    """CT ring artefacts: concentric rings in XY around a centre, stable along Z."""
    rng = scene.rng
    _, ny, nx = scene.shape
    cy = ny / 2 + rng.normal(0, 0.15) * ny
    cx = nx / 2 + rng.normal(0, 0.15) * nx
    y = (np.arange(ny, dtype=np.float32) - np.float32(cy))[:, None]
    x = (np.arange(nx, dtype=np.float32) - np.float32(cx))[None, :]
    r = np.sqrt(y * y + x * x)
    nr = int(r.max()) + 3
    profile = rng.standard_normal(nr) * (rng.random(nr) < rng.uniform(0.05, 0.3))
    profile = ndimage.gaussian_filter1d(profile, rng.uniform(0.4, 1.0))
    profile /= max(float(np.abs(profile).max()), 1e-6)
    ring2d = np.interp(r.ravel(), np.arange(nr), profile).reshape(r.shape).astype(np.float32)
    z = np.linspace(0, 1, scene.shape[0], dtype=np.float32)
    along = 1.0 + 0.3 * np.sin(2 * np.pi * (z * rng.uniform(0.2, 1.5) + rng.uniform()))
    scene.image += np.float32(amplitude) * along[:, None, None] * ring2d[None]


def streaks(scene: Scene, amplitude: float) -> None:
    """Metal-like streaks: bright/dark lines through a point, over a range of slices."""
    rng = scene.rng
    nz, ny, nx = scene.shape
    sy, sx = rng.uniform(0.1, 0.9) * ny, rng.uniform(0.1, 0.9) * nx
    y = (np.arange(ny, dtype=np.float32) - np.float32(sy))[:, None]
    x = (np.arange(nx, dtype=np.float32) - np.float32(sx))[None, :]
    r = np.sqrt(y * y + x * x)
    out = np.zeros((ny, nx), np.float32)
    for _ in range(int(rng.integers(3, 12))):
        ang = rng.uniform(0, np.pi)
        # Distance to a line through the source at angle ``ang``.
        d = np.abs(-np.sin(ang) * x + np.cos(ang) * y)
        width = rng.uniform(0.5, 2.0)
        out += np.float32(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0)) * np.exp(
            -0.5 * (d / np.float32(width)) ** 2
        )
    out *= np.exp(-r / np.float32(rng.uniform(0.5, 2.0) * max(ny, nx)))
    # Beam hardening makes the metal itself very bright.
    out += np.float32(3.0) * (r < rng.uniform(1.5, 4.0))
    z0 = int(rng.integers(0, nz))
    z1 = int(min(nz, z0 + rng.integers(max(nz // 8, 2), max(nz // 2, 3))))
    taper = np.sin(np.linspace(0.0, np.pi, z1 - z0 + 2)[1:-1]).astype(np.float32)
    scene.image[z0:z1] += np.float32(amplitude) * taper[:, None, None] * out[None]


def noise(scene: Scene, sigma: float, poisson_sigma: float) -> None:
    """Additive Gaussian noise of std ``sigma`` and signal-dependent (Poisson) noise whose std is
    ``poisson_sigma`` at the base level."""
    rng = scene.rng
    img = scene.image
    if poisson_sigma > 0:
        gain = poisson_sigma**2 / max(scene.base, 1.0)
        counts = rng.poisson(np.maximum(img, 0.0) / gain)
        img[...] = (counts * gain).astype(np.float32)
    if sigma > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)


def apply_artefacts(
    scene: Scene,
    noise_sigma: float,
    blur_sigma: float,
    rates: ArtefactRates = ArtefactRates(),
) -> None:
    """Apply acquisition effects in physical order: optics blur, shading and drift,
    reconstruction artefacts, then detector noise; clip at zero (raw grey values)."""
    rng = scene.rng
    c = scene.contrast
    blur(scene, blur_sigma)
    if rng.random() < rates.bias:
        bias_field(scene, float(rng.uniform(0.03, 0.12)))
    if rng.random() < rates.drift:
        drift(scene, float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.3, 0.3) * c))
    if rng.random() < rates.rings:
        rings(scene, float(rng.uniform(0.1, 0.5) * c * rates.strength))
    if rng.random() < rates.streaks:
        streaks(scene, float(rng.uniform(0.3, 1.0) * c * rates.strength))
    if rng.random() < rates.poisson:
        frac = rng.uniform(0.3, 0.8)
        noise(scene, noise_sigma * np.sqrt(1 - frac**2), noise_sigma * frac)
    else:
        noise(scene, noise_sigma, 0.0)
    np.maximum(scene.image, 0.0, out=scene.image)
