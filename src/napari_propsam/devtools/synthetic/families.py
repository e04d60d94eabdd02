"""Scene builders, one per object family.

Each builder paints a background, the family's objects (labelled, listed as targets) and maybe
some labelled distractors (other kinds of objects, not targets) into a :class:`Scene`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from ._scene import Look, Scene, Slices, local_background, log_uniform, overlaps, paint
from .shapes import (
    Blob,
    Sheet,
    Tree,
    bud_blob,
    random_blob,
    random_sheet,
    random_tree,
    render_tubes,
)
from .textures import paint_background

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Style:
    """Per-volume intensity settings drawn before building.

    Attributes:
        noise: Noise std in grey values.
        blur: In-plane PSF sigma (physical).
        low_contrast: Objects get small contrast and blurry edges.
    """

    noise: float
    blur: float
    low_contrast: bool = False


def _sign(rng: np.random.Generator, p_dark: float) -> float:
    return -1.0 if rng.random() < p_dark else 1.0


def _small(scene: Scene) -> float:
    """Smaller in-plane physical size of the volume."""
    return float(np.min(scene.extent[1:]))


def _blob_radius(scene: Scene, lo: float, hi: float) -> tuple[float, float]:
    """Radius range clipped to the volume; the Z stretch of ``fit_matrix`` handles thick slices."""
    hi = min(hi, 0.45 * _small(scene))
    return lo, max(hi, lo * 1.2)


def _look(
    scene: Scene,
    style: Style,
    sign: float,
    strength: tuple[float, float] = (0.5, 1.1),
    texture: tuple[float, float] = (0.03, 0.25),
) -> Look:
    """A random object look of the given polarity."""
    rng = scene.rng
    c = scene.contrast
    if style.low_contrast:
        return Look(
            contrast=sign * float(rng.uniform(0.2, 0.45)) * c,
            texture=float(rng.uniform(0.0, 0.1)),
            fine=bool(rng.random() < 0.5),
            edge=float(rng.uniform(1.2, 3.0)),
        )
    core = rim = 1.0
    if rng.random() < 0.2:
        # Rim enhancement (or a brighter core), same sign throughout so the object stays distinct.
        core, rim = (float(rng.uniform(0.4, 0.8)), float(rng.uniform(1.0, 1.4)))
        if rng.random() < 0.4:
            core, rim = rim, core
    return Look(
        contrast=sign * float(rng.uniform(*strength)) * c,
        texture=float(rng.uniform(*texture)),
        fine=bool(rng.random() < 0.5),
        core=core,
        rim=rim,
        edge=float(rng.uniform(0.0, 0.8)),
    )


def place_blob(
    scene: Scene,
    make: Callable[[], Blob | Sheet],
    tries: int = 12,
    margin: float = 1.15,
    pad: float = 3.0,
    min_voxels: int = 20,
) -> tuple[Blob | Sheet, Slices, np.ndarray] | None:
    """Draw blobs from ``make`` until one does not touch an existing label (within ``margin``).

    Args:
        scene: Scene.
        make: Draws one candidate (a :class:`Blob` or a :class:`Sheet`).
        tries: Candidates drawn at most.
        margin: Level (1 = surface) within which no other label may be.
        pad: Voxels added around the candidate's bounding box.
        min_voxels: Fewest voxels inside the volume for a candidate to count.

    Returns:
        ``(candidate, crop, level in the crop)``, or None when every try failed.
    """
    for _ in range(tries):
        blob = make()
        fit = _fit(scene, blob, pad, min_voxels, margin)
        if fit is not None:
            return blob, *fit
    return None


def _fit(
    scene: Scene,
    shape: Blob | Sheet,
    pad: float,
    min_voxels: int,
    margin: float,
    allowed: set[int] | None = None,
) -> tuple[Slices, np.ndarray] | None:
    """``(crop, level)`` of ``shape`` if at least ``min_voxels`` of it lie in the volume and it
    touches no label but ``allowed`` within ``margin``; else None."""
    sl = shape.crop(scene, pad)
    if sl is None:
        return None
    level = shape.level(scene, sl)
    if np.count_nonzero(level <= 1.0) < min_voxels or overlaps(
        scene, sl, level <= margin, allowed=allowed
    ):
        return None
    return sl, level


def add_blob(
    scene: Scene,
    radius: tuple[float, float],
    kind: str,
    look: Look,
    target: bool,
    truncation: float = 0.25,
    centers: np.ndarray | None = None,
) -> int | None:
    """Place and paint one blob; returns its label or None if no free spot was found.

    ``centers`` (``(N, 3)`` physical points) restricts where the blob may be centred.
    """

    def make() -> Blob:
        center = None if centers is None else centers[int(scene.rng.integers(len(centers)))]
        return random_blob(scene, radius, kind, center=center, truncation=truncation)

    placed = place_blob(scene, make)
    if placed is None:
        return None
    _, sl, level = placed
    label = scene.new_label()
    paint(scene, sl, level, look, label)
    if target:
        scene.targets.append(label)
    return label


def add_tree(
    scene: Scene, radius: tuple[float, float], look: Look, target: bool, branches: int, depth: int
) -> int | None:
    """Render and paint one tube tree (crossings with other objects split along equal level)."""
    res = render_tubes(scene, [random_tree(scene, radius, branches, depth)])
    if res is None:
        return None
    sl, _, level = res
    if np.count_nonzero(level <= 1.0) < 20:
        return None
    label = scene.new_label()
    paint(scene, sl, level, look, label, shell=(1.3, 3.0))
    if target:
        scene.targets.append(label)
    return label


def add_sheet(scene: Scene, look: Look, target: bool, tries: int = 10) -> int | None:
    """Place and paint one curved plate that does not touch other labels."""
    placed = place_blob(
        scene, lambda: random_sheet(scene), tries, margin=1.5, pad=4.0, min_voxels=30
    )
    if placed is None:
        return None
    _, sl, level = placed
    label = scene.new_label()
    paint(scene, sl, level, look, label, shell=(1.6, 3.5))
    if target:
        scene.targets.append(label)
    return label


def add_distractors(scene: Scene, style: Style, n: int, tubes: bool = True) -> None:
    """Labelled non-target objects of other kinds and either polarity."""
    rng = scene.rng
    for _ in range(n):
        look = _look(scene, style, _sign(rng, 0.5))
        if tubes and rng.random() < 0.35:
            add_tree(
                scene, (max(1.2, 0.4 * scene.sz), 3.0), look, False, int(rng.integers(0, 3)), 1
            )
        else:
            kind = str(rng.choice(["smooth", "lobulated", "irregular"]))
            add_blob(scene, _blob_radius(scene, 3.0, 10.0), kind, look, False)


def add_mixed(scene: Scene, style: Style, look: Look, target: bool = True) -> int | None:
    """One object of a random shape family (blob kinds, tube tree or plate)."""
    rng = scene.rng
    u = rng.random()
    if u < 0.6:
        kind = str(rng.choice(["smooth", "lobulated", "irregular", "spiculated"]))
        return add_blob(scene, _blob_radius(scene, 3.0, 30.0), kind, look, target)
    if u < 0.8:
        r_lo = max(1.5, 0.45 * scene.sz)
        return add_tree(
            scene, (r_lo, max(r_lo * 1.5, 6.0)), look, target, int(rng.integers(0, 4)), 1
        )
    return add_sheet(scene, look, target)


# --- families ---------------------------------------------------------------------------------


def paint_tubules(scene: Scene, radius: float) -> None:
    """Densely packed convoluted tubules (unlabelled clutter): bright walls, dark lumen, thin
    dark interstitium between neighbours."""
    rng = scene.rng
    c = scene.contrast
    ext = scene.extent
    length = float(rng.uniform(8.0, 14.0)) * radius
    step = 0.7
    # Enough tubule length to cover the volume about once; overlaps and gaps even out.
    n = int(np.clip(rng.uniform(0.8, 1.2) * np.prod(ext) / (np.pi * radius**2 * length), 8, 3000))
    steps = max(int(length / step), 4)
    # All tubules at once: smoothed random turning of the direction, integrated to positions.
    kick = ndimage.gaussian_filter1d(rng.standard_normal((n, steps, 3)), 3.0, axis=1)
    kick /= max(float(kick.std()), 1e-6)
    d0 = rng.standard_normal((n, 1, 3))
    d0 /= np.linalg.norm(d0, axis=2, keepdims=True)
    dirs = d0 + np.cumsum(kick, axis=1) * float(rng.uniform(0.04, 0.1))
    dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
    start = rng.uniform(-radius, ext + radius, (n, 1, 3))
    pts = start + np.cumsum(dirs * step, axis=1)
    r = radius * rng.uniform(0.8, 1.2, (n, 1)) * np.ones((1, steps))
    trees = [Tree(points=p, radii=q) for p, q in zip(pts, r, strict=True)]
    res = render_tubes(scene, trees)
    if res is None:
        return
    sl, owner, level = res
    wall = np.clip((1.0 - level) / np.float32(0.2), 0.0, 1.0)
    lumen_r = np.float32(rng.uniform(0.25, 0.5))
    lumen = np.clip((lumen_r - level) / np.float32(0.15), 0.0, 1.0)
    # Where two tubules meet, a thin gap keeps them apart as in real tissue.
    edge = np.zeros(owner.shape, bool)
    edge[:, 1:, :] |= owner[:, 1:, :] != owner[:, :-1, :]
    edge[:, :, 1:] |= owner[:, :, 1:] != owner[:, :, :-1]
    wall = np.where(edge, wall * np.float32(0.3), wall)
    a_wall = np.float32(rng.uniform(0.4, 0.8) * c)
    a_lumen = np.float32(rng.uniform(-0.1, 0.25) * c)
    scene.image[sl] += wall * a_wall + lumen * (a_lumen - a_wall)


def build_glomeruli(scene: Scene, style: Style) -> None:
    """Lobulated bright glomerular tufts with a dark Bowman's space and a thin capsule, packed
    among unlabelled tubules (micro-CT of kidney cortex). Only the tufts are labelled and are
    all targets; Bowman's space and capsule are outside the label."""
    rng = scene.rng
    c = scene.contrast
    r_lo = max(6.0, 3.5 * scene.sz)
    r_lo, r_hi = _blob_radius(scene, r_lo, max(r_lo * 1.3, min(20.0, 0.2 * _small(scene))))
    paint_background(scene, float(rng.uniform(0.03, 0.15)), 0, False, pictures=False)
    paint_tubules(scene, max(1.8, float(rng.uniform(0.22, 0.35)) * np.sqrt(r_lo * r_hi)))
    gap = float(rng.uniform(1.0, 3.0))
    n_want = int(rng.integers(3, 13))
    tuft_gain = float(rng.uniform(0.6, 1.1)) * c
    space_gain = float(rng.uniform(0.3, 0.6)) * c
    placed = 0
    for _ in range(n_want * 4):
        if placed >= n_want:
            break
        blob = random_blob(scene, (r_lo, r_hi), "lobulated", aspect=0.12, truncation=0.35)
        blob = replace(blob, lobe_amp=blob.lobe_amp * 0.6)
        r_eff = float(np.mean(blob.half_extent()))
        scale = 1.0 + 0.5 * float(np.abs(blob.lobe_amp).sum()) + gap / r_eff
        capsule = blob.smooth_copy(scale)
        fit = _fit(scene, capsule, 4.0, 50, 1.3)
        if fit is None:
            continue
        sl, lvl_c = fit
        lvl_t = blob.level(scene, sl)
        wall = 1.0 + 1.2 / (r_eff * scale)
        bg = local_background(scene, sl, (lvl_c > 1.3) & (lvl_c < 1.9))
        # Capsule wall, then Bowman's space inside it, then the tuft on top.
        paint(
            scene,
            sl,
            lvl_c / np.float32(wall),
            Look(contrast=0.25 * c, texture=0.0, level=bg + 0.25 * c, edge=0.4),
            None,
        )
        paint(
            scene,
            sl,
            lvl_c,
            Look(contrast=-space_gain, texture=0.1, level=bg - space_gain, edge=0.4),
            None,
        )
        label = scene.new_label()
        paint(
            scene,
            sl,
            lvl_t,
            Look(
                contrast=tuft_gain,
                texture=float(rng.uniform(0.25, 0.5)),
                fine=True,
                level=bg + tuft_gain,
                edge=0.3,
            ),
            label,
        )
        scene.targets.append(label)
        placed += 1


def build_organ(scene: Scene, style: Style) -> None:
    """One or two large smooth organs, maybe with internal vessels, plus distractors."""
    rng = scene.rng
    c = scene.contrast
    paint_background(
        scene, float(rng.uniform(0.05, 0.35)), int(rng.integers(1, 4)), bool(rng.random() < 0.25)
    )
    n = 1 if rng.random() < 0.65 else 2
    small = _small(scene)
    radius = (0.25 * small, 0.45 * small) if n == 1 else (0.2 * small, 0.32 * small)
    for _ in range(n):
        look = _look(scene, style, _sign(rng, 0.3), texture=(0.03, 0.2))
        look = replace(look, fine=False)
        label = add_blob(scene, radius, "smooth", look, True, truncation=0.3)
        if label is None or rng.random() < 0.5:
            continue
        # Internal vessels: tubes drawn into the image only where the organ is; they stay part
        # of the organ's label, as organ annotations usually include their vessels.
        trees = [
            random_tree(scene, (1.2, 3.0), int(rng.integers(1, 4)), 1)
            for _ in range(int(rng.integers(1, 4)))
        ]
        res = render_tubes(scene, trees)
        if res is None:
            continue
        sl, _, level = res
        mask = np.clip((1.0 - level) / np.float32(0.3), 0.0, 1.0) * (scene.labels[sl] == label)
        scene.image[sl] += np.float32(rng.uniform(-0.5, 0.5) * c) * mask
    add_distractors(scene, style, int(rng.integers(0, 4)))


def build_lesion(scene: Scene, style: Style) -> None:
    """Irregular, lobulated or spiculated lesions inside an unlabelled parent organ."""
    rng = scene.rng
    c = scene.contrast
    paint_background(
        scene, float(rng.uniform(0.05, 0.3)), int(rng.integers(0, 3)), bool(rng.random() < 0.15)
    )
    small = _small(scene)
    parent = random_blob(scene, (0.4 * small, 0.7 * small), "smooth", truncation=0.5, max_frac=0.75)
    psl = parent.crop(scene)
    centers = None
    if psl is not None:
        plevel = parent.level(scene, psl)
        paint(
            scene,
            psl,
            plevel,
            Look(
                contrast=float(rng.uniform(-0.4, 0.4)) * c,
                texture=0.1,
                fine=False,
                edge=float(rng.uniform(0.5, 2.0)),
            ),
            None,
        )
        # Lesions grow inside the parent organ: centre them on its deeper voxels.
        idx = np.argwhere(plevel <= 0.8)
        if len(idx) >= 10:
            idx = idx[rng.choice(len(idx), min(len(idx), 2000), replace=False)]
            start = np.array([s.start for s in psl])
            centers = (idx + start + 0.5) * np.asarray(scene.spacing)
    radius = _blob_radius(scene, 2.8, 30.0)
    for _ in range(int(rng.integers(1, 5))):
        kind = str(rng.choice(["irregular", "lobulated", "spiculated"], p=[0.4, 0.3, 0.3]))
        look = _look(scene, style, _sign(rng, 0.55))
        add_blob(scene, radius, kind, look, True, truncation=0.15, centers=centers)
    add_distractors(scene, style, int(rng.integers(0, 3)))


def build_tubes(scene: Scene, style: Style) -> None:
    """One to three branching, curving tube trees (vessels); each tree is one target."""
    rng = scene.rng
    paint_background(
        scene, float(rng.uniform(0.05, 0.35)), int(rng.integers(0, 3)), bool(rng.random() < 0.2)
    )
    r_lo = max(1.5, 0.45 * scene.sz)
    r_hi = max(r_lo * 1.5, min(8.0, 0.08 * _small(scene)))
    for _ in range(int(rng.integers(1, 4))):
        look = _look(scene, style, _sign(rng, 0.3), strength=(0.6, 1.2))
        depth = 0 if rng.random() < 0.15 else int(rng.integers(1, 3))
        add_tree(scene, (r_lo, r_hi), look, True, int(rng.integers(1, 6)), depth)
    add_distractors(scene, style, int(rng.integers(0, 3)), tubes=False)


def build_plates(scene: Scene, style: Style) -> None:
    """One to three thin curved plates (bone cortex, membranes, fascia)."""
    rng = scene.rng
    paint_background(
        scene, float(rng.uniform(0.05, 0.3)), int(rng.integers(0, 3)), bool(rng.random() < 0.2)
    )
    for _ in range(int(rng.integers(1, 4))):
        look = _look(scene, style, _sign(rng, 0.3), strength=(0.7, 1.3), texture=(0.0, 0.15))
        add_sheet(scene, look, True)
    add_distractors(scene, style, int(rng.integers(0, 3)))


def build_touching(scene: Scene, style: Style) -> None:
    """Clusters of two to four look-alike blobs in contact; every blob is a separate target."""
    rng = scene.rng
    c = scene.contrast
    paint_background(scene, float(rng.uniform(0.05, 0.3)), int(rng.integers(0, 3)), False)
    radius = _blob_radius(scene, 4.0, 22.0)
    for _ in range(int(rng.integers(1, 4))):
        kind = str(rng.choice(["smooth", "lobulated", "irregular"]))
        look = _look(scene, style, _sign(rng, 0.35))
        first = place_blob(scene, lambda kind=kind: random_blob(scene, radius, kind))
        if first is None:
            continue
        blob, sl, level = first
        label = scene.new_label()
        grey = paint(scene, sl, level, look, label)
        look = replace(look, level=grey)
        members = [(blob, label)]
        scene.targets.append(label)
        for _ in range(int(rng.integers(1, 4))):
            for _ in range(8):
                parent, _ = members[int(rng.integers(len(members)))]
                new, _ = bud_blob(scene, parent, (0.75, 1.25), kind)
                ids = {lab for _, lab in members}
                fit = _fit(scene, new, 3.0, 40, 1.15, allowed=ids)
                if fit is None:
                    continue
                nsl, nlevel = fit
                nlabel = scene.new_label()
                paint(scene, nsl, nlevel, look, nlabel)
                members.append((new, nlabel))
                scene.targets.append(nlabel)
                break
        if len(members) > 1 and rng.random() < 0.5:
            _contact_seam(
                scene,
                [lab for _, lab in members],
                -np.sign(look.contrast) * float(rng.uniform(0.1, 0.35)) * c,
            )
    add_distractors(scene, style, int(rng.integers(0, 3)))


def _contact_seam(scene: Scene, ids: list[int], delta: float) -> None:
    """Shift the grey value on contact surfaces between the given labels (a faint membrane)."""
    lab = scene.labels
    mine = np.isin(lab, ids)
    seam = np.zeros(lab.shape, bool)
    for ax in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[ax] = slice(1, None)
        b[ax] = slice(None, -1)
        diff = mine[tuple(a)] & mine[tuple(b)] & (lab[tuple(a)] != lab[tuple(b)])
        seam[tuple(a)] |= diff
        seam[tuple(b)] |= diff
    scene.image[seam] += np.float32(delta)


def build_dark(scene: Scene, style: Style) -> None:
    """Objects of any shape darker than their surroundings (cysts, lumens, hypodense lesions)."""
    rng = scene.rng
    paint_background(scene, float(rng.uniform(0.05, 0.25)), int(rng.integers(0, 3)), False)
    for _ in range(int(rng.integers(2, 6))):
        look = _look(scene, style, -1.0, strength=(0.5, 1.0), texture=(0.02, 0.2))
        add_mixed(scene, style, look)
    add_distractors(scene, style, int(rng.integers(0, 3)))


def build_lowcontrast(scene: Scene, style: Style) -> None:
    """Objects of any shape with a small contrast and blurry boundaries."""
    rng = scene.rng
    paint_background(scene, float(rng.uniform(0.02, 0.12)), int(rng.integers(0, 2)), False)
    for _ in range(int(rng.integers(1, 5))):
        add_mixed(scene, style, _look(scene, style, _sign(rng, 0.4)))


def build_cysts(scene: Scene, style: Style) -> None:
    """Packed hollow cysts: a thin bright wall around a lumen darker than the tissue.

    The whole cyst (wall and lumen) is the target. No training family looks like this -- a dark
    interior inside a bright ring -- which is why it is held out to demonstrate fine-tuning.
    """
    rng = scene.rng
    paint_background(scene, float(rng.uniform(0.05, 0.25)), int(rng.integers(0, 3)), False)
    radius = _blob_radius(scene, 6.0, 24.0)
    wall = float(rng.uniform(0.65, 0.85))  # lumen boundary as a fraction of the cyst's level
    c = scene.contrast
    for _ in range(int(rng.integers(3, 9))):
        kind = str(rng.choice(["smooth", "lobulated"]))
        placed = place_blob(scene, lambda kind=kind: random_blob(scene, radius, kind), margin=1.05)
        if placed is None:
            continue
        _, sl, level = placed
        label = scene.new_label()
        rise = c * float(rng.uniform(0.6, 1.1))
        tissue = paint(scene, sl, level, Look(contrast=rise, texture=0.1), label) - rise
        drop = c * float(rng.uniform(0.2, 0.5))
        # The lumen sits below the surrounding tissue (an absolute level, not relative to the
        # wall) and is drawn into the image only: it stays part of the cyst's label.
        lumen = Look(contrast=-drop, texture=0.05, level=tissue - drop)
        paint(scene, sl, level / np.float32(wall), lumen, None)
        scene.targets.append(label)
    add_distractors(scene, style, int(rng.integers(0, 3)))


BUILDERS: dict[str, Callable[[Scene, Style], None]] = {
    "glomeruli": build_glomeruli,
    "organ": build_organ,
    "lesion": build_lesion,
    "tubes": build_tubes,
    "plates": build_plates,
    "touching": build_touching,
    "dark": build_dark,
    "lowcontrast": build_lowcontrast,
    "cysts": build_cysts,
}


def draw_style(
    rng: np.random.Generator, family: str, clean: bool = False
) -> tuple[float, float, Style]:
    """Draw ``(base, contrast, style)`` for a volume of ``family``.

    The contrast is at most 60% of the base so dark objects stay above zero. ``clean`` gives a
    high signal-to-noise and mild blur (demo data).
    """
    base = float(rng.uniform(500.0, 2500.0))
    contrast = base * float(rng.uniform(0.2, 0.6))
    low = family == "lowcontrast"
    if clean:
        cnr = float(rng.uniform(7.0, 12.0))
    elif low:
        cnr = float(rng.uniform(3.0, 8.0))
    else:
        cnr = log_uniform(rng, 2.5, 10.0)
    blur = float(rng.uniform(0.4, 0.7)) if clean else float(rng.uniform(0.3, 1.2))
    style = Style(noise=contrast / cnr, blur=blur, low_contrast=low)
    return base, contrast, style
