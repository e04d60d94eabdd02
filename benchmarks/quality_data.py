"""Collect the quality score's raw material once: per-object runs with per-slice stats and errors.

Every run of PropSAM on a synthetic object is saved with what :func:`napari_propsam.quality.assess`
sees (each reached slice's :class:`~napari_propsam.quality.SliceStats`, the cut ends) and the
truth it should predict (the object's DSC, the wrong voxels per slice), so that features, fits
and review rules can be compared offline in seconds (``calibrate_quality.py``).

Two case sets, as ``propsam bench`` builds them (devtools.evaluation):

- ``--cases offsets``: one prompt at each of the 5 offsets off the largest cross-section;
- ``--cases counts``: 1, 2 and 3 prompts spread over the object's extent (``--prompts-per-object``).

    # validation (calibration) set: seeds 50,000+, training families only
    python benchmarks/quality_data.py --seed-base 50000 --cases offsets counts --axes 0 1 2 \\
        --out quality_val.json
    # the benchmark's own cases (seeds 100,000+), for evaluation only
    python benchmarks/quality_data.py --cases counts --axes 0 --out quality_bench.json
    python benchmarks/quality_data.py --cases counts --axes 0 \\
        --families cysts vessels_fluo texture --out quality_heldout.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import astuple, fields

import numpy as np
import torch

from napari_propsam import propagation
from napari_propsam.api import apply_update, propagate
from napari_propsam.devtools.evaluation import (
    OFFSETS,
    _object_cases,
    _prompt_of,
    heldout_volumes,
)
from napari_propsam.devtools.synthetic import FAMILIES, HELDOUT_FAMILIES
from napari_propsam.metrics import dice
from napari_propsam.predictors import PropMaskPredictor
from napari_propsam.quality import SliceStats
from napari_propsam.registry import resolve_model

logger = logging.getLogger("quality_data")
STAT_FIELDS = [f.name for f in fields(SliceStats)]
_QUALITY_SECONDS = [0.0]  # time spent on the quality signals, score and review (cost check)


def _timed(fn):
    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            _QUALITY_SECONDS[0] += time.perf_counter() - t

    return wrapper


# The quality work in the final pass: reading the windows, per-slice stats, score and review.
propagation.slice_stats = _timed(propagation.slice_stats)
propagation.assess = _timed(propagation.assess)
propagation._Engine.window = _timed(propagation._Engine.window)


def _run(vol, obj, case, kind, bundle, predictor) -> dict | None:
    """One PropSAM run: its quality inputs and the truth (None if refused)."""
    where = list(case.prompt_slices) if case.n_prompts > 1 else case.slice_index
    pred, quality = np.zeros(obj.shape, bool), None
    _QUALITY_SECONDS[0] = 0.0
    t = time.perf_counter()
    try:
        prompt = _prompt_of(obj, case, kind)
        for u in propagate(vol.image, slice_index=where, axis=case.axis, spacing=vol.spacing,
                           model=bundle, predictor=predictor, **prompt):  # fmt: skip
            if u.final:
                apply_update(pred, u)
                quality = u.quality or quality
    except ValueError:
        return None
    seconds = time.perf_counter() - t
    if quality is None or not quality.stats:
        return None
    other = tuple(i for i in range(3) if i != case.axis)
    fp = (pred & ~obj).sum(axis=other)
    fn = (obj & ~pred).sum(axis=other)
    true_area = obj.sum(axis=other)
    return {
        "family": vol.family, "seed": int(vol.seed), "axis": case.axis, "kind": kind,
        "offset": case.offset, "n_prompts": case.n_prompts,
        "prompt_slices": list(case.prompt_slices or (case.slice_index,)),
        "n_slices": int(obj.shape[case.axis]), "anisotropic": case.anisotropic,
        "dsc": float(dice(pred, obj)), "seconds": seconds,
        "quality_seconds": _QUALITY_SECONDS[0], "score": quality.score,
        "review": quality.review_indices, "cut_ends": list(quality.cut_ends),
        "stats": [[s, *_plain(astuple(st))] for s, st in sorted(quality.stats.items())],
        "truth": [[int(i), int(true_area[i]), int(fp[i]), int(fn[i])]
                  for i in np.flatnonzero(true_area + fp + fn)],
    }  # fmt: skip


def _plain(values) -> list:
    """JSON-ready stats: tuples flattened, NaN as None."""
    out = []
    for v in values:
        items = v if isinstance(v, tuple) else (v,)
        out += [None if isinstance(x, float) and x != x else x for x in items]
    return out


def stats_of(run: dict) -> dict[int, SliceStats]:
    """The run's per-slice :class:`SliceStats` back from the saved rows."""
    out = {}
    for row in run["stats"]:
        v = [float("nan") if x is None else x for x in row[1:]]
        out[int(row[0])] = SliceStats(int(v[0]), v[1], int(v[2]), (v[3], v[4]), *v[5:])
    return out


def collect(args: argparse.Namespace) -> list[dict]:
    """All runs of the requested volumes, cases, axes and prompt kinds."""
    bundle = resolve_model(args.model)
    predictor = PropMaskPredictor(bundle.propmask.model, "cpu")
    runs: list[dict] = []
    start = time.perf_counter()
    volumes = heldout_volumes(args.per_family, args.families, seed_base=args.seed_base)
    for vi, vol in enumerate(volumes):
        sizes = {t: int((vol.labels == t).sum()) for t in vol.targets}
        # --axis-cycle: one axis per volume, in turn (variety at a third of the cost)
        axes = [args.axes[vi % len(args.axes)]] if args.axis_cycle else args.axes
        for label in sorted(sizes, key=sizes.get, reverse=True)[: args.objects]:
            obj = vol.labels == label
            for axis in axes:
                cases = []
                if "offsets" in args.cases:
                    cases += _object_cases(vol, label, obj, axis, args.offsets, (1,))
                if "counts" in args.cases:
                    counts = [n for n in args.counts if n > 1 or "offsets" not in args.cases]
                    cases += _object_cases(vol, label, obj, axis, OFFSETS, counts or [1])
                for case in cases:
                    for kind in args.prompts:
                        run = _run(vol, obj, case, kind, bundle, predictor)
                        if run is not None:
                            runs.append({**run, "label": int(label)})
        logger.info("%s-%d: %d runs, %.0f s", vol.family, vol.seed, len(runs),
                    time.perf_counter() - start)  # fmt: skip
    return runs


def load(paths) -> list[dict]:
    """Runs saved by one or more collections."""
    runs = []
    for p in paths:
        with open(p) as f:
            runs += json.load(f)
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--seed-base", type=int, default=None, help="None: the benchmark's seeds")
    p.add_argument("--families", nargs="+", default=None)
    p.add_argument("--per-family", type=int, default=2)
    p.add_argument("--objects", type=int, default=1, help="largest objects per volume")
    p.add_argument("--axes", type=int, nargs="+", default=[0])
    p.add_argument("--axis-cycle", action="store_true", help="one of --axes per volume")
    p.add_argument("--offsets", type=float, nargs="+", default=list(OFFSETS))
    p.add_argument("--cases", nargs="+", default=["counts"], choices=("offsets", "counts"))
    p.add_argument("--counts", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--prompts", nargs="+", default=["mask", "box"])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    if args.seed_base is not None and set(args.families or FAMILIES) & set(HELDOUT_FAMILIES):
        logger.warning("held-out families in a calibration set: do not fit on it")
    runs = collect(args)
    with open(args.out, "w") as f:
        json.dump(runs, f)
    logger.info("%d runs -> %s", len(runs), args.out)


if __name__ == "__main__":
    main()
