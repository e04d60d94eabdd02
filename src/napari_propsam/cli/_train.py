"""``propsam train`` and ``propsam finetune``: the default weights and their adaptation."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..io import read_volume

logger = logging.getLogger("napari_propsam")


def _check_resumable(out: str | Path, networks: list[str]) -> None:
    """Refuse a damaged ``last.pt`` in ``OUT/<network>/`` before any work (it would be resumed)."""
    from ..weights import check_resume_state

    for net in networks:
        check_resume_state(Path(out) / net / "last.pt")


def cmd_train(args: argparse.Namespace) -> int:
    from ..training import train_default

    _check_resumable(args.out, args.network)
    overrides: dict[str, Any] = {}
    for name in ("batch_size", "pool_size", "val_every", "threads", "lr"):
        v = getattr(args, name)
        if v is not None:
            overrides[name] = v
    for net in args.network:
        path = train_default(
            net,
            Path(args.out) / net,
            steps=args.steps,
            seed=args.seed,
            exclude_families=args.exclude,
            families=args.families,
            init_weights=_init_weights(args.init, net),
            **overrides,
        )
        logger.info("%s weights: %s", net, path)
    return 0


def _init_weights(init: str | None, network: str) -> Path | None:
    """``--init``: a weights file, or a training-run folder holding ``<network>.safetensors``."""
    if init is None:
        return None
    path = Path(init)
    if path.is_dir():
        path = path / f"{network}.safetensors"
    if not path.is_file():
        raise SystemExit(f"--init: no {network} weights at {path}")
    return path


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..training import finetune, labelled_from_arrays

    if len(args.image) != len(args.labels):
        raise SystemExit("give one --labels per --image")
    _check_resumable(args.out, args.network)
    vols = [
        labelled_from_arrays(read_volume(i), read_volume(lab), args.spacing, Path(i).stem)
        for i, lab in zip(args.image, args.labels, strict=True)
    ]
    paths = finetune(
        vols,
        args.out,
        base=args.model,
        networks=args.network,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
    )
    for net, p in paths.items():
        logger.info("%s weights: %s", net, p)
    logger.info("use them with model=%s", paths.get("propmask"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the ``propsam`` parser."""
    p = sub.add_parser("train", help="train the default lite networks on synthetic volumes")
    p.add_argument(
        "--network", nargs="+", default=["propmask", "box2mask"], choices=("propmask", "box2mask")
    )
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/lite")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--pool-size", type=int, default=None)
    p.add_argument("--val-every", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--exclude", nargs="*", default=[], help="synthetic families to leave out")
    p.add_argument(
        "--families",
        nargs="+",
        default=None,
        help="training families in round-robin order (repeat one to oversample it)",
    )
    p.add_argument(
        "--init",
        default=None,
        help="weights file, or a run folder with <network>.safetensors, to start from "
        "(a warm restart)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", help="adapt the default weights to your annotated volumes")
    p.add_argument("--image", nargs="+", required=True)
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--model", default=None, help="weights to start from (default: bundled)")
    p.add_argument("--network", nargs="+", default=["propmask", "box2mask"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spacing", type=float, nargs=3, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_finetune)
