"""Reading volumes (tif, npy, plain zarr, OME-Zarr 0.4/0.5) as lazy ZYX arrays; what we write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_propsam.io import is_ome_zarr_path, read_spacing, read_volume, write_volume


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


# --- what we write: valid OME-Zarr (checked by the strict validator) and one plain format ---


def _labels(shape=(4, 600, 600)) -> np.ndarray:
    rng = np.random.default_rng(0)
    labels = np.zeros(shape, np.uint16)
    for i in range(1, 30):  # boxes of distinct ids, so nearest-neighbour levels are checkable
        z, y, x = (int(rng.integers(0, n - 1)) for n in shape)
        labels[z : z + 3, y : y + 40, x : x + 40] = i
    return labels


def _level_paths(group) -> list[str]:
    ms = dict(group.attrs).get("ome", dict(group.attrs))["multiscales"][0]
    return [d["path"] for d in ms["datasets"]]


def test_ome_zarr_output_is_a_valid_ngff_04_label_pyramid_on_zarr_v2(tmp_path):
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v04 import ImageLabel

    labels = _labels()
    path = tmp_path / "labels.ome.zarr"
    write_volume(path, labels, spacing=(3.0, 0.5, 0.5))
    # zarr v2 files only: NGFF 0.4 is defined on zarr v2
    assert (path / ".zgroup").is_file() and not (path / "zarr.json").exists()
    group = zarr.open_group(str(path), mode="r")
    model = ImageLabel.from_zarr(group)  # raises on any NGFF 0.4 violation
    assert isinstance(open_ome_zarr(str(path)), ImageLabel)
    assert model.attributes.image_label.version == "0.4"
    assert _level_paths(group) == ["0", "1", "2"]  # 600 -> 300 -> 150 (<= PYRAMID_MIN_SIZE)
    scales = [
        d.coordinateTransformations[0].scale for d in model.attributes.multiscales[0].datasets
    ]
    # z (3) stays coarser than y at every level, so only y and x are halved
    assert scales == [[3.0, 0.5, 0.5], [3.0, 1.0, 1.0], [3.0, 2.0, 2.0]]
    np.testing.assert_array_equal(group["1"][:], labels[:, ::2, ::2])  # ids copied, not averaged
    np.testing.assert_array_equal(group["2"][:], labels[:, ::4, ::4])
    np.testing.assert_array_equal(np.asarray(read_volume(path)[:]), labels)
    assert read_spacing(path) == (3.0, 0.5, 0.5)


def test_isotropic_pyramid_halves_z_too_and_bool_is_stored_as_uint8(tmp_path):
    path = tmp_path / "mask.ome.zarr"
    mask = _labels((9, 500, 300)) > 0
    write_volume(path, mask)
    group = zarr.open_group(str(path), mode="r")
    assert [group[p].shape for p in _level_paths(group)] == [(9, 500, 300), (5, 250, 150)]
    assert group["0"].dtype == np.uint8
    np.testing.assert_array_equal(group["1"][:], mask[::2, ::2, ::2])


def ngff_image(path: Path, data: np.ndarray, version: str, axes: str = "czyx") -> Path:
    """A valid two-level OME-Zarr image (NGFF 0.4 on zarr v2, or 0.5 on zarr v3)."""
    fmt = 2 if version == "0.4" else 3
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    extra: dict = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if fmt == 2 else {}
    if fmt == 3:
        extra["dimension_names"] = list(axes)
    datasets = []
    for level, step in enumerate((1, 2)):
        arr = data[..., ::step, ::step]
        group.create_array(str(level), shape=arr.shape, dtype=arr.dtype, chunks=arr.shape, **extra)[
            ...
        ] = arr
        scale = [1.0] * (len(axes) - 3) + [2.0, 0.5 * step, 0.5 * step]
        datasets.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    kinds = {"t": "time", "c": "channel"}
    ms = {
        "axes": [
            {
                "name": a,
                "type": kinds.get(a, "space"),
                **({} if a in kinds else {"unit": "micrometer"}),
            }
            for a in axes
        ],
        "datasets": datasets,
    }
    if version == "0.4":
        group.attrs.put({"multiscales": [{"version": "0.4", **ms}]})
    else:
        group.attrs.put({"ome": {"version": "0.5", "multiscales": [ms]}})
    return path


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_inside_an_image_are_valid_listed_and_open_with_it_in_napari(tmp_path, version):
    from napari_ome_zarr._reader import napari_get_reader
    from ome_zarr_models import v04, v05

    models = {"0.4": v04, "0.5": v05}[version]
    image = _volume()
    img = ngff_image(tmp_path / "img.ome.zarr", image[None], version)
    labels = (image % 7).astype(np.uint8)
    out = img / "labels" / "propsam"
    write_volume(out, labels, spacing=(9.0, 9.0, 9.0))  # the image's own scale wins
    group = zarr.open_group(str(img), mode="r")
    parsed = models.Image.from_zarr(group)
    assert parsed.labels.ome_attributes.labels == ["propsam"]
    label = models.ImageLabel.from_zarr(group["labels"]["propsam"])
    assert label.ome_attributes.image_label.source.image == "../../"
    # one level per image level, on the image's grid (NGFF rule), with the image's units
    ms = label.ome_attributes.multiscales[0]
    assert [d.coordinateTransformations[0].scale for d in ms.datasets] == [
        [2.0, 0.5, 0.5],
        [2.0, 1.0, 1.0],
    ]
    assert [a.unit for a in ms.axes] == ["micrometer"] * 3
    np.testing.assert_array_equal(group["labels"]["propsam"]["1"][:], labels[:, ::2, ::2])
    assert is_ome_zarr_path(out) and read_spacing(out) == (2.0, 0.5, 0.5)

    before = sorted(p.name for p in tmp_path.iterdir())
    for opened in (img, out):  # the image, or the labels themselves: both give both layers
        layers = napari_get_reader(str(opened))()
        assert [kind for _, _, kind in layers] == ["image", "labels"]
        assert [d.shape for d in layers[1][0]] == [labels.shape, labels[:, ::2, ::2].shape]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the reader wrote nothing


def test_a_second_label_is_added_to_the_list_and_consolidated_metadata_is_refreshed(tmp_path):
    from ome_zarr_models.v04 import Image

    img = ngff_image(tmp_path / "img.ome.zarr", _volume()[None], "0.4")
    zarr.consolidate_metadata(str(img), zarr_format=2)
    write_volume(img / "labels" / "a", np.ones((6, 10, 12), np.uint8))
    write_volume(img / "labels" / "b", np.ones((6, 10, 12), np.uint8))
    write_volume(img / "labels" / "a", np.full((6, 10, 12), 2, np.uint8))  # rewritten, not twice
    group = zarr.open_group(str(img), mode="r", use_consolidated=True)
    assert Image.from_zarr(group).labels.attributes.labels == ["a", "b"]
    assert int(group["labels"]["a"]["0"][0, 0, 0]) == 2


def test_plain_zarr_output_is_zarr_v2_whatever_zarrs_default(tmp_path):
    vol = _volume()
    with zarr.config.set({"default_zarr_format": 3}):
        write_volume(tmp_path / "v.zarr", vol)
    meta = json.loads((tmp_path / "v.zarr" / ".zarray").read_text())
    assert not (tmp_path / "v.zarr" / "zarr.json").exists()
    assert meta["zarr_format"] == 2 and meta["dimension_separator"] == "/"
    assert meta["compressor"]["id"] == "blosc" and meta["compressor"]["cname"] == "lz4"
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "v.zarr"), mode="r")[:], vol)


def test_ome_zarr_labels_must_be_integers(tmp_path):
    with pytest.raises(ValueError, match="must be integers"):
        write_volume(tmp_path / "f.ome.zarr", np.zeros((2, 3, 4), np.float32))


def test_compressed_tif_falls_back_to_a_plain_read_without_zarr_stores(tmp_path, monkeypatch):
    vol = _volume()
    tifffile.imwrite(tmp_path / "c.tif", vol, compression="zlib")
    real = tifffile.imread

    def no_zarr_store(*args, **kwargs):  # what tifffile does when zarr is older than 3
        if kwargs.get("aszarr"):
            raise ValueError("zarr 3 is required")
        return real(*args, **kwargs)

    monkeypatch.setattr(tifffile, "imread", no_zarr_store)
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "c.tif")), vol)


def test_batch_merge_writes_a_whole_label_pyramid_into_the_image(tmp_path):
    """The batch writer (parts merged under a temporary name, then renamed) gives the same
    valid, listed labels; its parts sidecar in ``labels/`` does not disturb readers."""
    from napari_ome_zarr._reader import napari_get_reader
    from ome_zarr_models.v04 import Image, ImageLabel

    from napari_propsam.api import ObjectROI
    from napari_propsam.batch._store import merge_parts, parts_dir, write_part

    img = ngff_image(tmp_path / "img.ome.zarr", _volume()[None], "0.4")
    out = img / "labels" / "propsam"
    parts = parts_dir(out)
    parts.mkdir(parents=True)
    box = (slice(1, 4), slice(2, 8), slice(3, 9))
    write_part(parts, 5, ObjectROI(box, np.ones((3, 6, 6), bool)), "d", 0.0)
    merge_parts(out, parts, [5], (6, 10, 12))
    group = zarr.open_group(str(img), mode="r")
    assert Image.from_zarr(group).labels.attributes.labels == ["propsam"]
    ImageLabel.from_zarr(group["labels"]["propsam"])
    expected = np.zeros((6, 10, 12), np.uint8)
    expected[box] = 5
    np.testing.assert_array_equal(group["labels"]["propsam"]["0"][:], expected)
    np.testing.assert_array_equal(group["labels"]["propsam"]["1"][:], expected[:, ::2, ::2])
    assert [k for _, _, k in napari_get_reader(str(img))()] == ["image", "labels"]
