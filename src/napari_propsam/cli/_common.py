"""Options shared by several ``propsam`` subcommands.

The engine's flags are generated from the metadata of the frozen config dataclasses
(:func:`napari_propsam.config.option_specs`): label, help, range and choices are declared once,
in ``config.py``. Parsed flags are turned back into those dataclasses; argparse namespaces never
travel further than the ``cli`` package.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import BoxConfig, OptionSpec, PropagationConfig, option_specs

logger = logging.getLogger("napari_propsam")

#: The config dataclasses whose options the engine commands offer as flags, in flag order.
ENGINE_CONFIGS: tuple[type, ...] = (PropagationConfig, BoxConfig)


def cli_options(config: type) -> tuple[OptionSpec, ...]:
    """The options of ``config`` that the engine commands offer as ``--flags``."""
    return tuple(s for s in option_specs(config) if s.cli)


def argument_kwargs(spec: OptionSpec) -> dict[str, Any]:
    """``add_argument`` keywords for one option: its default, help, type and choices."""
    kw: dict[str, Any] = {"default": spec.default, "help": spec.help, "dest": spec.name}
    if spec.kind == "real":
        kw["type"] = float
    elif spec.kind == "whole":
        kw["type"] = int
    elif spec.kind == "choice":
        # argparse refuses anything else with "invalid choice: ... (choose from ...)"
        kw["choices"] = spec.choices
    elif spec.kind == "flag":
        kw["action"] = argparse.BooleanOptionalAction
    else:  # percentiles
        kw.update(type=float, nargs="+")
    return kw


def add_engine_options(p: argparse.ArgumentParser, spacing: bool = True) -> None:
    """Add ``--model --device``, every engine option declared for the CLI (``--thickness
    --min-area --crop-ratio --intensity --stop-rule``) and, unless ``spacing`` is False
    (commands whose volumes carry their own), ``--spacing``."""
    g = p.add_argument_group("engine")
    g.add_argument("--model", default=None, help="bundled model name or path to propmask weights")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    for config in ENGINE_CONFIGS:
        for spec in cli_options(config):
            g.add_argument(spec.flag, **argument_kwargs(spec))
    if spacing:
        g.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("Z", "Y", "X"))


def config_from_args(args: argparse.Namespace, config: type) -> Any:
    """``config`` (a config dataclass) built from the flags of its CLI options (missing flags
    keep the default), so argparse namespaces stop here.

    Raises:
        ValueError: a value the config refuses.
    """
    kw = {s.name: getattr(args, s.name) for s in cli_options(config) if hasattr(args, s.name)}
    return config(**{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})


def engine_configs(args: argparse.Namespace) -> tuple[PropagationConfig, BoxConfig]:
    """The engine configs described by the options of :func:`add_engine_options`.

    Raises:
        ValueError: a value the engine refuses (e.g. ``--thickness 0``).
    """
    return config_from_args(args, PropagationConfig), config_from_args(args, BoxConfig)


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
