"""Procedural 3D shapes in physical space, rasterised on bounding-box crops.

Every shape gives a *level* field on a crop: 0 at its centre (or centre line / mid-surface),
1 on its boundary, growing outwards. ``level <= 1`` is the object; level bands just above 1 are
shells (dark rims, local-background sampling).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from ._scene import Scene, Slices, log_uniform, random_rotation, random_unit, smooth_noise

BLOB_KINDS = ("smooth", "lobulated", "irregular", "spiculated")


@dataclass(frozen=True)
class Blob:
    """A perturbed ellipsoid.

    The unit ball is mapped to physical space by ``p = center + matrix @ u``. In ``u`` space the
    surface radius along direction ``d`` is ``1 + sum(a cos(f . d + phase)) + spikes(d)`` (lobes,
    spicules), the shell is bent by ``u0 -= bend0 * u1^2 + bend1 * u2^2`` (kidney/banana shapes),
    and smooth 3D noise displaces the boundary (irregular outlines).

    Attributes:
        center: ``(3,)`` physical ZYX centre.
        matrix: ``(3, 3)`` unit-ball to physical map.
        lobe_freq: ``(K, 3)`` angular frequencies of the lobes.
        lobe_amp: ``(K,)`` lobe amplitudes (relative radius).
        lobe_phase: ``(K,)``.
        spike_dir: ``(S, 3)`` unit spicule directions in ``u`` space.
        spike_len: ``(S,)`` spicule lengths (relative radius).
        spike_power: Sharpness of the spicules (larger = thinner).
        bend: ``(2,)`` bending coefficients.
        noise_amp: Boundary noise amplitude (relative radius).
        noise_corr: Physical correlation length of the boundary noise.
    """

    center: np.ndarray
    matrix: np.ndarray
    lobe_freq: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    lobe_amp: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lobe_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spike_dir: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    spike_len: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spike_power: float = 40.0
    bend: np.ndarray = field(default_factory=lambda: np.zeros(2))
    noise_amp: float = 0.0
    noise_corr: float = 8.0

    def growth(self) -> float:
        """Upper bound of the surface radius in ``u`` units."""
        spikes = float(self.spike_len.max()) if self.spike_len.size else 0.0
        return (
            1.0
            + float(np.abs(self.lobe_amp).sum())
            + spikes
            + 2.5 * self.noise_amp
            + float(np.abs(self.bend).sum())
        )

    def half_extent(self) -> np.ndarray:
        """Nominal physical half-extent ``(3,)`` of the unperturbed ellipsoid's bounding box."""
        return np.sqrt((self.matrix**2).sum(axis=1))

    def support(self, direction: np.ndarray) -> float:
        """Nominal physical extent from the centre along unit ``direction``."""
        return float(np.linalg.norm(self.matrix.T @ direction))

    def smooth_copy(self, scale: float) -> Blob:
        """Same ellipsoid and bend, scaled by ``scale``, without lobes, spicules or noise."""
        # In u space the bend term scales like u0 / u1^2, i.e. with ``scale``.
        return Blob(center=self.center, matrix=self.matrix * scale, bend=self.bend * scale)

    def crop(self, scene: Scene, pad: float = 0.0) -> Slices | None:
        """Voxel slices that hold the blob (plus a physical ``pad``), or None if outside."""
        return scene.box_slices(self.center, self.half_extent() * self.growth() + pad + 1.0)

    def level(self, scene: Scene, sl: Slices) -> np.ndarray:
        """Level field, float32 crop of ``sl``'s shape."""
        dz, dy, dx = scene.offsets(sl, self.center)
        inv = np.linalg.inv(self.matrix).astype(np.float32)
        u = [inv[j, 0] * dz + inv[j, 1] * dy + inv[j, 2] * dx for j in range(3)]
        if np.any(self.bend != 0):
            b0, b1 = (np.float32(b) for b in self.bend)
            u[0] = u[0] - b0 * u[1] ** 2 - b1 * u[2] ** 2
        rho = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2) + np.float32(1e-6)
        if self.noise_amp > 0:
            shp = rho.shape
            rho = rho + np.float32(self.noise_amp) * smooth_noise(
                _noise_rng(self), shp, scene.spacing, self.noise_corr
            )
        if not (self.lobe_amp.size or self.spike_len.size):
            return rho.astype(np.float32, copy=False)
        d = [c / rho for c in u]
        radius = np.ones_like(rho)
        for f, a, ph in zip(self.lobe_freq, self.lobe_amp, self.lobe_phase, strict=True):
            radius += np.float32(a) * np.cos(f[0] * d[0] + f[1] * d[1] + f[2] * d[2] + ph)
        for e, ln in zip(self.spike_dir, self.spike_len, strict=True):
            cos = np.clip(e[0] * d[0] + e[1] * d[1] + e[2] * d[2], 0.0, 1.0)
            radius += np.float32(ln) * cos ** np.float32(self.spike_power)
        return (np.abs(rho) / radius).astype(np.float32, copy=False)


def _noise_rng(blob: Blob) -> np.random.Generator:
    # The boundary noise must be the same whenever the same blob is rasterised (e.g. when a
    # touching neighbour re-evaluates it), so it is seeded from the blob's own parameters.
    key = np.concatenate([blob.center, blob.matrix.ravel()]).astype(np.float64).tobytes()
    return np.random.default_rng(np.frombuffer(key, dtype=np.uint32))


def fit_matrix(
    scene: Scene, matrix: np.ndarray, growth: float, max_frac: float = 0.48
) -> np.ndarray:
    """Stretch or shrink an ellipsoid so every target limit can hold.

    Stretches along Z first when the blob would span fewer than ``MIN_EXTENT`` slices, then
    shrinks each axis whose half-extent (times ``growth``) exceeds ``max_frac`` of the volume.
    """
    m = np.array(matrix, float)
    for ax in range(3):
        h = np.sqrt((m[ax] ** 2).sum())
        need = scene.min_half()[ax] * 1.05
        if h < need:
            m[ax] *= need / h
    cap = scene.extent * max_frac
    for ax in range(3):
        h = np.sqrt((m[ax] ** 2).sum()) * growth
        if h > cap[ax]:
            m[ax] *= cap[ax] / h
    return m


def random_blob(
    scene: Scene,
    radius: tuple[float, float],
    kind: str = "smooth",
    aspect: float = 0.3,
    center: np.ndarray | None = None,
    truncation: float = 0.25,
    max_frac: float = 0.48,
) -> Blob:
    """Draw a blob of ``kind`` with mean radius log-uniform in ``radius`` (physical units).

    Args:
        scene: Scene (random source, volume size, spacing).
        radius: ``(min, max)`` mean radius.
        kind: One of ``BLOB_KINDS``.
        aspect: Log-normal sigma of the three semi-axes around the mean radius.
        center: Physical centre; default random, with at most ``truncation`` of the blob outside.
        truncation: Fraction of the half-extent allowed outside the volume.
        max_frac: Cap of the half-extent relative to the volume size.
    """
    rng = scene.rng
    r = log_uniform(rng, *radius)
    axes = r * np.exp(np.clip(rng.normal(0.0, aspect, 3), -2 * aspect, 2 * aspect))
    matrix = random_rotation(rng) @ np.diag(axes)
    params: dict = {}
    if kind == "smooth":
        k = int(rng.integers(1, 4))
        params.update(
            lobe_freq=rng.normal(0, 1.2, (k, 3)),
            lobe_amp=rng.uniform(0.0, 0.07, k),
            lobe_phase=rng.uniform(0, 2 * np.pi, k),
        )
        if rng.random() < 0.5:
            params["bend"] = rng.uniform(-0.35, 0.35, 2)
    elif kind == "lobulated":
        k = int(rng.integers(3, 8))
        amp = rng.uniform(0.03, 0.12, k)
        amp *= min(1.0, 0.4 / amp.sum())
        params.update(
            lobe_freq=rng.normal(0, 3.0, (k, 3)),
            lobe_amp=amp,
            lobe_phase=rng.uniform(0, 2 * np.pi, k),
        )
    elif kind == "irregular":
        k = int(rng.integers(2, 6))
        amp = rng.uniform(0.02, 0.1, k)
        params.update(
            lobe_freq=rng.normal(0, 2.5, (k, 3)),
            lobe_amp=amp,
            lobe_phase=rng.uniform(0, 2 * np.pi, k),
            noise_amp=float(rng.uniform(0.08, 0.25)),
            noise_corr=float(r * rng.uniform(0.3, 0.8)),
        )
    elif kind == "spiculated":
        s = int(rng.integers(5, 16))
        dirs = rng.standard_normal((s, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        params.update(
            spike_dir=dirs,
            spike_len=rng.uniform(0.25, 0.8, s),
            spike_power=float(rng.uniform(15, 60)),
            noise_amp=float(rng.uniform(0.03, 0.12)),
            noise_corr=float(r * rng.uniform(0.3, 0.6)),
        )
    else:
        raise ValueError(f"unknown blob kind {kind!r}; expected one of {BLOB_KINDS}")
    blob = Blob(center=np.zeros(3), matrix=matrix, **params)
    matrix = fit_matrix(scene, matrix, blob.growth(), max_frac)
    blob = replace(blob, matrix=matrix)
    if center is None:
        h = blob.half_extent() * (1.0 - truncation)
        center = scene.random_point(h)
    return replace(blob, center=np.asarray(center, float))


@dataclass(frozen=True)
class Sheet:
    """A thin curved plate.

    In the frame ``(n, t1, t2)`` (columns of ``frame``) around ``center``, the mid-surface is
    ``w = a t1^2 + b t2^2 + c t1 t2 + wobble``; the plate is ``|w_offset| <= thickness / 2``
    inside the ellipse ``(t1/L1)^2 + (t2/L2)^2 <= 1``.
    """

    center: np.ndarray
    frame: np.ndarray
    thickness: float
    lengths: tuple[float, float]
    curvature: tuple[float, float, float]
    wobble: float = 0.0
    wobble_corr: float = 16.0

    def crop(self, scene: Scene, pad: float = 0.0) -> Slices | None:
        """Voxel slices holding the plate plus ``pad``."""
        a, b, c = self.curvature
        l1, l2 = self.lengths
        sag = abs(a) * l1**2 + abs(b) * l2**2 + abs(c) * l1 * l2 + 3 * self.wobble
        half_n = sag + self.thickness / 2 + pad
        local = np.array([half_n, l1 + pad, l2 + pad])
        half = np.abs(self.frame) @ local
        return scene.box_slices(self.center, half + 1.0)

    def level(self, scene: Scene, sl: Slices) -> np.ndarray:
        """Level field: ``max(|w| / (thickness / 2), in-plane radius)``, float32 crop."""
        dz, dy, dx = scene.offsets(sl, self.center)
        f = self.frame.astype(np.float32)
        q = [f[0, j] * dz + f[1, j] * dy + f[2, j] * dx for j in range(3)]
        a, b, c = (np.float32(v) for v in self.curvature)
        w = q[0] - (a * q[1] ** 2 + b * q[2] ** 2 + c * q[1] * q[2])
        if self.wobble > 0:
            rng = np.random.default_rng(np.frombuffer(self.frame.tobytes(), dtype=np.uint32))
            w = w - np.float32(self.wobble) * smooth_noise(
                rng, w.shape, scene.spacing, self.wobble_corr
            )
        l1, l2 = self.lengths
        plane = np.sqrt((q[1] / np.float32(l1)) ** 2 + (q[2] / np.float32(l2)) ** 2)
        return np.maximum(np.abs(w) / np.float32(self.thickness / 2), plane).astype(np.float32)


def random_sheet(scene: Scene) -> Sheet:
    """A plate 2-6 units thick, 12 units to half the volume wide, bowl or saddle curved.

    In thick-slice volumes the normal stays mostly in-plane, and the plate is made thick enough
    along Z to stay connected across slices.
    """
    rng = scene.rng
    sz = scene.sz
    max_nz = 0.9 if sz <= 1.2 else 0.5
    normal = random_unit(rng, max_nz)
    t1 = np.cross(normal, random_unit(rng))
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(normal, t1)
    frame = np.stack([normal, t1, t2], axis=1)
    thickness = float(rng.uniform(2.0, 6.0))
    thickness = max(thickness, 1.3 * sz * abs(normal[0]))
    span = float(np.min(scene.extent[1:])) * 0.45
    lengths = (log_uniform(rng, 12.0, span), log_uniform(rng, 12.0, span))
    # Curvature keeps the sag within a fraction of the plate size, so it never folds onto itself.
    k1 = rng.uniform(-1.2, 1.2) / lengths[0]
    k2 = rng.uniform(-1.2, 1.2) / lengths[1]
    curvature = (float(k1) * 0.5, float(k2) * 0.5, float(rng.uniform(-0.3, 0.3) / np.mean(lengths)))
    wobble = float(rng.uniform(0.0, 3.0)) if rng.random() < 0.6 else 0.0
    center = scene.random_point(np.array([0.25, 0.25, 0.25]) * scene.extent)
    return Sheet(
        center=center,
        frame=frame,
        thickness=thickness,
        lengths=lengths,
        curvature=curvature,
        wobble=wobble,
        wobble_corr=float(rng.uniform(10.0, 25.0)),
    )


@dataclass
class Tree:
    """A tube tree: centre-line sample points ``(N, 3)`` (physical) and radii ``(N,)``."""

    points: np.ndarray
    radii: np.ndarray


def random_path(
    rng: np.random.Generator,
    start: np.ndarray,
    direction: np.ndarray,
    length: float,
    curl: float,
    step: float = 0.5,
) -> np.ndarray:
    """Smooth random curve ``(N, 3)`` from ``start`` with initial unit ``direction``.

    The direction performs a smoothed random walk; ``curl`` (~0.005-0.05) sets how fast it turns.
    """
    n = max(int(length / step), 2)
    kick = rng.standard_normal((n, 3))
    kick = ndimage.gaussian_filter1d(kick, sigma=max(n / 40.0, 2.0), axis=0, mode="nearest")
    kick /= max(float(kick.std()), 1e-6)
    dirs = direction[None, :] + np.cumsum(kick, axis=0) * curl * np.sqrt(step)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return start[None, :] + np.cumsum(dirs * step, axis=0)


def inside_prefix(scene: Scene, pts: np.ndarray, margin: float) -> np.ndarray:
    """``pts`` up to the first point that leaves the volume (plus ``margin``)."""
    ext = scene.extent
    inside = np.all((pts >= -margin) & (pts <= ext + margin), axis=1)
    if inside.all():
        return pts
    first_out = int(np.argmin(inside))
    return pts[: max(first_out, 2)]


def bud_blob(
    scene: Scene, parent: Blob, scale: tuple[float, float], kind: str
) -> tuple[Blob, Slices | None]:
    """A look-alike of ``kind`` pressed against ``parent`` in a random direction.

    Args:
        scene: Scene (random source, volume).
        parent: The blob it touches.
        scale: ``(min, max)`` of its mean radius, as factors of the parent's (geometric mean).
        kind: Blob kind (see :func:`random_blob`).

    Returns:
        ``(blob, crop)``: ``crop`` is its bounding box with a 3-voxel pad, None when outside.
    """
    rng = scene.rng
    r_p = float(np.exp(np.mean(np.log(parent.half_extent()))))
    new = random_blob(scene, (scale[0] * r_p, scale[1] * r_p), kind, center=parent.center)
    n = rng.standard_normal(3)
    n /= np.linalg.norm(n)
    # Apart by 70-92% of the summed supports, so the two overlap a little and touch.
    dist = (parent.support(n) + new.support(n)) * rng.uniform(0.7, 0.92)
    new = replace(new, center=parent.center + n * dist)
    return new, new.crop(scene, 3.0)


def branch_direction(
    rng: np.random.Generator, pts: np.ndarray, angles: tuple[float, float]
) -> tuple[int, np.ndarray]:
    """Where a side branch leaves a centre line, and its unit direction.

    Args:
        rng: Random source (draws: the point, a unit vector, the angle, in this order).
        pts: ``(N, 3)`` physical centre-line points, ``N >= 8``.
        angles: ``(min, max)`` angle to the parent's direction, in degrees.

    Returns:
        ``(i, direction)``: the branch starts at ``pts[i]``, in the middle two thirds.
    """
    i = int(rng.integers(len(pts) // 6, max(len(pts) * 5 // 6, len(pts) // 6 + 1)))
    i = min(i, len(pts) - 2)
    parent = pts[i + 1] - pts[i]
    parent /= max(np.linalg.norm(parent), 1e-9)
    side = np.cross(parent, random_unit(rng))
    side /= max(np.linalg.norm(side), 1e-9)
    ang = rng.uniform(np.radians(angles[0]), np.radians(angles[1]))
    return i, np.cos(ang) * parent + np.sin(ang) * side


def random_tree(
    scene: Scene,
    radius: tuple[float, float],
    branches: int = 3,
    depth: int = 2,
) -> Tree:
    """A branching, tapering, curving tube tree that starts inside the volume.

    Args:
        scene: Scene.
        radius: ``(min, max)`` physical root radius; branches never go below ``min``.
        branches: Number of branches off the root (sub-branches get fewer).
        depth: Branching depth (0 = single tube).
    """
    rng = scene.rng
    r_min = radius[0]
    ext = scene.extent

    def grow(
        start: np.ndarray, direction: np.ndarray, r0: float, length: float, nb: int, lvl: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        pts = random_path(rng, start, direction, length, float(rng.uniform(0.02, 0.1)))
        pts = inside_prefix(scene, pts, r0)
        t = np.linspace(0.0, 1.0, len(pts))
        taper = rng.uniform(0.0, 0.45)
        wiggle = 1.0 + 0.12 * np.sin(2 * np.pi * (rng.uniform(1, 4) * t + rng.uniform()))
        radii = np.maximum(r0 * (1.0 - taper * t) * wiggle, r_min)
        out = [(pts, radii)]
        if lvl <= 0 or len(pts) < 8:
            return out
        for _ in range(nb):
            i, new_dir = branch_direction(rng, pts, (30, 80))
            r_b = max(radii[i] * rng.uniform(0.45, 0.85), r_min)
            out += grow(
                pts[i], new_dir, r_b, length * rng.uniform(0.3, 0.7), max(nb - 2, 0), lvl - 1
            )
        return out

    start = scene.random_point(0.2 * ext)
    direction = random_unit(rng)
    r0 = log_uniform(rng, *radius)
    length = float(rng.uniform(0.6, 1.4) * ext.max())
    # Grow both ways from the start point so the root spans the volume rather than starting
    # mid-way.
    parts = grow(start, direction, r0, length / 2, branches, depth)
    parts += grow(start, -direction, r0, length / 2, max(branches // 2, 0), depth)
    pts = np.concatenate([p for p, _ in parts])
    radii = np.concatenate([r for _, r in parts])
    return Tree(points=pts, radii=radii)


def render_tubes(scene: Scene, trees: list[Tree]) -> tuple[Slices, np.ndarray, np.ndarray] | None:
    """Rasterise tube trees with one Euclidean distance transform.

    Centre-line samples are snapped to voxels; the EDT finds each voxel's nearest sample, and the
    exact distance to that sample's sub-voxel position over its radius gives the level (so thick
    slices do not shift tubes by up to half a slice).

    Returns:
        ``(sl, owner, level)``: crop slices, int32 crop with the index of the owning tree, and the
        float32 level crop; None if no sample falls in the volume.
    """
    sp = np.asarray(scene.spacing, float)
    pts = np.concatenate([t.points for t in trees])
    radii = np.concatenate([t.radii for t in trees]).astype(np.float32)
    owner = np.concatenate([np.full(len(t.points), i, np.int32) for i, t in enumerate(trees)])
    vox = np.floor(pts / sp).astype(np.int64)
    ok = np.all((vox >= 0) & (vox < np.asarray(scene.shape)), axis=1)
    if not ok.any():
        return None
    pts, radii, owner, vox = pts[ok], radii[ok], owner[ok], vox[ok]
    pad = np.ceil(float(radii.max()) * 1.8 / sp).astype(int) + 2
    lo = np.maximum(vox.min(axis=0) - pad, 0)
    hi = np.minimum(vox.max(axis=0) + pad + 1, scene.shape)
    sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    shape = tuple(int(h - low) for h, low in zip(hi, lo, strict=True))
    idx = tuple((vox - lo).T)
    seeds = np.ones(shape, dtype=bool)
    seeds[idx] = False
    flat = np.ravel_multi_index(idx, shape)
    # Per-seed attributes stored sparsely by flat index (last sample in a voxel wins).
    table = np.full(int(np.prod(shape)), -1, dtype=np.int64)
    table[flat] = np.arange(len(flat))
    _, ind = ndimage.distance_transform_edt(seeds, sampling=sp, return_indices=True)
    near = table[np.ravel_multi_index(tuple(ind), shape)]
    del ind
    p = pts[near]
    dz, dy, dx = scene.offsets(sl, np.zeros(3))
    dist = np.sqrt(
        (dz - p[..., 0].astype(np.float32)) ** 2
        + (dy - p[..., 1].astype(np.float32)) ** 2
        + (dx - p[..., 2].astype(np.float32)) ** 2
    )
    level = dist / radii[near]
    return sl, owner[near], level.astype(np.float32)
