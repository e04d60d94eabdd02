"""CPU speed of the engine: milliseconds per slice for `full` and `lite`, seconds per object.

Runs the architectures in one process on the same synthetic object (random weights: speed does
not depend on the values), so their ratios are meaningful on a noisy machine. `lite128` is `lite`
at 128 px input, the candidate for thin objects.

    python benchmarks/bench_speed.py [--threads N] [--object-slices 40] [--archs lite full]
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace

import numpy as np
import torch

import napari_propsam as ps
from napari_propsam.models import FULL, LITE, PropMask
from napari_propsam.predictors import PropMaskPredictor

ARCHS = {"full": FULL, "lite": LITE, "lite128": replace(LITE, input_size=128)}

logger = logging.getLogger("bench_speed")


class CountingPredictor(PropMaskPredictor):
    """Counts predicted slices and forward time."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slices = 0
        self.seconds = 0.0

    def predict(self, tasks):
        t = time.perf_counter()
        out = super().predict(tasks)
        self.seconds += time.perf_counter() - t
        self.slices += sum(len(x.adjacent) for x in tasks)
        return out


def ellipsoid(n_slices: int, radius: int = 20) -> tuple[np.ndarray, np.ndarray]:
    shape = (n_slices + 40, 128, 128)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    truth = ((z - shape[0] / 2) / (n_slices / 2)) ** 2 + ((y - 64) / radius) ** 2 + (
        (x - 64) / radius
    ) ** 2 < 1
    rng = np.random.default_rng(0)
    return (truth * 100 + rng.normal(0, 10, shape)).astype(np.float32), truth


def run(arch_name: str, image: np.ndarray, truth: np.ndarray, rounds: int) -> dict:
    torch.manual_seed(0)
    arch = ARCHS[arch_name]
    pred = CountingPredictor(PropMask(arch), "cpu")
    mid = image.shape[0] // 2
    # Warm-up pass so one-off allocation does not count.
    list(
        ps.propagate(
            image, slice_index=mid, mask=truth[mid], predictor=pred, max_rounds=1, thickness=4
        )
    )
    pred.slices, pred.seconds = 0, 0.0
    t = time.perf_counter()
    list(
        ps.propagate(
            image, slice_index=mid, mask=truth[mid], predictor=pred, max_rounds=rounds, min_area=0
        )
    )
    total = time.perf_counter() - t
    return {
        "arch": arch_name,
        "slices": pred.slices,
        "ms_per_slice": 1000 * pred.seconds / pred.slices,
        "engine_ms_per_slice": 1000 * total / pred.slices,
        "seconds": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--object-slices", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--archs", nargs="+", choices=sorted(ARCHS), default=["lite", "full"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    image, truth = ellipsoid(args.object_slices)
    logger.info(
        "torch %s, %d threads, volume %s", torch.__version__, torch.get_num_threads(), image.shape
    )
    rows = [run(a, image, truth, args.rounds) for a in args.archs]
    logger.info(
        "%-5s %8s %14s %18s %10s", "arch", "slices", "net ms/slice", "engine ms/slice", "s/object"
    )
    for r in rows:
        logger.info(
            "%-5s %8d %14.1f %18.1f %10.2f",
            r["arch"],
            r["slices"],
            r["ms_per_slice"],
            r["engine_ms_per_slice"],
            r["seconds"],
        )
    base = next((r for r in rows if r["arch"] == "full"), None)
    for r in rows:
        if base is not None and r is not base:
            logger.info(
                "%s / full time per slice: %.3f",
                r["arch"],
                r["engine_ms_per_slice"] / base["engine_ms_per_slice"],
            )


if __name__ == "__main__":
    main()
