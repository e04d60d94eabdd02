"""Export the weights of a training run's resume state (``last.pt``) as our safetensors.

A long campaign only writes ``<network>.safetensors`` when it finishes and
``<network>-best.safetensors`` at its best validation; this exports any intermediate step, so
checkpoints can be benchmarked while the run goes on (``docs/training/campaign.md``):

    python benchmarks/export_resume_weights.py campaign/propmask OUT_DIR [--box2mask FILE]

OUT_DIR then holds ``lite-propmask.safetensors`` (and the given Box2Mask as
``lite-box2mask.safetensors``), ready for
``propsam bench --model OUT_DIR/lite-propmask.safetensors``.
The architecture and preprocessing come from the run's best-weights file; the resume state is
read with ``weights_only=True`` after the training loop's own resume-state check.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import torch

from napari_propsam.weights import check_resume_state, load_safetensors, save_checkpoint

logger = logging.getLogger("export_resume_weights")


def export(run: Path, out: Path, box2mask: Path | None = None) -> Path:
    """Write ``out/lite-<network>.safetensors`` from ``run/last.pt``; returns its path."""
    best = next(run.glob("*-best.safetensors"))
    net = load_safetensors(best)
    check_resume_state(run / "last.pt")  # a truncated or foreign file fails with its name
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    net.model.load_state_dict(state["model"])
    provenance = {**net.metadata["provenance"], "steps": int(state["step"])}
    out.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(
        out / f"lite-{net.network}.safetensors",
        net.model,
        provenance=provenance,
        preprocessing=net.metadata["preprocessing"],
    )
    if box2mask is not None:
        shutil.copy(box2mask, out / "lite-box2mask.safetensors")
    logger.info("exported %s step %d to %s", net.network, state["step"], path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="a network's run folder (holds last.pt)")
    p.add_argument("out", type=Path)
    p.add_argument("--box2mask", type=Path, default=None, help="Box2Mask weights to pair with")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    export(args.run, args.out, args.box2mask)


if __name__ == "__main__":
    main()
