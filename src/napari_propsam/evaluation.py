"""Held-out evaluation: PropSAM against the classical random-walker baseline, same objects.

For every object: prompts on the largest cross-section and on slices off it by +-10% and +-20% of
the object's extent, on each requested axis, as a mask (the true cross-section) and as a box (the
tight box enlarged by 10% per side, as a user draws it). Reports DSC, NSD at 1 voxel, HD95 (voxels),
seconds per object and milliseconds per predicted slice.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .api import apply_update, propagate
from .config import PropagationConfig
from .predictors import PropMaskPredictor
from .registry import ModelSpec, resolve_model

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


def loose_box(section: np.ndarray, margin: float = 0.1) -> tuple[int, int, int, int]:
    """Tight box of a 2D mask enlarged by ``margin`` of its size on each side (half-open)."""
    rows, cols = np.flatnonzero(section.any(1)), np.flatnonzero(section.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dr, dc = int(np.ceil((r1 - r0) * margin)), int(np.ceil((c1 - c0) * margin))
    h, w = section.shape
    return max(0, r0 - dr), max(0, c0 - dc), min(h, r1 + dr), min(w, c1 + dc)


def _scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    from .metrics import dice, hd95, nsd

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
    try:
        for u in propagate(
            vol.image,
            slice_index=case.slice_index,
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
    except ValueError as err:
        logger.debug("%s %s: %s", case, kind, err)
    dt = time.perf_counter() - t
    score, share, frac = 0.0, 0.0, 0.0
    if quality is not None:
        score = quality.score
        share, frac = _flagged_errors(pred, obj, case.axis, quality.review_indices)
    return Result(
        case, "propsam", kind, *_scores(pred, obj), dt, predictor.slices, score, share, frac
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
) -> list[Result]:
    """Run PropSAM (and the random-walker baseline) on labelled volumes.

    Args:
        volumes: Objects with ``image``, ``labels``, ``targets``, ``spacing``, ``family``, ``seed``
            (e.g. :class:`napari_propsam.synthetic.SyntheticVolume`).
        model: PropSAM model (None = bundled default).
        device: Device request.
        axes: Prompt axes.
        offsets: Prompt positions as fractions of the extent off the largest cross-section.
        prompts: ``"mask"`` and/or ``"box"``.
        baseline: Also run the random walker.
        max_objects: Objects per volume (the largest first).
        on_result: Called with each result as it comes (progress printing).
        config: PropSAM's propagation settings (None = the defaults, as the released code).
    """
    from .baselines import random_walker_from_slice

    bundle = resolve_model(model)
    predictor = _Counting(PropMaskPredictor(bundle.propmask.model, device))
    results: list[Result] = []
    for vol in volumes:
        sizes = {t: int((vol.labels == t).sum()) for t in vol.targets}
        chosen = sorted(sizes, key=sizes.get, reverse=True)[:max_objects]
        aniso = max(vol.spacing) / min(vol.spacing) > 1.01
        for label in chosen:
            obj = vol.labels == label
            for axis in axes:
                for off, s in prompt_slices(obj, axis, offsets):
                    case = Case(
                        f"{vol.family}-{vol.seed}", vol.family, int(label), axis, off, s, aniso
                    )
                    section = obj.take(s, axis=axis)
                    for kind in prompts:
                        prompt = (
                            {"mask": section} if kind == "mask" else {"box": loose_box(section)}
                        )
                        r = _run_propsam(
                            vol, obj, case, kind, prompt, bundle, predictor, device, config
                        )
                        results.append(r)
                        if on_result:
                            on_result(r)
                        if baseline:
                            t = time.perf_counter()
                            rw = random_walker_from_slice(
                                vol.image, slice_index=s, axis=axis, **prompt
                            )
                            dt = time.perf_counter() - t
                            r = Result(case, "random_walker", kind, *_scores(rw, obj), dt, 0)
                            results.append(r)
                            if on_result:
                                on_result(r)
    return results


def summarise(results: Sequence[Result]) -> str:
    """A printable report: overall and per-family means per method and prompt."""
    lines = []
    groups: dict[tuple, list[Result]] = defaultdict(list)
    for r in results:
        groups[(r.method, r.prompt, "ALL")].append(r)
        groups[(r.method, r.prompt, r.case.family)].append(r)
        groups[(r.method, r.prompt, "aniso" if r.case.anisotropic else "iso")].append(r)
        groups[(r.method, r.prompt, f"axis{r.case.axis}")].append(r)
        groups[(r.method, r.prompt, f"offset{r.case.offset:+.1f}")].append(r)
    header = (
        f"{'method':14s} {'prompt':6s} {'subset':12s} {'n':>4s} {'DSC':>6s} {'NSD@1':>6s} "
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
            f"{key[0]:14s} {key[1]:6s} {key[2]:12s} {len(rs):4d} "
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
    from .synthetic import FAMILIES, make_volume
    from .training import HELDOUT_SEED

    base = HELDOUT_SEED if seed_base is None else seed_base
    out = []
    for fi, fam in enumerate(families or FAMILIES):
        for i in range(n_per_family):
            aniso = 1.0 if i % 2 == 0 else 3.0
            out.append(make_volume(fam, base + 100 * fi + i, shape, anisotropy=aniso))
    return out
