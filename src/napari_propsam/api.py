"""Scripting API: ``segment`` and ``propagate`` a 3D object from one 2D prompt.

Arrays are ZYX. A prompt lives on slice ``slice_index`` of ``axis``; its plane is the 2D array
left after removing that axis (for ``axis=1`` the plane is ``(Z, X)``). Boxes are
``(row0, col0, row1, col1)`` in that plane, half-open, like a napari rectangle's corners.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import BoxConfig, PropagationConfig, split_options
from .predictors import Box2MaskPredictor, MaskPropagator, PropMaskPredictor
from .prompt_checks import collect_prompts, normalize_box
from .propagation import SliceUpdate, prompt_bounds, propagate_mask
from .quality import ObjectQuality
from .registry import ModelSpec, resolve_model
from .transforms import mask_bbox
from .validation import check_all_finite, check_box, check_index, check_mask, check_spacing
from .volume import SliceReader

logger = logging.getLogger(__name__)

#: Smallest box (in pixels) Box2Mask is asked about: fewer pixels carry no object to find.
MIN_BOX_PIXELS = 4

__all__ = [
    "ObjectROI",
    "SliceUpdate",
    "apply_update",
    "box_to_mask",
    "propagate",
    "segment",
    "segment_roi",
]


def box_to_mask(
    reader: SliceReader,
    slice_index: int,
    box: Sequence[float],
    predictor: Box2MaskPredictor,
    config: BoxConfig | None = None,
) -> np.ndarray:
    """Box2Mask: a box on one slice -> the guiding mask on that slice.

    Args:
        reader: Volume reader along the prompt axis.
        slice_index: Prompt slice.
        box: ``(row0, col0, row1, col1)`` in the slice plane.
        predictor: Box2Mask predictor.
        config: Candidate windows (defaults if None).

    Returns:
        ``(H, W)`` bool mask of the slice plane, non-zero only inside the box.

    Raises:
        ValueError: a bad box, or Box2Mask finds no object in it.
    """
    r0, c0, r1, c1 = normalize_box(box, reader.plane_shape)
    crop = reader.read(slice_index, slice_index + 1, slice(r0, r1), slice(c0, c1))[0]
    if crop.size < MIN_BOX_PIXELS:
        raise ValueError(
            f"the box {(r0, c0, r1, c1)} is too small ({r1 - r0} x {c1 - c0} px, at least "
            f"{MIN_BOX_PIXELS} px are needed); draw the box around the whole object"
        )
    if not np.ptp(crop) > 0:
        raise ValueError(
            f"the image is constant inside the box {(r0, c0, r1, c1)} on slice {slice_index}; "
            "there is no object to find"
        )
    pred = predictor.predict(crop, config)
    if not pred.any():
        raise ValueError(
            f"Box2Mask found no object in box {(r0, c0, r1, c1)} on slice {slice_index}; "
            "draw the box tighter around the object or paint a mask prompt instead"
        )
    out = np.zeros(reader.plane_shape, bool)
    out[r0:r1, c0:c1] = pred
    return out


def _predictors(
    model: ModelSpec, device: Any, predictor: MaskPropagator | None, boxes: bool
) -> tuple[MaskPropagator, Box2MaskPredictor | None]:
    """The PropMask predictor (``predictor`` if given) and, for box prompts, Box2Mask's."""
    if predictor is not None and not boxes:
        return predictor, None
    bundle = resolve_model(model)
    if predictor is None:
        predictor = PropMaskPredictor(bundle.propmask.model, device)
    if boxes and bundle.box2mask is None:
        raise ValueError(f"model {bundle.name!r} has no Box2Mask network; give a mask prompt")
    return predictor, (Box2MaskPredictor(bundle.box2mask.model, device) if boxes else None)


def propagate(
    image: Any,
    *,
    slice_index: int | Sequence[int] | None = None,
    axis: int = 0,
    box: Sequence[float] | Sequence[Sequence[float]] | None = None,
    mask: np.ndarray | Sequence[np.ndarray] | None = None,
    spacing: float | Sequence[float] | None = None,
    model: ModelSpec = None,
    device: str | torch.device | None = None,
    config: PropagationConfig | None = None,
    box_config: BoxConfig | None = None,
    predictor: MaskPropagator | None = None,
    **options: Any,
) -> Iterator[SliceUpdate]:
    """Segment one object, streaming each slice as it is computed.

    Arguments are validated now; the work runs as the returned generator is iterated (closing it
    stops after the current forward pass).

    Args:
        image: ``(Z, Y, X)`` greyscale volume: numpy, dask, zarr or any array with basic
            indexing. Only the slices and windows needed are read.
        slice_index: Prompt slice along ``axis``, or a list of them for several prompts of the
            same object (one box or mask each). Omit it with a ``(Z, Y, X)`` mask.
        axis: Propagation axis, 0, 1 or 2.
        box: ``(row0, col0, row1, col1)`` box around the object in the prompt plane, or a list
            of boxes (one per slice of ``slice_index``).
        mask: ``(H, W)`` mask (bool/int/float, non-zero = object) in the prompt plane, or a list
            of them; or a ``(Z, Y, X)`` mask whose non-empty slices along ``axis`` are the
            prompts. A closed outline is filled. Several prompts all guide the first round;
            each prompt slice keeps its prompt, gaps between prompts are closed from both sides
            and the fronts past the outermost ones continue as with one prompt.
        spacing: Voxel size ``(z, y, x)`` (or one number for all axes); sets the neighbours per
            round from ``thickness``. None = unknown units, ``thickness`` counts slices.
        model: Model to use (None = bundled default; see :func:`napari_propsam.list_models`).
        device: ``"auto"``/None, ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``.
        config: Base :class:`PropagationConfig` (None = defaults).
        box_config: Base :class:`BoxConfig` (None = defaults).
        predictor: Advanced: a ready PropMask predictor (overrides ``model`` for propagation).
        **options: Any field of :class:`PropagationConfig` or :class:`BoxConfig`, e.g.
            ``thickness=10``, ``min_area=50``. An option given here overrides the same field of
            ``config``/``box_config`` (as :func:`dataclasses.replace` would); the other fields
            keep the config's values.

    Returns:
        Generator of :class:`SliceUpdate` (axis, slice index, window offset, ``(h, w)`` bool
        mask, progress); the final pass has ``final=True``.

    Raises:
        ValueError: bad image, prompt, index, axis, spacing or option value.
        TypeError: an unknown option, or ``config``/``box_config`` of the wrong class.
        RuntimeError: the requested device is not available.
        CheckpointError: the model cannot be loaded.
    """
    reader = SliceReader(image, axis)
    indices, boxes, masks = collect_prompts(
        slice_index,
        box,
        mask,
        reader.plane_shape,
        reader.shape,
        reader.axis,
        lambda i: check_index(i, reader.n_slices, reader.axis),
        check_box,
        lambda m: check_mask(m, reader.plane_shape),
    )
    sp = check_spacing(spacing)
    prop_cfg, box_cfg = split_options(options, config, box_config)
    check_all_finite(image)
    bounds = None if masks is None else prompt_bounds(reader, indices, masks, prop_cfg)
    predictor, b2m = _predictors(model, device, predictor, boxes is not None)
    along = None if sp is None else sp[reader.axis]

    return _run(reader, indices, boxes, masks, bounds, predictor, b2m, prop_cfg, box_cfg, along)


def _run(
    reader: SliceReader,
    indices: list[int],
    boxes: list | None,
    masks: list[np.ndarray] | None,
    bounds: tuple[float, float] | None,
    predictor: MaskPropagator,
    b2m: Box2MaskPredictor | None,
    prop_cfg: PropagationConfig,
    box_cfg: BoxConfig,
    along: float | None,
) -> Iterator[SliceUpdate]:
    """The work of :func:`propagate`, started when the generator is first iterated."""
    guides, window = masks, bounds
    if boxes is not None:
        guides = [
            box_to_mask(reader, i, b, b2m, box_cfg) for i, b in zip(indices, boxes, strict=True)
        ]
        window = prompt_bounds(reader, indices, guides, prop_cfg)
    if len(indices) == 1:
        yield from propagate_mask(reader, indices[0], guides[0], predictor, prop_cfg, along, window)
    else:
        yield from propagate_mask(reader, indices, guides, predictor, prop_cfg, along, window)


def apply_update(volume: np.ndarray, update: SliceUpdate) -> None:
    """Write an update's mask into a ``(Z, Y, X)`` bool array (replacing its window)."""
    index: list[Any] = [
        slice(update.offset[0], update.offset[0] + update.mask.shape[0]),
        slice(update.offset[1], update.offset[1] + update.mask.shape[1]),
    ]
    index.insert(update.axis, update.index)
    target = volume[tuple(index)]
    h, w = target.shape
    volume[tuple(index)] = update.mask[:h, :w]


def segment(
    image: Any,
    *,
    slice_index: int | Sequence[int] | None = None,
    axis: int = 0,
    box: Sequence[float] | Sequence[Sequence[float]] | None = None,
    mask: np.ndarray | Sequence[np.ndarray] | None = None,
    spacing: float | Sequence[float] | None = None,
    model: ModelSpec = None,
    device: str | torch.device | None = None,
    with_quality: bool = False,
    config: PropagationConfig | None = None,
    box_config: BoxConfig | None = None,
    **options: Any,
) -> np.ndarray | tuple[np.ndarray, ObjectQuality]:
    """Segment one 3D object from a box or mask on one slice (or several prompts).

    Same arguments as :func:`propagate`, plus ``with_quality``.

    Args:
        with_quality: Also return the object's :class:`~napari_propsam.quality.ObjectQuality`:
            ``score`` in [0, 1] (tracks the DSC) and ``slices_to_review`` (indices along
            ``axis``, worst first, each with a reason). It costs no extra forward pass.
        config: All propagation options at once, e.g. one built from a saved run or the CLI
            (None = defaults).
        box_config: All Box2Mask options at once (None = defaults).
        **options: Single fields of either config, e.g. ``thickness=10``. They override the
            same field of ``config``/``box_config``: ``segment(v, config=c, thickness=10)``
            runs ``dataclasses.replace(c, thickness=10)``.

    Returns:
        ``image.shape`` bool array, True on the object; with ``with_quality``,
        ``(mask, quality)``.

    Example:
        >>> labels = napari_propsam.segment(volume, slice_index=40, box=(120, 80, 160, 130))
        >>> labels, q = napari_propsam.segment(volume, slice_index=40, mask=m, with_quality=True)
        >>> q.score, [(r.index, r.reason) for r in q.slices_to_review]
        >>> cfg = napari_propsam.PropagationConfig(thickness=10, stop_rule="released")
        >>> labels = napari_propsam.segment(volume, slice_index=40, mask=m, config=cfg)
    """
    gen = propagate(
        image,
        slice_index=slice_index,
        axis=axis,
        box=box,
        mask=mask,
        spacing=spacing,
        model=model,
        device=device,
        config=config,
        box_config=box_config,
        **options,
    )
    out = np.zeros(tuple(int(s) for s in image.shape), bool)
    quality = None
    for update in gen:
        if update.final:
            apply_update(out, update)
            quality = update.quality or quality
    if with_quality:
        return out, quality
    return out


@dataclass(frozen=True)
class ObjectROI:
    """One object as a bounding box of the volume and a mask of that box only.

    Attributes:
        bbox: ``(z, y, x)`` slices (start and stop set, step None) of the tight bounding box of
            the object's voxels in the ``(Z, Y, X)`` volume; all three are ``slice(0, 0)`` for an
            empty object.
        mask: ``(bz, by, bx)`` bool array of the bbox shape, True on the object.
    """

    bbox: tuple[slice, slice, slice]
    mask: np.ndarray

    @property
    def voxels(self) -> int:
        """Number of object voxels."""
        return int(np.count_nonzero(self.mask))

    def paste(self, volume: np.ndarray, value: Any = True) -> None:
        """Write ``value`` into ``volume`` (``(Z, Y, X)``) on the object's voxels."""
        view = volume[self.bbox]
        view[self.mask] = value

    def to_volume(self, shape: Sequence[int]) -> np.ndarray:
        """The object as a full ``shape`` (``(Z, Y, X)``) bool array."""
        out = np.zeros(tuple(int(s) for s in shape), bool)
        self.paste(out)
        return out


def _roi_from_updates(updates: Sequence[SliceUpdate], shape: Sequence[int]) -> ObjectROI:
    """Tight ROI of the final updates of one object in a ``shape`` (``(Z, Y, X)``) volume."""
    empty = ObjectROI((slice(0, 0),) * 3, np.zeros((0, 0, 0), bool))  # type: ignore[arg-type]
    if not updates:
        return empty
    axis = updates[0].axis
    h_plane, w_plane = (int(s) for i, s in enumerate(shape) if i != axis)
    # Tight extent of each slice's mask, in (slice, row, col) coordinates of the propagation axis;
    # windows may extend past the plane (the engine pads crops), so they are clipped first.
    pieces = []
    for u in updates:
        r0, c0 = (int(v) for v in u.offset)
        m = np.asarray(u.mask, bool)[: max(0, h_plane - r0), : max(0, w_plane - c0)]
        box = mask_bbox(m)
        if box is not None:
            br0, bc0, br1, bc1 = box
            pieces.append((int(u.index), r0 + br0, c0 + bc0, m[br0 : br1 + 1, bc0 : bc1 + 1]))
    if not pieces:
        return empty
    s0 = min(p[0] for p in pieces)
    s1 = max(p[0] for p in pieces) + 1
    r0 = min(p[1] for p in pieces)
    r1 = max(p[1] + p[3].shape[0] for p in pieces)
    c0 = min(p[2] for p in pieces)
    c1 = max(p[2] + p[3].shape[1] for p in pieces)
    local = np.zeros((s1 - s0, r1 - r0, c1 - c0), bool)
    for s, r, c, m in pieces:
        local[s - s0, r - r0 : r - r0 + m.shape[0], c - c0 : c - c0 + m.shape[1]] |= m
    bbox: list[slice] = [slice(r0, r1), slice(c0, c1)]
    bbox.insert(axis, slice(s0, s1))
    return ObjectROI(tuple(bbox), np.ascontiguousarray(np.moveaxis(local, 0, axis)))  # type: ignore[arg-type]


def segment_roi(
    image: Any,
    *,
    slice_index: int | Sequence[int] | None = None,
    axis: int = 0,
    box: Sequence[float] | Sequence[Sequence[float]] | None = None,
    mask: np.ndarray | Sequence[np.ndarray] | None = None,
    spacing: float | Sequence[float] | None = None,
    model: ModelSpec = None,
    device: str | torch.device | None = None,
    with_quality: bool = False,
    config: PropagationConfig | None = None,
    box_config: BoxConfig | None = None,
    **options: Any,
) -> ObjectROI | tuple[ObjectROI, ObjectQuality | None]:
    """Segment one 3D object, returning only its bounding box and the mask inside it.

    Same arguments as :func:`segment` (``image`` is ``(Z, Y, X)``; ``box`` is
    ``(row0, col0, row1, col1)`` in the prompt plane; ``mask`` is ``(H, W)``; ``config`` and
    ``box_config`` are the base configs, which single ``**options`` override), and the same
    voxels as :func:`segment`, but nothing of the volume's size is allocated: memory follows the
    object, which is what huge volumes and batch runs need.

    Returns:
        :class:`ObjectROI`: ``bbox`` (three ``(z, y, x)`` slices) and ``mask`` (bool, bbox
        shape). ``roi.to_volume(image.shape)`` equals ``segment(...)``. With
        ``with_quality=True``, ``(roi, quality)`` as :func:`segment` gives it.

    Raises:
        ValueError: bad image, prompt, index, axis, spacing or option (as :func:`propagate`).
        TypeError: an unknown option, or ``config``/``box_config`` of the wrong class.
    """
    gen = propagate(
        image,
        slice_index=slice_index,
        axis=axis,
        box=box,
        mask=mask,
        spacing=spacing,
        model=model,
        device=device,
        config=config,
        box_config=box_config,
        **options,
    )
    # Only final updates matter: the engine sends exactly one per reached slice, after the
    # connected-component filter, so earlier streamed windows can be dropped as they come.
    finals = [u for u in gen if u.final]
    roi = _roi_from_updates(finals, image.shape)
    if with_quality:
        return roi, next((u.quality for u in reversed(finals) if u.quality is not None), None)
    return roi
