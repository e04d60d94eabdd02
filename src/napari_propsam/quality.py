"""Where to look: a quality score per object and the slices worth reviewing.

PropSAM's procedure and the slices it already read hold the signal, at no extra forward pass:

- the image: a boundary with little intensity step across it (``contrast``) is where the network
  guesses, and most wrong pixels sit there;
- the shape: a centroid that jumps between neighbouring slices, an object that grows away from
  its prompt, an end slice still large (cut by the ``min_area`` rule), a prediction that runs
  into the edge of its crop: leaks and losses;
- the votes: most slices are predicted several times; where those votes disagree, the result is
  uncertain (``agreement``: the object's pixels' mean vote).

:func:`assess` turns the per-slice statistics the engine gathers in its final pass into an
:class:`ObjectQuality`. Slices are indices along the propagation axis of the ZYX volume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

#: Reasons a slice is listed for review, as they appear in ``ReviewSlice.reason``.
REASONS: tuple[str, ...] = (
    "vote disagreement", "centroid jump", "end cut", "crop edge", "weak boundary", "long boundary",
)  # fmt: skip


@dataclass(frozen=True)
class SliceStats:
    """What the engine knows about one reached slice after the final pass.

    Attributes:
        area: Object pixels on the slice.
        agreement: Mean vote (vote sum / vote count) over those pixels, 0..1; 1.0 when the
            slice has no pixel or a single vote.
        votes: The slice's vote count.
        centroid: ``(row, col)`` of the object's pixels in the slice plane (NaN when empty).
        minority: Share of the object's pixels kept on a minority of votes (mean vote <= 0.5).
        contrast: Intensity step across the object's boundary over the pooled spread of a thin
            band inside and a thin ring outside (NaN without the image or pixels).
        edge: Mean intensity gradient on the boundary over the mean gradient of the slice's
            window (NaN without the image).
        touch: Share of the boundary pixels on the inner edge of the slice's crop windows (a
            prediction that runs into its crop is usually a leak).
        perimeter: Boundary pixels of the object on the slice.
        prompt: The slice holds a prompt.
    """

    area: int
    agreement: float
    votes: int
    centroid: tuple[float, float]
    minority: float = 0.0
    contrast: float = math.nan
    edge: float = math.nan
    touch: float = 0.0
    perimeter: int = 0
    prompt: bool = False


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
        stats: The per-slice :class:`SliceStats` they come from (for calibration).
        cut_ends: End slices where a front stopped at the ``min_area`` rule.
    """

    score: float
    slices_to_review: tuple[ReviewSlice, ...]
    agreement: Mapping[int, float]
    axis: int = 0
    signals: Mapping[str, float] = field(default_factory=dict)
    stats: Mapping[int, SliceStats] = field(default_factory=dict)
    cut_ends: tuple[int, ...] = ()

    @property
    def review_indices(self) -> list[int]:
        """The slice indices of :attr:`slices_to_review`, worst first."""
        return [r.index for r in self.slices_to_review]


def slice_stats(
    mask: np.ndarray,
    votes: np.ndarray,
    count: int,
    offset: tuple[int, int],
    image: np.ndarray | None = None,
    plane_shape: tuple[int, int] | None = None,
    prompt: bool = False,
) -> SliceStats:
    """:class:`SliceStats` of one slice.

    Args:
        mask: ``(h, w)`` bool final mask of the object in the slice's window.
        votes: ``(h, w)`` int vote sums of the window.
        count: The slice's vote count.
        offset: ``(row0, col0)`` of the window in the slice plane.
        image: ``(h, w)`` intensities of the window scaled to 0..1 by the intensity window
            (None: no image-based signals).
        plane_shape: ``(H, W)`` of the slice plane: window sides on the plane's edge do not
            count for ``touch`` (None: only sides at row or column 0 are known to be).
        prompt: The slice holds a prompt.
    """
    area = int(mask.sum())
    if area == 0:
        return SliceStats(0, 1.0, int(count), (math.nan, math.nan), prompt=prompt)
    rows, cols = np.nonzero(mask)
    sums = votes[mask]
    agreement = float(sums.mean() / count) if count > 1 else 1.0
    minority = float(np.count_nonzero(2 * sums <= count)) / area if count > 1 else 0.0
    centroid = (float(rows.mean()) + offset[0], float(cols.mean()) + offset[1])
    boundary = mask & ~ndimage.binary_erosion(mask)
    contrast, edge = _image_signals(mask, boundary, image) if image is not None else (
        math.nan, math.nan)  # fmt: skip
    return SliceStats(
        area, min(1.0, agreement), int(count), centroid, minority, contrast, edge,
        _touch(boundary, offset, plane_shape), int(boundary.sum()), prompt,
    )  # fmt: skip


_BAND = 2  # px: the band inside and the ring outside the boundary that ``contrast`` compares


def _image_signals(mask: np.ndarray, boundary: np.ndarray, image: np.ndarray):
    """``(contrast, edge)`` of one slice (see :class:`SliceStats`)."""
    inner = mask & ~ndimage.binary_erosion(mask, iterations=_BAND)
    outer = ndimage.binary_dilation(mask, iterations=_BAND) & ~mask
    contrast = math.nan
    if inner.any() and outer.any():
        a, b = image[inner], image[outer]
        # The floor (about 2.5 grey levels of the uint8 window) keeps flat regions finite.
        spread = math.sqrt(0.5 * (float(a.var()) + float(b.var())) + 0.01**2)
        contrast = abs(float(a.mean()) - float(b.mean())) / spread
    gr, gc = np.gradient(image.astype(np.float32, copy=False))
    grad = np.hypot(gr, gc)
    edge = float(grad[boundary].mean()) / (float(grad.mean()) + 0.01)
    return contrast, edge


def _touch(
    boundary: np.ndarray, offset: tuple[int, int], plane_shape: tuple[int, int] | None
) -> float:
    """Share of ``boundary`` on the window's sides that lie inside the slice plane."""
    h, w = boundary.shape
    plane = plane_shape or (h + offset[0] + 1, w + offset[1] + 1)
    edges = np.zeros_like(boundary)
    if offset[0] > 0:
        edges[0] = True
    if offset[1] > 0:
        edges[:, 0] = True
    if offset[0] + h < plane[0]:
        edges[-1] = True
    if offset[1] + w < plane[1]:
        edges[:, -1] = True
    n = int(boundary.sum())
    return float(np.count_nonzero(boundary & edges)) / n if n else 0.0


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The ``q`` quantile of ``values`` weighted by ``weights`` (NaN values ignored)."""
    ok = np.isfinite(values)
    if not ok.any():
        return math.nan
    order = np.argsort(values[ok])
    cum = np.cumsum(weights[ok][order])
    return float(values[ok][order][min(len(order) - 1, np.searchsorted(cum, q * cum[-1]))])


def slice_signals(
    stats: Mapping[int, SliceStats], cut_ends: Sequence[int] = ()
) -> dict[int, dict[str, float]]:
    """Per object slice, the signals of its expected wrong pixels (:data:`SLICE_FEATURES`).

    ``low_contrast`` is minus log(1 + contrast) (a boundary the image barely shows is where the
    network guesses), ``disagree`` 1 - agreement, ``centroid_jump`` the largest shift to a
    neighbouring slice in equivalent radii (clipped at 3), ``prompt_distance`` the distance to
    the nearest prompt over the object's slice count, ``prompt`` and ``cut`` 0/1 flags.
    """
    filled = [s for s in sorted(stats) if stats[s].area > 0]
    prompts = [s for s in filled if stats[s].prompt] or [max(filled, key=lambda s: stats[s].area)]
    cuts = set(cut_ends)
    out = {}
    for s in filled:
        st = stats[s]
        near = [stats[t] for t in (s - 1, s + 1) if t in stats and stats[t].area > 0]
        shift = [
            math.dist(st.centroid, n.centroid) / max(1.0, math.sqrt(max(st.area, n.area) / math.pi))
            for n in near
        ]
        contrast = st.contrast if math.isfinite(st.contrast) else _TYPICAL_CONTRAST
        out[s] = {
            "low_contrast": -math.log1p(min(contrast, 10.0)),
            "touch": st.touch,
            "disagree": 1.0 - st.agreement,
            "centroid_jump": min(max(shift or [0.0]), 3.0),
            "prompt_distance": min(abs(s - p) for p in prompts) / len(filled),
            "prompt": float(st.prompt),
            "cut": float(s in cuts),
        }
    return out


def features(stats: Mapping[int, SliceStats], cut_ends: Sequence[int] = ()) -> dict[str, float]:
    """The object-level features behind ``score`` (:data:`OBJECT_FEATURES`), from its slices.

    ``centroid_jump``: largest centroid shift between neighbouring slices, in equivalent radii
    (a leak or a switch to a neighbour); ``low_contrast``: minus log(1 + the 10 % area-weighted
    quantile of the boundary contrast); ``log_area``: log of the largest cross-section;
    ``growth``: log of the largest cross-section over the largest prompt's (a leak grows away
    from the prompt); ``open_ends``: the larger end slice's area over the largest (an object
    does not end abruptly unless cut or at the volume's edge); ``touch``: the largest share of
    a slice's boundary on its crop's edge; ``end_cut`` (reported, not scored) the cut end's
    relative area.
    """
    filled = [s for s in sorted(stats) if stats[s].area > 0]
    areas = np.array([stats[s].area for s in filled], float)
    big = float(areas.max())
    contrast = np.array([stats[s].contrast for s in filled], float)
    low = _weighted_quantile(contrast, areas, 0.1)
    prompt_area = max([stats[s].area for s in filled if stats[s].prompt] or [big])
    per_slice = slice_signals(stats, cut_ends)
    return {
        "centroid_jump": max(v["centroid_jump"] for v in per_slice.values()),
        "low_contrast": -math.log1p(min(low if math.isfinite(low) else _TYPICAL_CONTRAST, 10.0)),
        "log_area": math.log(big),
        "growth": min(max(math.log(big / prompt_area), -1.0), 2.0),
        "open_ends": float(max(areas[0], areas[-1]) / big),
        "touch": max(stats[s].touch for s in filled),
        "end_cut": max([stats[s].area / big for s in cut_ends if stats[s].area] or [0.0]),
    }


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
    per_slice = {s: stats[s].agreement for s in indices}
    if not any(stats[s].area for s in indices):
        return ObjectQuality(0.0, (), per_slice, axis, {"empty": 1.0}, dict(stats), ())
    signals = features(stats, cut_ends)
    score = _BIAS + sum(w * signals[k] for k, w in _WEIGHTS.items())
    score = float(min(1.0, max(0.0, score)))
    n_slices = sum(1 for s in indices if stats[s].area)
    signals["slices"] = float(n_slices)
    review = _review(
        stats, slice_signals(stats, cut_ends), max(1, int(max_review_fraction * n_slices))
    )
    return ObjectQuality(score, review, per_slice, axis, signals, dict(stats), tuple(cut_ends))


def expected_wrong(stats: SliceStats, signals: Mapping[str, float]) -> float:
    """Expected wrongly segmented pixels on one slice: its boundary length times a rate that
    rises with the slice's :func:`slice_signals` (a log-linear fit, :data:`_SLICE_WEIGHTS`)."""
    rate = _SLICE_BIAS + sum(w * signals[k] for k, w in _SLICE_WEIGHTS.items())
    return (stats.perimeter + 1) * math.exp(rate)


def _reason(stats: SliceStats, signals: Mapping[str, float]) -> str:
    """The most telling reason a slice is listed, first match in order of specificity."""
    if signals["cut"]:
        return "end cut"
    if signals["touch"] > 0.1:
        return "crop edge"
    if signals["centroid_jump"] > 0.5:
        return "centroid jump"
    if signals["disagree"] > 0.15:
        return "vote disagreement"
    return "weak boundary" if signals["low_contrast"] > -math.log1p(1.0) else "long boundary"


def _review(
    stats: Mapping[int, SliceStats], signals: Mapping[int, Mapping[str, float]], cap: int
) -> tuple[ReviewSlice, ...]:
    """Slices ranked by expected wrong pixels, at most ``cap``; only those expected to hold
    more than a small share of their area, so a clean object lists nothing."""
    found = []
    for s, sig in signals.items():
        wrong = expected_wrong(stats[s], sig)
        if wrong > _MIN_WRONG * stats[s].area:
            found.append(ReviewSlice(s, _reason(stats[s], sig), float(wrong)))
    return tuple(sorted(found, key=lambda r: (-r.severity, r.index))[:cap])


#: Feature order of the fits (``benchmarks/calibrate_quality.py`` prints them in this order).
OBJECT_FEATURES: tuple[str, ...] = (
    "centroid_jump", "low_contrast", "log_area", "growth", "open_ends", "touch",
)  # fmt: skip
SLICE_FEATURES: tuple[str, ...] = (
    "low_contrast", "touch", "disagree", "centroid_jump", "prompt_distance", "prompt", "cut",
)  # fmt: skip

# Least-squares fits with the bundled weights over 240 validation runs (seeds 50,000+, the 12
# training families, mask and box prompts, 1-3 prompts, offsets 0 and +-20 %, axes in turn; never
# the benchmark's seeds nor the held-out families): score on DSC (Spearman 0.84 there), slice
# rates on log wrong pixels per boundary pixel. Rewritten by
# ``benchmarks/calibrate_quality.py --collect runs.json --write`` when the weights change.
_WEIGHTS = {
    "centroid_jump": -0.0958,
    "low_contrast": -0.3525,
    "log_area": 0.053,
    "growth": -0.2103,
    "open_ends": -0.2219,
    "touch": -0.0944,
}
_BIAS = 0.3611
_SLICE_WEIGHTS = {
    "low_contrast": 2.1456,
    "touch": 2.4876,
    "disagree": 0.3736,
    "centroid_jump": 0.116,
    "prompt_distance": 0.6256,
    "prompt": -1.864,
    "cut": -0.1873,
}
_SLICE_BIAS = 1.9743
# Contrast assumed without the image (stats built by hand): about the validation runs' median.
_TYPICAL_CONTRAST = 1.0
# A slice is listed only if expected to hold more wrong pixels than this share of its area.
_MIN_WRONG = 0.05
