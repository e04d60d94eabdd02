"""Options shared by several ``propsam`` subcommands.

They are turned into the frozen config dataclasses the API and widgets use; argparse namespaces
never travel further than the ``cli`` package.
"""

from __future__ import annotations

import argparse

from ..config import BoxConfig, PropagationConfig


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """Add ``--model --device --thickness --min-area --crop-ratio --spacing`` to ``p``."""
    g = p.add_argument_group("engine")
    g.add_argument("--model", default=None, help="bundled model name or path to propmask weights")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    g.add_argument(
        "--thickness",
        type=float,
        default=PropagationConfig.thickness,
        help="propagation thickness in spacing units (slices without --spacing)",
    )
    g.add_argument("--min-area", type=float, default=PropagationConfig.min_area)
    g.add_argument("--crop-ratio", type=float, default=PropagationConfig.crop_ratio)
    g.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("Z", "Y", "X"))


def engine_configs(args: argparse.Namespace) -> tuple[PropagationConfig, BoxConfig]:
    """The engine configs described by the options of :func:`add_engine_options`."""
    prop = PropagationConfig(
        thickness=args.thickness, min_area=args.min_area, crop_ratio=args.crop_ratio
    )
    return prop, BoxConfig()
