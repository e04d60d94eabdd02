"""GUI tests of the Measure tab: features on the output layer, the table, CSV export."""

from __future__ import annotations

import csv

import numpy as np

from ._helpers import add_sketch, new_output, show_slice


def two_objects(shape):
    labels = np.zeros(shape, np.int32)
    labels[10:20, 10:30, 10:20] = 3  # 10 x 20 x 10 voxels
    labels[30:34, 40:44, 40:50] = 8  # 4 x 4 x 10 voxels
    return labels


def test_measure_sets_features_table_and_exports_csv(env, tmp_path):
    env.image.scale = (2.0, 1.0, 1.0)
    out = new_output(env, two_objects(env.truth.shape))
    panel = env.widget.measure

    result = panel.measure(block=True)

    assert list(result.table["label"]) == [3, 8]
    np.testing.assert_allclose(result.table["voxel_count"], [2000, 160])
    np.testing.assert_allclose(result.table["volume"], [4000.0, 320.0])  # the image's scale
    assert "mean_intensity" in result.table  # the image layer gave the intensities
    features = out.features
    assert list(features["index"]) == [3, 8] and list(features["label"]) == [3, 8]
    np.testing.assert_allclose(features["volume"], [4000.0, 320.0])
    assert panel.table.shape == (2, len(result.table))
    assert panel.table.column_headers[0] == "label"
    assert [panel.table.data[r, 0] for r in range(2)] == [3, 8]

    path = panel.export_csv(tmp_path / "objects")
    assert path.name == "objects.csv"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["label"]) for r in rows] == [3, 8]
    assert [float(r["volume"]) for r in rows] == [4000.0, 320.0]

    # Double-clicking a row selects the object and moves the viewer to its centroid slice.
    panel.table.native.cellDoubleClicked.emit(1, 0)
    assert out.selected_label == 8
    assert abs(env.viewer.dims.point[0] - 31.5) <= 0.5  # z centroid of label 8 (scale 1)


def test_each_run_refreshes_the_measurements(env, qtbot):
    add_sketch(env, 0, 24, {5: env.truth[24]})
    out = new_output(env)
    show_slice(env.viewer, 0, 24)
    assert env.widget.run(block=True).label_ids == [1]  # the painted 5 -> new id 1
    qtbot.waitUntil(lambda: env.widget.measure.last is not None, timeout=30000)
    qtbot.waitUntil(lambda: not env.widget.measure.is_running, timeout=30000)
    assert list(out.features["index"]) == [1]
    assert out.features["voxel_count"][0] == (out.data == 1).sum()

    env.widget.measure.auto.value = False
    out.data_setitem(tuple(np.array([[0], [0], [0]])), 9)
    assert env.widget.run(block=True).label_ids == [1]  # the same sketch keeps its object's id
    assert not env.widget.measure.is_running
    assert list(out.features["index"]) == [1]  # stale until Measure is pressed
    assert list(env.widget.measure.measure(block=True).table["label"]) == [1, 9]


def test_measure_without_an_output_layer_is_a_message(env, tmp_path):
    assert env.widget.measure.measure(block=True) is None
    assert "no output labels layer" in env.msgs["error"][-1]
    try:
        env.widget.measure.export_csv(tmp_path / "x.csv")
    except ValueError as err:
        assert "nothing measured" in str(err)
    else:
        raise AssertionError("export without a layer must fail")
    assert not (tmp_path / "x.csv").exists()
