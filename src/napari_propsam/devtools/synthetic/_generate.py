"""The label-map training families: recipes, output shapes and the generation entry point."""

from __future__ import annotations

import logging

import numpy as np

from ._scene import finalize_labels, log_uniform
from .appearance import PROFILES, render
from .labelmaps import Recipe, build_scene, make_label_scene, output_labels

logger = logging.getLogger(__name__)

#: Training families drawn label map first (see labelmaps.py and appearance.py).
LABELMAP_RECIPES: dict[str, Recipe] = {
    # Everything: all shapes, sizes 5 px to 90% of the in-plane size, all contrast modes.
    "labelmap": Recipe(),
    # Thin and curved: tube trees, sheets, shells, discs and rods; mostly thick slices.
    "labelmap_thin": Recipe(
        objects=(6, 14),
        kinds=(0.2, 0.05, 0.2, 0.25, 0.3, 0.0, 0.0),
        modes=(0.65, 0.1, 0.1, 0.15),
        size=(15.0, 0.9),
        p_thin=0.8,
        p_nested=0.15,
        p_region_target=0.1,
    ),
    # Subtle: targets that differ from their surroundings only by texture, a thin boundary or a
    # few percent of contrast.
    "labelmap_subtle": Recipe(objects=(4, 12), modes=(0.05, 0.45, 0.25, 0.25)),
    # Large: twice the in-plane size (half the slices), targets 20 px to > 200 px across.
    "labelmap_large": Recipe(objects=(4, 10), size=(20.0, 0.95), regions=(1, 5), p_big=0.7),
}

LABELMAP_FAMILIES: tuple[str, ...] = tuple(LABELMAP_RECIPES)


def output_shape(family: str, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Shape a family generates for a requested ``shape``: ``labelmap_large`` doubles Y and X
    and halves Z (at least 16 slices), so the voxel count only doubles."""
    if family == "labelmap_large":
        return (max(16, shape[0] // 2), 2 * shape[1], 2 * shape[2])
    return shape


def draw_z_spacing(rng: np.random.Generator, family: str) -> float:
    """Z spacing of a label-map volume: isotropic in 35% (20% for thin structures), else
    log-uniform in 1.5-6."""
    p_iso = 0.2 if family == "labelmap_thin" else 0.35
    iso = rng.random() < p_iso
    drawn = log_uniform(rng, 1.5, 6.0)
    return 1.0 if iso else drawn


def generate_labelmap(
    family: str, rng: np.random.Generator, shape: tuple[int, int, int], z_spacing: float
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One volume of a label-map family.

    Args:
        family: One of ``LABELMAP_FAMILIES``.
        rng: Random source (fixes everything).
        shape: ``(Z, Y, X)`` output shape (already mapped by :func:`output_shape`).
        z_spacing: Z voxel size.

    Returns:
        ``(image, labels, targets)``: float32 raw image >= 0, int32 consecutive labels, sorted
        valid target ids (maybe empty: the caller retries).
    """
    recipe = LABELMAP_RECIPES[family]
    names = sorted(PROFILES)
    profile = PROFILES[names[int(rng.integers(len(names)))]]
    scene = make_label_scene(shape, z_spacing, rng)
    build_scene(scene, recipe)
    image = render(scene, profile)
    scene.labels = output_labels(scene)
    scene.targets = [t for t in scene.targets if not scene.parts[t].merge]
    labels, targets = finalize_labels(scene)
    logger.debug(
        "%s: profile %s, z %.2f, fine %d, %d labels, %d targets",
        family,
        profile.name,
        z_spacing,
        scene.fine,
        int(labels.max()),
        len(targets),
    )
    return image, labels, targets
