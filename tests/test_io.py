"""Reading volumes: tif, npy, plain zarr and OME-Zarr (NGFF 0.4 and 0.5) as lazy ZYX arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_propsam.io import read_spacing, read_volume, write_volume


def _volume() -> np.ndarray:
    return np.arange(6 * 10 * 12, dtype=np.uint16).reshape(6, 10, 12)


def write_ome_zarr(
    path: Path,
    data: np.ndarray,
    scale: tuple[float, ...],
    axes: str = "tczyx",
    nested: bool = False,
) -> Path:
    """A two-level OME-Zarr image of ``data`` (dims named by ``axes``), as writers make it."""
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", shape=data.shape, chunks=data.shape, dtype=data.dtype)[...] = data
    half = data[..., ::2, ::2]
    group.create_array("1", shape=half.shape, chunks=half.shape, dtype=data.dtype)[...] = half
    multiscales = [
        {
            "version": "0.4",
            "axes": [
                {"name": a, "type": {"t": "time", "c": "channel"}.get(a, "space")} for a in axes
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": list(scale)}],
                },
                {
                    "path": "1",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [*scale[:-2], scale[-2] * 2, scale[-1] * 2]}
                    ],
                },
            ],
        }
    ]
    group.attrs.update(
        {"ome": {"multiscales": multiscales}} if nested else {"multiscales": multiscales}
    )
    return path


@pytest.mark.parametrize("nested", [False, True])
def test_ome_zarr_opens_full_resolution_zyx_lazily_with_its_spacing(tmp_path, nested):
    vol = _volume()
    path = write_ome_zarr(
        tmp_path / "img.ome.zarr", vol[None, None], (1, 1, 4.0, 0.5, 0.5), nested=nested
    )
    got = read_volume(path)
    assert got.shape == vol.shape and not isinstance(got, np.ndarray)  # lazy
    np.testing.assert_array_equal(np.asarray(got[2:4, 3:7, 1:5]), vol[2:4, 3:7, 1:5])
    assert read_spacing(path) == (4.0, 0.5, 0.5)


def test_ome_zarr_zyx_only_and_refusals(tmp_path):
    vol = _volume()
    path = write_ome_zarr(tmp_path / "zyx.zarr", vol, (2.0, 1.0, 1.0), axes="zyx")
    np.testing.assert_array_equal(np.asarray(read_volume(path)[:]), vol)
    two_channels = write_ome_zarr(tmp_path / "c2.zarr", np.stack([vol, vol]), (1, 2, 1, 1), "czyx")
    with pytest.raises(ValueError, match="axis 'c' has 2 entries"):
        read_volume(two_channels)
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(ValueError, match="no 'multiscales'"):
        read_volume(tmp_path / "empty.zarr")


def test_plain_files_record_no_spacing_and_round_trip(tmp_path):
    vol = _volume()
    for name in ("v.tif", "v.npy", "v.zarr"):
        write_volume(tmp_path / name, vol)
        np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / name)[:]), vol)
        assert read_spacing(tmp_path / name) is None
    tifffile.imwrite(tmp_path / "c.tif", vol, compression="zlib")  # not memory-mappable
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "c.tif")[:]), vol)


def test_ome_zarr_output_round_trips_with_its_spacing(tmp_path):
    vol = _volume()
    write_volume(tmp_path / "labels.ome.zarr", vol, spacing=(3.0, 0.5, 0.5))
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "labels.ome.zarr")[:]), vol)
    assert read_spacing(tmp_path / "labels.ome.zarr") == (3.0, 0.5, 0.5)
    write_volume(tmp_path / "plain.zarr", vol, spacing=(3.0, 0.5, 0.5))  # plain zarr: no metadata
    assert read_spacing(tmp_path / "plain.zarr") is None
