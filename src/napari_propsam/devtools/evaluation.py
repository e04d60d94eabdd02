"""Held-out evaluation: PropSAM against the classical random-walker baseline, same objects.

For every object: prompts on the largest cross-section and on slices off it by +-10% and +-20% of
the object's extent, on each requested axis, as a mask (the true cross-section) and as a box (the
tight box enlarged by 10% per side, as a user draws it). Reports DSC, NSD at 1 voxel, HD95 (voxels),
seconds per object and milliseconds per predicted slice.

With several prompts per object (``prompts_per_object``, e.g. ``(1, 2, 3)``), each object is
instead prompted once per count n, on the slices of :func:`spread_slices` (the largest
cross-section plus n - 1 slices spread over the object's extent), one mask or box on each.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..api import apply_update, propagate
from ..config import PropagationConfig
from ..predictors import PropMaskPredictor
from ..registry import ModelSpec, resolve_model

logger = logging.getLogger(__name__)

OFFSETS: tuple[float, ...] = (0.0, -0.1, 0.1, -0.2, 0.2)


@dataclass(frozen=True)
class Case:
    """One prompt of one object."""

    volume: str
    family: str
    label: int
    axis: int
    offset: float
    slice_index: int
    anisotropic: bool
    n_prompts: int = 1
    prompt_slices: tuple[int, ...] = ()  # every prompt slice when n_prompts > 1


@dataclass
class Result:
    """Scores of one method on one case."""

    case: Case
    method: str  # "propsam" or "random_walker"
    prompt: str  # "mask" or "box"
    dsc: float
    nsd: float
    hd95: float
    seconds: float
    slices: int
    score: float = float("nan")
    flagged_error_share: float = float("nan")
    flagged_slice_fraction: float = float("nan")
    error: str = ""  # why PropSAM refused or failed the prompt (scored as an empty result)


class _Counting:
    """Wraps a predictor to count predicted slices."""

    def __init__(self, inner: PropMaskPredictor) -> None:
        self.inner = inner
        self.slices = 0

    def predict(self, tasks):
        self.slices += sum(len(t.adjacent) for t in tasks)
        return self.inner.predict(tasks)


def prompt_slices(
    obj: np.ndarray, axis: int, offsets: Sequence[float] = OFFSETS
) -> list[tuple[float, int]]:
    """``(offset, slice)`` pairs: largest cross-section shifted by fractions of the extent."""
    areas = obj.sum(axis=tuple(i for i in range(3) if i != axis))
    present = np.flatnonzero(areas)
    extent = present[-1] - present[0] + 1
    best = int(np.argmax(areas))
    out = []
    for f in offsets:
        s = int(round(best + f * extent))
        s = min(max(s, int(present[0])), int(present[-1]))
        if areas[s] >= 4:
            out.append((f, s))
    return out


def spread_slices(obj: np.ndarray, axis: int, n: int, min_area: int = 4) -> list[int]:
    """``n`` prompt slices of one object: its largest cross-section plus ``n - 1`` others
    spread across its extent along ``axis``, ascending.

    The object's extent (first to last slice with voxels) is cut into ``n`` equal parts and a
    slice taken at the centre of each; the one nearest the largest cross-section becomes the
    largest cross-section itself. For an object symmetric about its largest cross-section this
    gives the middle and +-1/3 of the extent with ``n = 3``, and a quarter of the extent off
    it with ``n = 2``. A slice whose cross-section is under ``min_area`` voxels moves towards the
    largest one until it is not; slices that coincide are kept once (so fewer than ``n`` can
    come back for a short object).

    Args:
        obj: ``(Z, Y, X)`` bool mask of the object.
        axis: Prompt axis.
        n: Number of prompt slices wanted (>= 1).
        min_area: Smallest cross-section (voxels) a prompt slice may have.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    areas = obj.sum(axis=tuple(i for i in range(3) if i != axis))
    present = np.flatnonzero(areas)
    first, extent = int(present[0]), int(present[-1] - present[0] + 1)
    best = int(np.argmax(areas))
    targets = [int(np.floor(first + (k + 0.5) * extent / n)) for k in range(n)]
    targets[int(np.argmin([abs(t - best) for t in targets]))] = best
    out = set()
    for t in targets:
        step = 1 if t < best else -1
        while t != best and areas[t] < min_area:
            t += step
        out.add(t)
    return sorted(out)


def loose_box(section: np.ndarray, margin: float = 0.1) -> tuple[int, int, int, int]:
    """Tight box of a 2D mask enlarged by ``margin`` of its size on each side (half-open)."""
    rows, cols = np.flatnonzero(section.any(1)), np.flatnonzero(section.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dr, dc = int(np.ceil((r1 - r0) * margin)), int(np.ceil((c1 - c0) * margin))
    h, w = section.shape
    return max(0, r0 - dr), max(0, c0 - dc), min(h, r1 + dr), min(w, c1 + dc)


def loose_box_cases(
    volumes: Iterable, axes: Sequence[int] = (0,)
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Box2Mask test cases: each volume's largest object, cut at :func:`prompt_slices` on ``axes``.

    Returns:
        ``(family, crop, truth)`` per case: the image inside the :func:`loose_box` of the true
        section (``(h, w)``, the volume's dtype) and the true section inside it (``(h, w)`` bool).
    """
    cases = []
    for vol in volumes:
        target = max(vol.targets, key=lambda t: int(np.count_nonzero(vol.labels == t)))
        obj = vol.labels == target
        for axis in axes:
            for _, s in prompt_slices(obj, axis):
                truth = np.take(obj, s, axis=axis)
                r0, c0, r1, c1 = loose_box(truth)
                plane = np.take(vol.image, s, axis=axis)
                cases.append((vol.family, plane[r0:r1, c0:c1], truth[r0:r1, c0:c1]))
    return cases


def _scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    from ..metrics import dice, hd95, nsd

    return dice(pred, truth), nsd(pred, truth, tolerance=1.0), hd95(pred, truth)


def _flagged_errors(
    pred: np.ndarray, truth: np.ndarray, axis: int, flagged: Sequence[int]
) -> tuple[float, float]:
    """Share of the wrong voxels (FP + FN) on ``flagged`` slices, and their share of the
    object's slices (slices along ``axis`` where the prediction has voxels)."""
    other = tuple(i for i in range(3) if i != axis)
    wrong = (pred ^ truth).sum(axis=other)
    n_slices = int(np.count_nonzero(pred.any(axis=other)))
    total = float(wrong.sum())
    share = float(wrong[list(flagged)].sum()) / total if total and flagged else 0.0
    return (share if total else 1.0), (len(flagged) / n_slices if n_slices else 0.0)


def _run_propsam(vol, obj, case, kind, prompt, bundle, predictor, device, config) -> Result:
    """PropSAM on one prompt: scores, time, and how well its quality report points at errors."""
    predictor.slices = 0
    t = time.perf_counter()
    pred = np.zeros(obj.shape, bool)
    quality = None
    where = list(case.prompt_slices) if case.n_prompts > 1 else case.slice_index
    error = ""
    try:
        for u in propagate(
            vol.image,
            slice_index=where,
            axis=case.axis,
            spacing=vol.spacing,
            model=bundle,
            predictor=predictor,
            device=device,
            config=config,
            **prompt,
        ):
            if u.final:
                apply_update(pred, u)
                quality = u.quality or quality
    except ValueError as err:  # e.g. Box2Mask finds nothing; the object scores as not found
        log = logger.info if case.n_prompts > 1 else logger.debug
        log(
            "%s axis %d, %s on slice(s) %s: refused or failed (%s); scored as an empty result",
            case.volume, case.axis, kind, list(case.prompt_slices) or case.slice_index, err,
        )  # fmt: skip
        error = str(err)
    dt = time.perf_counter() - t
    score, share, frac = 0.0, 0.0, 0.0
    if quality is not None:
        score = quality.score
        share, frac = _flagged_errors(pred, obj, case.axis, quality.review_indices)
    return Result(
        case, "propsam", kind, *_scores(pred, obj), dt, predictor.slices, score, share, frac, error
    )


def quality_report(results: Sequence[Result], failure: float = 0.7) -> dict[str, float]:
    """How well PropSAM's quality scores point at its failures (issue: "where to look").

    Returns:
        ``spearman``: rank correlation of score and DSC; ``caught``: share of failures
        (DSC < ``failure``) among the 10 % lowest-scored objects; ``failures``: their number;
        ``error_share``: mean share of wrong voxels on the flagged slices (objects with errors);
        ``slice_fraction``: mean share of the object's slices flagged.
    """
    from scipy.stats import spearmanr

    rs = [r for r in results if r.method == "propsam" and np.isfinite(r.score)]
    if len(rs) < 3:
        return {}
    scores = np.array([r.score for r in rs])
    dscs = np.array([r.dsc for r in rs])
    order = np.argsort(scores, kind="stable")[: max(1, int(round(0.1 * len(rs))))]
    failed = dscs < failure
    return {
        "n": float(len(rs)),
        "spearman": float(spearmanr(scores, dscs).statistic),
        "failures": float(failed.sum()),
        "caught": float(failed[order].sum() / failed.sum()) if failed.any() else 1.0,
        "error_share": float(np.mean([r.flagged_error_share for r in rs if r.dsc < 1.0])),
        "slice_fraction": float(np.mean([r.flagged_slice_fraction for r in rs])),
    }


def _object_cases(
    vol, label: int, obj: np.ndarray, axis: int, offsets: Sequence[float], counts: Sequence[int]
) -> list[Case]:
    """The prompt cases of one object on one axis: one per offset (one prompt each), or with
    several prompts per object, one per count in ``counts`` (see :func:`spread_slices`)."""
    name = f"{vol.family}-{vol.seed}"
    aniso = max(vol.spacing) / min(vol.spacing) > 1.01
    if all(n == 1 for n in counts):
        return [
            Case(name, vol.family, int(label), axis, off, s, aniso)
            for off, s in prompt_slices(obj, axis, offsets)
        ]
    best = int(np.argmax(obj.sum(axis=tuple(i for i in range(3) if i != axis))))
    return [
        Case(
            name,
            vol.family,
            int(label),
            axis,
            0.0,
            best,
            aniso,
            n,
            tuple(spread_slices(obj, axis, n)),
        )
        for n in counts
    ]


def _prompt_of(obj: np.ndarray, case: Case, kind: str) -> dict:
    """``propagate``'s prompt arguments for a case: the true cross-section (``mask``) or its
    loose box (``box``) on each prompt slice; lists when the case has several."""
    slices = case.prompt_slices if case.n_prompts > 1 else (case.slice_index,)
    sections = [obj.take(s, axis=case.axis) for s in slices]
    values = sections if kind == "mask" else [loose_box(sec) for sec in sections]
    return {kind: values if case.n_prompts > 1 else values[0]}


def evaluate(
    volumes: Iterable,
    *,
    model: ModelSpec = None,
    device: str | None = None,
    axes: Sequence[int] = (0, 1, 2),
    offsets: Sequence[float] = OFFSETS,
    prompts: Sequence[str] = ("mask", "box"),
    baseline: bool = True,
    max_objects: int = 1,
    on_result: Callable[[Result], None] | None = None,
    config: PropagationConfig | None = None,
    prompts_per_object: Sequence[int] = (1,),
) -> list[Result]:
    """Run PropSAM (and the random-walker baseline) on labelled volumes.

    Args:
        volumes: Objects with ``image``, ``labels``, ``targets``, ``spacing``, ``family``, ``seed``
            (e.g. :class:`napari_propsam.devtools.synthetic.SyntheticVolume`).
        model: PropSAM model (None = bundled default).
        device: Device request.
        axes: Prompt axes.
        offsets: Prompt positions as fractions of the extent off the largest cross-section
            (one prompt per object; ignored with several prompts per object).
        prompts: ``"mask"`` and/or ``"box"``.
        baseline: Also run the random walker (it takes one prompt slice: one-prompt cases only).
        max_objects: Objects per volume (the largest first).
        on_result: Called with each result as it comes (progress printing).
        config: PropSAM's propagation settings (None = the defaults, as the released code).
        prompts_per_object: Prompt counts to compare. ``(1,)`` (default) prompts every offset
            once; any count above 1 switches to one case per count, prompted on
            :func:`spread_slices` (so count 1 is then the largest cross-section only).
    """
    from .baselines import random_walker_from_slice

    if any(int(n) < 1 for n in prompts_per_object):
        raise ValueError(f"prompts_per_object must be >= 1, got {list(prompts_per_object)}")
    bundle = resolve_model(model)
    predictor = _Counting(PropMaskPredictor(bundle.propmask.model, device))
    results: list[Result] = []

    def keep(r: Result) -> None:
        results.append(r)
        if on_result:
            on_result(r)

    for vol in volumes:
        sizes = {t: int((vol.labels == t).sum()) for t in vol.targets}
        for label in sorted(sizes, key=sizes.get, reverse=True)[:max_objects]:
            obj = vol.labels == label
            for axis in axes:
                for case in _object_cases(vol, label, obj, axis, offsets, prompts_per_object):
                    for kind in prompts:
                        prompt = _prompt_of(obj, case, kind)
                        keep(_run_propsam(vol, obj, case, kind, prompt, bundle, predictor, device,
                                          config))  # fmt: skip
                        if baseline and case.n_prompts == 1:
                            t = time.perf_counter()
                            rw = random_walker_from_slice(
                                vol.image, slice_index=case.slice_index, axis=axis, **prompt
                            )
                            dt = time.perf_counter() - t
                            keep(Result(case, "random_walker", kind, *_scores(rw, obj), dt, 0))
    return results


def _subsets(r: Result, several: bool) -> list[str]:
    """The summary subsets a result counts in. With several prompts per object the offsets are
    all 0, so the subsets are per prompt count instead (``prompts=2``), also within each family
    and each of iso/aniso (``tubes p=3``)."""
    shape = "aniso" if r.case.anisotropic else "iso"
    out = ["ALL", r.case.family, shape, f"axis{r.case.axis}"]
    if not several:
        return [*out, f"offset{r.case.offset:+.1f}"]
    n = r.case.n_prompts
    return [*out, f"prompts={n}", f"{r.case.family} p={n}", f"{shape} p={n}"]


def summarise(results: Sequence[Result]) -> str:
    """A printable report: overall and per-family means per method and prompt (and per prompt
    count, with several prompts per object)."""
    lines = []
    groups: dict[tuple, list[Result]] = defaultdict(list)
    several = any(r.case.n_prompts > 1 for r in results)
    for r in results:
        for subset in _subsets(r, several):
            groups[(r.method, r.prompt, subset)].append(r)
    width = max([12, *(len(k[2]) for k in groups)])
    header = (
        f"{'method':14s} {'prompt':6s} {'subset':{width}s} {'n':>4s} {'DSC':>6s} {'NSD@1':>6s} "
        f"{'HD95':>7s} {'s/obj':>6s} {'ms/slice':>8s}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for key in sorted(groups, key=lambda k: (k[2] != "ALL", k[2], k[0], k[1])):
        rs = groups[key]
        hd = [r.hd95 for r in rs if np.isfinite(r.hd95)]
        slices = sum(r.slices for r in rs)
        ms = 1000 * sum(r.seconds for r in rs) / slices if slices else float("nan")
        lines.append(
            f"{key[0]:14s} {key[1]:6s} {key[2]:{width}s} {len(rs):4d} "
            f"{np.mean([r.dsc for r in rs]):6.3f} "
            f"{np.mean([r.nsd for r in rs]):6.3f} {np.mean(hd) if hd else float('inf'):7.2f} "
            f"{np.mean([r.seconds for r in rs]):6.2f} {ms:8.1f}"
        )
    return "\n".join(lines)


def heldout_volumes(
    n_per_family: int = 2,
    families: Sequence[str] | None = None,
    shape: tuple[int, int, int] = (64, 128, 128),
    seed_base: int | None = None,
) -> list:
    """Held-out synthetic volumes (seeds never used in training), isotropic and anisotropic."""
    from ..training import HELDOUT_SEED
    from .synthetic import FAMILIES, make_volume

    base = HELDOUT_SEED if seed_base is None else seed_base
    out = []
    for fi, fam in enumerate(families or FAMILIES):
        for i in range(n_per_family):
            aniso = 1.0 if i % 2 == 0 else 3.0
            out.append(make_volume(fam, base + 100 * fi + i, shape, anisotropy=aniso))
    return out
