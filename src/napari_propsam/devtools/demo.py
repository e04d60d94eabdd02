"""The main job (``make run``): segment the sample micro-CT stack and show or save the result.

With a display and napari installed it opens napari with the PropSAM widget docked and the sample
loaded. Without one it runs headless: every glomerulus of the synthetic sample is segmented from a
mask prompt and from a box prompt on its largest cross-section, DSC and seconds per object are
printed, and the labels (plus a screenshot, when napari can render offscreen) are written.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np

# named, not __name__: run with -m, __name__ is "__main__"
logger = logging.getLogger("napari_propsam.devtools.demo")


def _largest_section(obj: np.ndarray) -> tuple[int, tuple[int, int, int, int]]:
    """Slice (axis 0) of the largest cross-section and the tight box on it (half-open)."""
    areas = obj.reshape(obj.shape[0], -1).sum(axis=1)
    z = int(np.argmax(areas))
    rows, cols = np.flatnonzero(obj[z].any(1)), np.flatnonzero(obj[z].any(0))
    return z, (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def run_headless(out_dir: Path, model: str | None = None, device: str | None = None) -> dict:
    """Segment every target of the sample stack from mask and box prompts.

    Returns:
        ``{"mask": [dsc...], "box": [dsc...], "seconds": [...]}``.
    """
    from ..api import segment
    from ..metrics import dice
    from .synthetic import make_sample_stack

    vol = make_sample_stack()
    image, truth = vol.image, vol.labels
    logger.info(
        "sample stack %s, %d objects, spacing %s", image.shape, len(vol.targets), vol.spacing
    )
    out = {"mask": np.zeros(truth.shape, np.int32), "box": np.zeros(truth.shape, np.int32)}
    scores: dict[str, list[float]] = {"mask": [], "box": [], "seconds": []}
    logger.info("%6s %8s %8s %10s", "object", "DSC mask", "DSC box", "s/object")
    for label in vol.targets:
        obj = truth == label
        z, box = _largest_section(obj)
        row = []
        for kind in ("mask", "box"):
            prompt = {"mask": obj[z]} if kind == "mask" else {"box": box}
            t = time.perf_counter()
            try:
                seg = segment(
                    image, slice_index=z, spacing=vol.spacing, model=model, device=device, **prompt
                )
            except ValueError as err:
                logger.warning("object %d (%s prompt): %s", label, kind, err)
                seg = np.zeros(obj.shape, bool)
            scores["seconds"].append(time.perf_counter() - t)
            out[kind][seg & (out[kind] == 0)] = label
            d = dice(seg, obj)
            scores[kind].append(d)
            row.append(d)
        logger.info(
            "%6d %8.3f %8.3f %10.2f", label, row[0], row[1], np.mean(scores["seconds"][-2:])
        )
    logger.info(
        "mean DSC: mask %.3f, box %.3f; %.2f s per object",
        np.mean(scores["mask"]),
        np.mean(scores["box"]),
        np.mean(scores["seconds"]),
    )
    import tifffile

    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, labels in out.items():
        path = out_dir / f"sample_labels_{kind}_prompts.tif"
        tifffile.imwrite(str(path), labels, compression="zlib")
        logger.info("wrote %s", path)
    return scores


def _has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return False
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m napari_propsam.devtools.demo", description=__doc__
    )
    parser.add_argument("--headless", action="store_true", help="never open a window")
    parser.add_argument("--out", default="out/demo", help="folder for labels and screenshot")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..device import tune_malloc

    tune_malloc()  # the demo's process is ours (see docs/performance.md)
    out_dir = Path(args.out)
    gui = not args.headless and _has_display()
    try:
        from .._widgets._launch import launch_viewer
    except ImportError as err:  # napari not installed: the core demo still runs
        logger.info("napari unavailable (%s); running the headless demo only", err)
        launch_viewer = None
    if gui and launch_viewer is not None:
        launch_viewer(headless=False, out_dir=out_dir)
        return 0
    run_headless(out_dir, args.model, args.device)
    if launch_viewer is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        launch_viewer(headless=True, out_dir=out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
