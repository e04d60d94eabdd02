"""``propsam segment``: one object from a box or mask on one slice, or many from a prompts file.

Single object::

    propsam segment stack.tif --slice 40 --box 120 80 160 130 --out object.tif

Batch (one object per CSV id or per painted id of a sparse labels volume; rows sharing an id,
or an id painted on several slices, give it several prompts), merged into one labels volume,
resumable, optionally on dask.distributed; every object's quality score and slices to review
go to OUT.objects.csv, and the lowest-scored are listed at the end::

    propsam segment stack.zarr --prompts prompts.csv --out labels.zarr --workers 4
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from ..io import labels_dtype, read_volume, write_volume
from ._common import add_engine_options, engine_configs, image_spacing
from ._output import BATCH_SUFFIXES, VOLUME_SUFFIXES, check_label, check_output

logger = logging.getLogger("napari_propsam")


def cmd_segment(args: argparse.Namespace) -> int:
    """Run ``propsam segment`` (single object or batch, depending on ``--prompts``)."""
    if args.prompts is not None:
        return _cmd_batch(args)
    for flag, value in (("--sketches", args.sketches), ("--scheduler", args.scheduler)):
        if value is not None:
            raise ValueError(f"{flag} needs --prompts")
    if args.workers:
        raise ValueError("--workers needs --prompts")
    return _cmd_single(args)


def _cmd_single(args: argparse.Namespace) -> int:
    from ..api import segment

    if args.slice is None:
        raise ValueError("give --slice with --box or --mask, or a --prompts file")
    if (args.box is None) == (args.mask is None):
        raise ValueError("give exactly one of --box and --mask")
    # Everything that can be refused is refused before the segmentation runs.
    label = check_label(args.label)
    out_path = check_output(
        args.out,
        inputs=[args.image, args.mask],
        suffixes=VOLUME_SUFFIXES,
        overwrite=args.overwrite,
    )
    image = read_volume(args.image)
    spacing = image_spacing(args.spacing, args.image)
    prop, box_cfg = engine_configs(args)
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
        spacing=spacing,
        model=args.model,
        device=args.device,
        config=prop,
        box_config=box_cfg,
    )
    dtype = labels_dtype(label)  # uint8 up to 255, uint16 up to 65535, else uint32
    write_volume(out_path, out.astype(dtype) * dtype.type(label), spacing)
    logger.info("wrote %s (%d voxels, label %d, %s)", out_path, int(out.sum()), label, dtype)
    return 0


def _quiet_dask_logs() -> None:
    """Raise dask's loggers to WARNING: its in-process scheduler and client log every
    connection at INFO, which would bury the run's own progress lines."""
    import distributed  # noqa: F401 - importing it creates (and configures) its loggers

    for name in list(logging.root.manager.loggerDict):
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.WARNING)


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import read_prompts, report_path, run_batch
    from ..volume import check_volume

    for flag, value in (("--slice", args.slice), ("--box", args.box), ("--mask", args.mask)):
        if value is not None:
            raise ValueError(f"{flag} is for a single object; a --prompts file holds every prompt")
    if args.overwrite and args.resume:
        raise ValueError("--overwrite and --resume exclude each other")
    check_output(
        args.out,
        inputs=[args.image, args.prompts, args.sketches],
        suffixes=BATCH_SUFFIXES,
        overwrite=args.overwrite,
        check_exists=False,  # run_batch refuses it before any work, offering --resume too
    )
    if not args.verbose and (args.workers or args.scheduler):
        _quiet_dask_logs()
    shape = check_volume(read_volume(args.image))
    prompts = read_prompts(args.prompts, shape, axis=args.axis, sketches=args.sketches)
    prop, box_cfg = engine_configs(args)
    results = []
    start = time.perf_counter()
    out = run_batch(
        args.image,
        prompts,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        model=args.model,
        device=args.device,
        spacing=image_spacing(args.spacing, args.image),
        overwrite=args.overwrite,
        resume=args.resume,
        keep_parts=not args.discard_parts,
        connect_timeout=args.connect_timeout,
        config=prop,
        box_config=box_cfg,
        on_result=results.append,
    )
    failed = [r for r in results if not r.ok]
    seconds = time.perf_counter() - start
    print(  # noqa: T201 - the command's final report
        f"{out}: {len(prompts)} objects ({len(results)} computed in {seconds:.1f} s, "
        f"{len(prompts) - len(results)} resumed, {len(failed)} failed)"
    )
    for r in failed:
        print(f"  object {r.label_id} failed: {r.error}")  # noqa: T201 - CLI output
    _print_review(report_path(out))
    return 1 if failed else 0


#: Objects listed on the terminal at most; the report holds every one.
REVIEW_LINES = 20


def _print_review(report: Path) -> None:
    """The short list to check after a batch run: objects scored below ``REVIEW_BELOW``, lowest
    first, with their slices to review; every object's row is in ``report``."""
    from ..batch import read_report, to_review
    from ..batch._report import REVIEW_BELOW

    low = to_review(read_report(report), REVIEW_BELOW)
    print(  # noqa: T201 - the command's final report
        f"{len(low)} objects scored below {REVIEW_BELOW:.2f} (quality score, slices to review "
        f"worst first; every object in {report}){':' if low else ''}"
    )
    for r in low[:REVIEW_LINES]:
        slices = ";".join(str(i) for i in r.review[:8]) or "-"
        print(  # noqa: T201 - CLI output
            f"  object {r.label_id} ({r.name}): score {r.score:.2f}, review axis-{r.axis} "
            f"slices {slices}"
        )
    if len(low) > REVIEW_LINES:
        print(f"  ... and {len(low) - REVIEW_LINES} more in {report}")  # noqa: T201 - CLI output


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the ``propsam`` parser."""
    p = sub.add_parser(
        "segment",
        help="segment one object from a box or mask on one slice, or many from a prompts file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help="tif, zarr or OME-Zarr volume (ZYX)")
    p.add_argument(
        "--out",
        required=True,
        help="labels volume to write (.tif/.tiff, .zarr, or .ome.zarr with the voxel size)",
    )
    p.add_argument("--axis", type=int, default=0, choices=(0, 1, 2))
    g = p.add_argument_group("single object")
    g.add_argument("--slice", type=int, default=None, help="prompt slice along --axis")
    g.add_argument("--box", type=float, nargs=4, metavar=("ROW0", "COL0", "ROW1", "COL1"))
    g.add_argument("--mask", help="2D mask file, or a 3D sketch volume (its --slice is used)")
    g.add_argument(
        "--label",
        type=int,
        default=1,
        help="value of the object in --out, 1..4294967295 (the file's dtype is the smallest "
        "that holds it)",
    )
    b = p.add_argument_group("batch (see docs/api.md, 'Batch segmentation')")
    b.add_argument(
        "--prompts",
        help="CSV with one prompt per row (id, axis, slice, box or label; rows sharing an id "
        "are one object), or a sparse labels tif/zarr whose painted ids are objects, prompted "
        "on every slice along --axis where they are painted",
    )
    b.add_argument("--sketches", help="sparse labels tif/zarr that a CSV's label column refers to")
    b.add_argument(
        "--workers",
        type=int,
        default=None,
        help="start a local dask cluster of N processes (default: run in this process)",
    )
    b.add_argument("--scheduler", help="address of a running dask scheduler, e.g. tcp://host:8786")
    b.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds to wait for --scheduler"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (and a batch's parts); without it an existing output "
        "is refused",
    )
    b.add_argument("--resume", action="store_true", help="skip objects finished by an earlier run")
    b.add_argument(
        "--discard-parts",
        action="store_true",
        help="delete OUT.parts/ after success (default: keep, so --resume can add objects)",
    )
    add_engine_options(p)
    p.set_defaults(func=cmd_segment)
