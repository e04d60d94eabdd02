"""Find similar in a ZYX volume: examples on one slice, the 2D search, then 3D per object.

Arrays are ZYX; boxes and regions are ``(row0, col0, row1, col1)`` in the slice plane.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..config import BoxConfig, PropagationConfig
from ..labeling import (
    ObjectEdit,
    ObjectFailed,
    ObjectFinished,
    ObjectPrompt,
    ObjectStarted,
    ObjectUpdate,
    apply_change,
    plane_index,
    stream_objects,
)
from ..predictors import Box2MaskPredictor, MaskPropagator, PropMaskPredictor
from ..prompt_checks import normalize_box
from ..registry import ModelBundle, ModelSpec, resolve_model
from ..validation import check_all_finite, check_index, check_spacing
from ..volume import SliceReader
from ._search import (
    SimilarConfig,
    _as_examples,
    _Cancelled,
    _split_config,
    similarity_map,
    split_instances,
)

logger = logging.getLogger(__name__)

__all__ = ["SimilarFound", "find_similar", "find_similar_stream"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class SimilarFound:
    """The search is done: these objects will be propagated, in this order.

    Attributes:
        prompts: The examples first (``n_examples`` of them), then the new instances; each has a
            ``(H, W)`` bool ``mask`` in its slice plane, its own ``label_id`` and a ``name``
            (``"example 1"``, ``"similar 3"``).
        n_examples: How many of ``prompts`` are the user's examples.
        searched: Slice indices (along the axis) that were searched.
    """

    prompts: tuple[ObjectPrompt, ...] = field(repr=False)
    n_examples: int
    searched: tuple[int, ...]

    @property
    def n_found(self) -> int:
        """Number of new instances (not counting the examples)."""
        return len(self.prompts) - self.n_examples


# --- Volumes: examples on one slice, search, then every object in 3D -------------------------


def _examples_on_slice(
    examples_mask: Any, reader: SliceReader, slice_index: int | None
) -> tuple[int, np.ndarray | None]:
    """The example slice and its ``(H, W)`` int labels, from a 2D plane or a sparse 3D volume.

    Raises:
        ValueError: painted voxels on several slices of the axis (with a hint when they all lie
            on one slice of another axis), a shape mismatch, or a missing ``slice_index``.
    """
    if examples_mask is None:
        if slice_index is None:
            raise ValueError("slice_index is required with box examples or a 2D examples_mask")
        return check_index(slice_index, reader.n_slices, reader.axis), None
    arr = np.asarray(examples_mask)
    if arr.ndim == 2:
        if arr.shape != reader.plane_shape:
            raise ValueError(
                f"examples_mask shape {arr.shape} does not match the slice plane "
                f"{reader.plane_shape} of axis {reader.axis}"
            )
        if slice_index is None:
            raise ValueError("slice_index is required with a 2D examples_mask")
        return check_index(slice_index, reader.n_slices, reader.axis), arr
    if arr.ndim != 3 or arr.shape != reader.shape:
        raise ValueError(
            f"examples_mask must be the 2D slice plane {reader.plane_shape} or a 3D volume of the "
            f"image's shape {reader.shape}, got {arr.shape}"
        )
    painted = arr != 0
    other = tuple(i for i in range(3) if i != reader.axis)
    used = np.flatnonzero(painted.any(axis=other))
    if used.size == 0:
        raise ValueError("examples_mask is empty: paint at least one example on one slice")
    if used.size > 1:
        hint = ""
        for ax in range(3):
            on = np.flatnonzero(painted.any(axis=tuple(i for i in range(3) if i != ax)))
            if ax != reader.axis and on.size == 1:
                hint = f"; they all lie on slice {int(on[0])} of axis {ax}: pass axis={ax}"
        raise ValueError(
            f"the examples span slices {used.tolist()} along axis {reader.axis}; annotate all "
            f"examples on one slice{hint}"
        )
    found = int(used[0])
    if slice_index is not None and int(slice_index) != found:
        raise ValueError(
            f"the examples are on slice {found} of axis {reader.axis}, not on slice_index "
            f"{slice_index}"
        )
    return found, arr.take(found, axis=reader.axis)


def _link_across_slices(
    per_slice: dict[int, list[np.ndarray]], example_nodes: set[tuple[int, int]], overlap: float
) -> list[tuple[int, np.ndarray]]:
    """Chain instances of consecutive searched slices that overlap into one object each.

    Args:
        per_slice: ``{slice: [(H, W) bool instance, ...]}``.
        example_nodes: ``(slice, position)`` of instances that are the examples: chains holding
            one are the examples' own objects and are dropped.
        overlap: Minimum overlap, as a fraction of the smaller instance, to link two instances.

    Returns:
        ``(slice, mask)`` per object: its largest cross-section among the searched slices (the
        best prompt for propagation, docs/method.md, "Extensions").
    """
    nodes = [(s, i) for s in sorted(per_slice) for i in range(len(per_slice[s]))]
    parent = {n: n for n in nodes}

    def root(n: tuple[int, int]) -> tuple[int, int]:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    order = sorted(per_slice)
    for a, b in zip(order, order[1:], strict=False):
        for i, ma in enumerate(per_slice[a]):
            for j, mb in enumerate(per_slice[b]):
                inter = int((ma & mb).sum())
                if inter and inter >= overlap * min(int(ma.sum()), int(mb.sum())):
                    parent[root((a, i))] = root((b, j))
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for n in nodes:
        groups.setdefault(root(n), []).append(n)
    out = []
    for members in groups.values():
        if any(m in example_nodes for m in members):
            continue
        s, i = max(members, key=lambda m: int(per_slice[m[0]][m[1]].sum()))
        out.append((s, per_slice[s][i]))
    return out


def _check_examples(
    reader: SliceReader,
    examples_mask: Any,
    slice_index: int | None,
    boxes: Sequence[Box] | None,
    region: Sequence[float] | None,
) -> tuple[int, np.ndarray | None, list[tuple[int, int, int, int]]]:
    """The example slice, its painted ``(H, W)`` labels (or None) and the normalised boxes.

    Raises:
        ValueError: no examples, examples on several slices, or a bad box or region.
    """
    index, painted = _examples_on_slice(examples_mask, reader, slice_index)
    box_list = [normalize_box(b, reader.plane_shape) for b in (boxes or [])]
    if painted is None and not box_list:
        raise ValueError("no examples: give examples_mask or boxes")
    if painted is not None and not np.any(painted) and not box_list:
        raise ValueError("examples_mask is empty: paint at least one example")
    if region is not None:
        normalize_box(region, reader.plane_shape)
    return index, painted, box_list


def _check_run_options(
    slice_range: tuple[int, int] | None,
    n_slices: int,
    spacing: float | Sequence[float] | None,
    start_label: int,
) -> tuple[float, float, float] | None:
    """Checks the slice range (``0 <= start < stop <= n_slices``), spacing and first label id.

    Returns:
        The checked ``(z, y, x)`` spacing (None stays None).

    Raises:
        ValueError: a bad slice range, spacing or start label.
    """
    if slice_range is not None:
        lo, hi = (int(v) for v in slice_range)
        if not 0 <= lo < hi <= n_slices:
            raise ValueError(
                f"slice_range {slice_range} must satisfy 0 <= start < stop <= {n_slices}"
            )
    sp = check_spacing(spacing)
    if int(start_label) < 1:
        raise ValueError(f"start_label must be >= 1, got {start_label}")
    return sp


def _resolve_networks(
    model: ModelSpec,
    device: str | torch.device | None,
    predictor: MaskPropagator | None,
    need_box2mask: bool,
) -> tuple[ModelBundle | None, MaskPropagator]:
    """The model bundle (None when a stand-in predictor and no boxes make it unnecessary) and
    the PropMask predictor.

    Raises:
        ValueError: boxes were given but the model has no Box2Mask network.
        CheckpointError: the model cannot be loaded.
    """
    bundle: ModelBundle | None = None
    if predictor is None or need_box2mask:
        bundle = resolve_model(model)
        if predictor is None:
            predictor = PropMaskPredictor(bundle.propmask.model, device)
        if need_box2mask and bundle.box2mask is None:
            raise ValueError(f"model {bundle.name!r} has no Box2Mask network; paint the examples")
    return bundle, predictor


@dataclass(frozen=True)
class _Examples:
    """The user's examples on the guide slice, and the networks that turn boxes into masks."""

    painted: np.ndarray | None
    box_list: Sequence[tuple[int, int, int, int]]
    box_cfg: BoxConfig
    bundle: ModelBundle | None
    device: str | torch.device | None

    def masks(self, guide: np.ndarray) -> list[np.ndarray]:
        """One ``(H, W)`` bool mask per example: the painted ones, then Box2Mask's per box.

        Raises:
            ValueError: Box2Mask finds nothing in a box.
        """
        has_painted = self.painted is not None and bool(np.any(self.painted))
        masks = _as_examples(self.painted, guide.shape) if has_painted else []
        if self.box_list:
            b2m = Box2MaskPredictor(self.bundle.box2mask.model, self.device)
            for r0, c0, r1, c1 in self.box_list:
                pred = b2m.predict(guide[r0:r1, c0:c1], self.box_cfg)
                if not pred.any():
                    raise ValueError(f"Box2Mask found no object in box {(r0, c0, r1, c1)}")
                m = np.zeros(guide.shape, bool)
                m[r0:r1, c0:c1] = pred
                masks.append(m)
        return masks


@dataclass(frozen=True)
class _Search:
    """What the search over the slices needs, checked and resolved before it runs."""

    reader: SliceReader
    index: int
    region: Sequence[float] | None
    predictor: MaskPropagator
    sim_cfg: SimilarConfig
    prop_cfg: PropagationConfig
    cancel: threading.Event | None
    on_progress: Callable[[float], None] | None

    def slices(self, masks: Sequence[np.ndarray], slice_range: tuple[int, int] | None) -> list[int]:
        """The example slice, plus every ``slice_step``-th slice of ``slice_range``."""
        if slice_range is None:
            return [self.index]
        lo, hi = (int(v) for v in slice_range)
        step = self.sim_cfg.slice_step or _auto_step(masks)
        return sorted({self.index, *range(lo, hi, step)})

    def run(
        self, guide: np.ndarray, masks: list[np.ndarray], slices: Sequence[int]
    ) -> dict[int, list[np.ndarray]]:
        """``{slice: [(H, W) bool instance, ...]}``; the example slice lists the examples first.

        Raises:
            _Cancelled: ``cancel`` was set during the search.
        """
        per_slice: dict[int, list[np.ndarray]] = {}
        for k, s in enumerate(slices):
            plane = guide if s == self.index else self.reader.plane(s)
            vote = similarity_map(
                plane,
                masks,
                self.predictor,
                guide_plane=guide,
                region=self.region,
                config=self.sim_cfg,
                propagation_config=self.prop_cfg,
                cancel=self.cancel,
            )
            fg = vote >= self.sim_cfg.vote_threshold
            found = split_instances(fg, masks, self.sim_cfg, drop_examples=s == self.index)
            if s == self.index:
                found = masks + found  # the examples are nodes too, to drop their chains
            per_slice[s] = found
            if self.on_progress is not None:
                self.on_progress((k + 1) / len(slices))
        return per_slice

    def new_objects(
        self, per_slice: dict[int, list[np.ndarray]], n_examples: int
    ) -> list[tuple[int, np.ndarray]]:
        """``(slice, mask)`` per object found that is not one of the examples."""
        if len(per_slice) == 1:
            return [(self.index, m) for m in per_slice[self.index][n_examples:]]
        example_nodes = {(self.index, i) for i in range(n_examples)}
        return _link_across_slices(per_slice, example_nodes, self.sim_cfg.link_overlap)


def _object_prompts(
    axis: int,
    index: int,
    masks: Sequence[np.ndarray],
    new: Sequence[tuple[int, np.ndarray]],
    start_label: int,
) -> list[ObjectPrompt]:
    """The examples' prompts (``example 1``...), then the new objects' (``similar 1``...),
    labelled consecutively from ``start_label``."""
    prompts = [
        ObjectPrompt(axis, index, int(start_label) + i, mask=m, name=f"example {i + 1}")
        for i, m in enumerate(masks)
    ]
    for j, (s, m) in enumerate(new):
        lid = int(start_label) + len(masks) + j
        prompts.append(ObjectPrompt(axis, s, lid, mask=m, name=f"similar {j + 1}"))
    return prompts


def _similar_events(
    image: Any,
    search: _Search,
    examples: _Examples,
    slice_range: tuple[int, int] | None,
    start_label: int,
    propagate_3d: bool,
    spacing: tuple[float, float, float] | None,
) -> Iterator[SimilarFound | ObjectStarted | ObjectUpdate | ObjectFinished | ObjectFailed]:
    """The work of :func:`find_similar_stream`, on arguments it has already checked."""
    guide = search.reader.plane(search.index)
    masks = examples.masks(guide)
    slices = search.slices(masks, slice_range)
    try:
        per_slice = search.run(guide, masks, slices)
    except _Cancelled:
        logger.info("find similar cancelled during the search")
        return
    new = search.new_objects(per_slice, len(masks))
    prompts = _object_prompts(search.reader.axis, search.index, masks, new, start_label)
    logger.info("found %d objects like the %d example(s)", len(new), len(masks))
    yield SimilarFound(tuple(prompts), len(masks), tuple(slices))
    cancel = search.cancel
    if not propagate_3d or (cancel is not None and cancel.is_set()):
        return
    yield from stream_objects(
        image,
        prompts,
        spacing=spacing,
        model=examples.bundle,
        device=examples.device,
        predictor=search.predictor,
        cancel=cancel,
        **{f.name: getattr(search.prop_cfg, f.name) for f in fields(search.prop_cfg)},
    )


def find_similar_stream(
    image: Any,
    *,
    slice_index: int | None = None,
    axis: int = 0,
    examples_mask: np.ndarray | None = None,
    boxes: Sequence[Box] | None = None,
    region: Sequence[float] | None = None,
    slice_range: tuple[int, int] | None = None,
    spacing: float | Sequence[float] | None = None,
    model: ModelSpec = None,
    device: str | torch.device | None = None,
    predictor: MaskPropagator | None = None,
    cancel: threading.Event | None = None,
    propagate_3d: bool = True,
    start_label: int = 1,
    config: SimilarConfig | None = None,
    propagation_config: PropagationConfig | None = None,
    box_config: BoxConfig | None = None,
    on_search_progress: Callable[[float], None] | None = None,
    **options: Any,
) -> Iterator[SimilarFound | ObjectStarted | ObjectUpdate | ObjectFinished | ObjectFailed]:
    """Find every object like the examples on one slice, then segment each one in 3D, streaming.

    Arguments are validated now; the work runs as the generator is iterated.

    Args:
        image: ``(Z, Y, X)`` greyscale volume (numpy, dask, zarr ...).
        slice_index: Slice (along ``axis``) holding the examples; inferred from a 3D
            ``examples_mask``, required otherwise.
        axis: Axis of the example slice and of propagation, 0, 1 or 2.
        examples_mask: Painted examples: the ``(H, W)`` int labels of the slice plane (each id
            > 0 is one example), or a sparse ``(Z, Y, X)`` labels volume painted on one slice.
        boxes: ``(row0, col0, row1, col1)`` boxes around examples; Box2Mask makes their masks.
        region: ``(row0, col0, row1, col1)`` of the plane to search (default: whole plane).
        slice_range: ``(start, stop)`` slices along ``axis`` to search as well (every
            ``slice_step``-th; the example slice is always searched). Default: only the example
            slice.
        spacing: ``(z, y, x)`` voxel size for 3D propagation (see :func:`napari_propsam.segment`).
        model: Model (None = bundled default).
        device: Device request.
        predictor: Advanced/tests: a PropMask stand-in used instead of the model's network.
        cancel: When set, the run stops between windows or between objects.
        propagate_3d: After :class:`SimilarFound`, propagate every object (False: stop there).
        start_label: Label id of the first example; the others follow consecutively.
        config: :class:`SimilarConfig`.
        propagation_config: :class:`PropagationConfig` for the search windows and 3D.
        box_config: :class:`BoxConfig` for box examples.
        on_search_progress: Called with the search's fraction done (0..1) after each slice.
        **options: Fields of :class:`SimilarConfig`, :class:`PropagationConfig` or
            :class:`BoxConfig`.

    Yields:
        One :class:`SimilarFound` (examples first, then new instances, each an
        :class:`~napari_propsam.labeling.ObjectPrompt` with a mask), then exactly the events of
        :func:`~napari_propsam.labeling.stream_objects` for those prompts. Nothing is yielded if
        the run is cancelled during the search.

    Raises:
        ValueError: no examples, examples on several slices or axes, bad region/slice range or
            image, Box2Mask finding nothing in a box.
        CheckpointError: the model cannot be loaded.
    """
    reader = SliceReader(image, axis)
    sim_cfg, prop_cfg, box_cfg = _split_config(options, config, propagation_config, box_config)
    index, painted, box_list = _check_examples(reader, examples_mask, slice_index, boxes, region)
    sp = _check_run_options(slice_range, reader.n_slices, spacing, start_label)
    check_all_finite(image)
    bundle, predictor = _resolve_networks(model, device, predictor, bool(box_list))
    search = _Search(
        reader, index, region, predictor, sim_cfg, prop_cfg, cancel, on_search_progress
    )
    examples = _Examples(painted, box_list, box_cfg, bundle, device)
    return _similar_events(image, search, examples, slice_range, start_label, propagate_3d, sp)


def _auto_step(masks: Sequence[np.ndarray]) -> int:
    """Half the smallest example's extent: each object of that size is searched about twice."""
    extents = []
    for m in masks:
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        extents.append(min(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    return max(1, int(min(extents)) // 2)


def find_similar(
    image: Any,
    *,
    slice_index: int | None = None,
    axis: int = 0,
    examples_mask: np.ndarray | None = None,
    boxes: Sequence[Box] | None = None,
    propagate_3d: bool = True,
    start_label: int = 1,
    **kwargs: Any,
) -> np.ndarray:
    """Find every object like the examples on one slice and segment each in 3D.

    Same arguments as :func:`find_similar_stream`.

    Returns:
        ``image.shape`` (ZYX) int32 labels: the examples ``start_label, start_label + 1, ...``,
        then one id per object found. Where objects meet, the earlier id keeps the voxel. With
        ``propagate_3d=False`` only the 2D masks on their slices are written.

    Example:
        >>> labels = napari_propsam.find_similar(volume, slice_index=32, boxes=[(40, 50, 62, 75)])
    """
    shape = tuple(int(s) for s in image.shape)
    labels = np.zeros(shape, np.int32)
    gen = find_similar_stream(
        image,
        slice_index=slice_index,
        axis=axis,
        examples_mask=examples_mask,
        boxes=boxes,
        propagate_3d=propagate_3d,
        start_label=start_label,
        **kwargs,
    )
    prompts: tuple[ObjectPrompt, ...] = ()
    edit: ObjectEdit | None = None
    for event in gen:
        if isinstance(event, SimilarFound):
            prompts = event.prompts
            if not propagate_3d:
                for p in prompts:
                    idx = plane_index(p.axis, p.index, slice(None), slice(None))
                    plane = labels[idx]  # basic indexing: a view, written in place
                    np.copyto(plane, np.int32(p.label_id), where=p.mask & (plane == 0))
        elif isinstance(event, ObjectStarted):
            edit = ObjectEdit(shape, event.prompt.label_id)
        elif isinstance(event, ObjectUpdate) and edit is not None:
            apply_change(labels, edit.change(labels, event.update))
        elif isinstance(event, ObjectFailed):
            if edit is not None:
                apply_change(labels, edit.restore(labels))
            logger.warning("%s failed: %s", prompts[event.position].name, event.message)
    return labels
