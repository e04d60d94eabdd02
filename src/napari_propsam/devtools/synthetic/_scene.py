"""Scene state shared by the synthetic generators: geometry helpers, noise, painting, validation.

Coordinates: arrays are ``(Z, Y, X)``. Objects are defined in *physical* space, where voxel
``(k, j, i)`` has its centre at ``((k + 0.5) * sz, (j + 0.5) * sy, (i + 0.5) * sx)``; with
``sy = sx = 1`` a physical unit is one in-plane pixel. A thick-slice volume (``sz > 1``) thus
samples the same anatomy with fewer slices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

Slices = tuple[slice, slice, slice]

#: Smallest extent (slices along Z, pixels along Y and X) of a valid target.
MIN_EXTENT = 5
#: Smallest physical half-extent along Y/X that reliably gives ``MIN_EXTENT`` pixels; along Z
#: it is multiplied by the slice spacing.
MIN_HALF = 2.75

_CONN26 = ndimage.generate_binary_structure(3, 3)


@dataclass
class Look:
    """How an object is drawn, relative to the background around it.

    Attributes:
        contrast: Signed grey-value difference to the local background (negative = darker).
        texture: Internal texture amplitude as a fraction of ``|contrast|``.
        fine: Use the fine (speckle) texture field, else the mid-scale one.
        core: Profile multiplier at the object's centre (level 0).
        rim: Profile multiplier at its boundary (level 1); ``core != rim`` gives rim enhancement or
            a dark/bright core. Both keep the sign of ``contrast`` so the mean stays distinct.
        edge: Soft-edge Gaussian sigma in physical units (0 = sharp boundary).
        level: Absolute grey value of the object; overrides ``contrast`` so look-alike neighbours
            get exactly the same intensity.
    """

    contrast: float
    texture: float = 0.1
    fine: bool = True
    core: float = 1.0
    rim: float = 1.0
    edge: float = 0.0
    level: float | None = None


@dataclass
class Scene:
    """One volume under construction.

    Attributes:
        shape: ``(Z, Y, X)`` voxels.
        spacing: ``(z, y, x)`` physical voxel size.
        rng: The volume's only random source, so a seed fixes everything.
        base: Background grey level ``B``.
        contrast: Typical object contrast ``C > 0`` in grey values.
        image: ``(Z, Y, X)`` float32 intensities being composited.
        labels: ``(Z, Y, X)`` int32 instance ids, 0 = background.
        depth: ``(Z, Y, X)`` float32 level (0 centre .. 1 boundary) of the object owning each
            labelled voxel, ``inf`` elsewhere; overlapping objects split along equal level, which
            gives look-alike neighbours a natural contact surface.
        targets: Label ids of the family's objects to segment.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    rng: np.random.Generator
    base: float
    contrast: float
    image: np.ndarray = field(init=False, repr=False)
    labels: np.ndarray = field(init=False, repr=False)
    depth: np.ndarray = field(init=False, repr=False)
    targets: list[int] = field(default_factory=list)
    _n_labels: int = 0
    _noise: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.image = np.full(self.shape, self.base, dtype=np.float32)
        self.labels = np.zeros(self.shape, dtype=np.int32)
        self.depth = np.full(self.shape, np.inf, dtype=np.float32)

    @property
    def extent(self) -> np.ndarray:
        """Physical size ``(3,)`` of the volume."""
        return np.asarray(self.shape, float) * np.asarray(self.spacing, float)

    @property
    def sz(self) -> float:
        return float(self.spacing[0])

    def min_half(self) -> np.ndarray:
        """Smallest physical half-extent ``(3,)`` a target needs for ``MIN_EXTENT`` voxels."""
        return MIN_HALF * np.asarray(self.spacing, float)

    def new_label(self) -> int:
        """Next unused instance id."""
        self._n_labels += 1
        return self._n_labels

    def random_point(self, margin: np.ndarray | float = 0.0) -> np.ndarray:
        """Uniform physical point ``(3,)``, at least ``margin`` from the faces where possible."""
        ext = self.extent
        m = np.minimum(np.broadcast_to(np.asarray(margin, float), (3,)), ext / 2)
        return self.rng.uniform(m, ext - m)

    def box_slices(self, center: np.ndarray, half: np.ndarray) -> Slices | None:
        """Voxel slices covering the physical box ``center +- half``, clipped; None if empty."""
        sp = np.asarray(self.spacing, float)
        lo = np.floor((np.asarray(center) - half) / sp - 0.5).astype(int)
        hi = np.ceil((np.asarray(center) + half) / sp - 0.5).astype(int) + 1
        lo = np.clip(lo, 0, self.shape)
        hi = np.clip(hi, 0, self.shape)
        if np.any(hi <= lo):
            return None
        return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))

    def offsets(self, sl: Slices, center: np.ndarray) -> list[np.ndarray]:
        """Physical offsets ``p - center`` over ``sl`` as an open grid.

        Returns:
            Three float32 arrays shaped ``(n, 1, 1)``, ``(1, n, 1)`` and ``(1, 1, n)``.
        """
        out = []
        for ax in range(3):
            k = np.arange(sl[ax].start, sl[ax].stop, dtype=np.float32)
            v = (k + 0.5) * np.float32(self.spacing[ax]) - np.float32(center[ax])
            shp = [1, 1, 1]
            shp[ax] = v.size
            out.append(v.reshape(shp))
        return out

    def noise(self, kind: str) -> np.ndarray:
        """Cached full-volume unit noise used for object textures: ``'fine'`` or ``'mid'``."""
        if kind not in self._noise:
            corr = 1.2 if kind == "fine" else 4.0
            self._noise[kind] = smooth_noise(self.rng, self.shape, self.spacing, corr)
        return self._noise[kind]


def smooth_noise(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    corr: float,
) -> np.ndarray:
    """Band-limited Gaussian noise of about unit std with physical correlation length ``corr``.

    Drawn on a coarse grid and interpolated up, which costs a fraction of filtering full-size
    white noise.

    Returns:
        float32 array of ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    corr = max(float(corr), 1e-3)
    step = [max(corr / 2.0 / float(sp), 1.0) for sp in spacing]
    coarse = tuple(int(np.ceil(s / st)) + 3 for s, st in zip(shape, step, strict=True))
    low = rng.standard_normal(coarse).astype(np.float32)
    low = ndimage.gaussian_filter(low, 0.8, mode="wrap")
    low /= max(float(low.std()), 1e-6)
    # Sample the coarse grid at fractional positions; a 1-cell border keeps interpolation inside.
    coords = [
        np.arange(s, dtype=np.float32) / np.float32(st) + 1.0
        for s, st in zip(shape, step, strict=True)
    ]
    return _interp_separable(low, coords)


def _interp_separable(low: np.ndarray, coords: list[np.ndarray]) -> np.ndarray:
    """Linear interpolation of ``low`` at the outer product of per-axis ``coords``."""
    out = low
    for ax, c in enumerate(coords):
        i0 = np.floor(c).astype(np.intp)
        i0 = np.clip(i0, 0, out.shape[ax] - 2)
        w = (c - i0).astype(np.float32)
        shp = [1] * out.ndim
        shp[ax] = c.size
        w = w.reshape(shp)
        a = np.take(out, i0, axis=ax)
        b = np.take(out, i0 + 1, axis=ax)
        out = a + (b - a) * w
    return out.astype(np.float32, copy=False)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3x3 rotation matrix (columns are the rotated axes)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_unit(rng: np.random.Generator, max_abs_z: float = 1.0) -> np.ndarray:
    """Random unit vector ``(3,)`` (z, y, x) with ``|z| <= max_abs_z``."""
    z = rng.uniform(-max_abs_z, max_abs_z)
    phi = rng.uniform(0, 2 * np.pi)
    s = np.sqrt(max(1.0 - z * z, 0.0))
    return np.array([z, s * np.sin(phi), s * np.cos(phi)])


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform draw in ``[lo, hi]`` (``hi < lo`` collapses to ``lo``)."""
    hi = max(hi, lo)
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def local_background(scene: Scene, sl: Slices, shell: np.ndarray) -> float:
    """Mean current intensity in ``shell`` (bool crop), or over the crop if the shell is empty."""
    crop = scene.image[sl]
    if shell.any():
        return float(crop[shell].mean())
    return float(crop.mean())


def overlaps(scene: Scene, sl: Slices, region: np.ndarray, allowed: set[int] | None = None) -> bool:
    """True if ``region`` (bool crop) touches a labelled voxel whose id is not in ``allowed``."""
    lab = scene.labels[sl]
    if not lab.any():
        return False
    hit = lab[region]
    hit = hit[hit > 0]
    if allowed:
        hit = hit[~np.isin(hit, list(allowed))]
    return bool(hit.size)


def paint(
    scene: Scene,
    sl: Slices,
    level: np.ndarray,
    look: Look,
    label: int | None,
    shell: tuple[float, float] = (1.2, 1.8),
    inside: np.ndarray | None = None,
) -> float:
    """Composite one object into the scene.

    Args:
        scene: Scene to draw into.
        sl: Crop slices.
        level: float32 crop, 0 at the object's centre, <= 1 inside, growing outwards.
        look: Intensity description.
        label: Instance id to write into ``scene.labels`` (None = image only, e.g. clutter).
        shell: Level range around the object where the local background is measured.
        inside: Optional bool crop restricting the object (default ``level <= 1``).

    Returns:
        The object's grey level (background + contrast), reusable for look-alikes.
    """
    inside = level <= 1.0 if inside is None else inside
    if look.level is None:
        shell_mask = (level > shell[0]) & (level < shell[1])
        obj_level = local_background(scene, sl, shell_mask) + look.contrast
    else:
        obj_level = look.level
    amp = abs(look.contrast)
    prof = np.clip(level, 0.0, 1.0)
    if look.core != look.rim:
        # Profile runs from ``core`` at the centre to ``rim`` at the boundary; squared so the rim
        # is a band, not a linear ramp.
        prof = look.core + (look.rim - look.core) * prof * prof
    else:
        prof = np.float32(look.core)
    value = (obj_level - look.contrast) + look.contrast * prof
    if look.texture > 0:
        tex = scene.noise("fine" if look.fine else "mid")[sl]
        value = value + np.float32(look.texture * amp) * tex
    if label is not None:
        won = inside & (level < scene.depth[sl])
    else:
        won = inside
    if look.edge > 0:
        sig = [look.edge / s for s in scene.spacing]
        alpha = ndimage.gaussian_filter(won.astype(np.float32), sig, mode="nearest")
        if label is not None:
            # Do not bleed over an earlier object's voxels that it keeps.
            alpha[inside & ~won] = 0.0
    else:
        alpha = won.astype(np.float32)
    img = scene.image[sl]
    img += (np.asarray(value, np.float32) - img) * alpha
    if label is not None:
        scene.labels[sl][won] = label
        scene.depth[sl][won] = level[won]
    return float(obj_level)


def finalize_labels(scene: Scene) -> tuple[np.ndarray, list[int]]:
    """Clean up labels and keep only valid targets.

    Each target keeps its largest 26-connected component (fragments, e.g. cut-off spicules, go
    back to background); targets smaller than ``MIN_EXTENT`` along any axis are demoted to
    non-target labels. Ids are made consecutive ``1..n``.

    Returns:
        ``(labels, targets)``: the relabelled int32 volume and the sorted valid target ids.
    """
    labels = scene.labels
    objs = ndimage.find_objects(labels)
    valid: list[int] = []
    for t in sorted(set(scene.targets)):
        if t > len(objs) or objs[t - 1] is None:
            continue
        sl = objs[t - 1]
        crop = labels[sl]
        mask = crop == t
        cc, n = ndimage.label(mask, structure=_CONN26)
        if n > 1:
            sizes = np.bincount(cc.ravel())
            sizes[0] = 0
            keep = int(np.argmax(sizes))
            crop[mask & (cc != keep)] = 0
            mask = cc == keep
        ext = [
            int(np.count_nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))))
            for ax in range(3)
        ]
        if min(ext) >= MIN_EXTENT:
            valid.append(t)
        else:
            logger.debug("target %d demoted: extent %s", t, ext)
    present = np.bincount(labels.ravel(), minlength=1) > 0
    present[0] = True
    lut = np.zeros(present.size, dtype=np.int32)
    lut[present] = np.arange(int(present.sum()), dtype=np.int32)
    labels = lut[labels]
    return labels, sorted(int(lut[t]) for t in valid if present[t])
