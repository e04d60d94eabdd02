"""Appearance of a label map: per-label GMM intensities and textures, then acquisition.

Each label gets a mean drawn from a per-volume Gaussian mixture of tissue classes, or set
relative to the label around it (its host) by the label's *mode*:

* ``contrast``: brighter or darker than the host by 10-80% of the intensity span;
* ``faint``: brighter or darker by 3-10% of the span (at least 1.5 noise std);
* ``equal``: exactly the host's mean; only a different texture (amplitude or grain size)
  separates it;
* ``seam``: the host's mean and texture; only a thin boundary of another intensity separates it;
* ``lookalike``: the appearance of its group's leader (touching look-alikes, parts of a whole).

Textures are a bank of zero-mean fields (fine, mid and coarse band-limited noise, ridged noise
and binary granules, the last acting as a two-component mixture inside a label) that every label
mixes with its own weights, plus white grain. Then partial volume, an anisotropic PSF, optional
thick slices and in-plane downsampling, bias field, profile artefacts, gamma, Gaussian, Poisson
or Rician noise and clipping. Profiles mimic micro-CT, CT, MR, fluorescence and EM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import artefacts
from ._scene import Scene, _interp_separable, log_uniform, smooth_noise
from .labelmaps import LabelScene

logger = logging.getLogger(__name__)

#: Texture channels of the bank, in order.
CHANNELS = ("fine", "mid", "coarse", "ridged", "granules")


@dataclass(frozen=True)
class Profile:
    """Intensity and acquisition ranges of one kind of scanner.

    Attributes:
        name: Profile name.
        low: Range of the darkest class mean (raw grey values).
        span: Range of the spread of class means above ``low``.
        p_bright: Probability that a ``contrast``/``faint`` object is brighter than its host.
        blur: In-plane PSF sigma range (physical units).
        psf_z: Range of the axial-to-lateral PSF sigma ratio.
        noise: Range of the noise std as a fraction of the span (log-uniform).
        noise_kinds: Weights of Gaussian, Poisson and Rician noise.
        bias: Range of the bias-field strength (relative).
        texture: Range of texture amplitudes as a fraction of the span.
        p_seam: Probability that a region or object boundary is drawn as a membrane.
        seam_sign: -1 dark membranes, +1 bright, 0 either.
        dark_regions: Regions sit at the low end (fluorescence background).
        extras: Probabilities of ``rings``, ``streaks``, ``body`` (air around), ``attenuation``
            (signal falling with depth).
    """

    name: str
    low: tuple[float, float]
    span: tuple[float, float]
    p_bright: float = 0.5
    blur: tuple[float, float] = (0.3, 1.2)
    psf_z: tuple[float, float] = (1.0, 1.5)
    noise: tuple[float, float] = (0.01, 0.1)
    noise_kinds: tuple[float, float, float] = (0.5, 0.4, 0.1)
    bias: tuple[float, float] = (0.0, 0.1)
    texture: tuple[float, float] = (0.01, 0.12)
    p_seam: float = 0.05
    seam_sign: float = 0.0
    dark_regions: bool = False
    extras: tuple[tuple[str, float], ...] = ()


PROFILES: dict[str, Profile] = {
    "microct": Profile(
        "microct",
        (200, 800),
        (800, 3000),
        blur=(0.4, 1.1),
        noise_kinds=(0.4, 0.6, 0.0),
        extras=(("rings", 0.4),),
    ),
    "ct": Profile(
        "ct",
        (900, 1000),
        (150, 1500),
        blur=(0.5, 1.3),
        noise=(0.01, 0.08),
        noise_kinds=(0.8, 0.2, 0.0),
        texture=(0.01, 0.12),
        extras=(("streaks", 0.2), ("body", 0.4)),
    ),
    "mr": Profile(
        "mr",
        (30, 300),
        (300, 2000),
        blur=(0.4, 1.2),
        psf_z=(1.0, 2.0),
        noise_kinds=(0.2, 0.0, 0.8),
        bias=(0.05, 0.3),
        texture=(0.02, 0.15),
    ),
    "fluorescence": Profile(
        "fluorescence",
        (5, 150),
        (300, 3500),
        p_bright=0.85,
        blur=(0.5, 1.4),
        psf_z=(1.2, 2.2),
        noise=(0.015, 0.12),
        noise_kinds=(0.15, 0.85, 0.0),
        bias=(0.0, 0.2),
        dark_regions=True,
        extras=(("attenuation", 0.5),),
    ),
    "em": Profile(
        "em",
        (400, 1200),
        (500, 2500),
        blur=(0.3, 0.9),
        noise=(0.03, 0.15),
        noise_kinds=(0.9, 0.1, 0.0),
        texture=(0.05, 0.3),
        p_seam=0.6,
        seam_sign=-1.0,
    ),
}


@dataclass
class Looks:
    """Per-label appearance, indexed by label id.

    Attributes:
        mean: ``(n,)`` mean grey value.
        tex: ``(n, len(CHANNELS))`` texture amplitudes.
        grain: ``(n,)`` white-noise std (a label's own GMM spread, shaped by the PSF).
        seam: ``(n,)`` grey-value offset on the label's boundary (0 = none).
    """

    mean: np.ndarray
    tex: np.ndarray
    grain: np.ndarray
    seam: np.ndarray


@dataclass(frozen=True)
class Levels:
    """Intensity scale of one volume: class means span ``low .. low + span``; noise std."""

    low: float
    span: float
    noise: float


def hosts_by_adjacency(labels: np.ndarray, n: int) -> np.ndarray:
    """For each label the earlier-created (smaller id) label it shares most faces with, or the
    largest neighbour if it has no earlier one; ``(n,)`` int."""
    adj = np.zeros((n, n), np.int64)
    for ax in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[ax], b[ax] = slice(1, None), slice(None, -1)
        la, lb = labels[tuple(a)], labels[tuple(b)]
        d = la != lb
        pairs = np.bincount(la[d].astype(np.int64) * n + lb[d], minlength=n * n)
        adj += pairs.reshape(n, n)
    adj += adj.T
    earlier = np.tril(adj, -1)
    host = np.where(earlier.max(axis=1) > 0, earlier.argmax(axis=1), adj.argmax(axis=1))
    return host


def _texture(rng: np.random.Generator, profile: Profile, span: float) -> np.ndarray:
    """Random texture amplitudes: none, one or two channels."""
    t = np.zeros(len(CHANNELS), np.float32)
    for _ in range(int(rng.choice(3, p=[0.25, 0.5, 0.25]))):
        c = int(rng.choice(len(CHANNELS), p=[0.25, 0.25, 0.2, 0.15, 0.15]))
        # Binary granules peak at about twice their std: keep them weaker.
        t[c] = span * log_uniform(rng, *profile.texture) * (0.6 if c == 4 else 1.0)
    return t


def _texture_unlike(rng: np.random.Generator, host: np.ndarray, lv: Levels) -> np.ndarray:
    """A texture clearly different from ``host``'s at the same mean: 2-4x stronger, 5x weaker,
    or of another grain at the same strength. Grains of at least ~2 px (not the fine channel),
    so the PSF does not wipe the difference out; never stronger than 30% of the span."""
    strength = float(np.linalg.norm(host))
    visible = max(4.0 * lv.noise, 0.08 * lv.span)
    cap = 0.3 * lv.span
    t = np.zeros_like(host)
    u = rng.random()
    stronger = max(visible, 2.0 * strength) * float(rng.uniform(1.0, 1.6))
    if strength < visible or (u < 0.4 and stronger <= cap):
        t[int(rng.choice([1, 3, 4], p=[0.45, 0.35, 0.2]))] = min(stronger, cap)
        return t
    if u < 0.7 or strength > cap:
        return host * np.float32(rng.uniform(0.0, 0.2))
    free = [c for c in (1, 3, 4) if host[c] == 0] or [1]
    t[int(rng.choice(free))] = strength
    return t


def _shift(rng: np.random.Generator, host_mean: float, delta: float, p_bright: float, lv: Levels):
    """``host_mean +- delta``, brighter with probability ``p_bright``, kept inside the span."""
    sign = 1.0 if rng.random() < p_bright else -1.0
    m = host_mean + sign * delta
    if m < lv.low * 0.5 or m > lv.low + 1.3 * lv.span:
        m = host_mean - sign * delta
    return float(np.clip(m, 0.02 * lv.span, lv.low + 1.3 * lv.span))


def assign_looks(scene: LabelScene, profile: Profile, lv: Levels) -> Looks:
    """Draw every label's appearance (see the module docstring for the modes)."""
    rng = scene.rng
    n = int(scene.labels.max()) + 1
    n = max(n, max(scene.parts, default=0) + 1)
    hosts = hosts_by_adjacency(scene.labels, n)
    k = int(rng.integers(2, 6))
    top = 0.3 if profile.dark_regions else 1.0
    classes = lv.low + lv.span * top * np.sort(rng.random(k))
    looks = Looks(
        mean=np.zeros(n, np.float32),
        tex=np.zeros((n, len(CHANNELS)), np.float32),
        grain=np.zeros(n, np.float32),
        seam=np.zeros(n, np.float32),
    )
    # Membranes of one volume share their polarity, so where two labels' seams meet they add up
    # rather than cancel.
    seam_sign = profile.seam_sign or (1.0 if rng.random() < 0.5 else -1.0)
    for lab in range(1, n):
        part = scene.parts.get(lab)
        if part is None:
            continue
        host = part.host or int(hosts[lab])
        # A membrane must stand out of the noise and of the host's texture.
        seam_amp = max(4.0 * lv.noise, 0.15 * lv.span, 2.0 * float(np.linalg.norm(looks.tex[host])))
        looks.grain[lab] = lv.span * float(rng.uniform(0.0, 0.04))
        if rng.random() < profile.p_seam:
            looks.seam[lab] = seam_sign * seam_amp * float(rng.uniform(0.7, 2.0))
        if part.kind == "region":
            looks.mean[lab] = classes[int(rng.integers(k))] + rng.normal(0, 0.03) * lv.span
            looks.tex[lab] = _texture(rng, profile, lv.span)
            continue
        if part.group and part.group < lab:
            _copy(looks, part.group, lab)
            if part.kind == "parts" or rng.random() < 0.5:
                # Look-alikes are told apart by a membrane or nothing at all.
                looks.seam[lab] = seam_sign * seam_amp * float(rng.uniform(0.5, 1.5))
            continue
        hm = float(looks.mean[host])
        if part.mode == "equal":
            looks.mean[lab] = hm
            looks.tex[lab] = _texture_unlike(rng, looks.tex[host], lv)
            looks.grain[lab] = looks.grain[host]
        elif part.mode == "seam":
            looks.mean[lab] = hm
            looks.tex[lab] = looks.tex[host]
            looks.grain[lab] = looks.grain[host]
            looks.seam[lab] = seam_sign * seam_amp * float(rng.uniform(1.0, 2.5))
        else:
            lo, hi = (0.1, 0.8) if part.mode != "faint" else (0.03, 0.1)
            delta = max(lv.span * log_uniform(rng, lo, hi), 1.5 * lv.noise)
            looks.mean[lab] = _shift(rng, hm, delta, profile.p_bright, lv)
            looks.tex[lab] = _texture(rng, profile, lv.span)
    return looks


def _copy(looks: Looks, src: int, dst: int) -> None:
    looks.mean[dst] = looks.mean[src]
    looks.tex[dst] = looks.tex[src]
    looks.grain[dst] = looks.grain[src]
    looks.seam[dst] = looks.seam[src]


def texture_bank(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    used: np.ndarray,
) -> list[np.ndarray | None]:
    """Zero-mean, unit-std fields for the channels in ``used`` (bool per channel), else None."""
    out: list[np.ndarray | None] = []
    corr = (
        rng.uniform(0.8, 1.6),
        rng.uniform(2.0, 5.0),
        rng.uniform(6.0, 20.0),
        rng.uniform(3.0, 10.0),
        rng.uniform(1.5, 5.0),
    )
    for c, name in enumerate(CHANNELS):
        if not used[c]:
            out.append(None)
            continue
        f = smooth_noise(rng, shape, spacing, float(corr[c]))
        if name == "ridged":
            f = np.abs(f)
        elif name == "granules":
            f = (f > np.float32(rng.uniform(0.3, 1.2))).astype(np.float32)
        f -= np.float32(f.mean())
        f /= max(float(f.std()), 1e-6)
        out.append(f)
    return out


def _pv(field_fine: np.ndarray, fine: int) -> np.ndarray:
    """Average groups of ``fine`` sub-slices (the slice profile of a thick slice)."""
    if fine == 1:
        return field_fine
    z, y, x = field_fine.shape
    return field_fine.reshape(z // fine, fine, y, x).mean(axis=1, dtype=np.float32)


def _seams(labels: np.ndarray, seam: np.ndarray) -> np.ndarray:
    """Image of boundary offsets: both voxels of every face between two different labels get the
    larger (in magnitude) of the two labels' seam values: a membrane about two voxels thick."""
    out = np.zeros(labels.shape, np.float32)
    for ax in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[ax], b[ax] = slice(1, None), slice(None, -1)
        la, lb = labels[tuple(a)], labels[tuple(b)]
        d = la != lb
        sa, sb = seam[la[d]], seam[lb[d]]
        s = np.where(np.abs(sa) >= np.abs(sb), sa, sb)
        for side in (tuple(a), tuple(b)):
            o = out[side]
            cur = o[d]
            o[d] = np.where(np.abs(s) > np.abs(cur), s, cur)
    return out


def compose(scene: LabelScene, looks: Looks, lv: Levels) -> np.ndarray:
    """Clean image on the output grid: means and membranes with partial volume, textures and
    grain. float32 ``(Z, Y, X)``."""
    rng = scene.rng
    lab = scene.labels
    img = looks.mean[lab]
    if np.any(looks.seam):
        img += _seams(lab, looks.seam)
    img = _pv(img, scene.fine)
    out_shape = img.shape
    out_sp = (scene.out_sz, scene.spacing[1], scene.spacing[2])
    used = np.any(looks.tex != 0, axis=0)
    bank = texture_bank(rng, out_shape, out_sp, used)
    lab_out = lab[scene.fine // 2 :: scene.fine].ravel() if scene.fine > 1 else lab.ravel()
    counts = np.maximum(np.bincount(lab_out, minlength=looks.mean.size), 1)
    for c, f in enumerate(bank):
        if f is not None:
            # Centre the field on every label, so a label's mean stays exactly its GMM mean
            # (a coarse field over a small object would otherwise shift it).
            local = np.bincount(lab_out, weights=f.ravel(), minlength=counts.size) / counts
            f -= local.astype(np.float32)[lab_out].reshape(f.shape)
            img += _pv(looks.tex[:, c][lab], scene.fine) * f
    if np.any(looks.grain):
        g = _pv(looks.grain[lab], scene.fine)
        img += g * rng.standard_normal(out_shape, dtype=np.float32)
    return img


def acquire(
    img: np.ndarray,
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    profile: Profile,
    lv: Levels,
    fine: int,
) -> np.ndarray:
    """Blur, resolution loss, shading, artefacts, gamma, noise and clipping, in physical order.

    Args:
        img: ``(Z, Y, X)`` float32 clean image (modified and returned).
        spacing: Output voxel size.
        rng: Random source.
        profile: Scanner profile.
        lv: Intensity scale and noise std.
        fine: Supersampling used for the partial volume (1 = none, then a slice profile is
            added to the PSF for thick slices).
    """
    sz = float(spacing[0])
    s_xy = float(rng.uniform(*profile.blur))
    s_z = s_xy * float(rng.uniform(*profile.psf_z)) / sz
    if fine == 1 and sz > 1.0:
        s_z = float(np.hypot(s_z, 0.29))
    if sz == 1.0 and rng.random() < 0.15:
        # Thick slices at a finer spacing (overlapping reconstructions): a 2-6 slice profile.
        img = ndimage.uniform_filter1d(img, int(rng.integers(2, 7)), axis=0, mode="nearest")
    img = ndimage.gaussian_filter(img, (s_z, s_xy, s_xy), mode="nearest")
    if rng.random() < 0.25:
        img = downsample_inplane(img, float(rng.uniform(1.3, 2.5)))
    shim = Scene(
        shape=img.shape, spacing=spacing, rng=rng, base=lv.low + lv.span / 2, contrast=lv.span
    )
    shim.image = img
    b = float(rng.uniform(*profile.bias))
    if b > 0:
        artefacts.bias_field(shim, b)
    for name, p in profile.extras:
        if rng.random() >= p:
            continue
        if name == "rings":
            artefacts.rings(shim, float(rng.uniform(0.05, 0.3)) * lv.span)
        elif name == "streaks":
            artefacts.streaks(shim, float(rng.uniform(0.2, 0.8)) * lv.span)
        elif name == "body":
            _body(shim)
        elif name == "attenuation":
            fall = np.linspace(1.0, rng.uniform(0.35, 0.9), img.shape[0], dtype=np.float32)
            shim.image *= (fall if rng.random() < 0.5 else fall[::-1])[:, None, None]
    img = shim.image
    np.maximum(img, 0.0, out=img)
    if rng.random() < 0.3:
        top = max(float(img.max()), 1e-6)
        img = np.float32(top) * (img / np.float32(top)) ** np.float32(rng.uniform(0.6, 1.6))
    add_noise(img, rng, lv.noise, profile.noise_kinds)
    if rng.random() < 0.15:
        np.minimum(img, np.float32(np.percentile(img, rng.uniform(97.0, 99.9))), out=img)
    np.maximum(img, 0.0, out=img)
    return img.astype(np.float32, copy=False)


def add_noise(
    img: np.ndarray, rng: np.random.Generator, sigma: float, kinds: tuple[float, float, float]
) -> None:
    """Gaussian, Poisson or Rician noise of std ``sigma``, in place.

    Poisson noise has std ``sigma`` at the bright end (99th percentile), less in darker parts,
    as photon counting does; a small Gaussian read noise is added to it.
    """
    w = np.asarray(kinds, float)
    kind = int(rng.choice(3, p=w / w.sum()))
    if kind == 1:
        bright = float(np.percentile(img.ravel()[::7], 99))
        gain = sigma**2 / max(bright, 1.0)
        img[...] = rng.poisson(np.maximum(img, 0.0) / gain).astype(np.float32) * np.float32(gain)
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.3 * sigma)
    elif kind == 2:
        n1 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
        n2 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
        img[...] = np.sqrt((img + n1) ** 2 + n2 * n2)
    else:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)


def downsample_inplane(img: np.ndarray, factor: float) -> np.ndarray:
    """Acquire at ``factor`` times coarser in-plane resolution and resample back (linear)."""
    img = ndimage.uniform_filter(img, (1, max(int(round(factor)), 1), max(int(round(factor)), 1)))
    z, y, x = img.shape
    ny, nx = max(int(y / factor), 4), max(int(x / factor), 4)
    low = _interp_separable(
        img,
        [
            np.arange(z, dtype=np.float32),
            np.linspace(0, y - 1, ny, dtype=np.float32),
            np.linspace(0, x - 1, nx, dtype=np.float32),
        ],
    )
    return _interp_separable(
        low,
        [
            np.arange(z, dtype=np.float32),
            np.linspace(0, ny - 1, y, dtype=np.float32),
            np.linspace(0, nx - 1, x, dtype=np.float32),
        ],
    )


def _body(scene: Scene) -> None:
    """Air around a body (CT): darken the volume outside a large in-plane ellipse."""
    rng = scene.rng
    _, ny, nx = scene.shape
    y = (np.arange(ny, dtype=np.float32) - np.float32(ny / 2 + rng.normal(0, 0.05) * ny))[:, None]
    x = (np.arange(nx, dtype=np.float32) - np.float32(nx / 2 + rng.normal(0, 0.05) * nx))[None, :]
    ry, rx = rng.uniform(0.55, 0.8, 2) * np.array([ny, nx])
    r = np.sqrt((y / np.float32(ry)) ** 2 + (x / np.float32(rx)) ** 2)
    air = np.clip((r - 1.0) * np.float32(max(ry, rx) / 2.0), 0.0, 1.0)
    scene.image *= (1.0 - np.float32(0.95) * air)[None]


def draw_levels(rng: np.random.Generator, profile: Profile) -> Levels:
    """Intensity scale and noise std of one volume."""
    low = float(rng.uniform(*profile.low))
    span = float(rng.uniform(*profile.span))
    return Levels(low=low, span=span, noise=span * log_uniform(rng, *profile.noise))


def render(scene: LabelScene, profile: Profile) -> np.ndarray:
    """The whole appearance pipeline for a finished label map.

    Returns:
        float32 ``(Z, Y, X)`` raw image (>= 0) on the output grid.
    """
    rng = scene.rng
    lv = draw_levels(rng, profile)
    looks = assign_looks(scene, profile, lv)
    img = compose(scene, looks, lv)
    spacing = (scene.out_sz, float(scene.spacing[1]), float(scene.spacing[2]))
    return acquire(img, spacing, rng, profile, lv, scene.fine)
