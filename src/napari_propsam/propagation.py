"""The PropSAM propagation engine: a 2D mask on one slice -> a 3D object, streamed slice by slice.

Computes what the authors' released 3D procedure computes, voxel for voxel (``docs/method.md``
walks through it step by step):

- one intensity window from the prompt, reused every round; each slice clipped to it and
  min-max scaled by its own range to uint8;
- per round, every guiding slice predicts all ``K`` neighbours on each side, in a crop around
  its guiding mask; each prediction adds one vote per pixel to that slice's vote sum and one to
  the slice's vote count; a guide with fewer neighbours than the round's longest has its last
  neighbour counted again, as the released batch padding does;
- the lowest and highest slices predicted so far guide the next round while ``stop_rule``
  allows; a guide's mask is its mean vote (sum / count) above 0.5, its crop the box of any vote;
- a voxel is foreground if it has any vote; 3D components (6-connected) that miss the prompt
  are removed.

Votes are kept as per-slice tiles that cover only the crop windows seen on that slice, so memory
follows the object, not the volume; slices are read only inside those windows, except when a
window cannot tell a slice's clipped intensity range (see :class:`_SliceRanges`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .config import PropagationConfig
from .predictors import MaskPropagator, PropTask
from .quality import ObjectQuality, assess, slice_stats
from .transforms import (
    Window,
    clipped_extremes,
    crop_window,
    intensity_window,
    pad_to_window,
    slices_to_uint8,
)
from .volume import SliceReader

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class SliceUpdate:
    """The object's current mask on one slice, within a window of that slice's plane.

    Apply it by replacing the object's voxels inside the window with ``mask`` (a later update of
    the same slice always covers the window of every earlier one).

    Attributes:
        axis: Propagation axis of the volume (0, 1 or 2).
        index: Slice index along ``axis``.
        offset: ``(row0, col0)`` of the window in the slice plane (plane = the remaining two axes,
            in order).
        mask: ``(h, w)`` bool mask of the object in the window.
        progress: Estimated fraction of the work done, 0..1 (1.0 on the last update).
        final: True for the updates of the final pass (after the connected-component filter);
            each slice the object reached gets exactly one final update.
        agreement: Mean vote over the slice's object pixels, 0..1 (1 = every prediction of the
            slice agrees; a single vote gives 1). None on slices without object pixels.
        quality: On the last final update only: the object's
            :class:`~napari_propsam.quality.ObjectQuality` (score and slices to review).
    """

    axis: int
    index: int
    offset: tuple[int, int]
    mask: np.ndarray
    progress: float
    final: bool = False
    agreement: float | None = None
    quality: ObjectQuality | None = None


class _VoteTile:
    """Vote sum (per pixel) and vote count (per slice) of one slice.

    The sum covers the union of the windows the slice was predicted in; the count is one number
    for the whole slice, as in the released code, so a pixel outside some of the windows has a
    lower mean vote than one inside all of them.
    """

    def __init__(self, rows: slice, cols: slice) -> None:
        self.r0, self.c0 = rows.start, cols.start
        self.sum = np.zeros((rows.stop - rows.start, cols.stop - cols.start), np.int32)
        self.count = 0

    def _grow(self, rows: slice, cols: slice) -> None:
        r1, c1 = self.r0 + self.sum.shape[0], self.c0 + self.sum.shape[1]
        nr0, nc0 = min(self.r0, rows.start), min(self.c0, cols.start)
        nr1, nc1 = max(r1, rows.stop), max(c1, cols.stop)
        if (nr0, nc0, nr1, nc1) == (self.r0, self.c0, r1, c1):
            return
        new_sum = np.zeros((nr1 - nr0, nc1 - nc0), np.int32)
        dr, dc = self.r0 - nr0, self.c0 - nc0
        new_sum[dr : dr + self.sum.shape[0], dc : dc + self.sum.shape[1]] = self.sum
        self.sum, self.r0, self.c0 = new_sum, nr0, nc0

    def add(self, rows: slice, cols: slice, vote: np.ndarray, weight: int = 1) -> None:
        """Add ``weight`` predictions ``vote`` (``(h, w)`` bool) covering ``rows x cols``."""
        self._grow(rows, cols)
        r, c = rows.start - self.r0, cols.start - self.c0
        h, w = vote.shape
        self.sum[r : r + h, c : c + w] += vote.astype(np.int32) * weight
        self.count += weight

    @property
    def offset(self) -> tuple[int, int]:
        return self.r0, self.c0

    @property
    def total(self) -> int:
        """The slice's vote sum over all pixels (the released stopping quantity)."""
        return int(self.sum.sum())

    def agreement(self) -> float | None:
        """Mean vote over the pixels with any vote (None when there are none)."""
        n = int(np.count_nonzero(self.sum))
        if n == 0 or self.count == 0:
            return None
        return min(1.0, self.total / (n * self.count))

    def window_values(self, values: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """Tile-shaped ``values`` read in plane coordinates ``rows x cols`` (zero outside)."""
        out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), values.dtype)
        tr = slice(max(rows.start, self.r0), min(rows.stop, self.r0 + values.shape[0]))
        tc = slice(max(cols.start, self.c0), min(cols.stop, self.c0 + values.shape[1]))
        if tr.stop > tr.start and tc.stop > tc.start:
            out[
                tr.start - rows.start : tr.stop - rows.start,
                tc.start - cols.start : tc.stop - cols.start,
            ] = values[
                tr.start - self.r0 : tr.stop - self.r0, tc.start - self.c0 : tc.stop - self.c0
            ]
        return out

    def guide(self, crop_ratio: float, min_crop: int, plane_shape: tuple[int, int]):
        """Crop window and ``(size, size)`` bool guiding mask of this slice as the next guide.

        The window is around every pixel with a vote; the mask is the mean vote above 0.5,
        i.e. ``2 * sum > count`` in integers (the released ``sum / (count + 1e-8) > 0.5``).
        """
        win = crop_window(self.sum > 0, crop_ratio, min_crop, self.offset)
        rows, cols = win.clipped(plane_shape)
        mask = self.window_values(2 * self.sum > self.count, rows, cols)
        return win, pad_to_window(mask[None], win)[0]


class _SliceRanges:
    """Clipped min and max of whole slices, read no further than needed.

    The released code scales each whole slice by its own clipped range. A crop window that holds
    values at or beyond both clipping bounds already fixes that range to the bounds (the common
    case). Otherwise the window is grown around itself, doubling its margin, until both bounds
    are seen or the whole slice has been read: exact, and on a real scan a neighbouring bright
    and dark structure usually ends the search after a step or two.
    """

    def __init__(self, reader: SliceReader, lo: float, hi: float) -> None:
        self.reader, self.lo, self.hi = reader, lo, hi
        self._known: dict[int, tuple[np.float32, np.float32]] = {}

    def _scan(self, s: int, rows: slice, cols: slice) -> tuple[np.float32, np.float32]:
        h, w = self.reader.plane_shape
        lo, hi = np.float32(self.lo), np.float32(self.hi)
        margin = max((rows.stop - rows.start) // 2, (cols.stop - cols.start) // 2, 16)
        while True:
            r = slice(max(0, rows.start - margin), min(h, rows.stop + margin))
            c = slice(max(0, cols.start - margin), min(w, cols.stop + margin))
            mins, maxs, _ = clipped_extremes(self.reader.read(s, s + 1, r, c), self.lo, self.hi)
            whole = (r.start, c.start, r.stop, c.stop) == (0, 0, h, w)
            if whole or (mins[0] <= lo and maxs[0] >= hi):
                return mins[0], maxs[0]
            margin *= 2

    def of(
        self, block: np.ndarray, first: int, rows: slice, cols: slice
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(N,)`` clipped mins and maxs of slices ``first..first+N-1`` given their window
        ``block`` (``(N, h, w)``, read at plane ``rows x cols``)."""
        mins, maxs, decided = clipped_extremes(block, self.lo, self.hi)
        for i in range(len(block)):
            s = first + i
            if not decided[i]:
                if s not in self._known:
                    self._known[s] = self._scan(s, rows, cols)
                mins[i], maxs[i] = self._known[s]
        return mins, maxs


class SmallPromptWarning(UserWarning):
    """The prompt is smaller than ``min_area``: propagation will probably stop after one round."""


@dataclass
class _Guide:
    """One guiding slice of a round, its crop, normalised window block and neighbours."""

    index: int
    window: Window
    mask: np.ndarray  # (size, size) bool
    block: np.ndarray  # (hi - lo + 1, size, size) uint8, slices lo..hi
    first: int  # slice index of block[0]
    neighbours: list[int]  # ascending, without the guide itself
    weights: dict[int, int]  # votes each neighbour's prediction counts for


def _warn_small_prompt(area: int, min_area: float) -> None:
    if 0 < area <= min_area:
        # Silent early stops on thin objects are the commonest surprise of the stopping rule.
        warnings.warn(
            f"the prompt covers {area} px, not more than min_area={min_area:g}: "
            "propagation stops where the object's votes on a frontier slice add up to no more "
            "than min_area, so it will likely end after the first round; for small "
            "cross-sections lower min_area (widget: Advanced > Min area)",
            SmallPromptWarning,
            stacklevel=3,
        )


class _Engine:
    """State of one propagation: vote tiles, intensity window and the current frontier."""

    def __init__(
        self,
        reader: SliceReader,
        config: PropagationConfig,
        k: int,
        bounds: tuple[float, float],
    ) -> None:
        self.reader, self.config, self.k = reader, config, k
        self.plane_shape = reader.plane_shape
        self.lo, self.hi = bounds
        self.ranges = _SliceRanges(reader, self.lo, self.hi)
        self.tiles: dict[int, _VoteTile] = {}
        # Slices predicted so far (the released ``propagated_slice_ids``) and the prompt slices.
        self.predicted: set[int] = set()
        self.prompts: frozenset[int] = frozenset()
        # Frontier slices where the stopping rule ended a front that still had votes.
        self.cut: set[int] = set()

    def neighbours(self, g: int) -> list[int]:
        """Slices within ``k`` of ``g``, inside the volume, ascending, without ``g``.

        With several prompts, prompt slices are never predicted: each keeps its prompt. With one,
        later guides predict the prompt slice again, as the released procedure does.
        """
        n = self.reader.n_slices
        skip = self.prompts if len(self.prompts) > 1 else {g}
        return [
            s for s in range(max(0, g - self.k), min(n, g + self.k + 1)) if s != g and s not in skip
        ]

    def runs(self) -> list[tuple[int, int]]:
        """Maximal runs ``(first, last)`` of slices reached so far.

        A run is made of predicted slices; a prompt slice joins the run only where both its
        neighbours are reached, so one prompt's run is exactly the released ``min`` and ``max``
        of the predicted slices (a prompt on slice 0 is not a frontier of its own).
        """
        covered = set(self.predicted)
        reached = covered | self.prompts
        covered |= {p for p in self.prompts if p - 1 in reached and p + 1 in reached}
        out: list[tuple[int, int]] = []
        for s in sorted(covered):
            if out and s == out[-1][1] + 1:
                out[-1] = (out[-1][0], s)
            else:
                out.append((s, s))
        return out

    def prepare(self, g: int, win: Window, mask: np.ndarray) -> _Guide:
        """Read and scale the guide's window on the guide and all its neighbours."""
        neigh = self.neighbours(g)
        first, last = min(neigh + [g]), max(neigh + [g])
        rows, cols = win.clipped(self.plane_shape)
        raw = self.reader.read(first, last + 1, rows, cols)
        mins, maxs = self.ranges.of(raw, first, rows, cols)
        block = pad_to_window(slices_to_uint8(raw, self.lo, self.hi, mins, maxs), win)
        return _Guide(g, win, mask, block, first, neigh, {s: 1 for s in neigh})

    def next_guides(self) -> list[int]:
        """The frontier rule: the ends of every run of reached slices, while votes allow.

        With one prompt there is one run, whose ends are the lowest and highest slices predicted
        so far: the released rule. Towards slice 0 a front continues while its frontier slice's
        vote sum is above ``min_area``; towards the last slice above ``min_area``
        (``stop_rule="symmetric"``) or above 0 (``"released"``). Gaps between prompts close
        from both sides the same way.
        """
        n, cfg = self.reader.n_slices, self.config
        hi_threshold = 0.0 if cfg.stop_rule == "released" else cfg.min_area
        out = []
        self.cut = set()
        for low, high in self.runs():
            fronts = ((low, cfg.min_area, low > 0), (high, hi_threshold, high < n - 1))
            for end, threshold, inside in fronts:
                if not inside:
                    continue  # the front reached the volume's edge
                total = self.tiles[end].total
                if total > threshold:
                    out.append(end)
                elif total > 0:
                    self.cut.add(end)
        return out

    def progress(self) -> float:
        """Reached slices over reached plus not yet reached outside the outermost fronts."""
        runs = self.runs()
        if not runs:
            return 0.0
        n = self.reader.n_slices
        covered = sum(b - a + 1 for a, b in runs)
        remaining = runs[0][0] + (n - 1 - runs[-1][1])
        remaining += sum(
            nxt[0] - prev[1] - 1 for prev, nxt in zip(runs, runs[1:], strict=False)
        )
        return min(0.99, covered / max(1, covered + remaining))

    def window(self, s: int, rows: slice, cols: slice) -> np.ndarray:
        """Slice ``s`` in the plane window ``rows x cols``, clipped to the intensity window and
        scaled to 0..1 (for the quality signals; the network's per-slice scaling is affine, so
        contrasts are the same)."""
        raw = self.reader.read(s, s + 1, rows, cols)[0]
        span = max(float(self.hi) - float(self.lo), 1e-12)
        return (np.clip(raw, self.lo, self.hi) - np.float32(self.lo)) / np.float32(span)

    def add_votes(self, guide: _Guide, slices: list[int], pred: np.ndarray) -> None:
        rows, cols = guide.window.clipped(self.plane_shape)
        h, w = rows.stop - rows.start, cols.stop - cols.start
        for s, p in zip(slices, pred, strict=True):
            tile = self.tiles.get(s)
            if tile is None:
                tile = self.tiles[s] = _VoteTile(rows, cols)
            tile.add(rows, cols, p[:h, :w], guide.weights[s])
            self.predicted.add(s)


def _pad_like_released(guides: list[_Guide]) -> None:
    """Count a shorter guide's last neighbour again, once per missing one.

    The released code batches a round's guides by repeating the last (highest) adjacent slice
    of a shorter guide up to the longest one; the copies are predicted and vote like the rest.
    The network treats every adjacent slice on its own, so a copy's prediction is the
    original's and is counted by weight instead of being recomputed.
    """
    longest = max(len(g.neighbours) for g in guides)
    for g in guides:
        if g.neighbours and len(g.neighbours) < longest:
            g.weights[g.neighbours[-1]] += longest - len(g.neighbours)


def _run_round(
    engine: _Engine, guides: list[_Guide], predictor: MaskPropagator
) -> Iterator[SliceUpdate]:
    """All forward passes of one round, nearest neighbours first, streaming touched slices."""
    # Interleaving the fronts nearest-first lets a pass cut short by max_batch (or a cancel)
    # advance both directions evenly.
    pairs = sorted(
        (abs(s - g.index), gi, s) for gi, g in enumerate(guides) for s in g.neighbours
    )
    step = engine.config.max_batch
    for start in range(0, len(pairs), step):
        chunk = pairs[start : start + step]
        tasks, members = [], []
        for gi in sorted({p[1] for p in chunk}):
            g = guides[gi]
            slices = [s for _, gj, s in chunk if gj == gi]
            adj = g.block[[s - g.first for s in slices]]
            tasks.append(PropTask(g.block[g.index - g.first], g.mask, adj))
            members.append((g, slices))
        preds = predictor.predict(tasks)
        touched = set()
        for (g, slices), pred in zip(members, preds, strict=True):
            engine.add_votes(g, slices, pred)
            touched.update(slices)
        frac = engine.progress()
        for s in sorted(touched):
            tile = engine.tiles[s]
            yield SliceUpdate(
                engine.reader.axis, s, tile.offset, tile.sum > 0, frac, agreement=tile.agreement()
            )


def propagate_mask(
    reader: SliceReader,
    slice_index: int | Sequence[int],
    prompt: np.ndarray | Sequence[np.ndarray],
    predictor: MaskPropagator,
    config: PropagationConfig | None = None,
    spacing: float | None = None,
    bounds: tuple[float, float] | None = None,
) -> Iterator[SliceUpdate]:
    """Propagate 2D prompt masks through the volume, yielding slice updates as they are computed.

    Args:
        reader: Lazy reader of the volume along the propagation axis.
        slice_index: Index of the prompt slice along ``reader.axis``, or several (distinct).
        prompt: ``(H, W)`` bool mask on that slice (``H, W`` = ``reader.plane_shape``), not empty;
            or one per slice of ``slice_index``.
        predictor: Runs PropMask (or a stand-in) on crops.
        config: Engine options (defaults if None).
        spacing: Voxel spacing along the propagation axis, or None if units are unknown.
        bounds: The intensity window ``(lo, hi)`` if the caller already computed it with
            :func:`napari_propsam.transforms.intensity_window` (None: computed here from the
            pixels of every prompt).

    Yields:
        :class:`SliceUpdate` after every forward pass for each slice it touched, then one final
        update per slice after the connected-component filter. Closing the generator stops the
        work after the current forward pass.
    """
    config = config or PropagationConfig()
    indices, masks = _as_prompts(slice_index, prompt)
    for m in masks:
        _warn_small_prompt(int(m.sum()), config.min_area)
    if bounds is None:
        bounds = prompt_bounds(reader, indices, masks, config)
    engine = _Engine(reader, config, config.neighbours(spacing), bounds)
    engine.prompts = frozenset(indices)
    logger.debug("K=%d neighbours per side, clip window %s", engine.k, bounds)

    guides = []
    for idx, m in zip(indices, masks, strict=True):
        win = crop_window(m, config.crop_ratio, config.min_crop)
        rows, cols = win.clipped(reader.plane_shape)
        tile = engine.tiles[idx] = _VoteTile(rows, cols)
        tile.add(rows, cols, m[rows, cols])
        guides.append(engine.prepare(idx, win, pad_to_window(m[rows, cols][None], win)[0]))
    n_rounds = 0
    while guides:
        n_rounds += 1
        reached = len(engine.predicted)
        _pad_like_released(guides)
        yield from _run_round(engine, guides, predictor)
        if config.max_rounds and n_rounds >= config.max_rounds:
            break
        if n_rounds > 1 and len(engine.predicted) == reached:
            break  # no front moved (only possible when prompts block each other's way)
        guides = []
        for g in engine.next_guides():
            tile = engine.tiles[g]
            gwin, gmask = tile.guide(config.crop_ratio, config.min_crop, reader.plane_shape)
            guides.append(engine.prepare(g, gwin, gmask))

    prompts = dict(zip(indices, masks, strict=True))
    if config.max_rounds and n_rounds >= config.max_rounds:
        engine.cut = set()  # capped on purpose: not a cut by the stopping rule
    yield from _final_pass(engine.tiles, reader.axis, prompts, config, engine.cut, engine.window,
                           reader.plane_shape)  # fmt: skip


def _as_prompts(
    slice_index: int | Sequence[int], prompt: np.ndarray | Sequence[np.ndarray]
) -> tuple[list[int], list[np.ndarray]]:
    """One or several ``(slice, (H, W) bool mask)`` prompts as two aligned lists."""
    if isinstance(slice_index, (int, np.integer)):
        return [int(slice_index)], [np.asarray(prompt, dtype=bool)]
    indices = [int(i) for i in slice_index]
    masks = [np.asarray(m, dtype=bool) for m in prompt]
    if len(indices) != len(masks):
        raise ValueError(f"{len(indices)} prompt slices but {len(masks)} prompt masks")
    if len(set(indices)) != len(indices):
        raise ValueError(f"a slice has more than one prompt: {indices}")
    return indices, masks


def prompt_bounds(
    reader: SliceReader,
    indices: Sequence[int],
    masks: Sequence[np.ndarray],
    config: PropagationConfig,
) -> tuple[float, float]:
    """The intensity window of the prompts, from their pixels on their slices (read as float32).

    Args:
        reader: Volume reader along the propagation axis.
        indices: Prompt slices.
        masks: ``(H, W)`` bool prompt masks, one per slice.
        config: ``intensity`` and the percentiles.

    Raises:
        ValueError: as :func:`napari_propsam.transforms.intensity_window`.
    """
    values = []
    for idx, m in zip(indices, masks, strict=True):
        win = crop_window(m, config.crop_ratio, config.min_crop)
        rows, cols = win.clipped(reader.plane_shape)
        values.append(reader.read(idx, idx + 1, rows, cols)[0][m[rows, cols]])
    return intensity_window(
        np.concatenate(values), config.intensity, config.lower_percentile, config.upper_percentile
    )


def _final_pass(
    tiles: dict[int, _VoteTile],
    axis: int,
    prompts: dict[int, np.ndarray],
    config: PropagationConfig,
    cut: set[int] | frozenset[int] = frozenset(),
    window: Callable[[int, slice, slice], np.ndarray] | None = None,
    plane_shape: tuple[int, int] | None = None,
) -> Iterator[SliceUpdate]:
    """Any vote is foreground; then components that miss every prompt are removed.

    Components are 6-connected (scipy's default structure), as in the released code. The last
    update carries the object's quality (:func:`napari_propsam.quality.assess`), whose image
    signals read each slice's tile through ``window`` (:meth:`_Engine.window`; None: none).
    """
    indices = sorted(tiles)
    r0 = min(t.r0 for t in tiles.values())
    c0 = min(t.c0 for t in tiles.values())
    r1 = max(t.r0 + t.sum.shape[0] for t in tiles.values())
    c1 = max(t.c0 + t.sum.shape[1] for t in tiles.values())
    z0 = indices[0]
    fg = np.zeros((indices[-1] - z0 + 1, r1 - r0, c1 - c0), bool)
    for s, t in tiles.items():
        fg[
            s - z0, t.r0 - r0 : t.r0 - r0 + t.sum.shape[0], t.c0 - c0 : t.c0 - c0 + t.sum.shape[1]
        ] = t.sum > 0
    if config.keep_prompt_component:
        labels, n_comp = ndimage.label(fg)
        if n_comp > 1:
            seed = np.zeros_like(fg)
            for idx, m in prompts.items():
                seed[idx - z0] = m[r0:r1, c0:c1]
            keep = np.unique(labels[seed & fg])
            fg = np.isin(labels, keep[keep > 0])
    stats, locals_ = {}, {}
    for s in indices:
        t = tiles[s]
        local = fg[
            s - z0, t.r0 - r0 : t.r0 - r0 + t.sum.shape[0], t.c0 - c0 : t.c0 - c0 + t.sum.shape[1]
        ]
        locals_[s] = local.copy()
        image = None
        if window is not None and local.any():
            rows = slice(t.r0, t.r0 + t.sum.shape[0])
            cols = slice(t.c0, t.c0 + t.sum.shape[1])
            image = window(s, rows, cols)
        stats[s] = slice_stats(local, t.sum, t.count, t.offset, image, plane_shape, s in prompts)
    quality = assess(stats, _cut_ends(stats, cut), axis)
    for i, s in enumerate(indices):
        last = i == len(indices) - 1
        frac = 1.0 if last else 0.99 + 0.01 * (i + 1) / len(indices)
        agreement = stats[s].agreement if stats[s].area else None
        yield SliceUpdate(
            axis, s, tiles[s].offset, locals_[s], frac, True, agreement, quality if last else None
        )


def _cut_ends(stats: dict, cut: set[int] | frozenset[int]) -> list[int]:
    """The object's end slices next to fronts the stopping rule ended while votes remained."""
    filled = [s for s in sorted(stats) if stats[s].area > 0]
    if not filled or not cut:
        return []
    ends = []
    for frontier in cut:
        nearest = min(filled, key=lambda s: abs(s - frontier))
        if abs(nearest - frontier) <= 1:
            ends.append(nearest)
    return sorted(set(ends))
