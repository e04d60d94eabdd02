"""``propsam measure``: per-object measurements of a label volume, written as CSV."""

from __future__ import annotations

import argparse
import logging

from ..io import read_volume
from ._common import image_spacing
from ._output import check_output

logger = logging.getLogger("napari_propsam")


def cmd_measure(args: argparse.Namespace) -> int:
    from ..measure import measure_labels, validate_spacing, write_measurements_csv

    # Checked before any file is opened, so a typo fails fast on a huge volume.
    out = check_output(
        args.out, inputs=[args.labels, args.image], suffixes=(".csv",), overwrite=args.overwrite
    )
    spacing = validate_spacing(image_spacing(args.spacing, args.labels))
    labels = read_volume(args.labels)
    image = None if args.image is None else read_volume(args.image)
    table = measure_labels(labels, image=image, spacing=spacing)
    write_measurements_csv(table, out)
    n = len(table["label"])
    print(f"{n} object{'s' if n != 1 else ''} measured -> {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the ``propsam`` parser."""
    p = sub.add_parser(
        "measure",
        help="per-object volume, surface, sphericity, extent, intensity and shape metrics as CSV",
        description=(
            "Measure every object (non-zero id) of a ZYX label volume. Volumes, areas and "
            "extents are in the units of --spacing; bounding boxes and centroids in voxels."
        ),
    )
    p.add_argument("labels", help="integer label volume (tif, zarr, OME-Zarr or npy; ZYX)")
    p.add_argument("--image", help="intensity volume of the same shape (adds mean/std)")
    p.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=None,
        metavar=("Z", "Y", "X"),
        help="physical voxel size (default 1 1 1)",
    )
    p.add_argument("--out", required=True, help="output CSV path")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_measure)
