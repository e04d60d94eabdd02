"""Writing streamed objects into a labels volume without losing anything the user made.

This is the GUI-free logic behind the napari widget (and usable from scripts):

* :class:`ObjectEdit` turns one object's :class:`~napari_propsam.propagation.SliceUpdate` stream
  into voxel changes of a ``(Z, Y, X)`` integer labels array. It remembers what each touched
  window held *before the object started* (its baseline), so every update is computed from the
  baseline, not from earlier streamed updates: voxels that a later update (or the final 3D
  component filter) drops return exactly to what they were, and :meth:`ObjectEdit.restore`
  undoes a cancelled or failed object exactly.
* :func:`stream_objects` runs several prompts one after another and tags each update with its
  object, for a worker thread.
* Helpers for label ids and sketches.

Rules, for an object with id ``N`` and a window with baseline ``B`` and mask ``M``:

* inside ``M`` the voxel becomes ``N`` if ``B`` is background or already ``N`` (or always, with
  ``overwrite=True``); voxels of other labels are kept otherwise;
* outside ``M`` the voxel is ``B``, except that ``B == N`` becomes background: the update
  *replaces* the object's voxels in the window;
* with ``whole_slice=True`` (re-propagation), the final update of a slice replaces the object's
  voxels in that slice's whole plane, so a slice the new run reaches loses every old ``N`` voxel
  it does not predict again, while slices it does not reach are left alone;
* with ``owned`` (an :class:`~napari_propsam.ownership.OwnedRegion`), only those ``N`` voxels
  are the object's: other voxels that carry ``N`` (another object under the same id, e.g. ids
  merged by hand) are kept like other labels.

Changes are returned as ``(indices, values)`` in numpy fancy-index form, which is what napari's
``Labels.data_setitem`` takes (so each change lands in the layer's undo history).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .api import propagate
from .ownership import OwnedRegion, owned_component, prompt_seed
from .prompt_checks import prepare_mask
from .propagation import SliceUpdate
from .registry import ModelSpec, resolve_model

logger = logging.getLogger(__name__)

__all__ = [
    "Change",
    "ObjectEdit",
    "ObjectFailed",
    "ObjectFinished",
    "ObjectPrompt",
    "ObjectStarted",
    "ObjectUpdate",
    "SlicePrompt",
    "apply_change",
    "assign_label_ids",
    "chunked_view",
    "max_label",
    "next_free_label",
    "owned_by_object",
    "plane_index",
    "sketch_masks",
    "slices_with_labels",
    "stream_objects",
]

Index3 = tuple[Any, Any, Any]


@dataclass(frozen=True)
class Change:
    """Voxels to set in a ``(Z, Y, X)`` labels array.

    Attributes:
        indices: Three equal-length int arrays (z, y, x) of the voxels that change.
        values: Their new values, same length, the labels' dtype.
    """

    indices: tuple[np.ndarray, np.ndarray, np.ndarray]
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.values.size)


def apply_change(labels: np.ndarray, change: Change | None) -> None:
    """Write a :class:`Change` into ``labels`` in place (what ``data_setitem`` does in napari)."""
    if change is not None and len(change):
        labels[change.indices] = change.values


def plane_index(axis: int, index: int, rows: slice, cols: slice) -> Index3:
    """Volume index of the window ``rows x cols`` on slice ``index`` of ``axis``."""
    out: list[Any] = [rows, cols]
    out.insert(axis, int(index))
    return tuple(out)  # type: ignore[return-value]


def _to_volume_indices(axis: int, index: int, r: np.ndarray, c: np.ndarray) -> tuple:
    """Plane coordinates ``(r, c)`` on one slice -> ``(z, y, x)`` index arrays."""
    s = np.full(r.shape, int(index), dtype=np.intp)
    parts: list[np.ndarray] = [r.astype(np.intp), c.astype(np.intp)]
    parts.insert(axis, s)
    return tuple(parts)


def chunked_view(data: Any) -> Any:
    """``data`` itself if it is in memory, else a dask view that reductions read chunk by chunk.

    ``np.max`` of a zarr array would load it whole; of the dask view it streams the chunks, so
    a labels volume larger than RAM can be reduced.

    Args:
        data: ``(Z, Y, X)`` numpy, dask or zarr-like array.
    """
    if isinstance(data, np.ndarray):
        return data
    import dask.array as da

    if isinstance(data, da.Array):
        return data
    chunks = getattr(data, "chunks", None)
    return da.from_array(data, chunks=chunks if chunks is not None else "auto")


def max_label(labels: Any) -> int:
    """Highest value of a ``(Z, Y, X)`` integer labels array (0 when empty).

    Lazy arrays (zarr, dask) are read chunk by chunk, never whole.
    """
    if not int(np.prod(labels.shape)):
        return 0
    top = chunked_view(labels).max()
    return int(top.compute() if hasattr(top, "compute") else top)


def next_free_label(labels: Any, reserved: Iterable[int] = ()) -> int:
    """Smallest id above every id in ``labels`` and in ``reserved`` (at least 1).

    ``labels`` is a ``(Z, Y, X)`` integer array (numpy, or lazy zarr/dask read chunk by chunk).
    """
    top = max_label(labels)
    reserved = [int(r) for r in reserved]
    return max([top, 0, *reserved]) + 1


def assign_label_ids(
    labels: Any, wanted: Sequence[int | None], reused: dict[int, int] | None = None
) -> list[int]:
    """Label id of every object of a run.

    Args:
        labels: ``(Z, Y, X)`` current output labels (numpy, or lazy zarr/dask: read chunk by
            chunk).
        wanted: Per object, its own id (a sketch's label) or None (a box: needs a new id).
        reused: Optional ``{object position: id}`` for boxes that already have an id (a box run
            again replaces its earlier result instead of adding a duplicate).

    Returns:
        One id per object; new ids are distinct, above everything in ``labels`` and ``wanted``.
    """
    reused = reused or {}
    fixed = [w for w in wanted if w is not None] + list(reused.values())
    nxt = next_free_label(labels, fixed)
    out = []
    for i, w in enumerate(wanted):
        if w is not None:
            out.append(int(w))
        elif i in reused:
            out.append(int(reused[i]))
        else:
            out.append(nxt)
            nxt += 1
    return out


def slices_with_labels(labels: Any, ids: Iterable[int], axis: int) -> dict[int, list[int]]:
    """Slices along ``axis`` on which each of ``ids`` is painted.

    Args:
        labels: ``(Z, Y, X)`` integer labels (numpy, or lazy zarr/dask: read chunk by chunk).
        ids: Label ids to look for.
        axis: Slicing axis (0, 1 or 2).

    Returns:
        ``{id: ascending slice indices}`` (an empty list for an id painted nowhere).
    """
    ids = [int(i) for i in ids]
    others = tuple(a for a in range(3) if a != int(axis))
    view = chunked_view(labels)
    found = [(view == i).any(axis=others) for i in ids]
    if not isinstance(view, np.ndarray):
        import dask

        found = list(dask.compute(*found))
    return {i: [int(k) for k in np.flatnonzero(f)] for i, f in zip(ids, found, strict=True)}


def sketch_masks(plane: np.ndarray) -> dict[int, np.ndarray]:
    """Split a painted labels plane into one prompt mask per label.

    Args:
        plane: ``(H, W)`` integer labels of one slice (0 = nothing painted).

    Returns:
        ``{label: (H, W) bool}``, ascending labels; closed outlines are filled
        (:func:`napari_propsam.prompt_checks.prepare_mask`).
    """
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise ValueError(f"a sketch plane must be 2D, got shape {plane.shape}")
    ids = np.unique(plane)
    return {int(i): prepare_mask(plane == i, plane.shape) for i in ids if i > 0}


class _Baseline:
    """What one slice held before the object started, over a growing window of its plane."""

    def __init__(self, r0: int, c0: int, values: np.ndarray) -> None:
        self.r0, self.c0, self.values = r0, c0, values

    @property
    def rows(self) -> slice:
        return slice(self.r0, self.r0 + self.values.shape[0])

    @property
    def cols(self) -> slice:
        return slice(self.c0, self.c0 + self.values.shape[1])


class ObjectEdit:
    """One object's edits of a labels array, computed from the array as it was before them.

    Args:
        shape: ``(Z, Y, X)`` of the labels array.
        label_id: The object's id (> 0).
        overwrite: Let the object take voxels of other labels.
        whole_slice: Re-propagation: each final update replaces the object's voxels in the whole
            slice plane, not only inside its window.
        owned: The old voxels of ``label_id`` that are this object's (None: all of them); the
            rest keep their value whatever the updates say.

    Use :meth:`change` for every update of the object, in order, applying each returned change
    before asking for the next one; :meth:`restore` brings the array back to the state before the
    first update. The array must not be edited by anything else in between.
    """

    def __init__(
        self,
        shape: Sequence[int],
        label_id: int,
        overwrite: bool = False,
        whole_slice: bool = False,
        owned: OwnedRegion | None = None,
    ) -> None:
        if int(label_id) <= 0:
            raise ValueError(f"label id must be positive, got {label_id}")
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError(f"labels must be 3D (Z, Y, X), got shape {self.shape}")
        self.label_id = int(label_id)
        self.overwrite = bool(overwrite)
        self.whole_slice = bool(whole_slice)
        self.owned = owned
        self.axis: int | None = None
        self._baselines: dict[int, _Baseline] = {}
        self.n_updates = 0

    def _plane_shape(self, axis: int) -> tuple[int, int]:
        return tuple(s for i, s in enumerate(self.shape) if i != axis)  # type: ignore[return-value]

    def _baseline(self, labels: Any, axis: int, index: int, rows: slice, cols: slice) -> _Baseline:
        """The slice's baseline, grown to cover ``rows x cols``.

        Only windows already in the baseline have been written, so the rest of the plane still
        holds its original values and is read from ``labels`` as it is now.
        """
        base = self._baselines.get(index)
        if base is not None:
            r0, c0 = min(base.r0, rows.start), min(base.c0, cols.start)
            r1 = max(base.rows.stop, rows.stop)
            c1 = max(base.cols.stop, cols.stop)
            if (r0, c0, r1, c1) == (base.r0, base.c0, base.rows.stop, base.cols.stop):
                return base
        else:
            r0, c0, r1, c1 = rows.start, cols.start, rows.stop, cols.stop
        values = np.array(labels[plane_index(axis, index, slice(r0, r1), slice(c0, c1))])
        if base is not None:
            values[
                base.r0 - r0 : base.r0 - r0 + base.values.shape[0],
                base.c0 - c0 : base.c0 - c0 + base.values.shape[1],
            ] = base.values
        base = self._baselines[index] = _Baseline(r0, c0, values)
        return base

    def change(self, labels: Any, update: SliceUpdate) -> Change | None:
        """Voxel changes that make ``labels`` show ``update`` (None if nothing changes).

        Args:
            labels: ``(Z, Y, X)`` integer labels array as it is now (read, never written).
            update: The object's next slice update.
        """
        if self.axis is None:
            self.axis = int(update.axis)
        elif update.axis != self.axis:
            raise ValueError("all updates of one object must share one axis")
        axis = self.axis
        h_plane, w_plane = self._plane_shape(axis)
        r0, c0 = (int(v) for v in update.offset)
        mask = np.asarray(update.mask, dtype=bool)
        r1, c1 = min(r0 + mask.shape[0], h_plane), min(c0 + mask.shape[1], w_plane)
        mask = mask[: r1 - r0, : c1 - c0]
        if self.whole_slice and update.final:
            full = np.zeros((h_plane, w_plane), bool)
            full[r0:r1, c0:c1] = mask
            mask, r0, c0, r1, c1 = full, 0, 0, h_plane, w_plane
        self.n_updates += 1
        rows, cols = slice(r0, r1), slice(c0, c1)
        base = self._baseline(labels, axis, update.index, rows, cols)
        b = base.values[r0 - base.r0 : r1 - base.r0, c0 - base.c0 : c1 - base.c0]
        n = self.label_id
        allowed = (b == 0) | (b == n) if not self.overwrite else np.ones_like(mask)
        mine = b == n
        if self.owned is not None:  # other objects under the same id keep their voxels
            mine &= self.owned.window(axis, update.index, rows, cols)
        background = np.where(mine, 0, b)
        target = np.where(mask & allowed, np.asarray(n, dtype=b.dtype), background).astype(b.dtype)
        current = np.asarray(labels[plane_index(axis, update.index, rows, cols)])
        rr, cc = np.nonzero(current != target)
        if rr.size == 0:
            return None
        idx = _to_volume_indices(axis, update.index, rr + r0, cc + c0)
        return Change(idx, target[rr, cc])

    def restore(self, labels: Any) -> Change | None:
        """Changes that bring ``labels`` back to its state before this object's first update."""
        parts, vals = [], []
        for index, base in self._baselines.items():
            current = np.asarray(labels[plane_index(self.axis, index, base.rows, base.cols)])
            rr, cc = np.nonzero(current != base.values)
            if rr.size:
                parts.append(_to_volume_indices(self.axis, index, rr + base.r0, cc + base.c0))
                vals.append(base.values[rr, cc])
        if not parts:
            return None
        idx = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
        return Change(idx, np.concatenate(vals))  # type: ignore[arg-type]

    def bounding_box(self) -> tuple[slice, slice, slice] | None:
        """Smallest ``(z, y, x)`` box holding every window this object touched (None if none)."""
        if not self._baselines:
            return None
        idx = sorted(self._baselines)
        r0 = min(b.r0 for b in self._baselines.values())
        c0 = min(b.c0 for b in self._baselines.values())
        r1 = max(b.rows.stop for b in self._baselines.values())
        c1 = max(b.cols.stop for b in self._baselines.values())
        out: list[slice] = [slice(r0, r1), slice(c0, c1)]
        out.insert(self.axis, slice(idx[0], idx[-1] + 1))  # type: ignore[arg-type]
        return tuple(out)  # type: ignore[return-value]

    @property
    def slices(self) -> list[int]:
        """Slice indices (along the axis) this object has written to, ascending."""
        return sorted(self._baselines)


# --- Several prompts in one run, for a worker thread ---------------------------------------


@dataclass(frozen=True)
class SlicePrompt:
    """A further prompt of an object on another slice of the same axis.

    Attributes:
        index: Prompt slice along the object's axis.
        box: ``(row0, col0, row1, col1)`` in the slice plane, or None.
        mask: ``(H, W)`` bool sketch in the slice plane, or None (exactly one of box/mask).
    """

    index: int
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ObjectPrompt:
    """One object to segment, from one prompt or several on different slices of one axis.

    Attributes:
        axis: Propagation axis of the volume (0, 1 or 2).
        index: Prompt slice along ``axis`` (the first prompt's).
        box: ``(row0, col0, row1, col1)`` in the slice plane, or None.
        mask: ``(H, W)`` bool sketch in the slice plane, or None (exactly one of box/mask).
        label_id: Id the object is written with.
        whole_slice: Re-propagation semantics (see :class:`ObjectEdit`).
        name: Short description for messages, e.g. ``"box 2"`` or ``"label 5"``.
        more: Further prompts of the same object on other slices (all boxes or all masks, like
            the first one); every prompt guides the propagation
            (:func:`napari_propsam.propagate` with a list of slices).
    """

    axis: int
    index: int
    label_id: int
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)
    whole_slice: bool = False
    name: str = ""
    more: tuple[SlicePrompt, ...] = ()

    @property
    def slice_prompts(self) -> list[SlicePrompt]:
        """Every prompt of the object, ascending slice index."""
        first = SlicePrompt(self.index, self.box, self.mask)
        return sorted([first, *self.more], key=lambda p: p.index)

    @property
    def indices(self) -> list[int]:
        """The prompt slices, ascending."""
        return [p.index for p in self.slice_prompts]

    def propagate_args(self) -> dict[str, Any]:
        """``slice_index``/``box``/``mask`` for :func:`napari_propsam.propagate`: scalars for one
        prompt, lists for several."""
        if not self.more:
            return {"slice_index": self.index, "box": self.box, "mask": self.mask}
        parts = self.slice_prompts
        boxes = [p.box for p in parts]
        masks = [p.mask for p in parts]
        if all(b is not None for b in boxes):
            return {"slice_index": [p.index for p in parts], "box": boxes, "mask": None}
        if all(m is not None for m in masks):
            return {"slice_index": [p.index for p in parts], "box": None, "mask": masks}
        raise ValueError(
            f"{self.name or 'object'}: the prompts of one object must be all boxes or all masks"
        )


def owned_by_object(labels: Any, prompt: ObjectPrompt) -> OwnedRegion:
    """The voxels of ``prompt.label_id`` in ``labels`` that any of the object's prompts touches
    (:func:`napari_propsam.ownership.owned_component` on every prompt slice, united).

    Args:
        labels: ``(Z, Y, X)`` integer labels (numpy, zarr, dask: only windows are read).
        prompt: The object.
    """
    plane = tuple(int(s) for a, s in enumerate(labels.shape) if a != prompt.axis)
    regions = [
        owned_component(
            labels, prompt.label_id, prompt.axis, p.index, prompt_seed(plane, p.box, p.mask)
        )
        for p in prompt.slice_prompts
    ]
    regions = [r for r in regions if r.mask.size and r.mask.any()]
    if not regions:
        return OwnedRegion((slice(0, 0),) * 3, np.zeros((0, 0, 0), bool))  # type: ignore[arg-type]
    if len(regions) == 1:
        return regions[0]
    lo = [min(r.bbox[a].start for r in regions) for a in range(3)]
    hi = [max(r.bbox[a].stop for r in regions) for a in range(3)]
    mask = np.zeros([h - low for low, h in zip(lo, hi, strict=True)], bool)
    for r in regions:
        mask[tuple(slice(r.bbox[a].start - lo[a], r.bbox[a].stop - lo[a]) for a in range(3))] |= (
            r.mask
        )
    bbox = tuple(slice(low, h) for low, h in zip(lo, hi, strict=True))
    return OwnedRegion(bbox, mask, max(r.n_objects for r in regions))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ObjectStarted:
    """Object ``position`` (0-based) of ``total`` starts."""

    position: int
    total: int
    prompt: ObjectPrompt


@dataclass(frozen=True)
class ObjectUpdate:
    """A slice update of object ``position``."""

    position: int
    update: SliceUpdate


@dataclass(frozen=True)
class ObjectFinished:
    """Object ``position`` is complete (its final updates were all sent)."""

    position: int


@dataclass(frozen=True)
class ObjectFailed:
    """Object ``position`` could not be segmented (a bad prompt); later objects still run."""

    position: int
    message: str


def stream_objects(
    image: Any,
    prompts: Sequence[ObjectPrompt],
    *,
    spacing: Sequence[float] | None = None,
    model: ModelSpec = None,
    device: str | None = None,
    predictor: Any = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> Iterator[ObjectStarted | ObjectUpdate | ObjectFinished | ObjectFailed]:
    """Segment several objects one after another, streaming tagged slice updates.

    Args:
        image: ``(Z, Y, X)`` volume (numpy, dask, zarr ...).
        prompts: The objects, in order.
        spacing: ``(z, y, x)`` voxel size (see :func:`napari_propsam.propagate`).
        model: ``model=`` value, resolved once for the whole run.
        device: Device request.
        predictor: Advanced/tests: a PropMask stand-in used instead of the model's network.
        cancel: When set, the run stops after the current forward pass (without an
            ``ObjectFinished`` for the interrupted object).
        **options: :class:`~napari_propsam.config.PropagationConfig` /
            :class:`~napari_propsam.config.BoxConfig` fields.

    Yields:
        ``ObjectStarted``, then ``ObjectUpdate`` for every slice update, then ``ObjectFinished``
        (or ``ObjectFailed`` when the core rejects that object's prompt), per object.

    Raises:
        CheckpointError: the model cannot be loaded (before any object starts).
        RuntimeError: the device is unavailable or inference fails.
    """
    needs_model = predictor is None or any(p.box is not None for p in prompts)
    # Load once up front: a missing model is one clear error, not one per object.
    bundle = resolve_model(model) if needs_model else None
    total = len(prompts)
    for pos, prompt in enumerate(prompts):
        if cancel is not None and cancel.is_set():
            return
        yield ObjectStarted(pos, total, prompt)
        try:
            gen = propagate(
                image,
                axis=prompt.axis,
                **prompt.propagate_args(),
                spacing=spacing,
                model=bundle,
                device=device,
                predictor=predictor,
                **options,
            )
        except ValueError as err:
            yield ObjectFailed(pos, str(err))
            continue
        failed = False
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    logger.info("run cancelled during %s", prompt.name or f"object {pos + 1}")
                    return
                try:
                    update = next(gen)
                except StopIteration:
                    break
                except ValueError as err:  # e.g. Box2Mask finds nothing in the box
                    failed = True
                    yield ObjectFailed(pos, str(err))
                    break
                yield ObjectUpdate(pos, update)
        finally:
            gen.close()  # stops the engine after its current forward pass
        if not failed:
            yield ObjectFinished(pos)
