"""Reading and writing volumes: tif (memory-mapped when possible), zarr, OME-Zarr and npy.

Reads are lazy so that volumes larger than RAM only pay for the chunks that are touched.
Arrays are ZYX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


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
            import zarr

            store = tifffile.imread(str(path), aszarr=True)
            return zarr.open(store, mode="r")
    if path.suffix.lower() in (".npy",):
        return np.load(path, mmap_mode="r")
    import zarr

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return node
    return _ome_image(node, path)


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


def is_ome_zarr_path(path: str | Path) -> bool:
    """Whether an output path asks for OME-Zarr (its name ends in ``.ome.zarr``)."""
    return Path(path).name.lower().endswith(".ome.zarr")


def create_ome_zarr(
    path: str | Path,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    spacing: tuple[float, float, float] | None = None,
) -> Any:
    """Create a single-resolution OME-Zarr (NGFF 0.4) labels image and return its array.

    Args:
        path: Directory to create (replaced if it exists).
        shape: ``(Z, Y, X)``.
        dtype: Integer dtype of the labels.
        chunks: ``(z, y, x)`` chunk shape.
        spacing: ``(z, y, x)`` voxel size recorded as the ``scale`` transformation (1, 1, 1 if
            None).

    Returns:
        The zero-filled ``(Z, Y, X)`` zarr array of level ``"0"``, open for writing.
    """
    import zarr

    group = zarr.open_group(str(path), mode="w")
    scale = [float(v) for v in (spacing or (1.0, 1.0, 1.0))]
    group.attrs.update(
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "name": Path(path).name,
                    "axes": [{"name": a, "type": "space"} for a in "zyx"],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [{"type": "scale", "scale": scale}],
                        }
                    ],
                }
            ]
        }
    )
    kwargs = {"shape": tuple(shape), "chunks": tuple(chunks), "dtype": dtype, "fill_value": 0}
    # zarr 3 names it create_array; zarr 2 create_dataset (zarr 3 keeps it, deprecated)
    create = getattr(group, "create_array", None) or group.create_dataset
    return create("0", **kwargs)


def write_volume(
    path: str | Path, data: np.ndarray, spacing: tuple[float, float, float] | None = None
) -> None:
    """Write a ``(Z, Y, X)`` volume by suffix: tif (atomically), npy, zarr, or OME-Zarr.

    Args:
        path: ``.tif``/``.tiff``, ``.npy``, ``.zarr``, or ``.ome.zarr`` (an NGFF 0.4 image
            recording ``spacing`` as its scale, which napari's OME-Zarr readers open with the
            right voxel size).
        data: The array.
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
        create_ome_zarr(path, data.shape, data.dtype, chunks, spacing)[...] = data
    else:
        import zarr

        z = zarr.open_array(str(path), mode="w", shape=data.shape, dtype=data.dtype, chunks=chunks)
        z[...] = data


__all__ = ["create_ome_zarr", "is_ome_zarr_path", "read_spacing", "read_volume", "write_volume"]
