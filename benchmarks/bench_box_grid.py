"""Box2Mask candidate windows: the default 3 x 3 grid against the paper's full v2 grid.

Box2Mask normalises the box crop with every ``(vmin, vmax)`` percentile pair, soft-votes the
predictions, then refines once (docs/method.md, "Box prompts"). The v2 paper sweeps vmin over
the 5th-20th percentiles and vmax over the 90th-95th in steps of 0.5 (4 x 11 = 44 forward
passes); the default ``BoxConfig`` uses 3 x 3 = 9. This script scores both on held-out
synthetic volumes (2D DSC of the guiding mask against the truth on the prompt slice, loose box =
tight box + 10% per side) and times them in the same run.

    python benchmarks/bench_box_grid.py [--per-family 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_propsam.config import BoxConfig
from napari_propsam.devtools.evaluation import heldout_volumes, loose_box_cases
from napari_propsam.metrics import dice
from napari_propsam.predictors import Box2MaskPredictor
from napari_propsam.registry import resolve_model

GRIDS = {
    "default 3x3": BoxConfig(),
    "v2 4x11": BoxConfig(
        vmin_percentiles=(5.0, 10.0, 15.0, 20.0),
        vmax_percentiles=tuple(90.0 + 0.5 * i for i in range(11)),
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-family", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    predictor = Box2MaskPredictor(resolve_model(args.model).box2mask.model, "cpu")
    cases = loose_box_cases(heldout_volumes(args.per_family))
    predictor.predict(cases[0][1], BoxConfig())  # warm-up
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in GRIDS}
    seconds = dict.fromkeys(GRIDS, 0.0)
    for family, crop, truth in cases:
        for name, cfg in GRIDS.items():  # interleaved, so machine noise hits both alike
            t0 = time.perf_counter()
            pred = predictor.predict(crop, cfg)
            seconds[name] += time.perf_counter() - t0
            scores[name].setdefault(family, []).append(dice(pred, truth))
            scores[name].setdefault("ALL", []).append(dice(pred, truth))
    print(f"{len(cases)} boxes on {args.per_family * 8} held-out volumes")  # noqa: T201
    print(f"{'family':12s} " + " ".join(f"{n:>12s}" for n in GRIDS))  # noqa: T201
    for fam in sorted(scores["default 3x3"], key=lambda f: (f != "ALL", f)):
        row = " ".join(f"{np.mean(scores[n][fam]):12.3f}" for n in GRIDS)
        print(f"{fam:12s} {row}")  # noqa: T201
    row = " ".join(f"{1000 * seconds[n] / len(cases):12.1f}" for n in GRIDS)
    print(f"{'ms/box':12s} {row}")  # noqa: T201
    base, full = (seconds[n] for n in GRIDS)
    print(f"time ratio v2/default: {full / base:.2f}")  # noqa: T201


if __name__ == "__main__":
    main()
