"""Per-object measurements: analytic volumes and areas, intensity stats, lazy input, CSV."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import zarr

from napari_propsam.measure import (
    COLUMN_UNITS,
    measure_labels,
    surface_area,
    validate_spacing,
    write_measurements_csv,
)
from napari_propsam.metrics import box_ratio, convex_ratio, inverse_rotational_inertia


def voxelised_ellipsoid(radii, spacing, offset=(0.3, 0.2, 0.1)):
    """Bool ZYX mask of an ellipsoid with physical semi-axes ``radii`` (centre off-grid)."""
    n = [2 * math.ceil(r / s) + 5 for r, s in zip(radii, spacing, strict=True)]
    grids = np.ogrid[tuple(slice(0, k) for k in n)]
    d = sum(
        (((g - (k - 1) / 2 + o) * s) / r) ** 2
        for g, k, s, r, o in zip(grids, n, spacing, radii, offset, strict=True)
    )
    return d < 1


def ellipsoid_area(a, b, c):
    """Knud Thomsen's approximation (relative error below 1.1 %, exact for a sphere)."""
    p = 1.6075
    return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


@pytest.mark.parametrize(
    ("radii", "spacing"),
    [
        ((20, 20, 20), (1, 1, 1)),
        ((15, 15, 15), (1, 1, 1)),
        ((25, 18, 15), (1, 1, 1)),
        ((40, 40, 40), (2, 1, 1)),
        ((20, 20, 20), (1, 0.5, 0.5)),
        ((45, 22, 16), (3, 1, 1)),
    ],
)
def test_volume_and_area_of_analytic_shapes(radii, spacing):
    mask = voxelised_ellipsoid(radii, spacing)
    table = measure_labels(mask.astype(np.uint8), spacing=spacing)
    volume = 4 / 3 * math.pi * math.prod(radii)
    area = ellipsoid_area(*radii)
    assert table["label"].tolist() == [1]
    assert table["volume"][0] == pytest.approx(volume, rel=0.03)
    assert table["surface_area"][0] == pytest.approx(area, rel=0.03)
    # Same object, same physical shape: the equivalent diameter does not care about spacing.
    assert table["equivalent_diameter"][0] == pytest.approx(
        2 * math.prod(radii) ** (1 / 3), rel=0.01
    )


def test_binary_marching_cubes_alone_would_overestimate():
    """The smoothing is what makes the area honest: plain binary MC is about 9 % high."""
    from skimage.measure import marching_cubes, mesh_surface_area

    mask = voxelised_ellipsoid((20, 20, 20), (1, 1, 1))
    verts, faces, _, _ = marching_cubes(np.pad(mask, 1).astype(float), 0.5)
    true_area = 4 * math.pi * 20**2
    assert mesh_surface_area(verts, faces) / true_area > 1.05
    assert surface_area(mask) / true_area == pytest.approx(1.0, abs=0.02)


def test_sphere_sphericity_and_shape_columns():
    mask = voxelised_ellipsoid((18, 18, 18), (1, 1, 1))
    table = measure_labels(mask)  # bool labels count as label 1
    assert table["sphericity"][0] == pytest.approx(1.0, abs=0.03)
    assert table["box_ratio"][0] == pytest.approx(math.pi / 6, abs=0.02)
    assert table["convex_ratio"][0] > 0.97
    assert table["inverse_rotational_inertia"][0] == pytest.approx(1.0, abs=0.01)


def test_elongated_object_is_less_spherical():
    table = measure_labels(voxelised_ellipsoid((40, 8, 8), (1, 1, 1)).astype(np.int32))
    assert table["sphericity"][0] < 0.85


def test_multiple_objects_boxes_and_intensity():
    labels = np.zeros((40, 50, 60), np.uint16)
    labels[2:12, 5:25, 10:40] = 5  # a 10 x 20 x 30 box
    ball = voxelised_ellipsoid((8, 8, 8), (1, 1, 1))
    labels[18 : 18 + ball.shape[0], 25 : 25 + ball.shape[1], 35 : 35 + ball.shape[2]][ball] = 9
    # A concave object (L-shape) sharing the box's bounding box region is kept separate.
    labels[2:4, 30:45, 2:8] = 2
    labels[2:4, 30:34, 8:20] = 2
    rng = np.random.default_rng(0)
    image = rng.normal(10.0, 2.0, labels.shape).astype(np.float32)
    image[labels == 5] += 100.0
    spacing = (2.0, 0.5, 0.25)

    table = measure_labels(labels, image=image, spacing=spacing)

    assert list(table)[0] == "label"
    assert table["label"].tolist() == [2, 5, 9]
    assert {len(v) for v in table.values()} == {3}
    i = 1  # the box
    assert table["voxel_count"][i] == 10 * 20 * 30
    assert table["volume"][i] == pytest.approx(6000 * 2.0 * 0.5 * 0.25)
    bbox = [table[f"bbox_{a}{e}"][i] for e in "01" for a in "zyx"]
    assert bbox == [2, 5, 10, 12, 25, 40]
    assert table["n_slices"][i] == 10
    assert [table[f"extent_{a}"][i] for a in "zyx"] == [20.0, 10.0, 7.5]
    assert [table[f"centroid_{a}"][i] for a in "zyx"] == [6.5, 14.5, 24.5]
    inside = image[labels == 5].astype(np.float64)
    assert table["mean_intensity"][i] == pytest.approx(inside.mean())
    assert table["std_intensity"][i] == pytest.approx(inside.std())
    assert table["mean_intensity"][2] == pytest.approx(10.0, abs=0.3)
    assert table["box_ratio"][i] == 1.0
    for j, lab in enumerate(table["label"]):
        m = labels == lab
        assert table["box_ratio"][j] == pytest.approx(box_ratio(m))
        assert table["convex_ratio"][j] == pytest.approx(convex_ratio(m))
        assert table["inverse_rotational_inertia"][j] == pytest.approx(
            inverse_rotational_inertia(m, spacing)
        )
    assert table["convex_ratio"][0] < 0.8  # the L-shape is concave
    assert table["label"].dtype == np.int64 and table["volume"].dtype == np.float64


def test_lazy_zarr_and_dask_match_numpy_and_large_ids(tmp_path):
    import dask.array as da

    labels = np.zeros((30, 40, 50), np.uint32)
    labels[3:9, 4:30, 5:12] = 70000
    labels[14:29, 20:39, 30:48] = 3_000_000  # above the direct find_objects limit
    labels[0, 0, 0] = 1
    z = zarr.open_array(
        str(tmp_path / "l.zarr"), mode="w", shape=labels.shape, chunks=(8, 16, 16), dtype="u4"
    )
    z[:] = labels
    eager = measure_labels(labels, spacing=(1.5, 1, 1))
    assert eager["label"].tolist() == [1, 70000, 3_000_000]
    assert "mean_intensity" not in eager
    image = np.random.default_rng(1).normal(size=labels.shape)
    with_image = measure_labels(labels, image=image, spacing=(1.5, 1, 1))
    for lazy_labels, lazy_image in (
        (z, None),
        (da.from_array(labels, chunks=(7, 16, 32)), da.from_array(image, chunks=(10, 10, 10))),
    ):
        lazy = measure_labels(lazy_labels, image=lazy_image, spacing=(1.5, 1, 1))
        ref = eager if lazy_image is None else with_image
        assert list(lazy) == list(ref)
        for name in lazy:
            np.testing.assert_allclose(lazy[name], ref[name])


def test_empty_volume_gives_empty_columns(tmp_path):
    table = measure_labels(np.zeros((4, 5, 6), np.uint8), image=np.ones((4, 5, 6)))
    assert set(table) == set(COLUMN_UNITS)
    assert all(len(v) == 0 for v in table.values())
    write_measurements_csv(table, tmp_path / "empty.csv")
    assert (tmp_path / "empty.csv").read_text().strip().split(",") == list(table)


@pytest.mark.parametrize(
    ("spacing", "message"),
    [((1, 1), "3 values"), ((1, 1, 1, 1), "3 values"), ((1, 0, 1), "> 0"), ((1, -2, 1), "> 0")],
)
def test_bad_spacing(spacing, message):
    with pytest.raises(ValueError, match=message):
        measure_labels(np.ones((2, 2, 2), np.uint8), spacing=spacing)
    with pytest.raises(ValueError, match=message):
        validate_spacing(spacing)


def test_bad_inputs():
    with pytest.raises(ValueError, match="3D"):
        measure_labels(np.ones((4, 4), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        measure_labels(np.ones((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        measure_labels(-np.ones((2, 2, 2), np.int16))
    with pytest.raises(ValueError, match="differs"):
        measure_labels(np.ones((2, 2, 2), np.uint8), image=np.ones((2, 2, 3)))


def test_csv_round_trip(tmp_path):
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[6:9, 5:9, 2:3] = 4
    table = measure_labels(labels, image=np.arange(1000.0).reshape(10, 10, 10))
    path = tmp_path / "m.csv"
    write_measurements_csv(table, path)
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["label"]) for r in rows] == [1, 4]
    assert rows[1]["voxel_count"] == "12"  # integers stay integers
    for name, column in table.items():
        np.testing.assert_allclose([float(r[name]) for r in rows], column)
    with pytest.raises(ValueError, match="different lengths"):
        write_measurements_csv({"a": np.zeros(2), "b": np.zeros(3)}, path)
