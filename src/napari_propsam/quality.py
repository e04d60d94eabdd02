"""Where to look: a quality score per object and the slices worth reviewing.

PropSAM's procedure already holds the signal, at no extra forward pass:

- most slices are predicted several times, from different guides and rounds; where those votes
  disagree, the result is uncertain (``agreement``: the object's pixels' mean vote);
- a sudden change of area or centroid between neighbouring slices is a likely leak or loss;
- a front that stopped at the ``min_area`` rule while the object was still large was cut short.

:func:`assess` turns the per-slice statistics the engine gathers in its final pass into an
:class:`ObjectQuality`. Slices are indices along the propagation axis of the ZYX volume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Reasons a slice is listed for review, as they appear in ``ReviewSlice.reason``.
REASONS: tuple[str, ...] = ("vote disagreement", "area jump", "centroid jump", "end cut")


@dataclass(frozen=True)
class SliceStats:
    """What the engine knows about one reached slice after the final pass.

    Attributes:
        area: Object pixels on the slice.
        agreement: Mean vote (vote sum / vote count) over those pixels, 0..1; 1.0 when the
            slice has no pixel or a single vote.
        votes: The slice's vote count.
        centroid: ``(row, col)`` of the object's pixels in the slice plane (NaN when empty).
    """

    area: int
    agreement: float
    votes: int
    centroid: tuple[float, float]


@dataclass(frozen=True)
class ReviewSlice:
    """One slice worth a look.

    Attributes:
        index: Slice index along the propagation axis.
        reason: One of :data:`REASONS`.
        severity: Expected wrongly segmented pixels on that slice (the ranking key).
    """

    index: int
    reason: str
    severity: float


@dataclass(frozen=True)
class ObjectQuality:
    """Quality of one segmented object.

    Attributes:
        score: 0..1, meant to track the DSC the user would measure (higher is better).
        slices_to_review: Worst first; at most ``max_review_fraction`` of the object's slices.
        agreement: Per reached slice, the mean vote over the object's pixels (0..1).
        axis: Propagation axis of the slice indices.
        signals: The raw object-level signals behind ``score`` (for reports and calibration).
    """

    score: float
    slices_to_review: tuple[ReviewSlice, ...]
    agreement: Mapping[int, float]
    axis: int = 0
    signals: Mapping[str, float] = field(default_factory=dict)

    @property
    def review_indices(self) -> list[int]:
        """The slice indices of :attr:`slices_to_review`, worst first."""
        return [r.index for r in self.slices_to_review]


def slice_stats(mask: np.ndarray, votes: np.ndarray, count: int, offset: tuple[int, int]):
    """:class:`SliceStats` of one slice from its final ``(h, w)`` bool mask and int vote sums."""
    area = int(mask.sum())
    if area == 0:
        return SliceStats(0, 1.0, int(count), (math.nan, math.nan))
    rows, cols = np.nonzero(mask)
    agreement = float(votes[mask].mean() / count) if count > 1 else 1.0
    centroid = (float(rows.mean()) + offset[0], float(cols.mean()) + offset[1])
    return SliceStats(area, min(1.0, agreement), int(count), centroid)


def _jumps(indices: Sequence[int], stats: Mapping[int, SliceStats]) -> tuple[dict, dict]:
    """Relative area change and centroid shift (in equivalent radii) to the previous slice."""
    area_jump, shift = {}, {}
    for a, b in zip(indices, indices[1:], strict=False):
        sa, sb = stats[a], stats[b]
        if sa.area == 0 or sb.area == 0 or b != a + 1:
            continue
        area_jump[b] = abs(sb.area - sa.area) / max(sa.area, sb.area)
        radius = math.sqrt(max(sa.area, sb.area) / math.pi)
        shift[b] = math.dist(sa.centroid, sb.centroid) / max(radius, 1.0)
    return area_jump, shift


def _review(
    stats: Mapping[int, SliceStats],
    area_jump: Mapping[int, float],
    shift: Mapping[int, float],
    cut_ends: Sequence[int],
    max_fraction: float,
) -> tuple[ReviewSlice, ...]:
    """Flag slices by their most severe reason; severity ~ expected wrong pixels."""
    found: dict[int, ReviewSlice] = {}

    def flag(index: int, reason: str, severity: float) -> None:
        if severity > 0 and (index not in found or found[index].severity < severity):
            found[index] = ReviewSlice(index, reason, float(severity))

    for s, st in stats.items():
        if st.votes > 1 and st.agreement < 0.85:
            flag(s, "vote disagreement", (1.0 - st.agreement) * st.area)
    for s, j in area_jump.items():
        if j > 0.35:
            flag(s, "area jump", j * stats[s].area)
    for s, c in shift.items():
        if c > 0.5:
            flag(s, "centroid jump", min(c, 2.0) * 0.5 * stats[s].area)
    for s in cut_ends:
        flag(s, "end cut", float(stats[s].area))
    ranked = sorted(found.values(), key=lambda r: (-r.severity, r.index))
    n_object = sum(1 for st in stats.values() if st.area > 0)
    return tuple(ranked[: max(1, int(max_fraction * n_object))] if ranked else ())


def assess(
    stats: Mapping[int, SliceStats],
    cut_ends: Sequence[int] = (),
    axis: int = 0,
    max_review_fraction: float = 0.2,
) -> ObjectQuality:
    """Score one object and list its slices to review.

    Args:
        stats: :class:`SliceStats` per reached slice index.
        cut_ends: Object end slices where a front stopped at the ``min_area`` rule (not at the
            volume's edge or because the object faded out).
        axis: Propagation axis (recorded in the result).
        max_review_fraction: Most slices listed, as a fraction of the object's slices.

    Returns:
        :class:`ObjectQuality`.
    """
    indices = sorted(stats)
    areas = np.array([stats[s].area for s in indices], float)
    total = float(areas.sum())
    if total == 0:
        return ObjectQuality(0.0, (), {s: 1.0 for s in indices}, axis, {"empty": 1.0})
    agreement = float(sum(stats[s].agreement * stats[s].area for s in indices) / total)
    area_jump, shift = _jumps(indices, stats)
    big_jump = max([j for s, j in area_jump.items() if stats[s].area > 0.1 * areas.max()] or [0])
    cut = max([stats[s].area / areas.max() for s in cut_ends] or [0.0])
    signals = {
        "agreement": agreement,
        "worst_agreement": float(min(stats[s].agreement for s in indices if stats[s].area)),
        "area_jump": float(big_jump),
        "centroid_jump": float(max(shift.values() or [0.0])),
        "end_cut": float(cut),
        "slices": float((areas > 0).sum()),
    }
    score = _score(signals)
    review = _review(stats, area_jump, shift, cut_ends, max_review_fraction)
    per_slice = {s: stats[s].agreement for s in indices}
    return ObjectQuality(score, review, per_slice, axis, signals)


# A linear fit of DSC on the signals, over 478 prompts (mask and box, 3 axes, 5 offsets) of the
# 16 validation volumes (seeds 50,000+, never trained on and not the benchmark's), bundled
# weights; Spearman 0.68 there. Recalibrate with benchmarks/calibrate_quality.py when the
# weights change.
_WEIGHTS = {"worst_agreement": 0.1061, "centroid_jump": -0.1868, "end_cut": -0.3251}
_W_SLICES, _BIAS = 0.1201, 0.3886


def _score(signals: Mapping[str, float]) -> float:
    """Map the object-level signals to a DSC-like 0..1 score.

    A centroid that jumps between slices (a leak or a switch to a neighbour) and an end cut by
    the stopping rule lower it; more slices and agreeing votes raise it.
    """
    s = _BIAS + _W_SLICES * math.log1p(signals["slices"])
    s += _WEIGHTS["worst_agreement"] * signals["worst_agreement"]
    s += _WEIGHTS["centroid_jump"] * min(signals["centroid_jump"], 3.0)
    s += _WEIGHTS["end_cut"] * signals["end_cut"]
    return float(min(1.0, max(0.0, s)))
