"""``propsam series``: carry annotations across a series of separate 2D images.

The series is a folder of PNG/TIF/JPG images (natural name order) or one stack file whose first
axis indexes images. Annotations are either ``INDEX:FILE`` (a 2D mask or labels image for image
``INDEX``) or one stack file of the series' shape whose painted images are the annotated ones.
The result is one ``(N, H, W)`` labels stack (``.tif``, ``.npy``, ``.zarr``), or a folder of one
labels TIF per image when ``--out`` has no such suffix.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..io import labels_dtype, read_volume, write_volume
from ._common import add_engine_options, engine_configs
from ._output import check_output

logger = logging.getLogger("napari_propsam")

_STACK_SUFFIXES = (".tif", ".tiff", ".npy", ".zarr")


def _read_any(path: str) -> np.ndarray:
    from ..series import IMAGE_SUFFIXES, read_image

    p = Path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES and p.suffix.lower() not in (".tif", ".tiff"):
        return np.asarray(read_image(p))
    return np.asarray(read_volume(p))


def _annotation_path(item: str) -> str:
    """The file of an ``--annotations`` item (``INDEX:FILE`` or ``FILE``)."""
    head, sep, tail = item.partition(":")
    return tail if sep and head.strip().lstrip("-").isdigit() else item


def parse_annotations(items: list[str], n: int) -> dict[int, np.ndarray]:
    """``["3:mask.png", "stack.tif"]`` -> ``{index: (H, W) labels}``.

    Raises:
        ValueError: a stack of the wrong length, an index that is not an integer.
    """
    out: dict[int, np.ndarray] = {}
    for item in items:
        head, sep, tail = item.partition(":")
        if sep and head.strip().lstrip("-").isdigit():
            out[int(head)] = _read_any(tail)
            continue
        arr = _read_any(item)
        if arr.ndim == 2:
            raise ValueError(f"{item} is one 2D image: say which image it annotates, e.g. 0:{item}")
        if arr.shape[0] != n:
            raise ValueError(f"{item} holds {arr.shape[0]} images but the series has {n}")
        for i in range(n):
            if np.any(arr[i]):
                out[i] = arr[i]
    return out


def cmd_series(args: argparse.Namespace) -> int:
    from ..series import propagate_series_stream, read_series, series_files

    src = Path(args.series)
    out = check_output(
        args.out,
        inputs=[src, *(_annotation_path(item) for item in args.annotations)],
        suffixes=(*_STACK_SUFFIXES, ".ome.zarr"),
        overwrite=args.overwrite,
        folder=True,
    )
    if src.is_dir():
        images = read_series(src)
        names = [p.stem for p in series_files(src)]
    else:
        images = np.asarray(read_volume(src))
        names = [f"image_{i:04d}" for i in range(images.shape[0])]
    prop, _ = engine_configs(args)
    annotations = parse_annotations(args.annotations, images.shape[0])
    stack = out.suffix.lower() in _STACK_SUFFIXES
    result = np.zeros(images.shape[:3], np.int32)
    top = max(int(np.max(a)) for a in annotations.values()) if annotations else 1
    dtype = labels_dtype(top)
    if not stack:
        out.mkdir(parents=True, exist_ok=True)
    for upd in propagate_series_stream(
        images, annotations, model=args.model, device=args.device, config=prop
    ):
        result[upd.index] = upd.mask
        if not stack:
            write_volume(out / f"{names[upd.index]}.tif", upd.mask.astype(dtype))
        logger.info("image %d done (%.0f%%)", upd.index, 100 * upd.progress)
    if stack:
        write_volume(out, result.astype(dtype))
    print(f"{len(images)} image(s), {len(annotations)} annotated -> {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the ``propsam`` parser."""
    p = sub.add_parser("series", help="propagate annotations across a series of separate 2D images")
    p.add_argument("series", help="folder of 2D images, or an (N, H, W) stack file")
    p.add_argument(
        "--annotations",
        nargs="+",
        required=True,
        metavar="[INDEX:]FILE",
        help="INDEX:mask_file for one image, or a stack file whose painted images are annotated",
    )
    p.add_argument(
        "--out", required=True, help="labels stack (.tif/.npy/.zarr) or a folder (one tif each)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out (a folder that holds files: replace those written)",
    )
    add_engine_options(p)
    p.set_defaults(func=cmd_series)
