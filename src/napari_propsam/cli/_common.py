"""Options shared by several ``propsam`` subcommands.

They are turned into the frozen config dataclasses the API and widgets use; argparse namespaces
never travel further than the ``cli`` package.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from ..config import INTENSITY_MODES, STOP_RULES, BoxConfig, PropagationConfig

logger = logging.getLogger("napari_propsam")


def add_engine_options(p: argparse.ArgumentParser, spacing: bool = True) -> None:
    """Add ``--model --device --thickness --min-area --crop-ratio --intensity --stop-rule``
    and, unless ``spacing`` is False (commands whose volumes carry their own), ``--spacing``."""
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
    g.add_argument(
        "--intensity",
        choices=INTENSITY_MODES,
        default=PropagationConfig.intensity,
        help="per-slice intensity clipping: percentile window of the prompt (default) or the "
        "released notebook's integer CT window",
    )
    g.add_argument(
        "--stop-rule",
        choices=STOP_RULES,
        default=PropagationConfig.stop_rule,
        help="symmetric: both fronts stop at --min-area (default); released: the authors' code "
        "(--min-area towards slice 0 only)",
    )
    if spacing:
        g.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("Z", "Y", "X"))


def engine_configs(args: argparse.Namespace) -> tuple[PropagationConfig, BoxConfig]:
    """The engine configs described by the options of :func:`add_engine_options`."""
    prop = PropagationConfig(
        thickness=args.thickness,
        min_area=args.min_area,
        crop_ratio=args.crop_ratio,
        intensity=getattr(args, "intensity", PropagationConfig.intensity),
        stop_rule=getattr(args, "stop_rule", PropagationConfig.stop_rule),
    )
    return prop, BoxConfig()


def image_spacing(spacing: Sequence[float] | None, path: str | Path) -> tuple[float, ...] | None:
    """``--spacing`` if given (checked later by its user), else the ``(z, y, x)`` voxel size an
    OME-Zarr ``path`` records (None for files that record none)."""
    if spacing is not None:
        return tuple(float(v) for v in spacing)
    from ..io import read_spacing

    found = read_spacing(path)
    if found is not None:
        logger.info("spacing (z, y, x) = %s, from the OME-Zarr metadata of %s", found, path)
    return found
