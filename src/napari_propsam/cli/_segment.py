"""``propsam segment``: one object from a box or a mask on one slice."""

from __future__ import annotations

import argparse
import logging
from dataclasses import fields

import numpy as np

from ..io import read_volume, write_volume
from ._common import add_engine_options, engine_configs

logger = logging.getLogger("napari_propsam")


def cmd_segment(args: argparse.Namespace) -> int:
    from ..api import segment

    image = read_volume(args.image)
    prop, box_cfg = engine_configs(args)
    if (args.box is None) == (args.mask is None):
        raise SystemExit("give exactly one of --box and --mask")
    mask = None
    if args.mask is not None:
        sketch = np.asarray(read_volume(args.mask))
        mask = sketch.take(args.slice, axis=args.axis) if sketch.ndim == 3 else sketch
    out = segment(
        image,
        slice_index=args.slice,
        axis=args.axis,
        box=args.box,
        mask=mask,
        spacing=args.spacing,
        model=args.model,
        device=args.device,
        **{f.name: getattr(prop, f.name) for f in fields(prop)},
    )
    write_volume(args.out, out.astype(np.uint8) * np.uint8(args.label))
    logger.info("wrote %s (%d voxels)", args.out, int(out.sum()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the ``propsam`` parser."""
    p = sub.add_parser("segment", help="segment one object from a box or mask on one slice")
    p.add_argument("image", help="tif, zarr or OME-Zarr volume (ZYX)")
    p.add_argument("--slice", type=int, required=True)
    p.add_argument("--axis", type=int, default=0, choices=(0, 1, 2))
    p.add_argument("--box", type=float, nargs=4, metavar=("ROW0", "COL0", "ROW1", "COL1"))
    p.add_argument("--mask", help="2D mask file, or a 3D sketch volume (its --slice is used)")
    p.add_argument("--label", type=int, default=1)
    p.add_argument("--out", required=True)
    add_engine_options(p)
    p.set_defaults(func=cmd_segment)
