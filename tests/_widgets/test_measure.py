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
    native = panel.table.native
    assert (native.rowCount(), native.columnCount()) == (2, len(result.table))
    headers = [native.horizontalHeaderItem(c).text() for c in range(native.columnCount())]
    assert headers[0] == "label" and headers == panel.headers
    # units from the layer's scale (napari's units are pixels: the scale's unknown unit)
    assert "volume (units³)" in headers and "surface_area (units²)" in headers
    assert "voxel_count (voxels)" in headers and "sphericity" in headers
    assert [native.item(r, 0).text() for r in range(2)] == ["3", "8"]

    path = panel.export_csv(tmp_path / "objects")
    assert path.name == "objects.csv"
    with path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == headers  # the CSV matches the table: headers and every cell's text
    table_rows = [[native.item(r, c).text() for c in range(len(headers))] for r in range(2)]
    assert rows[1:] == table_rows
    # what is drawn is that text too (magicgui's own delegate would round it)
    from qtpy.QtCore import QLocale, Qt

    shown = [
        native.itemDelegate().displayText(native.item(r, c).data(Qt.ItemDataRole.DisplayRole),
                                          QLocale())
        for r in range(2) for c in range(len(headers))
    ]  # fmt: skip
    assert shown == [t for row in table_rows for t in row]
    assert any(len(t.split(".")[-1]) > 4 for t in shown)  # e.g. a surface area, unrounded
    assert [float(r[headers.index("volume (units³)")]) for r in rows[1:]] == [4000.0, 320.0]

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


def test_cells_keep_full_precision_and_sort_as_numbers(env):
    from napari_propsam._widgets._measure_table import NumericItem, cell_text, header

    assert cell_text(np.float64(44660.75)) == "44660.75" and cell_text(np.int64(44661)) == "44661"
    assert cell_text(np.float64(np.nan)) == "nan"
    assert header("volume", "µm") == "volume (µm³)" and header("score", "µm") == "score"
    assert NumericItem("9", 9.0) < NumericItem("10", 10.0)  # not as text ("10" < "9")
    assert NumericItem("1", 1.0) < NumericItem("nan", float("nan"))  # NaN sorts last


def test_score_and_review_slices_sort_jump_and_review_next(env, qtbot):
    env.widget.measure.auto.value = False
    add_sketch(env, 0, 24, {1: env.truth[24], 2: np.zeros_like(env.truth[24])})
    out = new_output(env)
    show_slice(env.viewer, 0, 24)
    assert env.widget.run(block=True).ok
    # a second object that was not segmented in this session
    out.data[2:5, 2:6, 2:6] = 7
    panel = env.widget.measure
    result = panel.measure(block=True)
    q = env.widget.session.qualities(out)[1]
    assert list(result.table["label"]) == [1, 7]
    assert result.table["score"][0] == q.score and np.isnan(result.table["score"][1])
    assert list(result.table["review slices"]) == [len(q.slices_to_review), -1]
    assert list(out.features["score"])[0] == q.score
    assert list(out.features["review_slices"]) == [len(q.slices_to_review), -1]
    # sortable by score: a click on its header (NaN last either way)
    native = panel.table.native
    col = panel.headers.index("score")
    native.sortItems(col)
    assert [native.item(r, 0).text() for r in range(2)] == ["1", "7"]
    assert q.slices_to_review  # the stand-in's run lists slices to review
    # double-click the review cell: the worst slice of the object
    show_slice(env.viewer, 0, 0)
    native.cellDoubleClicked.emit(0, panel.headers.index("review slices (slices)"))
    assert out.selected_label == 1
    assert env.viewer.dims.current_step[0] == q.slices_to_review[0].index
    first = panel.review_next()
    assert first == (1, q.slices_to_review[0].index)
    assert env.viewer.dims.current_step[0] == first[1] and "Review 1 of" in panel.status.value

def test_review_next_walks_worst_objects_first(env):
    from napari_propsam.labeling import ObjectPrompt
    from napari_propsam.quality import ObjectQuality, ReviewSlice

    out = new_output(env)
    out.data[10:30, 20:40, 20:40] = 1
    out.data[10:30, 45:60, 45:60] = 2
    session = env.widget.session
    good = ObjectQuality(0.9, (ReviewSlice(12, "centroid jump", 3.0),), {})
    bad = ObjectQuality(0.4, (ReviewSlice(20, "vote disagreement", 9.0),
                              ReviewSlice(15, "end cut", 2.0)), {})  # fmt: skip
    session.record(out, ObjectPrompt(0, 15, 1), good)
    session.record(out, ObjectPrompt(0, 15, 2), bad)
    panel = env.widget.measure
    seen = [panel.review_next() for _ in range(4)]
    assert seen == [(2, 20), (2, 15), (1, 12), (2, 20)]  # worst object first, then wraps
    assert out.selected_label == 2 and env.viewer.dims.current_step[0] == 20
