"""Reading and writing volumes: tif (memory-mapped when possible), zarr, OME-Zarr and npy.

Reads are lazy so that volumes larger than RAM only pay for the chunks that are touched.
Arrays are ZYX.

What the writers produce, whatever zarr release is installed (docs/install.md, "Output files"):

- ``*.zarr``: one zarr **v2** array at the root (Blosc-LZ4 chunks, ``/`` chunk keys), which
  zarr-python 2 and 3, tensorstore and Fiji's N5/Zarr reader all open.
- ``*.ome.zarr``: an OME-Zarr (NGFF 0.4, zarr v2) label image: a nearest-neighbour pyramid with
  ``multiscales`` and ``image-label`` metadata.
- ``IMAGE/labels/NAME`` where ``IMAGE`` is an OME-Zarr image: the same label image written inside
  the image, with one level per image level, listed in ``IMAGE/labels``, in the image's own
  NGFF version (0.4 on zarr v2 or 0.5 on zarr v3); napari-ome-zarr opens the image and its
  labels together.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def read_volume(path: str | Path) -> Any:
    """Open a ``(Z, Y, X)`` volume lazily: tif (memory-mapped when possible), npy, zarr or OME-Zarr.

    An OME-Zarr image (NGFF 0.4 ``multiscales`` attributes, or 0.5 under ``ome``) opens at its
    full-resolution level; leading singleton axes such as ``t`` and ``c`` are dropped lazily so
    the result is ZYX. A plain zarr group without that metadata opens its array ``"0"``.

    Args:
        path: The file or directory.

    Returns:
        A ``(Z, Y, X)`` array-like (numpy memmap, zarr or dask array); nothing is read yet.

    Raises:
        ValueError: an OME-Zarr image with a non-singleton time or channel axis, or a zarr group
            holding no image.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            return tifffile.memmap(str(path), mode="r")
        except ValueError:  # compressed or tiled: read through tifffile's zarr store
            return _read_tif_lazily(path)
    if path.suffix.lower() in (".npy",):
        return np.load(path, mmap_mode="r")
    import zarr

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return node
    return _ome_image(node, path)


def _read_tif_lazily(path: Path) -> Any:
    """A compressed/tiled TIFF through tifffile's zarr store; a plain read if that fails."""
    import tifffile

    try:
        import zarr

        return zarr.open(tifffile.imread(str(path), aszarr=True), mode="r")
    except (ImportError, ValueError, TypeError) as err:
        # tifffile's stores need zarr 3 (it raises ValueError on zarr 2); an older pairing is
        # not worth failing over: read the whole file instead of chunk by chunk.
        logger.warning("%s: lazy TIFF read unavailable (%s); reading it whole", path.name, err)
        return tifffile.imread(str(path))


def _ome_multiscales(attrs: Any) -> list[dict[str, Any]]:
    attrs = dict(attrs)
    if "ome" in attrs:  # NGFF 0.5 nests the metadata
        attrs = dict(attrs["ome"])
    return list(attrs.get("multiscales") or [])


def _ome_axis_names(ms: dict[str, Any], ndim: int) -> list[str]:
    """Axis names of one ``multiscales`` entry for an ``ndim``-D level."""
    names = [a["name"] if isinstance(a, dict) else str(a) for a in ms.get("axes", [])]
    if not names:  # NGFF < 0.4 has no axes: the last three are zyx by convention
        names = [f"dim{i}" for i in range(ndim - 3)] + ["z", "y", "x"]
    return names


def _ome_image(group: Any, path: Path) -> Any:
    """The full-resolution array of an OME-Zarr group, as ``(Z, Y, X)``."""
    multiscales = _ome_multiscales(group.attrs)
    if not multiscales:
        if "0" in group:
            return group["0"]
        raise ValueError(f"{path} is a zarr group with no 'multiscales' metadata and no array '0'")
    ms = multiscales[0]
    arr = group[ms["datasets"][0]["path"]]
    names = _ome_axis_names(ms, arr.ndim)
    extra = [i for i, n in enumerate(names) if n not in ("z", "y", "x")]
    if not extra:
        return arr
    for i in extra:
        if arr.shape[i] != 1:
            raise ValueError(
                f"{path}: axis '{names[i]}' has {arr.shape[i]} entries; segment one "
                f"{names[i]} at a time (export a single-{names[i]} ZYX volume)"
            )
    import dask.array as da

    view = da.from_array(arr, chunks=arr.chunks)  # lazy: indexing reads only the touched chunks
    return view[tuple(0 if i in extra else slice(None) for i in range(arr.ndim))]


def read_spacing(path: str | Path) -> tuple[float, float, float] | None:
    """The ``(z, y, x)`` voxel size an OME-Zarr image records, or None for other files.

    Read from the full-resolution level's ``scale`` coordinate transformation (and a global one,
    if present, multiplied in).
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff", ".npy"):
        return None
    try:
        import zarr

        node = zarr.open(str(path), mode="r")
    except Exception:  # noqa: BLE001 - not a zarr store: it records no spacing
        return None
    if hasattr(node, "shape"):
        return None
    multiscales = _ome_multiscales(node.attrs)
    if not multiscales:
        return None
    ms = multiscales[0]
    scale = None
    for t in ms["datasets"][0].get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
    if scale is None:
        return None
    for t in ms.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [a * float(b) for a, b in zip(scale, t["scale"], strict=True)]
    by_name = dict(zip(_ome_axis_names(ms, len(scale)), scale, strict=True))
    if not all(k in by_name for k in "zyx"):
        return None
    return (by_name["z"], by_name["y"], by_name["x"])


# --------------------------------------------------------------------------------------------
# Writing

#: Chunk codec of every zarr v2 array we write: zarr-python 2's own default, so that older
#: readers decode it, spelled out so that a zarr release with other defaults changes nothing.
_V2_COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
#: "/" chunk keys: NGFF 0.4 requires them, and they keep directories small for plain zarr too.
_V2_KEYS = {"name": "v2", "separator": "/"}
#: A standalone pyramid stops once a slice fits this many pixels a side (about a screen tile).
PYRAMID_MIN_SIZE = 256


def _new_array(group: Any, name: str, shape, chunks, dtype, zarr_format: int) -> Any:
    """A zero-filled array in ``group`` in our fixed encoding for that zarr format."""
    from numcodecs import get_codec

    kwargs: dict[str, Any] = {"shape": tuple(shape), "chunks": tuple(chunks), "dtype": dtype}
    if zarr_format == 2:
        kwargs.update(compressors=get_codec(dict(_V2_COMPRESSOR)), chunk_key_encoding=_V2_KEYS)
    else:  # NGFF 0.5 asks for dimension names on every array
        kwargs["dimension_names"] = list("zyx")
    return group.create_array(name, fill_value=0, overwrite=True, **kwargs)


def create_zarr_array(
    path: str | Path, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]
) -> Any:
    """Create the plain ``.zarr`` output: one zero-filled zarr v2 array at ``path``.

    Args:
        path: Directory to create (replaced if it exists).
        shape: ``(Z, Y, X)``.
        dtype: Numpy dtype.
        chunks: ``(z, y, x)`` chunk shape.

    Returns:
        The zarr array, open for writing.
    """
    import zarr
    from numcodecs import get_codec

    return zarr.create_array(
        str(path),
        shape=tuple(shape),
        chunks=tuple(chunks),
        dtype=dtype,
        fill_value=0,
        zarr_format=2,
        compressors=get_codec(dict(_V2_COMPRESSOR)),
        chunk_key_encoding=_V2_KEYS,
        overwrite=True,
    )


def _ome(attrs: Any) -> dict[str, Any]:
    """The OME metadata of a group: the ``ome`` attribute (NGFF 0.5) or the attributes (0.4)."""
    attrs = dict(attrs)
    return dict(attrs["ome"]) if "ome" in attrs else attrs


def _enclosing_image(path: Path) -> tuple[Any, str] | None:
    """``(image group, NGFF version)`` if ``path`` is ``IMAGE/labels/NAME`` of an OME-Zarr image."""
    if path.parent.name != "labels" or not path.parent.parent.is_dir():
        return None
    import zarr

    try:
        image = zarr.open_group(str(path.parent.parent), mode="r")
    except Exception:  # noqa: BLE001 - not a zarr group: not an image either
        return None
    ome = _ome(image.attrs)
    if not ome.get("multiscales"):
        return None
    version = str(ome.get("version") or ome["multiscales"][0].get("version", "0.4"))
    return image, ("0.5" if version == "0.5" else "0.4")


def is_ome_zarr_path(path: str | Path) -> bool:
    """Whether an output path asks for OME-Zarr.

    True for a name ending in ``.ome.zarr`` and for ``IMAGE/labels/NAME`` inside an existing
    OME-Zarr image ``IMAGE``.
    """
    path = Path(path)
    return path.name.lower().endswith(".ome.zarr") or _enclosing_image(path) is not None


def _image_levels(image: Any) -> list[tuple[float, float, float]]:
    """``(z, y, x)`` scale of each level of an OME-Zarr image, finest first."""
    ms = _ome_multiscales(image.attrs)[0]
    ndim = len(image[ms["datasets"][0]["path"]].shape)
    names = _ome_axis_names(ms, ndim)
    levels = []
    for ds in ms["datasets"]:
        scale = [1.0] * ndim
        for t in ds.get("coordinateTransformations", []):
            if t.get("type") == "scale":
                scale = [float(v) for v in t["scale"]]
        by_name = dict(zip(names, scale, strict=True))
        levels.append((by_name["z"], by_name["y"], by_name["x"]))
    return levels


def _standalone_levels(
    shape: Sequence[int], spacing: Sequence[float]
) -> list[tuple[float, float, float]]:
    """Scales of a standalone pyramid: y and x halve each level; z halves only while it is finer
    than the new y, so thick-slice stacks do not get coarser still along z."""
    levels = [tuple(float(s) for s in spacing)]
    size = [int(n) for n in shape]
    while max(size[1:]) > PYRAMID_MIN_SIZE:
        z, y, x = levels[-1]
        halve_z = z < 2 * y and size[0] > 1
        levels.append((2 * z if halve_z else z, 2 * y, 2 * x))
        size = [math.ceil(size[0] / 2) if halve_z else size[0]] + [
            math.ceil(n / 2) for n in size[1:]
        ]
    return levels  # type: ignore[return-value]


def _multiscales(levels, version: str, axes: list[dict[str, Any]]) -> dict[str, Any]:
    # No "name": writers work under a temporary directory name, and readers name a label
    # layer after its path anyway.
    ms: dict[str, Any] = {
        "axes": axes,
        "datasets": [
            {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": list(s)}]}
            for i, s in enumerate(levels)
        ],
    }
    if version == "0.4":  # 0.5 moved the version up to the "ome" attribute
        ms["version"] = "0.4"
    return ms


def _label_axes(image: Any | None) -> list[dict[str, Any]]:
    """The z, y, x axes of the labelled image (units included), or bare spatial axes."""
    if image is None:
        return [{"name": a, "type": "space"} for a in "zyx"]
    axes = _ome_multiscales(image.attrs)[0].get("axes", [])
    by_name = {a["name"]: dict(a) for a in axes if isinstance(a, dict)}
    return [by_name.get(a, {"name": a, "type": "space"}) for a in "zyx"]


def _write_label_metadata(group: Any, levels, version: str, image: Any) -> None:
    """``multiscales`` + ``image-label`` of a label image with ``levels`` written."""
    nested = image is not None
    axes = _label_axes(image)
    meta: dict[str, Any] = {"multiscales": [_multiscales(levels, version, axes)]}
    label: dict[str, Any] = {"version": version} if version == "0.4" else {}
    if nested:  # where the labelled image is, relative to this group (the spec's default)
        label["source"] = {"image": "../../"}
    meta["image-label"] = label
    if version == "0.5":
        group.attrs.put({"ome": {"version": "0.5", **meta}})
    else:
        group.attrs.put(meta)


def create_ome_zarr(
    path: str | Path,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    spacing: tuple[float, float, float] | None = None,
) -> Any:
    """Create an OME-Zarr label image and return its full-resolution array, for writing.

    A ``*.ome.zarr`` path gets a standalone NGFF 0.4 label image on zarr v2; ``IMAGE/labels/NAME``
    inside an OME-Zarr image gets one in that image's NGFF version, on its grid. Until
    :func:`finish_ome_zarr` adds the downsampled levels, the metadata lists level ``"0"`` only,
    so an interrupted writer still leaves a valid (single-level) image.

    Args:
        path: Directory to create (replaced if it exists).
        shape: ``(Z, Y, X)``.
        dtype: Integer dtype of the labels.
        chunks: ``(z, y, x)`` chunk shape.
        spacing: ``(z, y, x)`` voxel size recorded as the ``scale`` (1, 1, 1 if None). Inside an
            image, the image's own full-resolution scale is used, so the labels overlay it.

    Returns:
        The zero-filled ``(Z, Y, X)`` zarr array of level ``"0"``, open for writing.

    Raises:
        ValueError: ``dtype`` is not an integer type (NGFF labels are integers).
    """
    import zarr

    path = Path(path)
    if not np.issubdtype(np.dtype(dtype), np.integer):
        raise ValueError(f"OME-Zarr labels must be integers, got {np.dtype(dtype)}")
    found = _enclosing_image(path)
    image, version = found if found else (None, "0.4")
    scale = tuple(float(v) for v in (spacing or (1.0, 1.0, 1.0)))
    if image is not None:
        image_scale = _image_levels(image)[0]
        if spacing is not None and not np.allclose(scale, image_scale):
            logger.warning(
                "%s: spacing %s differs from the image's %s; using the image's, so the labels "
                "overlay it",
                path,
                scale,
                image_scale,
            )
        scale = image_scale
    zarr_format = 3 if version == "0.5" else 2
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    _write_label_metadata(group, [scale], version, image)
    return _new_array(group, "0", shape, chunks, dtype, zarr_format)


def _level_slices(shape: Sequence[int], chunks: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    """Every chunk-aligned block of an array, as slices."""
    grids = [range(0, n, c) for n, c in zip(shape, chunks, strict=True)]
    for corner in np.ndindex(*(len(g) for g in grids)):
        yield tuple(
            slice(g[i], min(g[i] + c, n))
            for g, i, c, n in zip(grids, corner, chunks, shape, strict=True)
        )


def _downsample_into(src: Any, dst: Any, factors: Sequence[float]) -> None:
    """Nearest-neighbour resampling of ``src`` into ``dst``, one ``dst`` chunk at a time.

    Output voxel ``i`` takes the input voxel nearest ``i * factor`` (every ``factor``-th voxel for
    whole factors): label ids are copied, never averaged, and only the input slab under one
    output chunk is held in memory.
    """
    for block in _level_slices(dst.shape, dst.chunks):
        index = [
            np.minimum(np.floor(np.arange(b.start, b.stop) * f + 0.5).astype(np.int64), n - 1)
            for b, f, n in zip(block, factors, src.shape, strict=True)
        ]
        lo = [int(i[0]) for i in index]
        slab = np.asarray(
            src[tuple(slice(a, int(i[-1]) + 1) for a, i in zip(lo, index, strict=True))]
        )
        picked = slab[np.ix_(*(i - a for i, a in zip(index, lo, strict=True)))]
        if picked.any():  # chunks left at the fill value are not stored at all
            dst[block] = picked


def finish_ome_zarr(path: str | Path) -> None:
    """Add the downsampled levels of an OME-Zarr label image made by :func:`create_ome_zarr`.

    A standalone image gets levels until a slice fits ``PYRAMID_MIN_SIZE`` pixels a side (see
    ``_standalone_levels``); labels inside an image get one level per image level (the NGFF
    rule), on the image's level grids. The metadata is rewritten only after every level is
    complete.

    Args:
        path: The label image's directory (full-resolution level ``"0"`` already written).
    """
    import zarr

    path = Path(path)
    group = zarr.open_group(str(path), mode="r+")
    found = _enclosing_image(path)
    image, version = found if found else (None, "0.4")
    ms = _ome_multiscales(group.attrs)[0]
    base = group["0"]
    spacing = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    if image is None:
        levels = _standalone_levels(base.shape, spacing)
        shapes = [base.shape]
        for prev, cur in zip(levels, levels[1:], strict=False):
            f = [c / p for c, p in zip(cur, prev, strict=True)]
            shapes.append(tuple(math.ceil(n / k) for n, k in zip(shapes[-1], f, strict=True)))
    else:
        levels = _image_levels(image)
        ims = _ome_multiscales(image.attrs)[0]
        names = _ome_axis_names(ims, image[ims["datasets"][0]["path"]].ndim)
        axes = [names.index(a) for a in "zyx"]
        shapes = [tuple(image[ds["path"]].shape[i] for i in axes) for ds in ims["datasets"]]
    fmt = 3 if version == "0.5" else 2
    src = base
    for k in range(1, len(levels)):
        # from the level above, not from level 0: each level reads a quarter of the data or less
        factors = [sk / sp for sk, sp in zip(levels[k], levels[k - 1], strict=True)]
        chunks = tuple(min(c, n) for c, n in zip(base.chunks, shapes[k], strict=True))
        dst = _new_array(group, str(k), shapes[k], chunks, base.dtype, fmt)
        _downsample_into(src, dst, factors)
        src = dst
    _write_label_metadata(group, levels, version, image)


def register_ome_zarr_labels(path: str | Path) -> None:
    """List ``IMAGE/labels/NAME`` in its image's ``labels`` group, so readers find it.

    Does nothing for any other path. Creates the ``labels`` group if needed, and refreshes the
    image's consolidated metadata if it has some (readers would not see the labels otherwise).
    """
    import zarr

    path = Path(path)
    found = _enclosing_image(path)
    if found is None:
        return
    image, version = found
    fmt = 3 if version == "0.5" else 2
    labels = zarr.open_group(str(path.parent), mode="a", zarr_format=fmt)
    listed = list(_ome(labels.attrs).get("labels", []))
    if path.name not in listed:
        listed.append(path.name)
    if version == "0.5":
        labels.attrs.put({"ome": {"version": "0.5", "labels": listed}})
    else:
        labels.attrs.put({"labels": listed})
    root = path.parent.parent
    consolidated = (root / ".zmetadata").is_file() or (
        (root / "zarr.json").is_file()
        and json.loads((root / "zarr.json").read_text()).get("consolidated_metadata")
    )
    if consolidated:
        zarr.consolidate_metadata(str(root), zarr_format=fmt)


def write_volume(
    path: str | Path, data: np.ndarray, spacing: tuple[float, float, float] | None = None
) -> None:
    """Write a ``(Z, Y, X)`` volume by suffix: tif (atomically), npy, zarr, or OME-Zarr.

    Args:
        path: ``.tif``/``.tiff``, ``.npy``, ``.zarr`` (a zarr v2 array), or an OME-Zarr label
            image: ``*.ome.zarr`` or ``IMAGE/labels/NAME`` inside an OME-Zarr image (see the
            module docstring). OME-Zarr records ``spacing`` as its scale.
        data: The array; integer or bool for OME-Zarr (bool is stored as uint8).
        spacing: ``(z, y, x)`` voxel size, used by OME-Zarr only.
    """
    path = Path(path)
    chunks = tuple(min(s, c) for s, c in zip(data.shape, (32, 256, 256), strict=False))
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tmp = path.with_name(path.name + ".tmp")
        tifffile.imwrite(str(tmp), data, compression="zlib")
        tmp.replace(path)
    elif path.suffix.lower() == ".npy":
        np.save(path, data)
    elif is_ome_zarr_path(path):
        data = data.astype(np.uint8) if data.dtype == bool else data
        create_ome_zarr(path, data.shape, data.dtype, chunks, spacing)[...] = data
        finish_ome_zarr(path)
        register_ome_zarr_labels(path)
    else:
        create_zarr_array(path, data.shape, data.dtype, chunks)[...] = data


__all__ = [
    "PYRAMID_MIN_SIZE",
    "create_ome_zarr",
    "create_zarr_array",
    "finish_ome_zarr",
    "is_ome_zarr_path",
    "read_spacing",
    "read_volume",
    "register_ome_zarr_labels",
    "write_volume",
]


def labels_dtype(max_id: int) -> np.dtype:
    """Smallest unsigned integer dtype holding label id ``max_id`` (uint8 up to 255, ...)."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_id <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)
