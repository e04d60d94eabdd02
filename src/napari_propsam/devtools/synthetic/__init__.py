"""Procedurally generated, labelled 3D volumes for training and demos.

No real data can be downloaded, so the networks learn slice-to-slice continuity from synthetic
scenes: eight classic object families (``CLASSIC_FAMILIES``, families.py) on varied backgrounds
(bundled scikit-image pictures swept through 3D, procedural noise, tissue compartments) with
blur, Gaussian/Poisson noise, ring and streak artefacts, intensity drift and thick slices; and
four label-map-first families (``LABELMAP_FAMILIES``: labelmaps.py draws random shapes into a
label map, appearance.py gives every label a GMM intensity and texture and simulates a
micro-CT, CT, MR, fluorescence or EM acquisition). ``FAMILIES`` (the training default) holds
both; ``HELDOUT_FAMILIES`` (``cysts``, and heldout.py's ``vessels_fluo`` and ``texture``) are
never trained on.

Labels and targets:
    ``labels`` holds every generated instance: the family's objects and labelled distractors
    (other kinds of objects, either polarity). ``targets`` lists the family's objects that are
    valid prompts (at least ``MIN_EXTENT`` = 5 slices and pixels along every axis, one
    26-connected component). Not labelled at all: background textures, tissue compartments, the
    parent organ of lesions, vessels inside organs (drawn into the organ's label region) and the
    tubules around glomeruli. For ``glomeruli`` only the glomerular tuft is labelled; the dark
    Bowman's space and the capsule around it are background. For ``touching`` every look-alike
    in a cluster is its own target. Label-map families label every voxel (tissue regions too,
    so label 0 may be absent); any label can be a target, regions only when compact.

Anisotropy:
    Objects live in physical space (y/x pixel = 1 unit); a volume with Z spacing ``s`` samples
    it every ``s`` units, so the same anatomy spans ``s`` times fewer slices.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ._generate import LABELMAP_FAMILIES, draw_z_spacing, generate_labelmap, output_shape
from ._scene import MIN_EXTENT, Scene, finalize_labels
from .artefacts import ArtefactRates, apply_artefacts
from .families import BUILDERS, draw_style
from .heldout import HELDOUT_BUILDERS

logger = logging.getLogger(__name__)

__all__ = [
    "CLASSIC_FAMILIES",
    "FAMILIES",
    "HELDOUT_FAMILIES",
    "LABELMAP_FAMILIES",
    "MIN_EXTENT",
    "SyntheticVolume",
    "make_dataset",
    "make_sample_stack",
    "make_volume",
]

#: The eight hand-designed families (families.py).
CLASSIC_FAMILIES: tuple[str, ...] = (
    "glomeruli",
    "organ",
    "lesion",
    "tubes",
    "plates",
    "touching",
    "dark",
    "lowcontrast",
)

#: Training families: the classic ones, then the label-map-first ones (labelmaps.py).
FAMILIES: tuple[str, ...] = CLASSIC_FAMILIES + LABELMAP_FAMILIES

# Families never used to train the bundled weights. ``cysts`` measures fine-tuning on an unseen
# structure; ``vessels_fluo`` and ``texture`` (heldout.py) measure generalisation to a
# morphology-plus-appearance and to a kind of boundary that no training family has.
HELDOUT_FAMILIES: tuple[str, ...] = ("cysts", "vessels_fluo", "texture")
_ALL_FAMILIES = FAMILIES + HELDOUT_FAMILIES
# Seed salt per family. The classic families and cysts keep the indices they had before the
# label-map families existed, so their seeds still give the same volumes (benchmarks use them).
_SALT = {
    name: i
    for i, name in enumerate(
        CLASSIC_FAMILIES + ("cysts",) + LABELMAP_FAMILIES + ("vessels_fluo", "texture")
    )
}

_MIN_SIDE = 16
_ATTEMPTS = 6


@dataclass(frozen=True)
class SyntheticVolume:
    """One generated volume.

    Attributes:
        image: ``(Z, Y, X)`` float32 raw grey values (>= 0, typically 0..4000, not normalised).
        labels: ``(Z, Y, X)`` int32 instances, 0 = background, ids ``1..n`` consecutive.
        targets: Sorted label ids of the family's objects meant to be segmented.
        spacing: ``(z, y, x)`` voxel size; y = x = 1; z >= 1 unless ``anisotropy`` asked less.
        family: One of ``FAMILIES`` or ``HELDOUT_FAMILIES``.
        seed: The seed it was generated from.
    """

    image: np.ndarray
    labels: np.ndarray
    targets: tuple[int, ...]
    spacing: tuple[float, float, float]
    family: str
    seed: int


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"shape must be (Z, Y, X), got {tuple(shape)}")
    out = tuple(int(s) for s in shape)
    if min(out) < _MIN_SIDE:
        raise ValueError(f"every side of shape must be >= {_MIN_SIDE}, got {out}")
    return out  # type: ignore[return-value]


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) % 2**64, *salt])


def _generate(
    family: str,
    seed: int,
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    z_spacing: float,
    rates: ArtefactRates,
    clean: bool = False,
) -> SyntheticVolume:
    """A classic family volume, retried until it has a valid target."""
    spacing = (float(z_spacing), 1.0, 1.0)

    def attempt() -> tuple[np.ndarray, np.ndarray, Sequence[int]]:
        base, contrast, style = draw_style(rng, family, clean)
        scene = Scene(shape=shape, spacing=spacing, rng=rng, base=base, contrast=contrast)
        BUILDERS[family](scene, style)
        apply_artefacts(scene, style.noise, style.blur, rates)
        labels, targets = finalize_labels(scene)
        return scene.image, labels, targets

    return _first_valid(family, seed, shape, z_spacing, attempt)


def _first_valid(
    family: str,
    seed: int,
    shape: tuple[int, int, int],
    z_spacing: float,
    attempt: Callable[[], tuple[np.ndarray, np.ndarray, Sequence[int]]],
) -> SyntheticVolume:
    """The first of up to ``_ATTEMPTS`` calls of ``attempt`` (``(image, labels, targets)``, the
    random stream carried on from one call to the next) that has a target.

    Raises:
        RuntimeError: no attempt had a valid target.
    """
    for n in range(_ATTEMPTS):
        image, labels, targets = attempt()
        if targets:
            return SyntheticVolume(
                image=image,
                labels=labels,
                targets=tuple(targets),
                spacing=(float(z_spacing), 1.0, 1.0),
                family=family,
                seed=int(seed),
            )
        logger.debug("%s seed %d attempt %d produced no valid target", family, seed, n)
    raise RuntimeError(
        f"could not generate a valid {family!r} volume for seed {seed}, shape {shape}, "
        f"z spacing {z_spacing}"
    )


def make_volume(
    family: str,
    seed: int,
    shape: tuple[int, int, int] = (64, 128, 128),
    anisotropy: float | None = None,
) -> SyntheticVolume:
    """Generate one labelled volume.

    Deterministic for a given ``(family, seed, shape, anisotropy)``.

    Args:
        family: One of ``FAMILIES`` (training) or ``HELDOUT_FAMILIES`` (never trained on).
        seed: Any integer.
        shape: ``(Z, Y, X)``, every side >= 16. ``labelmap_large`` generates twice the Y and X
            size with half the slices (at least 16), for targets more than 200 px across.
        anisotropy: Z voxel size relative to Y/X (> 0). None draws it from the seed: classic
            families isotropic about half the time, else Z spacing uniform in 1.5-5; label-map
            families isotropic 35% (thin: 20%), else log-uniform in 1.5-6.

    Returns:
        A :class:`SyntheticVolume` with image float32 and labels int32 of the family's output
        shape and at least one target.

    Raises:
        ValueError: unknown family, bad shape or anisotropy.
    """
    if family not in _ALL_FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {_ALL_FAMILIES}")
    shape = _check_shape(shape)
    rng = _rng(seed, _SALT[family], *shape)
    if anisotropy is not None:
        z_spacing = float(anisotropy)
        if not math.isfinite(z_spacing) or z_spacing <= 0:
            raise ValueError(f"anisotropy must be a positive finite number, got {anisotropy}")
    if family in BUILDERS:
        # Always consume the same draws so the rest of the stream does not depend on the override.
        iso = rng.random() < 0.5
        drawn = 1.0 if iso else float(rng.uniform(1.5, 5.0))
        z_spacing = drawn if anisotropy is None else z_spacing
        return _generate(family, seed, rng, shape, z_spacing, ArtefactRates())
    drawn = draw_z_spacing(rng, family)
    z_spacing = drawn if anisotropy is None else z_spacing
    return _generate_new(family, seed, rng, output_shape(family, shape), z_spacing)


def _generate_new(
    family: str,
    seed: int,
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    z_spacing: float,
) -> SyntheticVolume:
    """A label-map or new held-out family volume, retried until it has a valid target."""

    def attempt() -> tuple[np.ndarray, np.ndarray, Sequence[int]]:
        if family in HELDOUT_BUILDERS:
            return HELDOUT_BUILDERS[family](rng, shape, z_spacing)
        return generate_labelmap(family, rng, shape, z_spacing)

    return _first_valid(family, seed, shape, z_spacing, attempt)


def make_dataset(
    seeds: Iterable[int],
    families: Sequence[str] = FAMILIES,
    shape: tuple[int, int, int] = (64, 128, 128),
) -> Iterator[SyntheticVolume]:
    """Lazily generate volumes, cycling through ``families`` (seed ``i`` -> family ``i % n``).

    Raises:
        ValueError: empty or unknown families.
    """
    families = tuple(families)
    if not families:
        raise ValueError("families must not be empty")
    for f in families:
        if f not in _ALL_FAMILIES:
            raise ValueError(f"unknown family {f!r}; expected one of {_ALL_FAMILIES}")
    for i, seed in enumerate(seeds):
        yield make_volume(families[i % len(families)], int(seed), shape)


def make_sample_stack(seed: int = 0) -> SyntheticVolume:
    """A synthetic micro-CT stack of kidney cortex with glomeruli, for napari sample data and
    the demo.

    Returns:
        Family ``'glomeruli'``, isotropic, shape ``(64, 192, 192)``; ``image`` is float32 holding
        whole numbers in the uint16 range (``image.astype(np.uint16)`` is lossless).
    """
    shape = (64, 192, 192)
    rng = _rng(seed, 1000, *shape)
    # Micro-CT: rings are common, metal streaks are not.
    rates = ArtefactRates(bias=1.0, drift=0.3, rings=0.7, streaks=0.0, poisson=1.0, strength=0.4)
    vol = _generate("glomeruli", seed, rng, shape, 1.0, rates, clean=True)
    image = np.clip(np.rint(vol.image * 8.0), 0, np.iinfo(np.uint16).max).astype(np.float32)
    return SyntheticVolume(
        image=image,
        labels=vol.labels,
        targets=vol.targets,
        spacing=vol.spacing,
        family=vol.family,
        seed=vol.seed,
    )
