"""The slice-by-slice method's ceiling on the benchmark's objects.

A perfect tracker starts from the true cross-section on the prompt slice and, on each next slice
in both directions, keeps the true object's 2D components that touch the previous slice's mask
(after ``--grow`` px of dilation). Its DSC is the best any network can reach by propagating one
prompt, so a family scoring far below it is limited by the network, not by the procedure.

    python benchmarks/propagation_ceiling.py --families cysts vessels_fluo texture
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from scipy import ndimage as ndi

from napari_propsam.devtools.evaluation import OFFSETS, heldout_volumes, prompt_slices
from napari_propsam.metrics import dice

logger = logging.getLogger("propagation_ceiling")


def track(obj: np.ndarray, axis: int, start: int, grow: int = 0) -> np.ndarray:
    """The perfect tracker's 3D mask (bool, same ZYX shape as ``obj``) from slice ``start``."""
    o = np.moveaxis(obj, axis, 0)
    out = np.zeros_like(o)
    out[start] = o[start]
    for step in (1, -1):
        cur, z = o[start], start + step
        while 0 <= z < o.shape[0] and cur.any():
            lab, _ = ndi.label(o[z])
            seed = ndi.binary_dilation(cur, iterations=grow) if grow else cur
            cur = np.isin(lab, np.unique(lab[seed & (lab > 0)])) & (lab > 0)
            out[z] = cur
            z += step
    return np.moveaxis(out, 0, axis)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--families", nargs="+", default=None, help="default: the benchmark's")
    p.add_argument("--per-family", type=int, default=2)
    p.add_argument("--grow", type=int, nargs="+", default=[0, 2])
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for grow in args.grow:
        scores: dict[str, list[float]] = {}
        for vol in heldout_volumes(args.per_family, args.families):
            sizes = {t: int((vol.labels == t).sum()) for t in vol.targets}
            obj = vol.labels == max(sizes, key=sizes.get)
            for axis in range(3):
                for _, s in prompt_slices(obj, axis, OFFSETS):
                    dsc = dice(track(obj, axis, s, grow), obj)
                    scores.setdefault(vol.family, []).append(dsc)
        rows = ", ".join(f"{f} {np.mean(v):.3f} (n={len(v)})" for f, v in scores.items())
        logger.info("grow %d px: %s", grow, rows)


if __name__ == "__main__":
    main()
