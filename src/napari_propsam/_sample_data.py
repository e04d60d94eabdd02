"""napari sample data: "Micro-CT glomeruli (synthetic)".

A small synthetic micro-CT stack of kidney cortex
(``napari_propsam.devtools.synthetic.make_sample_stack``, written by
``scripts/make_sample_data.py``) shipped in the package, opened as an image plus its ground-truth
labels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_FILE = Path(__file__).with_name("_sample") / "glomeruli.npz"

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

GROUND_TRUTH_NAME = "glomeruli ground truth (reference, not a prompt)"


def load_sample() -> dict[str, Any]:
    """The sample arrays.

    Returns:
        ``{"image": (Z, Y, X) uint16, "labels": (Z, Y, X) int32, "targets": tuple of ids,
        "spacing": (z, y, x) floats}``.

    Raises:
        FileNotFoundError: the package was installed without its sample file.
    """
    if not SAMPLE_FILE.is_file():
        raise FileNotFoundError(
            f"sample file missing: {SAMPLE_FILE}; regenerate it with scripts/make_sample_data.py"
        )
    with np.load(SAMPLE_FILE) as data:
        return {
            "image": data["image"],
            "labels": data["labels"].astype(np.int32),
            "targets": tuple(int(t) for t in data["targets"]),
            "spacing": tuple(float(s) for s in data["spacing"]),
        }


def glomeruli_sample() -> list[LayerDataTuple]:
    """napari sample provider: the micro-CT stack and its ground-truth labels (two layers)."""
    sample = load_sample()
    scale = sample["spacing"]
    lo, hi = np.percentile(sample["image"][::4], (1, 99.5))
    return [
        (
            sample["image"],
            {
                "name": "glomeruli micro-CT",
                "scale": scale,
                "contrast_limits": (float(lo), float(hi)),
            },
            "image",
        ),
        (
            sample["labels"],
            {
                # Says what it is: the answer to compare with, never a prompt or an output.
                "name": GROUND_TRUTH_NAME,
                "scale": scale,
                "opacity": 0.4,
                "visible": False,
                "metadata": {"napari_propsam": {"role": "ground truth"}},
            },
            "labels",
        ),
    ]
