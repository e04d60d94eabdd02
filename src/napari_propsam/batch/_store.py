"""On-disk state of a batch run: per-object parts, the manifest, and the merged labels.

Layout for an output ``LABELS`` (``.tif``/``.tiff``, ``.zarr`` or ``.ome.zarr``)::

    LABELS.parts/manifest.json   what the parts were computed from (image, model, options)
    LABELS.parts/<id>.npz        one finished object: its ZYX bounding box, packed bool mask, the
                                 digest of its prompt, its quality score and slices to review

Every file is written to a temporary name in the same directory and renamed, so a killed run
leaves either a whole part or none; the merged output is built the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..api import ObjectROI
from ..io import (
    create_ome_zarr,
    create_zarr_array,
    finish_ome_zarr,
    is_ome_zarr_path,
    labels_dtype,
    register_ome_zarr_labels,
)
from ..quality import ObjectQuality
from ._prompt_table import BatchPrompt

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_FORMAT = 1
_TMP_TAG = ".propsam-tmp-"


def output_kind(out: str | Path) -> str:
    """``"tif"``, ``"zarr"`` or ``"ome.zarr"`` from an output path's suffix.

    Raises:
        ValueError: any other suffix.
    """
    suffix = Path(out).suffix.lower()
    if suffix in (".tif", ".tiff"):
        return "tif"
    if is_ome_zarr_path(out):  # also IMAGE/labels/NAME inside an OME-Zarr image
        return "ome.zarr"
    if suffix == ".zarr":
        return "zarr"
    raise ValueError(
        f"the output must end in .tif, .tiff, .zarr or .ome.zarr (or be IMAGE/labels/NAME of "
        f"an OME-Zarr image), got {Path(out).name!r}"
    )


def parts_dir(out: str | Path) -> Path:
    """The sidecar directory of an output: ``LABELS.parts`` next to ``LABELS``."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def prompt_digest(prompt: BatchPrompt) -> str:
    """Digest of what decides an object's result besides the run options (id excluded).

    A one-slice prompt hashes exactly as before several prompts per object existed, so parts
    stored by earlier versions still resume; each extra slice is appended to the hash.
    """
    h = hashlib.sha256()
    for i, e in enumerate(prompt.entries):
        box = None if e.box is None else [float(v) for v in e.box]  # numpy scalars too
        head = [int(prompt.axis), int(e.index), box]
        h.update(json.dumps(head if i == 0 else ["extra", *head]).encode())
        if e.mask is not None:
            mask = np.asarray(e.mask) != 0
            h.update(json.dumps([[int(v) for v in e.offset], list(mask.shape)]).encode())
            h.update(np.packbits(mask).tobytes())
    return h.hexdigest()[:32]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}{_TMP_TAG}{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _normal(obj: Any) -> Any:
    """JSON round trip, so tuples and lists compare equal to what was read back."""
    return json.loads(json.dumps(obj, sort_keys=True))


def prepare_parts(
    parts: Path, fingerprint: Mapping[str, Any], *, resume: bool, overwrite: bool
) -> None:
    """Create (or check, when resuming) the parts directory and its manifest.

    Raises:
        ValueError: resuming with parts made from another image, model or options.
        FileExistsError: the directory exists but is not a parts directory of this package.
    """
    manifest = parts / MANIFEST
    fp = _normal(dict(fingerprint))
    if parts.exists() and overwrite:
        remove_parts(parts)
    if parts.exists():
        if not manifest.is_file():
            if any(parts.iterdir()):
                raise FileExistsError(f"{parts} exists but is not a napari-propsam parts directory")
        elif not resume:
            raise FileExistsError(
                f"{parts} holds parts of an earlier run; pass --resume (resume=True) to reuse "
                "them or --overwrite (overwrite=True) to start over"
            )
        else:
            old = _read_manifest(manifest)
            diff = [k for k in sorted(set(old) | set(fp)) if old.get(k) != fp.get(k)]
            if diff:
                raise ValueError(
                    f"cannot resume: {parts} was computed with a different {', '.join(diff)}; "
                    "rerun with --overwrite (overwrite=True) to start over"
                )
            _remove_temporaries(parts)  # left by a run that was killed while writing
            return
    parts.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(manifest, json.dumps(fp, indent=1, sort_keys=True).encode())


def _read_manifest(manifest: Path) -> dict[str, Any]:
    """The manifest of a parts directory, or a ValueError naming it when it is damaged."""
    fix = "rerun with --overwrite (overwrite=True) to start over"
    try:
        old = json.loads(manifest.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(
            f"cannot resume: {manifest} is damaged (not valid JSON: {err}); {fix}"
        ) from None
    if not isinstance(old, dict) or old.get("format") != _FORMAT:
        raise ValueError(
            f"cannot resume: {manifest} is not a napari-propsam manifest (expected a JSON object "
            f"with format {_FORMAT}, got {type(old).__name__}); {fix}"
        )
    return old


def remove_parts(parts: Path) -> None:
    """Delete a parts directory (only if it holds a manifest or is empty: never a stranger's)."""
    if not parts.is_dir():
        return
    if any(parts.iterdir()) and not (parts / MANIFEST).is_file():
        raise FileExistsError(f"{parts} exists but is not a napari-propsam parts directory")
    shutil.rmtree(parts)


def _remove_temporaries(directory: Path) -> None:
    for p in directory.iterdir():
        if _TMP_TAG in p.name:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def _part_path(parts: Path, label_id: int) -> Path:
    return parts / f"{int(label_id)}.npz"


def write_part(
    parts: Path,
    label_id: int,
    roi: ObjectROI,
    digest: str,
    seconds: float,
    quality: ObjectQuality | None = None,
) -> Path:
    """Store one finished object atomically (with its quality score and the slices to review,
    so a resumed run reports them too); returns the part's path."""
    path = _part_path(parts, label_id)
    bbox = np.array([[s.start, s.stop] for s in roi.bbox], dtype=np.int64)
    bits = np.packbits(roi.mask.ravel())
    score = float("nan") if quality is None else float(quality.score)
    review = [] if quality is None else quality.review_indices
    tmp = path.with_name(f"{path.name}{_TMP_TAG}{os.getpid()}")
    with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the name
        np.savez_compressed(
            f,
            bbox=bbox,
            bits=bits,
            bits_sha256=np.array(_bits_digest(bbox, bits)),
            digest=np.array(digest),
            seconds=np.array(float(seconds)),
            score=np.array(score),
            review=np.array(review, dtype=np.int64),
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _bits_digest(bbox: np.ndarray, bits: np.ndarray) -> str:
    """Checksum of a part's box and mask bits: a truncated or altered part never passes."""
    h = hashlib.sha256(np.ascontiguousarray(bbox, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(bits, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _load_part(path: Path, shape: Sequence[int] | None) -> tuple[ObjectROI, str]:
    """Read and verify one part file; ValueError says what is wrong (without the name)."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in ("bbox", "bits", "digest")}
            check = str(z["bits_sha256"]) if "bits_sha256" in z.files else None
    except KeyError as err:
        raise ValueError(f"missing entry {err}") from None
    except Exception as err:  # noqa: BLE001 - zip, zlib, EOF, pickle: all mean a damaged file
        raise ValueError(f"unreadable ({type(err).__name__}: {err})") from None
    bbox_arr, bits = arrays["bbox"], arrays["bits"]
    if bbox_arr.shape != (3, 2) or bbox_arr.dtype.kind not in "iu":
        raise ValueError(f"bad bounding box {bbox_arr.tolist()}")
    bbox = tuple(slice(int(a), int(b)) for a, b in bbox_arr)
    if any(s.start < 0 or s.stop < s.start for s in bbox) or (
        shape is not None and any(s.stop > n for s, n in zip(bbox, shape, strict=True))
    ):
        raise ValueError(f"bounding box {bbox_arr.tolist()} is outside the volume")
    size = tuple(s.stop - s.start for s in bbox)
    n = int(np.prod(size))
    if bits.dtype != np.uint8 or bits.ndim != 1 or bits.size != (n + 7) // 8:
        raise ValueError(f"{bits.size} bytes of mask bits for a {size} box ({(n + 7) // 8} needed)")
    if check is not None and check != _bits_digest(bbox_arr, bits):
        raise ValueError("its mask bits do not match their checksum")
    mask = np.unpackbits(bits, count=n).astype(bool).reshape(size)
    return ObjectROI(bbox, mask), str(arrays["digest"])  # type: ignore[arg-type]


def read_part(
    parts: Path, label_id: int, shape: Sequence[int] | None = None
) -> tuple[ObjectROI, str]:
    """A stored object and its prompt digest, verified: every entry present, a bounding box
    inside ``shape`` (the ``(Z, Y, X)`` volume, if given), exactly the mask bits that box needs
    and, for parts written by this version, their checksum.

    Raises:
        OSError: the part is missing.
        ValueError: the part is damaged; the message names the file.
    """
    path = _part_path(parts, label_id)
    if not path.is_file():
        raise FileNotFoundError(f"part not found: {path}")
    try:
        return _load_part(path, shape)
    except ValueError as err:
        raise ValueError(f"damaged part {path}: {err}") from None


def part_review(parts: Path, label_id: int) -> tuple[float, tuple[int, ...], float]:
    """A stored object's quality score (NaN if unknown), slices to review (worst first) and
    seconds; parts written before quality was stored give ``(nan, (), seconds)``.

    Raises:
        OSError: the part is missing.
        ValueError: the part cannot be read; the message names the file.
    """
    path = _part_path(parts, label_id)
    try:
        with np.load(path) as z:
            score = float(z["score"]) if "score" in z.files else float("nan")
            review = tuple(int(v) for v in z["review"]) if "review" in z.files else ()
            seconds = float(z["seconds"]) if "seconds" in z.files else float("nan")
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - zip, zlib, EOF: a damaged file
        raise ValueError(f"damaged part {path}: {type(err).__name__}: {err}") from None
    return score, review, seconds


def finished_ids(
    parts: Path, prompts: Sequence[BatchPrompt], shape: Sequence[int] | None = None
) -> set[int]:
    """Ids whose part exists, is intact and was computed from the same prompt; a damaged part
    is logged (naming the file) and recomputed."""
    done = set()
    for p in prompts:
        if not _part_path(parts, p.label_id).is_file():
            continue
        try:
            _, digest = read_part(parts, p.label_id, shape)
        except (OSError, ValueError) as err:  # a damaged part is just recomputed
            logger.warning("%s: %s; recomputing it", p.label, err)
            continue
        if digest == prompt_digest(p):
            done.add(p.label_id)
        else:
            logger.info("%s: its prompt changed since the part was stored; recomputing", p.label)
    return done


def _open_target(
    tmp: Path,
    kind: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    spacing: tuple[float, float, float] | None = None,
) -> Any:
    """A zero-filled, disk-backed labels array at ``tmp`` (never the whole volume in RAM)."""
    if kind == "tif":
        import tifffile

        big = int(np.prod(shape)) * dtype.itemsize > 2**31
        return tifffile.memmap(
            str(tmp), shape=shape, dtype=dtype, bigtiff=big, photometric="minisblack"
        )
    chunks = tuple(min(s, c) for s, c in zip(shape, (64, 256, 256), strict=True))
    if kind == "ome.zarr":
        return create_ome_zarr(tmp, shape, dtype, chunks, spacing)
    return create_zarr_array(tmp, shape, dtype, chunks)


def _replace(tmp: Path, out: Path) -> None:
    """Move ``tmp`` onto ``out``; an existing ``out`` (file or directory) goes only afterwards."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f"{out.name}{_TMP_TAG}old-{os.getpid()}")
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old) if old.is_dir() else old.unlink()


def merge_parts(
    out: Path,
    parts: Path,
    label_ids: Iterable[int],
    shape: Sequence[int],
    spacing: tuple[float, float, float] | None = None,
) -> tuple[Path, dict[int, int]]:
    """Paint the stored objects into one labels volume and write it atomically to ``out``.

    Objects are painted in ascending id, each only onto voxels that are still 0, so where
    objects overlap the lowest id wins, whatever order they finished in.

    Args:
        out: ``.tif``/``.tiff`` or ``.zarr`` path of the ``(Z, Y, X)`` labels.
        parts: The parts directory.
        label_ids: Objects to paint (those without a part are skipped).
        shape: ``(Z, Y, X)`` of the volume.
        spacing: ``(z, y, x)`` voxel size, recorded when ``out`` ends in ``.ome.zarr``.

    Returns:
        ``(out, {id: voxels painted})``; objects whose segmentation is empty are left out.
    """
    kind = output_kind(out)
    ids = sorted(int(i) for i in label_ids if _part_path(parts, i).is_file())
    shape = tuple(int(s) for s in shape)
    dtype = labels_dtype(max(ids, default=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}{_TMP_TAG}{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    target = _open_target(tmp, kind, shape, dtype, spacing)
    painted: dict[int, int] = {}
    for lid in ids:
        roi, _ = read_part(parts, lid, shape)
        if not roi.mask.any():
            logger.warning("object %d: the segmentation is empty (%s)", lid, _part_path(parts, lid))
            continue
        region = np.asarray(target[roi.bbox])
        free = roi.mask & (region == 0)
        region[free] = lid
        target[roi.bbox] = region
        painted[lid] = int(free.sum())
    if kind == "tif":
        target.flush()
    del target  # closes the tif memory map before the rename
    if kind == "ome.zarr":
        finish_ome_zarr(tmp)  # the downsampled levels, before the output appears
    _replace(tmp, out)
    if kind == "ome.zarr":
        register_ome_zarr_labels(out)  # listed in its image's labels only once it is whole
    return out, painted


__all__ = [
    "MANIFEST",
    "finished_ids",
    "labels_dtype",
    "merge_parts",
    "output_kind",
    "part_review",
    "parts_dir",
    "prepare_parts",
    "prompt_digest",
    "read_part",
    "remove_parts",
    "write_part",
]
