"""Training and fine-tuning of PropMask and Box2Mask.

``train_default`` reproduces the bundled ``lite`` weights from synthetic volumes;
``finetune`` adapts weights to a user's own annotated volumes (PropSAM-Finetuned).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .loop import TrainConfig, train
from .tasks import LabelledVolume, TaskConfig

logger = logging.getLogger(__name__)

#: Synthetic seeds used for training; held-out evaluation uses seeds >= HELDOUT_SEED.
TRAIN_SEED_BASE = 0
VAL_SEED_BASE = 50_000
HELDOUT_SEED = 100_000

__all__ = [
    "HELDOUT_SEED",
    "LabelledVolume",
    "TaskConfig",
    "TrainConfig",
    "finetune",
    "from_synthetic",
    "labelled_from_arrays",
    "split_holdout",
    "synthetic_factory",
    "train",
    "train_default",
]


def from_synthetic(vol: Any) -> LabelledVolume:
    """Wrap a :class:`napari_propsam.devtools.synthetic.SyntheticVolume`."""
    return LabelledVolume(
        np.asarray(vol.image, np.float32),
        np.asarray(vol.labels, np.int32),
        tuple(vol.targets),
        tuple(vol.spacing),
        f"{vol.family}-{vol.seed}",
    )


def synthetic_factory(
    seed_base: int = TRAIN_SEED_BASE,
    families: Sequence[str] | None = None,
    shape: tuple[int, int, int] = (64, 128, 128),
    exclude: Sequence[str] = (),
) -> Callable[[int], LabelledVolume]:
    """``f(i)`` -> the i-th synthetic volume, families round-robin, seed ``seed_base + i``."""
    from ..devtools.synthetic import FAMILIES, make_volume

    fams = [f for f in (families or FAMILIES) if f not in exclude]

    def make(i: int) -> LabelledVolume:
        return from_synthetic(make_volume(fams[i % len(fams)], seed_base + i, shape))

    return make


def train_default(
    network: str,
    out_dir: str | Path,
    steps: int = 3000,
    seed: int = 0,
    exclude_families: Sequence[str] = (),
    families: Sequence[str] | None = None,
    init_weights: str | Path | None = None,
    **overrides: Any,
) -> Path:
    """Train the bundled ``lite`` network on synthetic data (resumable).

    Args:
        network: ``"propmask"`` or ``"box2mask"``.
        out_dir: Run folder (resume state, logs, weights).
        steps: Optimiser steps of this run (one cosine cycle).
        seed: Seed; also selects the training volumes' seed range.
        exclude_families: Families left out of the training data (validation keeps the rest).
        families: Training families in round-robin order (default: all). A family listed twice is
            sampled twice as often, which is how a second cycle stresses a weak family.
        init_weights: Start from these weights (a warm restart of the cosine schedule) instead of
            random initialisation.
        **overrides: :class:`TrainConfig` fields.

    Returns:
        Path of the final safetensors weights.
    """
    config = replace(TrainConfig(network=network, steps=steps, seed=seed), **overrides)
    factory = synthetic_factory(
        TRAIN_SEED_BASE + seed * 1_000_003, families=families, exclude=exclude_families
    )
    val = synthetic_factory(VAL_SEED_BASE, exclude=exclude_families)
    val_vols = [val(i) for i in range(16)]
    return train(
        config,
        out_dir,
        factory,
        val_vols,
        init_weights=init_weights,
        provenance={
            "data": "synthetic (napari_propsam.devtools.synthetic)",
            "excluded": list(exclude_families),
            "families": list(families) if families else "all",
            "init": str(init_weights) if init_weights else "random",
        },
    )


def _labelled_bounds(labels: Any, slab: int = 16) -> tuple[slice, slice, slice] | None:
    """Bounding box of the non-zero voxels of a ``(Z, Y, X)`` array, read ``slab`` planes at a
    time so a lazy (zarr/dask/memmap) volume is never loaded whole."""
    z_any: list[bool] = []
    rows = np.zeros(labels.shape[1], bool)
    cols = np.zeros(labels.shape[2], bool)
    for z0 in range(0, labels.shape[0], slab):
        block = np.asarray(labels[z0 : z0 + slab]) != 0
        z_any.extend(block.any(axis=(1, 2)).tolist())
        rows |= block.any(axis=(0, 2))
        cols |= block.any(axis=(0, 1))
    zs, ys, xs = np.flatnonzero(z_any), np.flatnonzero(rows), np.flatnonzero(cols)
    if not zs.size:
        return None
    return tuple(slice(int(a[0]), int(a[-1]) + 1) for a in (zs, ys, xs))  # type: ignore[return-value]


def labelled_from_arrays(
    image: Any,
    labels: Any,
    spacing: Sequence[float] | None = None,
    name: str = "",
    margin: int | None = 32,
) -> LabelledVolume:
    """A user's annotated volume: every non-zero label id is a training object.

    Args:
        image: ``(Z, Y, X)`` intensities; numpy or lazy (zarr, dask, memmap).
        labels: ``(Z, Y, X)`` integer labels of the same shape; 0 = not annotated.
        spacing: ``(z, y, x)`` voxel size (default 1, 1, 1).
        name: Name used in logs and errors.
        margin: Keep only the annotated objects' bounding box plus this many voxels on every
            side, so fine-tuning on a few objects of a huge lazy volume reads (and holds) only
            that region; training crops never reach further than the tasks' context anyway.
            None keeps the whole volume.

    Returns:
        A :class:`LabelledVolume` with a float32 image and int32 labels.

    Raises:
        ValueError: shapes differ, not 3D, or no labelled object.
    """
    if len(image.shape) != 3 or tuple(image.shape) != tuple(labels.shape):
        raise ValueError(
            f"image {tuple(image.shape)} and labels {tuple(labels.shape)} must be the same 3D shape"
        )
    bounds = _labelled_bounds(labels)
    if bounds is None:
        raise ValueError(f"labels {name or ''} contain no annotated object (all zero)")
    if margin is not None:
        region = tuple(
            slice(max(0, b.start - margin), min(n, b.stop + margin))
            for b, n in zip(bounds, labels.shape, strict=True)
        )
        image, labels = image[region], labels[region]
    image = np.asarray(image, np.float32)
    labels = np.asarray(labels)
    ids = tuple(int(i) for i in np.unique(labels) if i != 0)
    sp = tuple(float(s) for s in spacing) if spacing is not None else (1.0, 1.0, 1.0)
    return LabelledVolume(image, labels.astype(np.int32), ids, sp, name)  # type: ignore[arg-type]


def split_holdout(
    volume: LabelledVolume, fraction: float = 0.2, min_objects: int = 3
) -> tuple[LabelledVolume, LabelledVolume | None]:
    """Hold out some annotated objects of a volume for validation (choosing the best weights).

    Every ``round(1 / fraction)``-th object by id (at least one) is held out, the rest train;
    both share the volume's arrays (the other set's objects are just other objects there).

    Args:
        volume: The annotated volume.
        fraction: Share of the objects to hold out, 0..1.
        min_objects: With fewer objects nothing is held out.

    Returns:
        ``(train, held_out)``; ``held_out`` is None when nothing is held out.
    """
    targets = sorted(volume.targets)
    if len(targets) < max(2, int(min_objects)) or fraction <= 0:
        return volume, None
    every = max(2, round(1.0 / fraction))
    held = tuple(t for i, t in enumerate(targets) if i % every == every // 2) or (targets[-1],)
    rest = tuple(t for t in targets if t not in held)
    make = lambda ts, tag: LabelledVolume(  # noqa: E731
        volume.image, volume.labels, ts, volume.spacing, f"{volume.name} {tag}"
    )
    return make(rest, "train"), make(held, "held out")


def finetune(
    volumes: Sequence[LabelledVolume],
    out_dir: str | Path,
    *,
    base: str | Path | None = None,
    networks: Sequence[str] = ("propmask", "box2mask"),
    steps: int = 300,
    lr: float = 1e-4,
    seed: int = 0,
    val_volumes: Sequence[LabelledVolume] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[str, int, int, float], None] | None = None,
) -> dict[str, Path]:
    """Fine-tune weights on annotated volumes (PropSAM-Finetuned).

    Args:
        volumes: The user's labelled volumes (at least one object in all).
        out_dir: Output folder; gets ``propmask.safetensors`` / ``box2mask.safetensors``.
        base: Model to start from (None = bundled default).
        networks: Which networks to adapt.
        steps: Steps per network.
        lr: Peak learning rate (small: we adapt, not retrain).
        seed: Seed.
        val_volumes: Validation volumes (default: the training volumes).
        should_stop: Polled every step; True stops early (weights so far are saved).
        on_progress: ``on_progress(network, step, steps, loss)``.

    Returns:
        ``{network: weights path}``.
    """
    from ..registry import resolve_model

    vols = [v for v in volumes if v.targets]
    if not vols:
        raise ValueError("fine-tuning needs at least one annotated object")
    bundle = resolve_model(base)
    sources = {"propmask": bundle.propmask, "box2mask": bundle.box2mask}
    out = Path(out_dir)
    results = {}
    for net in networks:
        src = sources[net]
        if src is None:
            raise ValueError(f"base model has no {net} network")
        if (out / net / "last.pt").is_file():
            logger.warning(
                "continuing the earlier %s fine-tuning run in %s (it stops at step %d); choose an "
                "empty folder to start afresh",
                net,
                out / net,
                steps,
            )
        cfg = TrainConfig(
            network=net,
            arch=src.arch,
            steps=steps,
            lr=lr,
            seed=seed,
            pool_size=len(vols),
            refresh_every=0,
            val_every=max(1, steps // 4),
            val_size=32,
            checkpoint_every=50,
            log_every=max(1, steps // 20),
        )
        cb = None
        if on_progress is not None:
            cb = lambda s, n, loss, _net=net: on_progress(_net, s, n, loss)  # noqa: E731
        results[net] = train(
            cfg,
            out / net,
            lambda i: vols[i % len(vols)],
            list(val_volumes or vols),
            init_weights=src.model.state_dict(),
            resume=True,
            provenance={"data": "fine-tuned on user volumes", "base": str(src.source)},
            should_stop=should_stop,
            on_progress=cb,
        )
    return results
