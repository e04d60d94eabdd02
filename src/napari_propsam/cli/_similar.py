"""``propsam find-similar``: every object like a few examples on one slice, each in 3D.

Examples are painted into a sparse labels volume (ZYX, all on one slice; each id one example)
or given as boxes ``(row0, col0, row1, col1)`` on ``--slice``. With ``--workers`` or
``--scheduler`` the 3D propagation of the objects found goes to the dask batch engine
(:mod:`napari_propsam.batch`); otherwise it runs here, one object after another.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from ..io import labels_dtype, read_volume, write_volume
from ..similar import SimilarConfig
from ._common import (
    add_engine_options,
    argument_kwargs,
    cli_options,
    config_from_args,
    engine_configs,
    image_spacing,
)
from ._output import BATCH_SUFFIXES, VOLUME_SUFFIXES, check_output

logger = logging.getLogger("napari_propsam")


def cmd_find_similar(args: argparse.Namespace) -> int:
    from ..similar import SimilarFound, find_similar, find_similar_stream

    prop, box_cfg = engine_configs(args)
    search = config_from_args(args, SimilarConfig)  # a bad value fails before any work
    if args.examples is None and not args.box:
        raise SystemExit("give --examples SPARSE_LABELS and/or --box ROW0 COL0 ROW1 COL1")
    parallel = args.workers is not None or args.scheduler is not None
    out_path = check_output(
        args.out,
        inputs=[args.image, args.examples],
        suffixes=BATCH_SUFFIXES if parallel and not args.no_3d else VOLUME_SUFFIXES,
        overwrite=args.overwrite,
    )
    image = read_volume(args.image)
    examples = np.asarray(read_volume(args.examples)) if args.examples is not None else None
    spacing = image_spacing(args.spacing, args.image)
    common = dict(
        slice_index=args.slice,
        axis=args.axis,
        examples_mask=examples,
        boxes=args.box or None,
        region=args.region,
        slice_range=args.slice_range,
        spacing=spacing,
        model=args.model,
        device=args.device,
        config=search,
        propagation_config=prop,
        box_config=box_cfg,
        start_label=args.start_label,
    )
    if parallel and not args.no_3d:
        try:
            from ..batch import run_batch
        except ImportError as err:  # the optional dask engine is not installed
            raise RuntimeError(f"--workers/--scheduler need the batch engine: {err}") from err
        found = next(
            e
            for e in find_similar_stream(image, propagate_3d=False, **common)
            if isinstance(e, SimilarFound)
        )
        logger.info(
            "%d example(s) and %d similar object(s); propagating them in 3D on dask",
            found.n_examples,
            found.n_found,
        )
        run_batch(
            args.image,
            list(found.prompts),
            out_path,
            workers=args.workers,
            scheduler=args.scheduler,
            model=args.model,
            device=args.device,
            spacing=spacing,
            overwrite=True,  # --out was checked above; this only replaces our own parts
            config=prop,
            box_config=box_cfg,
        )
        print(f"{found.n_found} similar object(s) + {found.n_examples} example(s) -> {args.out}")
        return 0
    labels = find_similar(image, propagate_3d=not args.no_3d, **common)
    top = int(labels.max())
    write_volume(out_path, labels.astype(labels_dtype(top)), spacing)
    n = len(np.unique(labels)) - (1 if (labels == 0).any() else 0)
    print(f"{n} object(s) (examples included) -> {out_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the ``propsam`` parser."""
    p = sub.add_parser(
        "find-similar",
        help="find every object like a few examples on one slice and segment each in 3D",
    )
    p.add_argument("image", help="tif, zarr or OME-Zarr volume (ZYX)")
    p.add_argument(
        "--examples",
        help="sparse labels volume (ZYX) painted on one slice, or a 2D labels plane with --slice",
    )
    p.add_argument(
        "--box",
        type=float,
        nargs=4,
        action="append",
        metavar=("ROW0", "COL0", "ROW1", "COL1"),
        help="a box around one example on --slice (repeat for several)",
    )
    p.add_argument("--slice", type=int, default=None, help="example slice (implied by --examples)")
    p.add_argument("--axis", type=int, default=0, choices=(0, 1, 2))
    p.add_argument(
        "--region", type=float, nargs=4, metavar=("ROW0", "COL0", "ROW1", "COL1"), default=None
    )
    p.add_argument(
        "--slice-range",
        type=int,
        nargs=2,
        metavar=("START", "STOP"),
        default=None,
        help="also search these slices (every few; the example slice is always searched)",
    )
    p.add_argument("--out", required=True, help="labels file (.tif, .zarr, .ome.zarr or .npy)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--start-label", type=int, default=1)
    p.add_argument("--no-3d", action="store_true", help="only the 2D masks on their slices")
    g = p.add_argument_group("search")
    # Generated from SimilarConfig's field metadata, like the engine flags below.
    for spec in cli_options(SimilarConfig):
        g.add_argument(spec.flag, **argument_kwargs(spec))
    b = p.add_argument_group("parallel 3D propagation (dask batch engine)")
    b.add_argument("--workers", type=int, default=None, help="local dask cluster size")
    b.add_argument("--scheduler", default=None, help="address of a running dask scheduler")
    add_engine_options(p)
    p.set_defaults(func=cmd_find_similar)
