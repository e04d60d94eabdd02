"""2D search for objects like the examples: sliding PropMask windows, votes, instances.

Arrays are 2D slice planes ``(H, W)``; regions are ``(row0, col0, row1, col1)``, half-open.
See :mod:`napari_propsam.similar` for the method.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..config import (
    BoxConfig,
    PropagationConfig,
    checked_options,
    declare_option,
    split_options,
)
from ..predictors import MaskPropagator, PropMaskPredictor, PropTask
from ..prompt_checks import normalize_box, prepare_mask
from ..registry import ModelSpec, resolve_model
from ..transforms import (
    Window,
    crop_planes,
    prepare_guide,
    slices_to_uint8,
)

logger = logging.getLogger(__name__)

__all__ = ["SimilarConfig", "detect_similar", "similarity_map", "split_instances"]


@dataclass(frozen=True)
class SimilarConfig:
    """How the query window searches a slice and how votes become instances.

    Each field's metadata declares its label, help, unit and valid range
    (:func:`napari_propsam.config.option_specs`); the ``propsam find-similar`` flags are
    generated from it, and every field is validated when the config is built.

    Attributes:
        stride: Window step as a fraction of the window side (0.5 = windows overlap by half).
        vote_threshold: A pixel is foreground when its (weighted) mean vote reaches this.
        center_weighting: Weight each window's votes by a tent that is highest at the window
            centre, because an object cut by a window edge is predicted less reliably than one
            the window shows whole.
        min_area_factor: Keep instances with area >= this x the smallest example's area.
        max_area_factor: Keep instances with area <= this x the largest example's area.
        split_touching: Split touching instances with a distance-transform watershed.
        split_above: Only components larger than this x the largest example's area are split,
            so one lobulated object is not cut into pieces.
        split_depth: How far (in pixels, as a fraction of the smallest example's equivalent
            radius ``sqrt(area / pi)``) a distance-transform maximum must rise above the neck
            joining it to another one to seed its own instance.
        example_overlap: An instance is the example itself (and dropped from the new detections)
            when at least this fraction of its area lies on an example.
        slice_step: With a ``slice_range``, search every ``slice_step``-th slice (0 = half the
            smallest example's extent, so each object is crossed about twice).
        link_overlap: With a ``slice_range``, instances on consecutive searched slices are one
            object when their overlap is at least this fraction of the smaller one.
    """

    stride: float = field(
        default=0.5,
        metadata=declare_option(
            "Stride", "window step as a fraction of the window side (0.5 = windows overlap by "
            "half)", "real", unit="x window side", range=(0.0, 1.0), low_open=True, cli=True,
        ),
    )  # fmt: skip
    vote_threshold: float = field(
        default=0.5,
        metadata=declare_option(
            "Vote threshold", "a pixel is foreground when its weighted mean vote reaches this",
            "real", unit="mean vote", range=(0.0, 1.0), low_open=True, cli=True,
        ),
    )  # fmt: skip
    center_weighting: bool = field(
        default=True,
        metadata=declare_option(
            "Centre weighting", "weight each window's votes by a tent peaking at its centre",
            "flag",
        ),
    )  # fmt: skip
    min_area_factor: float = field(
        default=0.25,
        metadata=declare_option(
            "Min area factor", "keep objects at least this x the smallest example's area",
            "real", unit="x smallest example area", range=(0.0, math.inf), cli=True,
        ),
    )  # fmt: skip
    max_area_factor: float = field(
        default=4.0,
        metadata=declare_option(
            "Max area factor", "keep objects at most this x the largest example's area",
            "real", unit="x largest example area", range=(0.0, math.inf), cli=True,
        ),
    )  # fmt: skip
    split_touching: bool = field(
        default=True,
        metadata=declare_option(
            "Split touching", "split touching objects with a distance-transform watershed "
            "(--no-split keeps them whole)", "flag", cli=True, flag_name="split",
        ),
    )  # fmt: skip
    split_above: float = field(
        default=1.5,
        metadata=declare_option(
            "Split above", "only components larger than this x the largest example's area "
            "are split", "real", unit="x largest example area", range=(1.0, math.inf),
        ),
    )  # fmt: skip
    split_depth: float = field(
        default=0.25,
        metadata=declare_option(
            "Split depth", "how far a distance maximum must rise above its neck to seed its "
            "own object", "real", unit="x smallest example radius", range=(0.0, math.inf),
            low_open=True,
        ),
    )  # fmt: skip
    example_overlap: float = field(
        default=0.2,
        metadata=declare_option(
            "Example overlap", "an object is the example itself when this fraction of it lies "
            "on an example", "real", unit="fraction of area", range=(0.0, 1.0), low_open=True,
        ),
    )  # fmt: skip
    slice_step: int = field(
        default=0,
        metadata=declare_option(
            "Slice step", "with a slice range, search every n-th slice (0 = half the smallest "
            "example's extent)", "whole", unit="slices", range=(0, math.inf),
        ),
    )  # fmt: skip
    link_overlap: float = field(
        default=0.3,
        metadata=declare_option(
            "Link overlap", "objects on consecutive searched slices are one when they overlap "
            "by this fraction of the smaller", "real", unit="fraction of area",
            range=(0.0, 1.0), low_open=True,
        ),
    )  # fmt: skip

    def __post_init__(self) -> None:
        # Each field is checked against its declaration; only the one rule between two fields
        # is written out here.
        checked = checked_options(self)
        if checked["min_area_factor"] > checked["max_area_factor"]:
            raise ValueError("need min_area_factor <= max_area_factor")
        for name, value in checked.items():
            object.__setattr__(self, name, value)


class _Cancelled(Exception):
    """Raised inside the search when the cancel event is set."""


def _split_config(
    options: dict[str, Any],
    config: SimilarConfig | None,
    propagation_config: PropagationConfig | None,
    box_config: BoxConfig | None,
) -> tuple[SimilarConfig, PropagationConfig, BoxConfig]:
    """Route ``**options`` to SimilarConfig, PropagationConfig or BoxConfig (typos raise)."""
    names = {f.name for f in fields(SimilarConfig)}
    own = {k: v for k, v in options.items() if k in names}
    rest = {k: v for k, v in options.items() if k not in names}
    prop, box = split_options(rest, propagation_config, box_config)
    return replace(config or SimilarConfig(), **own), prop, box


def _starts(lo: int, hi: int, size: int, step: int, n: int) -> list[int]:
    """Starts of ``size`` windows covering ``[lo, hi)``, kept inside ``[0, n)`` when they fit."""
    if hi - lo <= size:
        # One window, centred on the span but kept inside the plane when the plane is big enough.
        start = lo - (size - (hi - lo)) // 2
        return [max(0, min(start, n - size))]
    out = list(range(lo, hi - size + 1, step))
    if out[-1] != hi - size:
        out.append(hi - size)  # the last window ends exactly at the span's end
    return out


def _tent(size: int) -> np.ndarray:
    """``(size, size)`` float32 weights, 1 at the centre falling linearly to a small floor."""
    ramp = 1.0 - np.abs(np.linspace(-1.0, 1.0, size, dtype=np.float32))
    ramp = np.maximum(ramp, 0.05)  # the floor keeps edge pixels voted when one window covers them
    return np.outer(ramp, ramp)


def _as_examples(examples: np.ndarray | Sequence[np.ndarray], shape: tuple[int, int]) -> list:
    """``(H, W)`` int labels (one example per id) or a sequence of masks -> list of bool masks."""
    if isinstance(examples, np.ndarray) and examples.ndim == 2:
        arr = np.asarray(examples)
        if arr.shape != shape:
            raise ValueError(f"examples shape {arr.shape} does not match the plane {shape}")
        if arr.dtype == bool:
            ids = [1] if arr.any() else []
            arr = arr.astype(np.int32)
        else:
            ids = [int(i) for i in np.unique(arr) if i > 0]
        masks = [prepare_mask(arr == i, shape) for i in ids]
    else:
        masks = [prepare_mask(m, shape) for m in examples]
    if not masks:
        raise ValueError("no examples: annotate at least one object (mask or box) on the slice")
    return masks


def similarity_map(
    plane: np.ndarray,
    examples: np.ndarray | Sequence[np.ndarray],
    predictor: MaskPropagator,
    *,
    guide_plane: np.ndarray | None = None,
    region: Sequence[float] | None = None,
    config: SimilarConfig | None = None,
    propagation_config: PropagationConfig | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Per-pixel vote that an object like one of the examples covers the pixel.

    Args:
        plane: ``(H, W)`` slice to search (any real dtype).
        examples: ``(H, W)`` int labels (each id > 0 is one example) or a sequence of ``(H, W)``
            bool masks, on ``guide_plane``.
        predictor: PropMask predictor (or a stand-in with the same ``predict``).
        guide_plane: ``(H, W)`` slice the examples were drawn on (default: ``plane``).
        region: ``(row0, col0, row1, col1)`` to search (default: the whole plane).
        config: Search options.
        propagation_config: Crop ratio, minimum crop, percentiles and batch size.
        cancel: Checked between forward passes; when set, raises an internal cancel signal that
            :func:`find_similar_stream` turns into a clean stop.

    Returns:
        ``(H, W)`` float32 in [0, 1]: the highest, over examples, of the mean window vote
        (0 outside ``region``).
    """
    cfg = config or SimilarConfig()
    pcfg = propagation_config or PropagationConfig()
    plane = np.asarray(plane, dtype=np.float32)
    if plane.ndim != 2:
        raise ValueError(f"plane must be 2D (H, W), got shape {plane.shape}")
    guide = plane if guide_plane is None else np.asarray(guide_plane, dtype=np.float32)
    if guide.shape != plane.shape:
        raise ValueError(f"guide plane {guide.shape} and plane {plane.shape} differ in shape")
    masks = _as_examples(examples, plane.shape)
    h, w = plane.shape
    r0, c0, r1, c1 = normalize_box(region, (h, w)) if region is not None else (0, 0, h, w)
    best = np.zeros((h, w), np.float32)
    for mask in masks:
        prepared = prepare_guide(guide, mask, pcfg)
        gwin, (vmin, vmax) = prepared.window, prepared.bounds
        guide_img, guide_mask = prepared.image, prepared.mask
        grows, gcols = gwin.clipped((h, w))
        s = gwin.size
        step = max(1, int(round(cfg.stride * s)))
        windows = [
            Window(r, c, s)
            for r in _starts(r0, r1, s, step, h)
            for c in _starts(c0, c1, s, step, w)
        ]
        weight = _tent(s) if cfg.center_weighting else np.ones((s, s), np.float32)
        votes = np.zeros((h, w), np.float32)
        total = np.zeros((h, w), np.float32)
        scaled = slices_to_uint8(plane[None], vmin, vmax)[0]
        for start in range(0, len(windows), pcfg.max_batch):
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            chunk = windows[start : start + pcfg.max_batch]
            crops = np.concatenate([crop_planes(scaled[None], win) for win in chunk])
            (pred,) = predictor.predict([PropTask(guide_img, guide_mask, crops)])
            for win, p in zip(chunk, pred, strict=True):
                rows, cols = win.clipped((h, w))
                hh, ww = rows.stop - rows.start, cols.stop - cols.start
                votes[rows, cols] += p[:hh, :ww] * weight[:hh, :ww]
                total[rows, cols] += weight[:hh, :ww]
        mean = np.divide(votes, total, out=np.zeros_like(votes), where=total > 0)
        np.maximum(best, mean, out=best)
        logger.debug("example window %d px, %d windows, guide rows %s", s, len(windows), grows)
    out = np.zeros_like(best)
    out[r0:r1, c0:c1] = best[r0:r1, c0:c1]
    return out


def _watershed_split(component: np.ndarray, depth: float) -> np.ndarray:
    """Int labels of one component split at the necks of its distance transform.

    Seeds are the distance maxima at least ``depth`` pixels above their surroundings
    (h-maxima), so the plateaus and shallow bumps of one round or lobulated object stay one seed.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    dist = ndimage.distance_transform_edt(component)
    markers, n = ndimage.label(h_maxima(dist, max(depth, 0.5)))
    if n < 2:
        return component.astype(np.int32)
    return watershed(-dist, markers, mask=component).astype(np.int32)


def split_instances(
    foreground: np.ndarray,
    examples: Sequence[np.ndarray],
    config: SimilarConfig | None = None,
    drop_examples: bool = True,
) -> list[np.ndarray]:
    """Split a foreground map into instances sized like the examples.

    Args:
        foreground: ``(H, W)`` bool.
        examples: ``(H, W)`` bool example masks (sizes set the kept range and the split scale).
        config: Size filter and split options.
        drop_examples: Drop instances that are mostly an example, and remove example pixels from
            the others (the examples are objects already).

    Returns:
        ``(H, W)`` bool masks, holes filled, largest first.
    """
    cfg = config or SimilarConfig()
    areas = [int(m.sum()) for m in examples]
    lo, hi = cfg.min_area_factor * min(areas), cfg.max_area_factor * max(areas)
    depth = cfg.split_depth * float(np.sqrt(min(areas) / np.pi))
    # Holes (pixels voted out by noise) would seed spurious distance maxima: fill them first.
    labels, n = ndimage.label(ndimage.binary_fill_holes(foreground))
    union = np.zeros(foreground.shape, bool)
    for m in examples:
        union |= m
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        comp = labels[sl] == i
        pieces = [comp]
        if cfg.split_touching and comp.sum() > cfg.split_above * max(areas):
            split = _watershed_split(comp, depth)
            pieces = [split == j for j in range(1, int(split.max()) + 1)]
        for piece in pieces:
            full = np.zeros(foreground.shape, bool)
            full[sl] = piece
            if drop_examples:
                on_example = int((full & union).sum())
                if on_example >= cfg.example_overlap * full.sum():
                    continue
                full &= ~union
            if lo <= full.sum() <= hi:
                out.append(full)
    out.sort(key=lambda m: -int(m.sum()))
    return out


def detect_similar(
    plane: np.ndarray,
    examples: np.ndarray | Sequence[np.ndarray],
    *,
    predictor: MaskPropagator | None = None,
    model: ModelSpec = None,
    device: str | torch.device | None = None,
    guide_plane: np.ndarray | None = None,
    region: Sequence[float] | None = None,
    config: SimilarConfig | None = None,
    propagation_config: PropagationConfig | None = None,
    drop_examples: bool | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> list[np.ndarray]:
    """2D search: instances on ``plane`` that look like the examples.

    Args:
        plane: ``(H, W)`` image (any real dtype), e.g. one slice of a ZYX volume.
        examples: ``(H, W)`` int labels (each id > 0 is one example) or a sequence of ``(H, W)``
            bool masks, drawn on ``guide_plane``.
        predictor: PropMask predictor or stand-in (built from ``model``/``device`` if None).
        model: Model (None = bundled default), used when ``predictor`` is None.
        device: Device request.
        guide_plane: ``(H, W)`` image the examples were drawn on (default ``plane``).
        region: ``(row0, col0, row1, col1)`` to search (default: whole plane).
        config: :class:`SimilarConfig`.
        propagation_config: Crop ratio, percentiles, batch size (:class:`PropagationConfig`).
        drop_examples: Leave the examples out of the result (default: True when the examples
            are on ``plane`` itself, i.e. ``guide_plane`` is None).
        cancel: Checked between forward passes.
        **options: Fields of :class:`SimilarConfig` or :class:`PropagationConfig`.

    Returns:
        ``(H, W)`` bool instance masks, largest first, not including the examples.

    Raises:
        ValueError: no examples, shapes that differ, constant intensities under an example.
    """
    cfg, pcfg, _ = _split_config(options, config, propagation_config, None)
    plane = np.asarray(plane)
    masks = _as_examples(examples, tuple(plane.shape[-2:]))
    if predictor is None:
        predictor = PropMaskPredictor(resolve_model(model).propmask.model, device)
    vote = similarity_map(
        plane,
        masks,
        predictor,
        guide_plane=guide_plane,
        region=region,
        config=cfg,
        propagation_config=pcfg,
        cancel=cancel,
    )
    if drop_examples is None:
        drop_examples = guide_plane is None
    return split_instances(vote >= cfg.vote_threshold, masks, cfg, drop_examples)
