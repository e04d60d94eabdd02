"""Label-map-first scenes (after SynthSeg, anatomix and PrimGeoSeg).

A scene is built as an instance label map *before* any appearance is chosen: a smoothed-noise
partition of tissue regions, then many random shapes of every size -- superquadrics, deformed
and lobulated blobs, hollow shells, thin sheets, branching tube trees running obliquely, nested
objects, touching look-alikes and parts of larger structures -- then an elastic deformation.
:mod:`.appearance` then gives every label its own intensities and texture.

Grids: when slices are thick (z spacing >= 2.5) the map is drawn on a grid three times finer
along Z; the image averages the three sub-slices (true partial volume) and the labels keep the
middle one, which is exactly the output slice centre.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ._primitives import (
    Superquadric,
    coarse_level,
    random_sized_sheet,
    random_sized_tree,
    random_superquadric,
    tube_level,
)
from ._scene import MIN_HALF, Scene, Slices, log_uniform, smooth_noise
from .shapes import Blob, bud_blob, random_blob

logger = logging.getLogger(__name__)

#: Object kinds a recipe can weight.
KINDS = ("superquadric", "blob", "shell", "sheet", "tree", "cluster", "parts")
#: How a label differs from the label around it (see appearance.py).
MODES = ("contrast", "equal", "seam", "faint")

_FINE_BUDGET = 3_300_000  # voxels of the finer grid; above it the map is drawn on the output grid


@dataclass
class Part:
    """What one label of the map is.

    Attributes:
        kind: ``region`` (partition), a kind of ``KINDS``, ``lumen`` or ``inclusion``.
        target: Listed as a prompt target.
        host: Label it was placed into (0 = whichever label surrounds it most).
        group: Leader of its look-alike group (same appearance), 0 = none.
        merge: Image-only compartment of this label: merged into it after rendering.
        mode: How it differs from its host, one of ``MODES`` (``lookalike`` for group members).
        size: Physical size across.
    """

    kind: str
    target: bool = True
    host: int = 0
    group: int = 0
    merge: int = 0
    mode: str = "contrast"
    size: float = 0.0


@dataclass
class LabelScene(Scene):
    """A :class:`Scene` whose label map is drawn first, maybe on a grid ``fine`` times finer
    along Z than the output (``out_sz`` = output z spacing)."""

    out_sz: float = 1.0
    fine: int = 1
    n_regions: int = 0
    parts: dict[int, Part] = field(default_factory=dict)
    boxes: dict[int, Slices] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.zeros(self.shape, dtype=np.int32)
        self.depth = np.full(self.shape, np.inf, dtype=np.float32)
        # appearance.py renders the image on the output grid; no fine-grid image is needed.
        self.image = np.zeros((1, 1, 1), dtype=np.float32)

    @property
    def sz(self) -> float:
        # Shape helpers size thin things by the slice spacing so they stay connected across the
        # *output* slices.
        return float(self.out_sz)

    def min_half(self) -> np.ndarray:
        return MIN_HALF * np.array([self.out_sz, self.spacing[1], self.spacing[2]])

    def add(self, part: Part) -> int:
        """New label described by ``part``."""
        label = self.new_label()
        self.parts[label] = part
        if part.target:
            self.targets.append(label)
        return label


def make_label_scene(
    shape: tuple[int, int, int], z_spacing: float, rng: np.random.Generator
) -> LabelScene:
    """An empty scene for an output of ``shape`` and z spacing ``z_spacing``."""
    n_out = int(np.prod(shape))
    fine = 3 if z_spacing >= 2.5 and 3 * n_out <= _FINE_BUDGET else 1
    fshape = (shape[0] * fine, shape[1], shape[2])
    return LabelScene(
        shape=fshape,
        spacing=(z_spacing / fine, 1.0, 1.0),
        rng=rng,
        base=0.0,
        contrast=1.0,
        out_sz=float(z_spacing),
        fine=fine,
    )


@dataclass(frozen=True)
class Recipe:
    """How a family's label maps are drawn.

    Attributes:
        objects: Range of the number of objects.
        kinds: Relative weight of each of ``KINDS``.
        modes: Relative weight of each of ``MODES`` for objects.
        size: ``(smallest diameter, largest as a fraction of the in-plane size)``.
        regions: Range of the number of partition regions.
        p_layered: Regions as warped layers instead of blobs of noise.
        p_nested: An object goes inside a larger one.
        p_inclusions: A large object gets image-only inner compartments.
        p_thin: Superquadrics become discs or rods.
        p_elastic: The map is elastically deformed.
        p_region_target: A compact region is also a target.
        p_big: The largest object is drawn from the top quarter of the size range.
    """

    objects: tuple[int, int] = (6, 16)
    kinds: tuple[float, ...] = (0.17, 0.2, 0.09, 0.12, 0.18, 0.12, 0.12)
    modes: tuple[float, ...] = (0.55, 0.15, 0.12, 0.18)
    size: tuple[float, float] = (5.0, 0.9)
    regions: tuple[int, int] = (1, 6)
    p_layered: float = 0.2
    p_nested: float = 0.3
    p_inclusions: float = 0.25
    p_thin: float = 0.2
    p_elastic: float = 0.5
    p_region_target: float = 0.3
    p_big: float = 0.3


# --- regions ----------------------------------------------------------------------------------


def partition(scene: LabelScene, k: int, layered: bool) -> None:
    """Fill the map with ``k`` region labels: argmax of smooth noise fields (blobs of tissue) or
    warped layers along a random direction."""
    rng = scene.rng
    small = float(np.min(scene.extent[1:]))
    if k <= 1:
        scene.labels[...] = scene.add(Part("region", target=False))
        scene.n_regions = 1
        return
    ids = [scene.add(Part("region", target=False)) for _ in range(k)]
    corr = log_uniform(rng, 0.15 * small, 0.5 * small)
    if layered:
        d = rng.standard_normal(3)
        d /= np.linalg.norm(d)
        full = tuple(slice(0, n) for n in scene.shape)
        dz, dy, dx = scene.offsets(full, scene.extent / 2)
        proj = d[0] * dz + d[1] * dy + d[2] * dx
        proj = proj + smooth_noise(rng, scene.shape, scene.spacing, corr) * np.float32(
            rng.uniform(0.05, 0.2) * small
        )
        span = float(np.abs(d) @ scene.extent) / 2
        cuts = np.sort(rng.uniform(-span, span, k - 1))
        scene.labels[...] = np.asarray(ids, np.int32)[np.digitize(proj, cuts)]
    else:
        best = smooth_noise(rng, scene.shape, scene.spacing, corr)
        lab = np.full(scene.shape, ids[0], np.int32)
        for i in ids[1:]:
            f = smooth_noise(rng, scene.shape, scene.spacing, corr)
            win = f > best
            lab[win] = i
            np.maximum(best, f, out=best)
        scene.labels[...] = lab
    scene.n_regions = k


# --- placing objects --------------------------------------------------------------------------


def _write(scene: LabelScene, sl: Slices, level: np.ndarray, label: int, where: np.ndarray) -> None:
    scene.labels[sl][where] = label
    scene.depth[sl][where] = level[where]
    old = scene.boxes.get(label)
    if old is None:
        scene.boxes[label] = sl
    else:
        scene.boxes[label] = tuple(
            slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(old, sl, strict=True)
        )


def _free(scene: LabelScene, sl: Slices, level: np.ndarray, margin: float = 1.2) -> bool:
    """True if the object (with a level ``margin``) touches only regions."""
    cur = scene.labels[sl]
    return not bool((cur[level <= margin] > scene.n_regions).any())


def _center_in(scene: LabelScene, host: int) -> np.ndarray | None:
    """A random physical point of label ``host``."""
    sl = scene.boxes.get(host)
    if sl is None:
        return None
    idx = np.flatnonzero(scene.labels[sl] == host)
    if idx.size == 0:
        return None
    k = np.unravel_index(idx[int(scene.rng.integers(idx.size))], scene.labels[sl].shape)
    start = np.array([s.start for s in sl])
    return (np.asarray(k) + start + 0.5) * np.asarray(scene.spacing)


def _shape_level(
    scene: LabelScene, kind: str, size: float, thin: bool, center: np.ndarray | None
) -> tuple[Slices, np.ndarray, object] | None:
    """Level field of one random object of ``kind`` about ``size`` across."""
    rng = scene.rng
    # The biggest objects may run out of the field of view, as large organs do.
    big = size > 0.6 * float(np.min(scene.extent[1:]))
    frac = 0.6 if big else 0.48
    if kind == "superquadric":
        shp = random_superquadric(scene, size, thin=thin, center=center, max_frac=frac)
    elif kind == "sheet":
        shp = random_sized_sheet(scene, size, float(rng.uniform(1.5, 5.0)), center=center)
    elif kind == "tree":
        r_min = max(1.0, 0.45 * scene.out_sz)
        r0 = max(r_min, log_uniform(rng, 0.012, 0.07) * size)
        depth = 0 if rng.random() < 0.15 else int(rng.integers(1, 3))
        # The path wanders, so a root ~1.3x the size spans about the size.
        pts, radii = random_sized_tree(
            scene, size * float(rng.uniform(1.0, 1.6)), r0, r_min, int(rng.integers(2, 6)), depth
        )
        res = tube_level(scene, pts, radii)
        return None if res is None else (res[0], res[1], None)
    else:
        blob_kind = str(rng.choice(["smooth", "lobulated", "irregular", "spiculated"]))
        aspect = 0.8 if thin else 0.3
        shp = random_blob(
            scene,
            (size / 2, size / 2),
            blob_kind,
            aspect=aspect,
            center=center,
            truncation=0.35 if big else 0.25,
            max_frac=frac,
        )
    sl = shp.crop(scene, 3.0)
    if sl is None:
        return None
    # Discs, rods and plates are too thin for a coarser grid; blobs, even elongated, are not.
    fine_only = kind == "sheet" or (thin and kind == "superquadric")
    level = shp.level(scene, sl) if fine_only else coarse_level(scene, shp, sl)
    return sl, level, shp


def place_object(
    scene: LabelScene,
    kind: str,
    size: float,
    part: Part,
    host: int = 0,
    tries: int = 5,
    thin: bool = False,
) -> tuple[int, Slices, np.ndarray, object] | None:
    """Draw and write one object; free (touching only regions) or inside ``host``.

    ``thin`` makes superquadrics discs or rods and blobs strongly elongated.

    Returns:
        ``(label, crop, level, shape)`` or None if no spot was found.
    """
    for _ in range(tries):
        center = _center_in(scene, host) if host else None
        got = _shape_level(scene, kind, size, thin, center)
        if got is None:
            continue
        sl, level, shp = got
        inside = level <= 1.0
        n_in = int(np.count_nonzero(inside))
        if n_in < 8:
            continue
        cur = scene.labels[sl]
        if host:
            where = inside & (cur == host)
            if np.count_nonzero(where) < 0.7 * n_in:
                continue
        else:
            if not _free(scene, sl, level):
                continue
            where = inside
        part.host = host
        label = scene.add(part)
        _write(scene, sl, level, label, where)
        return label, sl, level, shp
    return None


def add_shell(
    scene: LabelScene, size: float, part: Part, host: int, thin: bool = False
) -> int | None:
    """A hollow shell (wall 1.5 units to a quarter of the radius) whose lumen is its own label."""
    rng = scene.rng
    kind = "superquadric" if rng.random() < 0.5 else "blob"
    placed = place_object(scene, kind, size, part, host, thin=thin)
    if placed is None:
        return None
    label, sl, level, _ = placed
    wall = max(1.5 + 0.5 * scene.out_sz * (scene.out_sz > 1.5), rng.uniform(0.08, 0.25) * size / 2)
    inner = 1.0 - wall / max(size / 2, 1e-6)
    if inner <= 0.2:
        return label
    lumen = (level <= inner) & (scene.labels[sl] == label)
    if np.count_nonzero(lumen) >= 8:
        lid = scene.add(Part("lumen", target=True, host=label, mode=_any_mode(rng), size=size))
        _write(scene, sl, level, lid, lumen)
    return label


def add_cluster(scene: LabelScene, size: float, mode: str) -> int | None:
    """Two to four touching look-alike blobs; each is a target, split along equal level."""
    rng = scene.rng
    kind = str(rng.choice(["smooth", "lobulated", "irregular"]))
    first = None
    for _ in range(5):
        blob = random_blob(scene, (size / 2, size / 2), kind)
        sl = blob.crop(scene, 3.0)
        if sl is None:
            continue
        level = coarse_level(scene, blob, sl)
        if np.count_nonzero(level <= 1) >= 20 and _free(scene, sl, level):
            first = (blob, sl, level)
            break
    if first is None:
        return None
    blob, sl, level = first
    lead = scene.add(Part("cluster", mode=mode, size=size))
    _write(scene, sl, level, lead, level <= 1.0)
    members: list[Blob] = [blob]
    ids = {lead}
    for _ in range(int(rng.integers(1, 4))):
        for _ in range(6):
            parent = members[int(rng.integers(len(members)))]
            new, nsl = bud_blob(scene, parent, (0.7, 1.2), kind)
            if nsl is None:
                continue
            nlev = coarse_level(scene, new, nsl)
            cur = scene.labels[nsl]
            ok = (cur <= scene.n_regions) | np.isin(cur, list(ids))
            if np.count_nonzero(nlev <= 1) < 20 or not ok[nlev <= 1.15].all():
                continue
            where = (nlev <= 1.0) & ((cur <= scene.n_regions) | (nlev < scene.depth[nsl]))
            mid = scene.add(Part("cluster", group=lead, mode="lookalike", size=size))
            _write(scene, nsl, nlev, mid, where)
            members.append(new)
            ids.add(mid)
            break
    return lead


def add_parts(scene: LabelScene, size: float, mode: str) -> int | None:
    """A larger structure cut into two to four parts (lobes, segments), each a target."""
    rng = scene.rng
    kind = "superquadric" if rng.random() < 0.4 else "blob"
    got = None
    for _ in range(4):
        got = _shape_level(scene, kind, size, False, None)
        if got is not None and np.count_nonzero(got[1] <= 1) >= 50 and _free(scene, got[0], got[1]):
            break
        got = None
    if got is None:
        return None
    sl, level, _ = got
    inside = level <= 1.0
    idx = np.argwhere(inside)
    k = int(rng.integers(2, 5))
    seeds = idx[rng.choice(len(idx), k, replace=False)] * np.asarray(scene.spacing)
    # Voronoi cells of random seeds with warped boundaries: distance plus smooth noise.
    grid = scene.offsets(sl, np.zeros(3))
    start = np.array([s.start for s in sl]) * np.asarray(scene.spacing)
    warp = smooth_noise(rng, level.shape, scene.spacing, max(size / 4, 3.0))
    best = np.full(level.shape, np.inf, np.float32)
    owner = np.zeros(level.shape, np.int32)
    for j, s in enumerate(seeds):
        c = s + start
        d = (grid[0] - c[0]) ** 2 + (grid[1] - c[1]) ** 2 + (grid[2] - c[2]) ** 2
        d = np.sqrt(d) + warp * np.float32(size * rng.uniform(0.05, 0.15))
        win = d < best
        best[win] = d[win]
        owner[win] = j
    lead = 0
    for j in range(k):
        where = inside & (owner == j)
        if not where.any():
            continue
        part = Part("parts", group=lead, mode="lookalike" if lead else mode, size=size)
        lid = scene.add(part)
        lead = lead or lid
        _write(scene, sl, level, lid, where)
    return lead or None


def add_inclusions(scene: LabelScene, host: int, size: float) -> None:
    """Small image-only compartments inside ``host`` (vessels, calcifications, nuclei): drawn
    with their own look but merged back into ``host``'s label."""
    rng = scene.rng
    for _ in range(int(rng.integers(1, 5))):
        kind = "tree" if rng.random() < 0.3 else "blob"
        s = float(rng.uniform(0.08, 0.25)) * size
        part = Part("inclusion", target=False, merge=host, mode="contrast", size=s)
        place_object(scene, kind, max(s, 3.0), part, host=host, tries=3)


def deform(scene: LabelScene, amplitude: float, corr: float) -> None:
    """Elastic deformation of the label map: smooth displacements, nearest-label resampling."""
    sp = np.asarray(scene.spacing, np.float32)
    coords = []
    for ax, n in enumerate(scene.shape):
        disp = smooth_noise(scene.rng, scene.shape, scene.spacing, corr)
        base = np.arange(n, dtype=np.float32).reshape([-1 if a == ax else 1 for a in range(3)])
        coords.append(base + disp * np.float32(amplitude / sp[ax]))
    scene.labels = ndimage.map_coordinates(scene.labels, coords, order=0, mode="nearest")


def _any_mode(rng: np.random.Generator, weights: tuple[float, ...] = (0.45, 0.2, 0.15, 0.2)):
    w = np.asarray(weights, float)
    return str(MODES[int(rng.choice(len(MODES), p=w / w.sum()))])


def build_scene(scene: LabelScene, recipe: Recipe) -> None:
    """Draw a whole label map into ``scene`` following ``recipe``."""
    rng = scene.rng
    partition(
        scene,
        int(rng.integers(recipe.regions[0], recipe.regions[1] + 1)),
        bool(rng.random() < recipe.p_layered),
    )
    small = float(np.min(scene.extent[1:]))
    d_lo, d_hi = recipe.size[0], max(recipe.size[1] * small, recipe.size[0] * 2)
    n = int(rng.integers(recipe.objects[0], recipe.objects[1] + 1))
    sizes = [log_uniform(rng, d_lo, d_hi) for _ in range(n)]
    if rng.random() < recipe.p_big:
        sizes[0] = float(rng.uniform(0.75, 1.0)) * d_hi
    sizes.sort(reverse=True)
    kw = np.asarray(recipe.kinds, float)
    hosts: list[tuple[int, float]] = []  # (label, size) of objects that can hold others
    for size in sizes:
        kind = KINDS[int(rng.choice(len(KINDS), p=kw / kw.sum()))]
        mode = _any_mode(rng, recipe.modes)
        thin = bool(rng.random() < recipe.p_thin)
        big = [h for h, s in hosts if s >= 2.2 * size]
        nest = bool(big) and rng.random() < recipe.p_nested
        host = int(big[int(rng.integers(len(big)))]) if nest else 0
        if kind == "cluster" and not host:
            label = add_cluster(scene, size, mode)
        elif kind == "parts" and not host and size >= 20:
            label = add_parts(scene, size, mode)
        elif kind == "shell":
            label = add_shell(scene, size, Part("shell", mode=mode, size=size), host, thin)
        else:
            kind = kind if kind in ("superquadric", "blob", "sheet", "tree") else "blob"
            part = Part(kind, mode=mode, size=size)
            placed = place_object(scene, kind, size, part, host, thin=thin)
            label = None if placed is None else placed[0]
            if label is not None and kind in ("superquadric", "blob"):
                hosts.append((label, size))
        if label is not None and size >= 25 and rng.random() < recipe.p_inclusions:
            add_inclusions(scene, label, size)
    if rng.random() < recipe.p_elastic:
        deform(scene, float(rng.uniform(1.0, 5.0)), log_uniform(rng, 0.2 * small, 0.6 * small))
    _region_targets(scene, recipe.p_region_target)


def _region_targets(scene: LabelScene, p: float) -> None:
    """Regions that fill under a third of the volume may be targets too."""
    if scene.n_regions < 2:
        return
    counts = np.bincount(scene.labels.ravel(), minlength=scene.n_regions + 1)
    total = scene.labels.size
    for r in range(1, scene.n_regions + 1):
        if 0 < counts[r] < total / 3 and scene.rng.random() < p:
            scene.parts[r].target = True
            scene.targets.append(r)


def output_labels(scene: LabelScene) -> np.ndarray:
    """Labels on the output grid: the middle fine sub-slice, compartments merged into their
    owners (int32, not yet consecutive)."""
    lab = scene.labels[scene.fine // 2 :: scene.fine] if scene.fine > 1 else scene.labels
    n = max(scene.parts, default=0) + 1
    lut = np.arange(n, dtype=np.int32)
    for i, p in scene.parts.items():
        if p.merge:
            lut[i] = p.merge
    return lut[lab]


__all__ = [
    "KINDS",
    "MODES",
    "LabelScene",
    "Part",
    "Recipe",
    "Superquadric",
    "build_scene",
    "deform",
    "make_label_scene",
    "output_labels",
    "partition",
]
