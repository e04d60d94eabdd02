"""The PropSAM propagation engine: a 2D mask on one slice -> a 3D object, streamed slice by slice.

Implements METHOD.md §3 (released 3D procedure): per round, every guiding slice predicts all ``K``
neighbours on each side; predictions vote per pixel (sum and count); the lowest and highest slices
reached become the next guides while their mean-vote area stays above ``min_area``; both
directions share one forward pass; at the end a voxel is foreground if its mean vote is above 0,
and 3D components that do not touch the prompt are removed.

Votes are kept as per-slice tiles that cover only the crop windows seen on that slice, so memory
follows the object, not the volume.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .config import PropagationConfig
from .predictors import MaskPropagator, PropTask
from .transforms import Window, crop_window, pad_to_window, percentile_range, to_uint8_range
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
    """

    axis: int
    index: int
    offset: tuple[int, int]
    mask: np.ndarray
    progress: float
    final: bool = False


class _VoteTile:
    """Vote sum and count of one slice over the union of the windows it was predicted in."""

    def __init__(self, rows: slice, cols: slice) -> None:
        self.r0, self.c0 = rows.start, cols.start
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        self.sum = np.zeros(shape, np.float32)
        self.count = np.zeros(shape, np.float32)

    def _grow(self, rows: slice, cols: slice) -> None:
        r1, c1 = self.r0 + self.sum.shape[0], self.c0 + self.sum.shape[1]
        nr0, nc0 = min(self.r0, rows.start), min(self.c0, cols.start)
        nr1, nc1 = max(r1, rows.stop), max(c1, cols.stop)
        if (nr0, nc0, nr1, nc1) == (self.r0, self.c0, r1, c1):
            return
        new_sum = np.zeros((nr1 - nr0, nc1 - nc0), np.float32)
        new_count = np.zeros_like(new_sum)
        dr, dc = self.r0 - nr0, self.c0 - nc0
        new_sum[dr : dr + self.sum.shape[0], dc : dc + self.sum.shape[1]] = self.sum
        new_count[dr : dr + self.sum.shape[0], dc : dc + self.sum.shape[1]] = self.count
        self.sum, self.count, self.r0, self.c0 = new_sum, new_count, nr0, nc0

    def add(self, rows: slice, cols: slice, vote: np.ndarray) -> None:
        """Add one prediction ``vote`` (``(h, w)`` bool) covering ``rows x cols``."""
        self._grow(rows, cols)
        r, c = rows.start - self.r0, cols.start - self.c0
        h, w = vote.shape
        self.sum[r : r + h, c : c + w] += vote
        self.count[r : r + h, c : c + w] += 1.0

    def mean(self) -> np.ndarray:
        """Mean vote, 0 where the slice was never predicted."""
        return np.divide(self.sum, self.count, out=np.zeros_like(self.sum), where=self.count > 0)

    @property
    def offset(self) -> tuple[int, int]:
        return self.r0, self.c0

    def window_values(self, values: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """Tile-shaped ``values`` read in plane coordinates ``rows x cols`` (zero outside)."""
        out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), np.float32)
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


@dataclass
class _Direction:
    """A propagation front: the slice reached so far and whether it still advances."""

    step: int  # -1 towards slice 0, +1 towards the last slice
    reached: int
    active: bool = True


def _neighbours(guide: int, k: int, n_slices: int) -> list[int]:
    """All slices within ``k`` of ``guide`` on both sides, inside the volume, nearest first."""
    out = []
    for d in range(1, k + 1):
        for s in (guide - d, guide + d):
            if 0 <= s < n_slices:
                out.append(s)
    return out


class SmallPromptWarning(UserWarning):
    """The prompt is smaller than ``min_area``: propagation will probably stop after one round."""


def propagate_mask(
    reader: SliceReader,
    slice_index: int,
    prompt: np.ndarray,
    predictor: MaskPropagator,
    config: PropagationConfig | None = None,
    spacing: float | None = None,
) -> Iterator[SliceUpdate]:
    """Propagate a 2D prompt mask through the volume, yielding slice updates as they are computed.

    Args:
        reader: Lazy reader of the volume along the propagation axis.
        slice_index: Index of the prompt slice along ``reader.axis``.
        prompt: ``(H, W)`` bool mask on that slice (``H, W`` = ``reader.plane_shape``), not empty.
        predictor: Runs PropMask (or a stand-in) on crops.
        config: Engine options (defaults if None).
        spacing: Voxel spacing along the propagation axis, or None if units are unknown.

    Yields:
        :class:`SliceUpdate` after every forward pass for each slice it touched, then one final
        update per slice after the connected-component filter. Closing the generator stops the
        work after the current forward pass.
    """
    config = config or PropagationConfig()
    n = reader.n_slices
    plane_shape = reader.plane_shape
    prompt = np.asarray(prompt, dtype=bool)
    k = config.neighbours(spacing)
    area = int(prompt.sum())
    if 0 < area < config.min_area:
        # Silent early stops on thin objects are the commonest surprise of the released rule.
        warnings.warn(
            f"the prompt covers {area} px, fewer than min_area={config.min_area:g}: "
            "propagation stops where the object's area falls below min_area, so it will likely "
            "end after the first round; for small cross-sections lower min_area (widget: "
            "Advanced > Min area)",
            SmallPromptWarning,
            stacklevel=2,
        )

    # Normalisation comes from the prompt once (released code), from the prompt's window only.
    win = crop_window(prompt, config.crop_ratio, config.min_crop)
    rows, cols = win.clipped(plane_shape)
    guide_raw = reader.read(slice_index, slice_index + 1, rows, cols)[0]
    vmin, vmax = percentile_range(
        guide_raw[prompt[rows, cols]], config.lower_percentile, config.upper_percentile
    )
    logger.debug("K=%d neighbours per side, window [%g, %g]", k, vmin, vmax)

    tiles: dict[int, _VoteTile] = {}
    first = _VoteTile(rows, cols)
    first.add(rows, cols, prompt[rows, cols])
    tiles[slice_index] = first

    lo = _Direction(-1, slice_index, slice_index > 0)
    hi = _Direction(+1, slice_index, slice_index < n - 1)
    guides: list[tuple[int, np.ndarray, Window]] = [(slice_index, prompt[rows, cols], win)]
    n_rounds = 0

    def progress() -> float:
        covered = hi.reached - lo.reached + 1
        remaining = (lo.reached if lo.active else 0) + (n - 1 - hi.reached if hi.active else 0)
        return min(0.99, covered / max(1, covered + remaining))

    while guides:
        n_rounds += 1
        # (guide number, slice) pairs, nearest first and interleaved between directions, so a
        # forward pass that is cut short by max_batch (or a cancel) advances both fronts evenly.
        pairs = []
        prepared = []
        for gi, (g, gmask, gwin) in enumerate(guides):
            neigh = _neighbours(g, k, n)
            lo_s, hi_s = min(neigh + [g]), max(neigh + [g])
            grows, gcols = gwin.clipped(plane_shape)
            block = reader.read(lo_s, hi_s + 1, grows, gcols)
            block = to_uint8_range(block, vmin, vmax)
            block = pad_to_window(block, gwin)
            gm = np.zeros((gwin.size, gwin.size), np.float32)
            gm[: gmask.shape[0], : gmask.shape[1]] = gmask
            prepared.append((block, lo_s, gm))
            pairs.extend((abs(s - g), gi, s) for s in neigh)
        pairs.sort()
        if lo.active:
            lo.reached = min([lo.reached] + [s for _, _, s in pairs])
        if hi.active:
            hi.reached = max([hi.reached] + [s for _, _, s in pairs])

        for start in range(0, len(pairs), config.max_batch):
            chunk = pairs[start : start + config.max_batch]
            tasks, members = [], []
            for gi in sorted({p[1] for p in chunk}):
                block, lo_s, gm = prepared[gi]
                slices = [s for _, gj, s in chunk if gj == gi]
                g = guides[gi][0]
                tasks.append(PropTask(block[g - lo_s], gm, block[[s - lo_s for s in slices]]))
                members.append((gi, slices))
            preds = predictor.predict(tasks)
            touched = []
            for (gi, slices), pred in zip(members, preds, strict=True):
                grows, gcols = guides[gi][2].clipped(plane_shape)
                h, w = grows.stop - grows.start, gcols.stop - gcols.start
                for s, p in zip(slices, pred, strict=True):
                    tile = tiles.get(s)
                    if tile is None:
                        tile = tiles[s] = _VoteTile(grows, gcols)
                    tile.add(grows, gcols, p[:h, :w])
                    touched.append(s)
            frac = progress()
            for s in sorted(set(touched)):
                tile = tiles[s]
                yield SliceUpdate(reader.axis, s, tile.offset, tile.sum > 0, frac)

        guides = []
        if config.max_rounds and n_rounds >= config.max_rounds:
            lo.active = hi.active = False
        for d in (lo, hi):
            if not d.active:
                continue
            if d.reached in (0, n - 1):
                d.active = False  # the volume ends: no interior frontier slice
                continue
            tile = tiles.get(d.reached)
            mean = tile.mean() if tile is not None else None
            if mean is None or float(mean.sum()) < config.min_area:
                d.active = False  # the object ends
                continue
            try:
                gwin = crop_window(mean > 0.5, config.crop_ratio, config.min_crop, tile.offset)
            except ValueError:
                d.active = False  # votes too split to form a guiding mask
                continue
            grows, gcols = gwin.clipped(plane_shape)
            guides.append((d.reached, tile.window_values(mean, grows, gcols), gwin))

    yield from _final_pass(tiles, reader.axis, slice_index, prompt, config)


def _final_pass(
    tiles: dict[int, _VoteTile],
    axis: int,
    slice_index: int,
    prompt: np.ndarray,
    config: PropagationConfig,
) -> Iterator[SliceUpdate]:
    """Union of votes (mean > 0) and removal of components that miss the prompt."""
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
        labels, n_comp = ndimage.label(fg, structure=np.ones((3, 3, 3), bool))
        if n_comp > 1:
            seed = np.zeros_like(fg)
            seed[slice_index - z0] = prompt[r0:r1, c0:c1]
            keep = np.unique(labels[seed & fg])
            fg = np.isin(labels, keep[keep > 0])
    for i, s in enumerate(indices):
        t = tiles[s]
        local = fg[
            s - z0, t.r0 - r0 : t.r0 - r0 + t.sum.shape[0], t.c0 - c0 : t.c0 - c0 + t.sum.shape[1]
        ]
        frac = 0.99 + 0.01 * (i + 1) / len(indices)
        yield SliceUpdate(
            axis, s, t.offset, local.copy(), 1.0 if i == len(indices) - 1 else frac, True
        )
