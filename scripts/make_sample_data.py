"""Generate the napari sample "Micro-CT glomeruli (synthetic)" shipped with the plugin.

Writes ``src/napari_propsam/_sample/glomeruli.npz``, the one copy in the repository, which the
installed plugin opens. Deterministic: the same seed gives the same file.

    python scripts/make_sample_data.py [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from napari_propsam.devtools.synthetic import make_sample_stack

logger = logging.getLogger("make_sample_data")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FILE = ROOT / "src" / "napari_propsam" / "_sample" / "glomeruli.npz"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    vol = make_sample_stack(seed=args.seed)
    # make_sample_stack documents that the image holds whole numbers in the uint16 range, so
    # uint16 is lossless and halves the file; few ids, so the labels fit in uint8.
    image = vol.image.astype(np.uint16)
    if not np.array_equal(image, vol.image):
        raise RuntimeError("sample image is not uint16-exact; store it as float32 instead")
    if vol.labels.max() > np.iinfo(np.uint16).max:
        raise RuntimeError("too many labels for uint16")
    labels = vol.labels.astype(np.uint8 if vol.labels.max() < 256 else np.uint16)
    PACKAGE_FILE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        PACKAGE_FILE,
        image=image,
        labels=labels,
        targets=np.asarray(vol.targets, np.int32),
        spacing=np.asarray(vol.spacing, np.float64),
        family=np.asarray(vol.family),
        seed=np.asarray(vol.seed),
    )
    size = PACKAGE_FILE.stat().st_size / 1e6
    logger.info("wrote %s (%.1f MB): image %s, %d targets, spacing %s",
                PACKAGE_FILE, size, image.shape, len(vol.targets), vol.spacing)


if __name__ == "__main__":
    main()
