"""GUI tests of the PropSAM dock widget (headless: QT_QPA_PLATFORM=offscreen).

A deterministic PropMask stand-in (``ThresholdPredictor``) and a tiny Box2Mask that keeps the
whole box make results exact on bright ellipsoids, so these tests check the widget, not a model.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import napari_propsam._widgets.widget as widget_module
from conftest import ObjectPredictor, dice, ellipsoid_volume, make_tiny_bundle
from napari_propsam._widgets import PropSAMWidget, _notify, _settings
from napari_propsam.registry import ModelInfo

from ._helpers import (
    CENTER,
    NothingPredictor,
    SlowPredictor,
    add_box,
    add_sketch,
    new_output,
    show_slice,
)


@pytest.mark.parametrize("kind,axis", [("box", 0), ("sketch", 0), ("box", 2), ("sketch", 1)])
def test_run_from_a_box_or_a_sketch_on_any_axis(env, qtbot, kind, axis):
    index = CENTER[axis]
    if kind == "box":
        if axis == 0:  # with a physical scale and offset: world -> data conversion
            env.image.scale, env.image.translate = (2.0, 1.0, 1.0), (5.0, 0.0, 0.0)
        add_box(env, axis, index, scale=axis == 0)
        # The whole box guides (background included): a stand-in that keeps only the object.
        env.widget.predictor_override = ObjectPredictor()
        expected_id = 1
    else:
        add_sketch(env, axis, index, {5: env.truth.take(index, axis=axis)})
        expected_id = 1  # a new id in the output: the painted 5 only groups the prompt
    show_slice(env.viewer, axis, index)
    env.widget.run()
    assert env.widget.is_running
    qtbot.waitUntil(lambda: not env.widget.is_running, timeout=30000)
    assert env.msgs["error"] == []
    out = env.widget.output_layer
    assert out is not None and out.data.shape == env.truth.shape
    np.testing.assert_allclose(out.scale, env.image.scale)
    np.testing.assert_allclose(out.translate, env.image.translate)
    assert set(np.unique(out.data)) == {0, expected_id}
    assert dice(out.data == expected_id, env.truth) > 0.9
    assert env.widget.last_result.label_ids == [expected_id]
    # Running the same box or sketch again replaces its object under the same id.
    before = out.data.copy()
    assert env.widget.run(block=True).label_ids == [expected_id]
    np.testing.assert_array_equal(out.data, before)


def test_streaming_writes_before_the_worker_is_done(env, qtbot):
    pred = env.widget.predictor_override = SlowPredictor(delay=0.03)
    add_sketch(env, 0, 24, {1: env.truth[24]})
    out = new_output(env)
    writes: list[float] = []
    original = out.data_setitem

    def recording(indices, value, refresh=True):
        writes.append(time.monotonic())
        return original(indices, value, refresh)

    out.data_setitem = recording
    show_slice(env.viewer, 0, 24)
    env.widget.configure(thickness=3)  # several rounds, so several forward passes
    env.widget.run()
    qtbot.waitUntil(lambda: not env.widget.is_running, timeout=30000)
    assert len(pred.times) >= 4 and len(writes) >= 4
    assert writes[0] < pred.times[-1]  # the layer changed while the worker still predicted
    assert dice(out.data == 1, env.truth) > 0.9


def test_cancel_leaves_the_layer_exactly_as_before(env, qtbot):
    pred = env.widget.predictor_override = SlowPredictor(delay=0.1)
    add_sketch(env, 0, 24, {1: env.truth[24]})
    base = np.zeros(env.truth.shape, np.int32)
    base[20:28, 28:36, 20:30] = 7
    out = new_output(env, base.copy())
    n_history = len(out._undo_history)
    env.widget.configure(thickness=2)
    show_slice(env.viewer, 0, 24)
    env.widget.run()
    qtbot.waitUntil(lambda: (out.data == 8).any(), timeout=30000)  # 8: a new id above 7
    calls_at_cancel = len(pred.times)
    env.widget.cancel()
    np.testing.assert_array_equal(out.data, base)
    qtbot.waitUntil(lambda: not env.widget.is_running, timeout=30000)
    np.testing.assert_array_equal(out.data, base)
    assert len(pred.times) - calls_at_cancel <= 1  # stopped within one forward pass
    assert env.widget.last_result.cancelled and env.widget.last_result.label_ids == []
    assert len(out._undo_history) == n_history


def two_blobs():
    shape = (32, 48, 64)
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    blobs = []
    for c in ((16, 24, 16), (16, 24, 46)):
        d = sum(((g - ci) / 9.0) ** 2 for g, ci in zip(grids, c, strict=True))
        blobs.append(d < 1)
    rng = np.random.default_rng(1)
    image = ((blobs[0] | blobs[1]) * 100.0 + rng.normal(0, 5, shape)).astype(np.float32)
    return image, blobs


def test_one_undo_per_object(env, qtbot):
    image, (a, b) = two_blobs()
    env.image.data = image
    env.truth = a | b
    add_sketch(env, 0, 16, {2: a[16], 4: b[16]})
    out = new_output(env)
    n_history = len(out._undo_history)
    show_slice(env.viewer, 0, 16)
    result = env.widget.run(block=True)
    assert result.label_ids == [1, 2] and result.ok  # painted 2 and 4 -> new ids 1 and 2
    assert dice(out.data == 1, a) > 0.9 and dice(out.data == 2, b) > 0.9
    assert len(out._undo_history) == n_history + 2
    out.undo()
    assert not (out.data == 2).any() and dice(out.data == 1, a) > 0.9
    out.undo()
    assert not out.data.any()
    out.redo()
    out.redo()
    assert dice(out.data == 2, b) > 0.9


@pytest.mark.parametrize("overwrite", [False, True])
def test_other_labels_are_preserved_unless_overwrite(env, overwrite):
    base = np.zeros(env.truth.shape, np.int32)
    base[18:30, 26:38, 24:46] = 7  # overlaps the object and sticks out of it
    out = new_output(env, base.copy())
    add_sketch(env, 0, 13, {5: env.truth[13]})  # prompt slice away from label 7
    env.widget.configure(overwrite=overwrite)
    show_slice(env.viewer, 0, 13)
    assert env.widget.run(block=True).label_ids == [8]  # a new id above the output's 7
    sevens = base == 7
    if overwrite:
        assert np.mean(out.data[sevens & env.truth] == 8) > 0.95
        assert np.mean(out.data[sevens & ~env.truth] == 7) > 0.95
        assert np.isin(out.data[sevens], [8, 7]).all()  # taken by the object or left alone
        assert dice(out.data == 8, env.truth) > 0.9
    else:
        assert (out.data[sevens] == 7).all()
        assert dice(out.data == 8, env.truth & ~sevens) > 0.9


def test_a_second_run_while_running_is_refused(env, qtbot):
    pred = env.widget.predictor_override = SlowPredictor(delay=0.05)
    add_sketch(env, 0, 24, {3: env.truth[24]})
    out = new_output(env)
    show_slice(env.viewer, 0, 24)
    env.widget.run()
    run = env.widget.controller.current
    assert env.widget.run() is None
    env.widget._on_run_key(env.viewer)  # the shortcut goes through the same path
    assert env.widget.controller.current is run
    assert sum("already running" in m for m in env.msgs["info"]) == 2
    qtbot.waitUntil(lambda: not env.widget.is_running, timeout=30000)
    assert env.widget.last_result.label_ids == [1]
    assert len(out._undo_history) == 1 and dice(out.data == 1, env.truth) > 0.9
    assert pred.calls  # and the widget accepts a new run afterwards
    assert env.widget.run(block=True).label_ids == [1]


def test_shortcut_is_bound_on_the_viewer(env):
    from napari.utils.key_bindings import KeyBinding

    key = KeyBinding.from_str(widget_module.RUN_KEY)
    assert env.viewer.keymap[key] == env.widget._on_run_key


def test_errors_become_notifications_and_change_nothing(viewer, monkeypatch):
    widget = PropSAMWidget(viewer)
    errors: list[str] = []
    monkeypatch.setattr(_notify, "show_error", errors.append)

    assert widget.run() is None and "no image layer" in errors[-1]
    flat = viewer.add_image(np.zeros((32, 32), np.float32), name="flat")
    widget.image_layer = flat
    assert widget.run() is None and "3D" in errors[-1]

    image, truth = ellipsoid_volume(shape=(16, 24, 24), center=(8, 12, 12), radii=(5, 6, 6))
    widget.image_layer = viewer.add_image(image, name="vol")
    viewer.dims.set_current_step(0, 8)
    shapes = viewer.add_shapes(ndim=3, name="empty boxes")
    widget.prompt_layer = shapes
    assert widget.run() is None and "no rectangle" in errors[-1]
    sketch = viewer.add_labels(np.zeros(image.shape, np.int32), name="empty sketch")
    widget.prompt_layer = sketch
    assert widget.run() is None and "nothing painted" in errors[-1]
    viewer.dims.ndisplay = 3
    assert widget.run() is None and "2D view" in errors[-1]
    viewer.dims.ndisplay = 2
    # Nothing was created or written by the failed attempts.
    assert [layer.name for layer in viewer.layers] == ["flat", "vol", "empty boxes", "empty sketch"]
    assert not sketch.data.any()


def test_a_missing_or_bad_model_is_a_clear_error(env, tmp_path, monkeypatch):
    add_sketch(env, 0, 24, {1: env.truth[24]})
    base = np.zeros(env.truth.shape, np.int32)
    base[0, 0, 0] = 9
    out = new_output(env, base.copy())
    show_slice(env.viewer, 0, 24)
    env.widget.predictor_override = None
    with pytest.raises(FileNotFoundError):
        env.widget.set_model(tmp_path / "missing.pth")

    missing = ModelInfo("lite", "bundled", tmp_path / "a.safetensors", None, False)
    monkeypatch.setattr(_settings, "list_models", lambda: [missing])
    env.widget.set_model(None)
    assert env.widget.run() is None and "not installed" in env.msgs["error"][-1]

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    key = env.widget.set_model(bad)
    assert key == "bad.pth" and key in env.widget.settings.model.choices
    result = env.widget.run(block=True)
    assert result.error and env.msgs["error"][-1].startswith("PropSAM:")
    np.testing.assert_array_equal(out.data, base)


def test_a_worker_error_rolls_the_object_back(env):
    env.widget.predictor_override = SlowPredictor(delay=0.0, fail_after=3)
    add_sketch(env, 0, 24, {1: env.truth[24]})
    base = np.zeros(env.truth.shape, np.int32)
    base[30:40, 0:5, 0:5] = 2
    out = new_output(env, base.copy())
    env.widget.configure(thickness=2)
    show_slice(env.viewer, 0, 24)
    result = env.widget.run(block=True)
    assert "boom" in result.error and "boom" in env.msgs["error"][-1]
    np.testing.assert_array_equal(out.data, base)
    assert not env.widget.is_running


def test_repropagate_from_this_slice_replaces_only_reached_slices(env):
    base = np.zeros(env.truth.shape, np.int32)
    base[10:23, 20:30, 20:30] = 4  # a (wrong) object 4 on slices 10..22
    base[17, 40:44, 40:44] = 9  # another object on a reached slice
    out = new_output(env, base.copy())
    fixed = np.zeros(env.truth.shape[1:], bool)
    fixed[22:28, 22:28] = True
    out.data[16][out.data[16] == 4] = 0
    out.data[16][fixed] = 4  # the user repaints the object on slice 16
    before = out.data.copy()
    out.selected_label = 4
    env.widget.predictor_override = NothingPredictor()
    env.widget.configure(thickness=3)  # reaches slices 13..19
    show_slice(env.viewer, 0, 16)
    n_history = len(out._undo_history)
    assert env.widget.repropagate(block=True).label_ids == [4]
    np.testing.assert_array_equal(out.data[16] == 4, fixed)
    for z in (13, 14, 15, 17, 18, 19):
        assert not (out.data[z] == 4).any()
    np.testing.assert_array_equal(out.data[:13], before[:13])
    np.testing.assert_array_equal(out.data[20:], before[20:])
    assert (out.data == 9).sum() == 16
    assert len(out._undo_history) == n_history + 1
    out.undo()
    np.testing.assert_array_equal(out.data, before)


def test_repropagate_needs_the_label_on_this_slice(env):
    out = new_output(env)
    out.selected_label = 3
    show_slice(env.viewer, 0, 5)
    assert env.widget.repropagate() is None and "label 3 is not painted" in env.msgs["error"][-1]


def test_set_model_accepts_every_model_spec(env, tmp_path):
    bundle = make_tiny_bundle()
    key = env.widget.set_model(bundle)
    assert env.widget.model_spec is bundle and env.widget.settings.model.value == key
    path = tmp_path / "propmask.safetensors"
    path.write_bytes(b"x")
    assert env.widget.set_model(str(path)) == "propmask.safetensors"
    assert env.widget.model_spec == str(path.resolve())
    assert env.widget.set_model("lite") in env.widget.settings.model.choices
    with pytest.raises(ValueError):
        (tmp_path / "notes.txt").write_text("x")
        env.widget.set_model(tmp_path / "notes.txt")


def test_the_plugin_menu_opens_the_widget_and_the_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-propsam", "glomeruli")
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Labels"]
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-propsam", "PropSAM")
    assert isinstance(widget, PropSAMWidget) and widget.viewer is viewer
    assert widget.image_layer is viewer.layers[0]


def test_configure_maps_onto_the_engine_options(env):
    env.widget.configure(device="cpu", thickness=7, min_area=12, crop_ratio=2.0, overwrite=True)
    assert env.widget.options() == {
        "thickness": 7.0,
        "min_area": 12.0,
        "crop_ratio": 2.0,
        "intensity": "percentile",
        "stop_rule": "symmetric",
    }
    assert env.widget.settings.device.value == "cpu" and env.widget.settings.overwrite.value is True
    with pytest.raises(ValueError):
        env.widget.configure(device="tpu")
    with pytest.raises(ValueError):
        env.widget.configure(crop_ratio=0.5)
    assert env.widget.options()["crop_ratio"] == 2.0


def test_console_recipe_from_the_docs(env):
    """docs/napari.md: propagate + ObjectEdit + data_setitem in block_history = one undo step."""
    import napari_propsam as ps
    from napari_propsam.labeling import ObjectEdit

    out = new_output(env)
    sketch = env.truth[24]
    edit = ObjectEdit(out.data.shape, label_id=7, overwrite=False)
    with out.block_history():
        for update in ps.propagate(
            env.image.data,
            slice_index=24,
            mask=sketch,
            spacing=env.image.scale,
            predictor=env.widget.predictor_override,
        ):
            change = edit.change(out.data, update)
            if change is not None:
                out.data_setitem(change.indices, change.values)
    assert dice(out.data == 7, env.truth) > 0.9
    assert env.viewer.dims.not_displayed == (0,)
    out.undo()
    assert not out.data.any()


def test_a_sketch_smaller_than_min_area_is_reported_as_a_warning(env, qtbot):
    small = np.zeros(env.truth.shape[1:], bool)
    small[30:36, 28:34] = True  # 36 px < Min area 100
    other = np.zeros_like(small)
    other[5:9, 5:9] = True  # 16 px: a second small object, a second message
    add_sketch(env, 0, CENTER[0], {3: small, 4: other})
    show_slice(env.viewer, 0, CENTER[0])

    result = env.widget.run(block=True)
    qtbot.waitUntil(lambda: bool(env.msgs["warning"]), timeout=5000)

    assert result.ok, env.msgs["error"]
    assert len(env.msgs["warning"]) == 1  # one warning per run, not one per object
    assert "not more than min_area=100" in env.msgs["warning"][0]
    assert "Advanced > Min area" in env.msgs["warning"][0]
