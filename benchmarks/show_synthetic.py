"""Contact sheet of synthetic volumes: a few slices per family, targets outlined.

Usage::

    python benchmarks/show_synthetic.py --seeds 1 --dpi 70 --colors 48 \
        --out docs/training/synthetic_labelmap.png
    python benchmarks/show_synthetic.py --families labelmap texture --seeds 0 1 2 3

Each row is one volume: three Z slices (YX planes) through targets, one Y slice (ZX plane,
stretched by the z spacing) and the middle Z slice with every target outlined in colour. Grey
values are windowed to the 1st-99th percentile of the volume.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from napari_propsam.devtools.synthetic import HELDOUT_FAMILIES, LABELMAP_FAMILIES, make_volume

logger = logging.getLogger("show_synthetic")

_COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.2, 0.5, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 1.0))


def _window(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _outline(labels: np.ndarray, targets: tuple[int, ...]) -> np.ndarray:
    """RGBA overlay: a 1-pixel outline of each target on a 2D label slice."""
    rgba = np.zeros((*labels.shape, 4), np.float32)
    colours = np.asarray(_COLOURS)
    for i, t in enumerate(targets):
        m = labels == t
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        rgba[edge, :3] = colours[i % len(colours)]
        rgba[edge, 3] = 1.0
    return rgba


def _row(axes, vol) -> None:
    img, lab = vol.image, vol.labels
    lo, hi = np.percentile(img, [1, 99])
    zs = np.flatnonzero(np.isin(lab, vol.targets).any(axis=(1, 2)))
    picks = np.linspace(zs[0], zs[-1], 5).astype(int)[1:4] if zs.size else [img.shape[0] // 2] * 3
    for ax, z in zip(axes[:3], picks, strict=True):
        ax.imshow(_window(img[z], lo, hi), cmap="gray", interpolation="nearest")
        ax.set_title(f"z={z}", fontsize=6)
    y = img.shape[1] // 2
    axes[3].imshow(
        _window(img[:, y], lo, hi),
        cmap="gray",
        aspect=vol.spacing[0],
        interpolation="nearest",
    )
    axes[3].set_title(f"y={y} (ZX)", fontsize=6)
    z = int(picks[1])
    axes[4].imshow(_window(img[z], lo, hi), cmap="gray", interpolation="nearest")
    axes[4].imshow(_outline(lab[z], vol.targets), interpolation="nearest")
    axes[4].set_title(f"targets z={z}", fontsize=6)
    axes[0].set_ylabel(
        f"{vol.family}\nseed {vol.seed}\n{img.shape}\nz {vol.spacing[0]:.1f}", fontsize=6
    )


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=list(LABELMAP_FAMILIES + HELDOUT_FAMILIES[1:]))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--shape", nargs=3, type=int, default=[64, 128, 128])
    p.add_argument("--dpi", type=int, default=80)
    p.add_argument("--out", default="out/synthetic_sheet.png")
    p.add_argument("--colors", type=int, default=0, help="palette size of the PNG (0 = RGBA)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = [(f, s) for f in args.families for s in args.seeds]
    fig, axes = plt.subplots(len(rows), 5, figsize=(10, 2.1 * len(rows)), squeeze=False)
    for (fam, seed), row in zip(rows, axes, strict=True):
        t0 = time.perf_counter()
        vol = make_volume(fam, seed, tuple(args.shape))
        logger.info(
            "%s seed %d: %.0f ms, %d targets, z %.2f",
            fam,
            seed,
            1000 * (time.perf_counter() - t0),
            len(vol.targets),
            vol.spacing[0],
        )
        _row(row, vol)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi)
    if args.colors:
        # Noisy grey images compress poorly; a small palette keeps the sheet a few hundred KB.
        from PIL import Image

        # Greys plus the outline colours, so rare outline pixels keep their colour.
        greys = np.linspace(0, 255, max(args.colors - len(_COLOURS), 2)).round().astype(int)
        entries = [(g, g, g) for g in greys] + [tuple(int(255 * c) for c in k) for k in _COLOURS]
        pal = Image.new("P", (1, 1))
        pal.putpalette([v for e in entries for v in e] + [0] * (3 * (256 - len(entries))))
        img = Image.open(out).convert("RGB").quantize(palette=pal, dither=Image.Dither.NONE)
        img.save(out, optimize=True)
    logger.info("wrote %s (%d KB)", out, out.stat().st_size // 1024)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
