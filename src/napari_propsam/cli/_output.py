"""``--out`` of every writing command, checked before any work: nothing is lost silently.

- an existing output is refused unless ``--overwrite`` is given;
- an output that is an input (the same path after resolving links and ``..``, or a folder
  holding an input) is always refused;
- an unknown suffix is refused (``--out o.png`` used to write a zarr folder named ``o.png``);
- missing parent folders are created before the work, so it cannot fail after it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

logger = logging.getLogger("napari_propsam")

#: Labels volumes: what :func:`napari_propsam.io.write_volume` writes.
VOLUME_SUFFIXES = (".tif", ".tiff", ".zarr", ".ome.zarr", ".npy")
#: The batch engine's outputs (:func:`napari_propsam.batch.output_kind`).
BATCH_SUFFIXES = (".tif", ".tiff", ".zarr", ".ome.zarr")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".ome.zarr" if name.endswith(".ome.zarr") else path.suffix.lower()


def _is_ome_labels(path: Path) -> bool:
    """``IMAGE/labels/NAME`` inside an existing OME-Zarr image (written by io.write_volume)."""
    from ..io import is_ome_zarr_path

    return not path.name.lower().endswith(".ome.zarr") and is_ome_zarr_path(path)


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def check_output(
    out: str | Path,
    *,
    inputs: Iterable[str | Path | None],
    suffixes: Sequence[str],
    overwrite: bool,
    folder: bool = False,
    check_exists: bool = True,
) -> Path:
    """Validate ``--out`` before any work and create its missing parent folders.

    Args:
        out: The ``--out`` value.
        inputs: Every file or folder the command reads (None entries are ignored).
        suffixes: Accepted suffixes, e.g. ``(".tif", ".zarr")``.
        overwrite: ``--overwrite`` was given: an existing output may be replaced.
        folder: A path without a suffix is accepted as a folder to write into.
        check_exists: Refuse an existing output without ``overwrite`` (the batch engine does
            this itself, because it also offers ``--resume``).

    Returns:
        ``out`` as a :class:`~pathlib.Path` (``~`` expanded).

    Raises:
        ValueError: the output is an input or holds one, its suffix is unknown, or it exists
            and ``overwrite`` is False; each message says what to do instead.
    """
    path = Path(out).expanduser()
    real = path.resolve()
    for src in inputs:
        if src is None:
            continue
        src_real = Path(src).expanduser().resolve()
        if real == src_real or _inside(src_real, real):
            raise ValueError(
                f"--out {path} would overwrite the input {src}; write the result somewhere else"
            )
        store = _suffix(src_real) in (".zarr", ".ome.zarr")  # a folder of images may hold --out
        if store and _inside(real, src_real) and not _is_ome_labels(path):
            raise ValueError(
                f"--out {path} is inside the input {src}; write the result somewhere else "
                "(only IMAGE/labels/NAME inside an OME-Zarr image is written inside an input)"
            )
    suffix = _suffix(path)
    if suffix not in suffixes and not (folder and not path.suffix) and not _is_ome_labels(path):
        kinds = ", ".join(suffixes) + (", or a folder (no suffix)" if folder else "")
        raise ValueError(f"--out {path}: unknown output type {suffix or '(none)'!r}; use {kinds}")
    if check_exists and (path.exists() or path.is_symlink()):
        is_empty_folder = folder and path.is_dir() and not any(path.iterdir())
        if not overwrite and not is_empty_folder:
            raise ValueError(f"--out {path} exists; pass --overwrite to replace it")
        if not folder and path.is_dir() and suffix in (".tif", ".tiff", ".npy", ".csv"):
            raise ValueError(f"--out {path} is a folder; a {suffix} output must be a file")
        logger.info("--overwrite: %s will be replaced", path)
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"--out {path}: {parent} is a file, not a folder")
    parent.mkdir(parents=True, exist_ok=True)
    return path


def check_label(label: int) -> int:
    """``--label``: the id the object is written with, 1 .. 2**32 - 1.

    Raises:
        ValueError: 0 (background: the file would be all zero) or out of range.
    """
    top = 2**32 - 1
    if not 1 <= int(label) <= top:
        raise ValueError(
            f"--label must be an object id from 1 to {top} (0 is the background), got {label}"
        )
    return int(label)
