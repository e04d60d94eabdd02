"""Batch prompts: one object per id, with one or several prompt slices, read from a CSV file
or a sparse labels volume.

Arrays are ZYX. A prompt lives on slice ``index`` of ``axis``; its plane is the 2D array left after
removing that axis, and boxes are ``(row0, col0, row1, col1)`` in that plane (half-open). CSV
rows that share an ``id`` are one object with several prompts (one per slice, same axis); a
sparse labels volume makes every painted slice of an id a prompt of that object.

Sketch masks are kept cropped to their bounding box (:class:`BatchPrompt`), so thousands of
prompts on a large plane cost memory in proportion to the sketches, not to the planes.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..labeling import ObjectPrompt
from ..prompt_checks import check_apart, normalize_box
from ..transforms import mask_bbox

logger = logging.getLogger(__name__)

#: Columns a prompts CSV may have (``slice`` is required, then a box or a ``label``).
CSV_COLUMNS = ("id", "axis", "slice", "row0", "col0", "row1", "col1", "label", "name")
_BOX_COLUMNS = ("row0", "col0", "row1", "col1")


def _paste(
    crop: np.ndarray | None, offset: tuple[int, int], plane_shape: Sequence[int]
) -> np.ndarray | None:
    """A cropped ``(h, w)`` sketch put back at ``offset`` (row0, col0) of a full ``(H, W)`` bool
    plane; None stays None (a box prompt)."""
    if crop is None:
        return None
    out = np.zeros(tuple(int(s) for s in plane_shape), bool)
    r0, c0 = offset
    out[r0 : r0 + crop.shape[0], c0 : c0 + crop.shape[1]] = crop
    return out


@dataclass(frozen=True)
class SlicePrompt:
    """One prompt slice of a batch object: a box or a (cropped) sketch.

    Attributes:
        index: Prompt slice along the object's axis.
        box: ``(row0, col0, row1, col1)`` in the slice plane, or None.
        mask: ``(h, w)`` bool sketch cropped to its bounding box, or None (exactly one of
            ``box`` and ``mask``).
        offset: ``(row0, col0)`` of ``mask`` in the slice plane.
    """

    index: int
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)
    offset: tuple[int, int] = (0, 0)

    def plane_mask(self, plane_shape: Sequence[int]) -> np.ndarray | None:
        """The sketch as a full ``(H, W)`` bool plane (None for a box prompt)."""
        return _paste(self.mask, self.offset, plane_shape)


@dataclass(frozen=True)
class BatchPrompt:
    """One object of a batch run: a box or a (cropped) sketch on one slice, plus optionally
    more prompt slices of the same object (``extra``, same axis, same kind).

    Attributes:
        label_id: Id of the object in the merged labels (> 0, unique in a run).
        axis: Propagation axis of the ``(Z, Y, X)`` volume (0, 1 or 2).
        index: Prompt slice along ``axis`` (the lowest one when there are several).
        box: ``(row0, col0, row1, col1)`` in the slice plane, or None.
        mask: ``(h, w)`` bool sketch cropped to its bounding box, or None (exactly one of
            ``box`` and ``mask``).
        offset: ``(row0, col0)`` of ``mask`` in the slice plane.
        name: Short description for messages, e.g. ``"line 4"`` or ``"label 5"``.
        extra: The object's other prompt slices (boxes if ``box`` is set, else sketches);
            empty for the usual one prompt per object.
    """

    label_id: int
    axis: int
    index: int
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)
    offset: tuple[int, int] = (0, 0)
    name: str = ""
    extra: tuple[SlicePrompt, ...] = ()

    @classmethod
    def combine(
        cls, label_id: int, axis: int, entries: Sequence[SlicePrompt], name: str = ""
    ) -> BatchPrompt:
        """One object from its prompt slices: the lowest slice is the main prompt, the others
        go to ``extra`` in ascending slice order (so the result does not depend on the order
        they were read in)."""
        first, *rest = sorted(entries, key=lambda e: int(e.index))
        return cls(
            int(label_id), int(axis), int(first.index), first.box, first.mask, first.offset,
            name, tuple(rest),
        )  # fmt: skip

    @property
    def entries(self) -> tuple[SlicePrompt, ...]:
        """Every prompt slice of the object, the main one first."""
        return (SlicePrompt(self.index, self.box, self.mask, self.offset), *self.extra)

    @property
    def indices(self) -> list[int]:
        """The prompt slices along ``axis``."""
        return [int(e.index) for e in self.entries]

    @classmethod
    def from_object_prompt(cls, prompt: ObjectPrompt) -> BatchPrompt:
        """Convert a :class:`~napari_propsam.labeling.ObjectPrompt` (full-plane ``(H, W)``
        mask) into a cropped batch prompt (``whole_slice`` does not apply to batch runs)."""
        if prompt.mask is None:
            box = None if prompt.box is None else tuple(float(v) for v in prompt.box)
            return cls(int(prompt.label_id), int(prompt.axis), int(prompt.index), box, None)
        crop, offset = crop_to_content(np.asarray(prompt.mask) != 0)
        name = prompt.name or f"object {prompt.label_id}"
        return cls(
            int(prompt.label_id), int(prompt.axis), int(prompt.index), None, crop, offset, name
        )

    def plane_mask(self, plane_shape: Sequence[int]) -> np.ndarray | None:
        """The sketch as a full ``(H, W)`` bool plane (None for a box prompt)."""
        return _paste(self.mask, self.offset, plane_shape)

    @property
    def label(self) -> str:
        """Name for messages."""
        return self.name or f"object {self.label_id}"


def crop_to_content(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Crop a ``(H, W)`` bool mask to its non-zero bounding box.

    Returns:
        ``(crop (h, w) bool, (row0, col0))``; an empty mask gives a ``(0, 0)`` crop at (0, 0).
    """
    box = mask_bbox(mask)
    if box is None:
        return np.zeros((0, 0), bool), (0, 0)
    r0, c0, r1, c1 = box
    return np.ascontiguousarray(mask[r0 : r1 + 1, c0 : c1 + 1], dtype=bool), (r0, c0)


def plane_shape_of(shape: Sequence[int], axis: int) -> tuple[int, int]:
    """``(H, W)`` of a slice of a ``(Z, Y, X)`` ``shape`` along ``axis``."""
    return tuple(int(s) for i, s in enumerate(shape) if i != axis)  # type: ignore[return-value]


def validate_prompts(prompts: Iterable[BatchPrompt], shape: Sequence[int]) -> list[BatchPrompt]:
    """Check every prompt against a ``(Z, Y, X)`` image ``shape``.

    Returns:
        The prompts, in ascending ``label_id`` (the order the merge paints them in).

    Raises:
        ValueError: a repeated or non-positive id, a bad axis, a slice outside the image, a box
            outside its plane, an empty or misplaced sketch; for an object with several prompt
            slices also a repeated slice, boxes mixed with sketches, or prompts that do not
            overlap in projection. The message names the prompt.
    """
    out: dict[int, BatchPrompt] = {}
    for p in prompts:
        where = p.label
        if isinstance(p.label_id, bool) or int(p.label_id) <= 0:
            raise ValueError(f"{where}: object id must be a positive integer, got {p.label_id}")
        if int(p.label_id) in out:
            raise ValueError(f"{where}: object id {p.label_id} is used twice")
        if p.axis not in (0, 1, 2):
            raise ValueError(f"{where}: axis must be 0, 1 or 2, got {p.axis}")
        plane = plane_shape_of(shape, p.axis)
        regions = [_check_entry(e, p, shape, plane) for e in p.entries]
        if len(regions) > 1:
            _check_several(p, regions)
        out[int(p.label_id)] = p
    return [out[k] for k in sorted(out)]


def _check_entry(
    e: SlicePrompt, p: BatchPrompt, shape: Sequence[int], plane: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Check one prompt slice of ``p``; returns its region ``(row0, col0, row1, col1)``."""
    where = p.label
    n = int(shape[p.axis])
    if not 0 <= int(e.index) < n:
        raise ValueError(
            f"{where}: slice {e.index} is outside the image (axis {p.axis} has {n} slices)"
        )
    if (e.box is None) == (e.mask is None):
        raise ValueError(f"{where}: give exactly one of a box and a mask")
    if e.box is not None:
        try:
            return normalize_box(e.box, plane)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    r0, c0 = (int(v) for v in e.offset)
    h, w = e.mask.shape
    if not e.mask.any():
        raise ValueError(f"{where}: the sketch on slice {e.index} is empty")
    if r0 < 0 or c0 < 0 or r0 + h > plane[0] or c0 + w > plane[1]:
        raise ValueError(f"{where}: the sketch does not fit the slice plane {plane}")
    br0, bc0, br1, bc1 = mask_bbox(e.mask)  # type: ignore[misc]  # not empty: checked above
    return r0 + br0, c0 + bc0, r0 + br1 + 1, c0 + bc1 + 1


def _check_several(p: BatchPrompt, regions: list[tuple[int, int, int, int]]) -> None:
    """The checks the engine would make on an object's several prompts, made before any work
    so that a mistyped id or slice is reported with its prompt rather than as a failed object."""
    indices = p.indices
    if len(set(indices)) != len(indices):
        dup = sorted({i for i in indices if indices.count(i) > 1})
        raise ValueError(f"{p.label}: slice(s) {dup} have more than one prompt")
    if len({e.box is None for e in p.entries}) > 1:
        raise ValueError(
            f"{p.label}: the prompts of one object must be all boxes or all sketches (labels)"
        )
    try:
        check_apart(indices, regions)
    except ValueError as err:
        raise ValueError(f"{p.label} (id {p.label_id}): {err}") from None


# --- Sparse labels ("sketches") -------------------------------------------------------------


def _check_labels_array(labels: Any, shape: Sequence[int] | None, source: str) -> None:
    lshape = tuple(int(s) for s in getattr(labels, "shape", ()))
    if len(lshape) != 3:
        raise ValueError(f"{source}: a labels volume must be 3D (Z, Y, X), got shape {lshape}")
    if shape is not None and lshape != tuple(int(s) for s in shape):
        raise ValueError(f"{source}: labels shape {lshape} differs from the image {tuple(shape)}")
    if np.dtype(labels.dtype).kind not in "biu":
        raise ValueError(f"{source}: labels must be integers, got dtype {labels.dtype}")


def _slab(labels: Any, axis: int, start: int, stop: int) -> np.ndarray:
    index: list[slice] = [slice(None), slice(None)]
    index.insert(axis, slice(start, stop))
    return np.moveaxis(np.asarray(labels[tuple(index)]), axis, 0)


def prompts_from_sketches(
    labels: Any,
    axis: int = 0,
    shape: Sequence[int] | None = None,
    *,
    source: str = "labels",
    block: int = 16,
) -> list[BatchPrompt]:
    """One object per painted id of a sparse ``(Z, Y, X)`` labels volume, prompted on every
    slice where that id is painted.

    Each id becomes the object with that id. An id painted on several slices along ``axis`` gets
    one mask prompt per slice (:attr:`BatchPrompt.extra`), all guiding its propagation; they
    must overlap in projection (else the id probably marks two objects and is refused). The
    volume is read in slabs of ``block`` slices, so it may be a lazy zarr or memory-mapped tif
    larger than RAM.

    Args:
        labels: ``(Z, Y, X)`` integer array-like, 0 = unpainted.
        axis: Propagation axis the sketches are drawn across (0, 1 or 2).
        shape: Expected ``(Z, Y, X)`` (the image's), checked if given.
        source: Name for messages (e.g. the file name).
        block: Slices read at a time.

    Returns:
        :class:`BatchPrompt` list in ascending id.

    Raises:
        ValueError: not a 3D integer volume, wrong shape, a bad axis, nothing painted, or an id
            whose painted slices do not overlap in projection.
    """
    _check_labels_array(labels, shape, source)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    n = int(labels.shape[axis])
    by_slice: dict[int, list[int]] = {}  # slice -> ids painted on it
    for start in range(0, n, block):
        slab = _slab(labels, axis, start, min(n, start + block))
        painted = slab > 0
        if not painted.any():
            continue
        ids = slab[painted].astype(np.int64)
        if ids.min() < 0:
            raise ValueError(f"{source}: labels must not be negative")
        slices = np.nonzero(painted)[0].astype(np.int64) + start
        # One key per (id, slice) pair, so one np.unique finds every pair of the slab.
        for key in np.unique(ids * n + slices).tolist():
            lid, s = divmod(key, n)
            by_slice.setdefault(s, []).append(lid)
    if not by_slice:
        raise ValueError(f"{source}: no object is painted")
    entries: dict[int, list[SlicePrompt]] = {}
    for s in sorted(by_slice):
        plane = _slab(labels, axis, s, s + 1)[0]
        for lid in by_slice[s]:
            crop, offset = crop_to_content(plane == lid)
            entries.setdefault(lid, []).append(SlicePrompt(s, None, crop, offset))
    out = [BatchPrompt.combine(lid, axis, e, f"label {lid}") for lid, e in entries.items()]
    several = sum(1 for p in out if p.extra)
    logger.info(
        "%s: %d painted objects along axis %d (%d on several slices)",
        source, len(out), axis, several,
    )  # fmt: skip
    return validate_prompts(out, labels.shape)


# --- CSV -------------------------------------------------------------------------------------


def _int_field(row: dict[str, str], name: str, where: str, default: int | None = None) -> int:
    text = (row.get(name) or "").strip()
    if not text:
        if default is None:
            raise ValueError(f"{where}: column {name!r} is empty")
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} must be an integer, got {text!r}") from None
    if not value.is_integer():
        raise ValueError(f"{where}: {name} must be an integer, got {text!r}")
    return int(value)


def _box_fields(row: dict[str, str], where: str) -> tuple[float, float, float, float] | None:
    texts = [(row.get(c) or "").strip() for c in _BOX_COLUMNS]
    if not any(texts):
        return None
    if not all(texts):
        raise ValueError(f"{where}: a box needs all of row0, col0, row1, col1")
    try:
        return tuple(float(t) for t in texts)  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"{where}: box coordinates must be numbers, got {texts}") from None


def read_prompts_csv(
    path: str | Path,
    shape: Sequence[int],
    *,
    sketches: Any = None,
    sketches_name: str = "the sketches file",
    default_axis: int = 0,
) -> list[BatchPrompt]:
    """Read a prompts CSV (one prompt per row) and check it against a ``(Z, Y, X)`` image.

    The first non-comment line is a header naming the columns (any order, from
    :data:`CSV_COLUMNS`); lines starting with ``#`` and blank lines are skipped. Per row:
    ``slice`` (required); ``axis`` (default ``default_axis``); either a box ``row0, col0, row1,
    col1`` in the slice plane or a ``label`` id painted on that slice of ``sketches``; ``id``
    (default: the row's number among object rows, from 1); ``name`` (optional). Rows giving the
    same ``id`` are one object with several prompts: same axis, different slices, all boxes or
    all labels, overlapping in projection; its name is the first one given.

    Args:
        path: The CSV file.
        shape: ``(Z, Y, X)`` of the image.
        sketches: ``(Z, Y, X)`` integer labels array-like that ``label`` columns refer to.
        sketches_name: Its name for messages.
        default_axis: Axis of rows without an ``axis`` value.

    Returns:
        :class:`BatchPrompt` list in ascending id.

    Raises:
        ValueError: a malformed row (the message gives the file and line number), an unknown
            column, a slice or box outside the image, a label absent from that slice, or rows of
            one id on different axes, on one slice, mixing boxes and labels, or apart.
        OSError: the file cannot be read.
    """
    path = Path(path)
    if sketches is not None:
        _check_labels_array(sketches, shape, sketches_name)
    rows_read: list[tuple[int, bool, BatchPrompt]] = []  # (line, id given, prompt)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not a UTF-8 text file (byte 0x{err.object[err.start]:02x} at offset "
            f"{err.start}); save the prompts CSV as UTF-8"
        ) from None
    with io.StringIO(text, newline="") as f:
        lines = ((i, line) for i, line in enumerate(f, 1))
        rows = (
            (i, line) for i, line in lines if line.strip() and not line.lstrip().startswith("#")
        )
        header: list[str] | None = None
        for lineno, line in rows:
            where = f"{path.name} line {lineno}"
            cells = next(csv.reader([line]))
            if header is None:
                header = [c.strip().lower() for c in cells]
                unknown = [c for c in header if c not in CSV_COLUMNS]
                if unknown:
                    raise ValueError(
                        f"{where}: unknown column(s) {unknown}; expected a header with columns "
                        f"from {list(CSV_COLUMNS)}"
                    )
                if "slice" not in header:
                    raise ValueError(f"{where}: the header needs a 'slice' column")
                continue
            if len(cells) != len(header):
                raise ValueError(f"{where}: {len(cells)} fields, but the header has {len(header)}")
            row = dict(zip(header, cells, strict=True))
            prompt = _row_prompt(
                row, where, len(rows_read) + 1, shape, sketches, sketches_name, default_axis
            )
            rows_read.append((lineno, bool((row.get("id") or "").strip()), prompt))
    if not rows_read:
        raise ValueError(f"{path.name}: no prompts (expected a header line and one row per object)")
    return validate_prompts(_group_rows(rows_read, path.name), shape)


def _group_rows(rows: list[tuple[int, bool, BatchPrompt]], file: str) -> list[BatchPrompt]:
    """Rows that give the same ``id`` become one object with one prompt per row.

    Only ids written in the file group rows: a row without an id whose default (its row number)
    equals another row's id is refused, as it is most likely a mistake.

    Raises:
        ValueError: (naming the file and line) a defaulted id that collides, rows of one id on
            different axes, on the same slice, or mixing a box with a label.
    """
    groups: dict[int, list[tuple[int, bool, BatchPrompt]]] = {}
    for lineno, explicit, p in rows:
        where = f"{file} line {lineno}"
        group = groups.setdefault(p.label_id, [])
        if group:
            line0, explicit0, p0 = group[0]
            if not (explicit and explicit0):
                raise ValueError(f"{where}: id {p.label_id} is already used on line {line0}")
            if p.axis != p0.axis:
                raise ValueError(
                    f"{where}: id {p.label_id} is on axis {p.axis} here but on axis {p0.axis} on "
                    f"line {line0}; the prompts of one object must share an axis"
                )
            if (p.box is None) != (p0.box is None):
                raise ValueError(
                    f"{where}: id {p.label_id} mixes a box with a label (line {line0}); the "
                    "prompts of one object must be all boxes or all labels"
                )
            same = [ln for ln, _, q in group if q.index == p.index]
            if same:
                raise ValueError(
                    f"{where}: id {p.label_id} already has a prompt on slice {p.index} (line "
                    f"{same[0]}); give one prompt per slice"
                )
        group.append((lineno, explicit, p))
    out = []
    for pid, group in groups.items():
        if len(group) == 1:
            out.append(group[0][2])
            continue
        named = [q.name for ln, _, q in group if q.name != f"{file} line {ln}"]
        name = named[0] if named else f"{file} lines {', '.join(str(g[0]) for g in group)}"
        entries = [SlicePrompt(q.index, q.box, q.mask, q.offset) for _, _, q in group]
        out.append(BatchPrompt.combine(pid, group[0][2].axis, entries, name))
    return out


def _row_prompt(
    row: dict[str, str],
    where: str,
    number: int,
    shape: Sequence[int],
    sketches: Any,
    sketches_name: str,
    default_axis: int,
) -> BatchPrompt:
    """The prompt of one CSV row (checked against the image; errors name ``where``)."""
    pid = _int_field(row, "id", where, default=number)
    axis = _int_field(row, "axis", where, default=default_axis)
    index = _int_field(row, "slice", where)
    name = (row.get("name") or "").strip() or where
    if axis not in (0, 1, 2):
        raise ValueError(f"{where}: axis must be 0, 1 or 2, got {axis}")
    if not 0 <= index < int(shape[axis]):
        raise ValueError(
            f"{where}: slice {index} is outside the image (axis {axis} has {shape[axis]} slices)"
        )
    box = _box_fields(row, where)
    has_label = bool((row.get("label") or "").strip())
    if (box is None) == (not has_label):
        raise ValueError(f"{where}: give either a box (row0, col0, row1, col1) or a label")
    if box is not None:
        try:
            normalize_box(box, plane_shape_of(shape, axis))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        return BatchPrompt(pid, axis, index, box, None, (0, 0), name)
    label = _int_field(row, "label", where)
    if sketches is None:
        raise ValueError(f"{where}: label {label} needs a sparse labels file (--sketches)")
    if label <= 0:
        raise ValueError(f"{where}: label must be a positive id, got {label}")
    plane = _slab(sketches, axis, index, index + 1)[0]
    crop, offset = crop_to_content(plane == label)
    if crop.size == 0:
        raise ValueError(
            f"{where}: label {label} is not painted on slice {index} (axis {axis}) of "
            f"{sketches_name}"
        )
    return BatchPrompt(pid, axis, index, None, crop, offset, name)


def read_prompts(
    path: str | Path,
    shape: Sequence[int],
    *,
    axis: int = 0,
    sketches: str | Path | None = None,
) -> list[BatchPrompt]:
    """Prompts from a CSV file (``.csv``) or a sparse labels volume (tif/zarr).

    Args:
        path: The prompts file.
        shape: ``(Z, Y, X)`` of the image.
        axis: Axis of a labels volume's sketches, and the default axis of CSV rows.
        sketches: Sparse labels file that a CSV's ``label`` column refers to.

    Returns:
        :class:`BatchPrompt` list in ascending id.

    Raises:
        ValueError: bad content (see :func:`read_prompts_csv`, :func:`prompts_from_sketches`).
        OSError: a file cannot be read.
    """
    from ..io import read_volume

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prompts file not found: {path}")
    if path.suffix.lower() == ".csv":
        labels = None
        if sketches is not None:
            if not Path(sketches).exists():
                raise FileNotFoundError(f"sketches file not found: {sketches}")
            labels = read_volume(sketches)
        name = Path(sketches).name if sketches is not None else "the sketches file"
        return read_prompts_csv(path, shape, sketches=labels, sketches_name=name, default_axis=axis)
    if sketches is not None:
        raise ValueError("--sketches only applies to a CSV prompts file")
    return prompts_from_sketches(read_volume(path), axis, shape, source=path.name)


__all__ = [
    "CSV_COLUMNS",
    "BatchPrompt",
    "SlicePrompt",
    "crop_to_content",
    "plane_shape_of",
    "prompts_from_sketches",
    "read_prompts",
    "read_prompts_csv",
    "validate_prompts",
]
