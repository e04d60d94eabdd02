"""Calibrate the quality score: collect its signals and the true DSC, then fit the weights.

Runs the bundled (or given) weights on validation volumes (seeds 50,000+, not the benchmark's
held-out seeds), mask and box prompts on 3 axes and 5 offsets, and prints the least-squares
weights of DSC on the signals with their Spearman correlation, to paste into
``napari_propsam/quality.py``.

    python benchmarks/calibrate_quality.py [--model lite] [--per-family 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math

import numpy as np
import torch
from scipy.stats import spearmanr

from napari_propsam.api import apply_update, propagate
from napari_propsam.devtools.evaluation import OFFSETS, heldout_volumes, loose_box, prompt_slices
from napari_propsam.metrics import dice
from napari_propsam.predictors import PropMaskPredictor
from napari_propsam.registry import resolve_model

logger = logging.getLogger("calibrate_quality")
FEATURES = ("worst_agreement", "centroid_jump", "end_cut", "slices")


def _features(signals: dict) -> list[float]:
    return [
        signals["worst_agreement"],
        min(signals["centroid_jump"], 3.0),
        signals["end_cut"],
        math.log1p(signals["slices"]),
    ]


def collect(model: str | None, per_family: int) -> list[dict]:
    """One row per prompt: the quality signals and the true DSC."""
    bundle = resolve_model(model)
    predictor = PropMaskPredictor(bundle.propmask.model, "cpu")
    rows = []
    for vol in heldout_volumes(per_family, seed_base=50_000):
        sizes = {t: int((vol.labels == t).sum()) for t in vol.targets}
        obj = vol.labels == max(sizes, key=sizes.get)
        for axis in (0, 1, 2):
            for _, s in prompt_slices(obj, axis, OFFSETS):
                section = obj.take(s, axis=axis)
                for prompt in ({"mask": section}, {"box": loose_box(section)}):
                    pred, quality = np.zeros(obj.shape, bool), None
                    try:
                        for u in propagate(vol.image, slice_index=s, axis=axis,
                                           spacing=vol.spacing, model=bundle,
                                           predictor=predictor, **prompt):  # fmt: skip
                            if u.final:
                                apply_update(pred, u)
                                quality = u.quality or quality
                    except ValueError:
                        continue
                    if quality is not None and "slices" in quality.signals:
                        rows.append({"dsc": dice(pred, obj), **quality.signals})
        logger.info("%s: %d rows", vol.family, len(rows))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None)
    p.add_argument("--per-family", type=int, default=2)
    p.add_argument("--json", default=None, help="also save the rows here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    rows = collect(args.model, args.per_family)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    x = np.array([_features(r) + [1.0] for r in rows])
    y = np.array([r["dsc"] for r in rows])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    rho = spearmanr(x @ coef, y).statistic
    logger.info("weights %s, bias %.4f", dict(zip(FEATURES, np.round(coef[:-1], 4), strict=True)),
                coef[-1])  # fmt: skip
    logger.info("Spearman(fit, DSC) = %.3f over %d prompts", rho, len(rows))


if __name__ == "__main__":
    main()
