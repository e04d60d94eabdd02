"""Shape primitives of the label-map scenes: superquadrics, sized sheets, sized tube trees and a
tube rasteriser that works on crops (no full-volume distance transform).

Like :mod:`.shapes`, every primitive gives a *level* field on a crop: 0 at its centre (centre
line, mid-surface), 1 on its boundary, growing outwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._scene import Scene, Slices, _interp_separable, random_rotation, random_unit
from .shapes import Sheet, branch_direction, fit_matrix, inside_prefix, random_path


def oblique_unit(rng: np.random.Generator, min_abs: float = 0.2, max_abs_z: float = 1.0):
    """Random unit vector ``(3,)`` whose every component is at least ``min_abs`` in magnitude
    (oblique to every axis), with ``|z| <= max_abs_z``; a few redraws, then any direction."""
    v = random_unit(rng, max_abs_z)
    for _ in range(8):
        if np.all(np.abs(v) >= min_abs):
            return v
        v = random_unit(rng, max_abs_z)
    return v


@dataclass(frozen=True)
class Superquadric:
    """A superellipsoid ``(|u0|^(2/e2) + |u1|^(2/e2))^(e2/e1) + |u2|^(2/e1) <= 1`` mapped to
    physical space by ``p = center + matrix @ u`` (rotation, semi-axes, any stretch).

    ``e1, e2`` below 1 give boxy shapes, 1 an ellipsoid, around 2 octahedra and above that
    pinched stars. The level ``F^(e1/2)`` grows about linearly with the distance from the centre.

    Attributes:
        center: ``(3,)`` physical ZYX centre.
        matrix: ``(3, 3)`` unit-cube to physical map.
        e1: Exponent between ``u2`` and the ``u0, u1`` plane.
        e2: Exponent within the ``u0, u1`` plane.
    """

    center: np.ndarray
    matrix: np.ndarray
    e1: float
    e2: float

    def half_extent(self) -> np.ndarray:
        """Physical half-extent ``(3,)``: the shape lies inside the box ``|u_i| <= 1``."""
        return np.abs(self.matrix).sum(axis=1)

    def crop(self, scene: Scene, pad: float = 0.0) -> Slices | None:
        """Voxel slices holding the shape plus a physical ``pad``."""
        return scene.box_slices(self.center, self.half_extent() + pad + 1.0)

    def level(self, scene: Scene, sl: Slices) -> np.ndarray:
        """Level field, float32 crop of ``sl``'s shape."""
        dz, dy, dx = scene.offsets(sl, self.center)
        inv = np.linalg.inv(self.matrix).astype(np.float32)
        u = [np.abs(inv[j, 0] * dz + inv[j, 1] * dy + inv[j, 2] * dx) for j in range(3)]
        p2, p1 = np.float32(2.0 / self.e2), np.float32(2.0 / self.e1)
        inplane = (u[0] ** p2 + u[1] ** p2) ** np.float32(self.e2 / self.e1)
        f = inplane + u[2] ** p1
        return (f ** np.float32(self.e1 / 2.0)).astype(np.float32, copy=False)


def random_superquadric(
    scene: Scene,
    diameter: float,
    thin: bool = False,
    center: np.ndarray | None = None,
    max_frac: float = 0.48,
) -> Superquadric:
    """A superquadric about ``diameter`` across (largest axis), random exponents and rotation.

    ``thin`` gives a disc or a rod: one or two axes of 1.2-3 units. Like blobs (``fit_matrix``)
    it is stretched along Z to span ``MIN_EXTENT`` output slices and squeezed along any axis
    where it would exceed ``max_frac`` of the volume.
    """
    rng = scene.rng
    r = diameter / 2.0
    if thin:
        small = float(rng.uniform(1.2, 3.0))
        axes = np.array([r, small, small]) if rng.random() < 0.4 else np.array([r, r, small])
        axes *= np.exp(rng.uniform(-0.15, 0.15, 3))
        axes[:2] = np.maximum(axes[:2], small)
    else:
        axes = r * np.exp(np.clip(rng.normal(0.0, 0.35, 3), -0.8, 0.8))
        axes *= r / max(axes.max(), 1e-6)
    e1, e2 = (float(np.exp(rng.uniform(np.log(0.3), np.log(2.2)))) for _ in range(2))
    matrix = random_rotation(rng) @ np.diag(axes)
    matrix = fit_matrix(scene, matrix, 1.0, max_frac)
    half = np.abs(matrix).sum(axis=1)
    if center is None:
        center = scene.random_point(0.7 * half)
    return Superquadric(np.asarray(center, float), matrix, e1, e2)


def random_sized_sheet(
    scene: Scene, diameter: float, thickness: float, center: np.ndarray | None = None
) -> Sheet:
    """A curved plate about ``diameter`` across and ``thickness`` thick, oblique.

    In thick-slice volumes the normal stays mostly in-plane and the plate is made thick enough
    along Z to stay connected from slice to slice.
    """
    rng = scene.rng
    sz = scene.sz
    normal = oblique_unit(rng, 0.15, 0.9 if sz <= 1.2 else 0.5)
    t1 = np.cross(normal, random_unit(rng))
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(normal, t1)
    frame = np.stack([normal, t1, t2], axis=1)
    thickness = max(thickness, 1.3 * sz * abs(normal[0]))
    half = diameter / 2.0
    lengths = (half * float(rng.uniform(0.6, 1.0)), half * float(rng.uniform(0.4, 1.0)))
    k1 = rng.uniform(-1.3, 1.3) / lengths[0]
    k2 = rng.uniform(-1.3, 1.3) / lengths[1]
    curvature = (float(k1) * 0.5, float(k2) * 0.5, float(rng.uniform(-0.3, 0.3) / np.mean(lengths)))
    wobble = float(rng.uniform(0.0, 0.08 * half)) if rng.random() < 0.5 else 0.0
    if center is None:
        center = scene.random_point(0.3 * np.minimum(scene.extent, 2 * half))
    return Sheet(
        center=np.asarray(center, float),
        frame=frame,
        thickness=float(thickness),
        lengths=lengths,
        curvature=curvature,
        wobble=wobble,
        wobble_corr=float(max(half * 0.6, 6.0)),
    )


def random_sized_tree(
    scene: Scene, extent: float, r_root: float, r_min: float, branches: int, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """A branching, tapering, curving tube tree about ``extent`` long, running obliquely.

    Args:
        scene: Scene (random source, size).
        extent: Physical length of the root segment (both halves).
        r_root: Root radius; branches get 45-85% of their parent's and never less than ``r_min``.
        branches: Branches off the root (sub-branches get fewer).
        depth: Branching depth (0 = one tube).

    Returns:
        ``(points (N, 3), radii (N,))`` physical centre-line samples.
    """
    rng = scene.rng
    parts: list[tuple[np.ndarray, np.ndarray]] = []

    def grow(start, direction, r0, length, nb, lvl) -> None:
        pts = random_path(rng, start, direction, length, float(rng.uniform(0.02, 0.12)))
        pts = inside_prefix(scene, pts, r0)
        t = np.linspace(0.0, 1.0, len(pts))
        taper = rng.uniform(0.0, 0.5)
        # Slow calibre changes along the vessel (stenoses, dilatations).
        wiggle = 1.0 + rng.uniform(0.0, 0.25) * np.sin(
            2 * np.pi * (rng.uniform(0.5, 3.0) * t + rng.uniform())
        )
        parts.append((pts, np.maximum(r0 * (1.0 - taper * t) * wiggle, r_min)))
        if lvl <= 0 or len(pts) < 8:
            return
        for _ in range(nb):
            i, new_dir = branch_direction(rng, pts, (25, 85))
            r_b = max(r0 * rng.uniform(0.45, 0.85), r_min)
            grow(pts[i], new_dir, r_b, length * rng.uniform(0.3, 0.7), max(nb - 2, 0), lvl - 1)

    start = scene.random_point(0.25 * scene.extent)
    direction = oblique_unit(rng, 0.2, 0.95 if scene.sz <= 1.2 else 0.7)
    grow(start, direction, r_root, extent / 2, branches, depth)
    grow(start, -direction, r_root, extent / 2, branches // 2, depth)
    return np.concatenate([p for p, _ in parts]), np.concatenate([r for _, r in parts])


def tube_level(
    scene: Scene, points: np.ndarray, radii: np.ndarray, reach: float = 1.6
) -> tuple[Slices, np.ndarray] | None:
    """Rasterise a tube (tree) as a sweep of spheres on its own crop.

    Samples closer than 0.4 radius are thinned out first; the envelope of spheres that close
    deviates from the true tube by under 3%. Each sphere only touches a ``reach``-radius box,
    so the cost follows the tube's volume, not the crop's (unlike a distance transform).

    Returns:
        ``(sl, level)``: crop slices and float32 level crop (``inf`` beyond ``reach``), or None
        when no sample falls near the volume.
    """
    keep = [0]
    for i in range(1, len(points)):
        if np.linalg.norm(points[i] - points[keep[-1]]) >= 0.4 * min(radii[i], radii[keep[-1]]):
            keep.append(i)
    pts, rad = points[keep], radii[keep]
    r_max = float(rad.max()) * reach
    lo = pts.min(axis=0) - r_max
    hi = pts.max(axis=0) + r_max
    sl = scene.box_slices((lo + hi) / 2, (hi - lo) / 2)
    if sl is None:
        return None
    level = np.full(tuple(s.stop - s.start for s in sl), np.inf, np.float32)
    origin = np.array([s.start for s in sl])
    for p, r in zip(pts, rad, strict=True):
        sub = scene.box_slices(p, np.full(3, r * reach))
        if sub is None:
            continue
        dz, dy, dx = scene.offsets(sub, p)
        d = np.sqrt(dz * dz + dy * dy + dx * dx) * np.float32(1.0 / r)
        rel = tuple(slice(s.start - o, s.stop - o) for s, o in zip(sub, origin, strict=True))
        np.minimum(level[rel], d, out=level[rel])
    if not np.isfinite(level).any():
        return None
    return sl, level


class _CoarseView:
    """Stands in for a scene when a level field is evaluated on a coarser grid: ``offsets``
    returns the centres of ``factor``-voxel blocks."""

    def __init__(self, scene: Scene, factor: tuple[int, int, int]) -> None:
        self.factor = factor
        self.spacing = tuple(s * f for s, f in zip(scene.spacing, factor, strict=True))
        self._fine = scene.spacing

    def offsets(self, sl: Slices, center: np.ndarray) -> list[np.ndarray]:
        out = []
        for ax in range(3):
            f, s = self.factor[ax], self._fine[ax]
            n = -(-(sl[ax].stop - sl[ax].start) // f)
            k = sl[ax].start + f * np.arange(n, dtype=np.float32) + np.float32(f / 2)
            v = k * np.float32(s) - np.float32(center[ax])
            shp = [1, 1, 1]
            shp[ax] = n
            out.append(v.reshape(shp))
        return out


def coarse_level(scene: Scene, shape_obj: object, sl: Slices, min_voxels: int = 150_000):
    """``shape_obj.level(scene, sl)``, evaluated on a 2x coarser grid and linearly upsampled when
    the crop is large (a big smooth object's level field is smooth, so the boundary moves by a
    small fraction of a voxel while the cost drops about eightfold).

    Returns:
        float32 level crop of ``sl``'s shape.
    """
    size = [s.stop - s.start for s in sl]
    if int(np.prod(size)) < min_voxels:
        return shape_obj.level(scene, sl)  # type: ignore[attr-defined]
    factor = tuple(2 if n >= 16 else 1 for n in size)
    low = shape_obj.level(_CoarseView(scene, factor), sl)  # type: ignore[attr-defined]
    # Fine voxel j sits at coarse coordinate (j + 0.5 - f / 2) / f.
    coords = [
        (np.arange(n, dtype=np.float32) + np.float32(0.5 - f / 2)) / np.float32(f)
        for n, f in zip(size, factor, strict=True)
    ]
    coords = [np.clip(c, 0, m - 1) for c, m in zip(coords, low.shape, strict=True)]
    return _interp_separable(low, coords)
