"""Box2Mask weights side by side: the guiding mask's 2D DSC per family, from a loose box.

For every family (training families and the held-out ones, which no weights were trained on),
``--per-family`` held-out-seed volumes (isotropic and 3x anisotropic), the largest object, on all
3 axes and at the evaluation's 5 prompt offsets: the loose box (tight box + 10% per side) goes
through each Box2Mask with the default candidate grid, and the mask is scored against the true
section. All weights see the same boxes, interleaved, so machine noise hits them alike.

    W=src/napari_propsam/weights
    python benchmarks/bench_box2mask.py --weights $W/lite-box2mask.safetensors \
        campaign/box2mask/box2mask-best.safetensors [--per-family 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_propsam.config import BoxConfig
from napari_propsam.devtools.evaluation import heldout_volumes, loose_box_cases
from napari_propsam.devtools.synthetic import FAMILIES, HELDOUT_FAMILIES
from napari_propsam.metrics import dice
from napari_propsam.predictors import Box2MaskPredictor
from napari_propsam.weights import load_network


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", nargs="+", required=True, help="Box2Mask safetensors or .pth")
    ap.add_argument("--per-family", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    names = args.weights
    predictors = [Box2MaskPredictor(load_network(w, "box2mask").model, "cpu") for w in args.weights]
    volumes = heldout_volumes(args.per_family, families=[*FAMILIES, *HELDOUT_FAMILIES])
    cases = loose_box_cases(volumes, axes=(0, 1, 2))
    cfg = BoxConfig()
    scores: list[dict[str, list[float]]] = [{} for _ in predictors]
    seconds = [0.0] * len(predictors)
    for family, crop, truth in cases:
        for i, predictor in enumerate(predictors):
            t0 = time.perf_counter()
            d = dice(predictor.predict(crop, cfg), truth)
            seconds[i] += time.perf_counter() - t0
            for key in (family, "ALL", "HELDOUT" if family in HELDOUT_FAMILIES else "TRAINED"):
                scores[i].setdefault(key, []).append(d)
    print(f"{len(cases)} loose boxes, {args.per_family} volumes per family, 3 axes")  # noqa: T201
    print(f"{'family':16s} {'n':>4s} " + " ".join(f"{n[-24:]:>24s}" for n in names))  # noqa: T201
    for fam in sorted(scores[0], key=lambda f: (f not in ("ALL", "TRAINED", "HELDOUT"), f)):
        row = " ".join(f"{np.mean(s[fam]):24.3f}" for s in scores)
        print(f"{fam:16s} {len(scores[0][fam]):4d} {row}")  # noqa: T201
    row = " ".join(f"{1000 * t / len(cases):24.1f}" for t in seconds)
    print(f"{'ms/box':16s} {'':4s} {row}")  # noqa: T201


if __name__ == "__main__":
    main()
