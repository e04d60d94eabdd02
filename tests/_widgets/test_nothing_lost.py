"""Issue 13, widget items: fresh ids, re-propagation that keeps other objects, hidden outputs,
safe chooser defaults and a dock that keeps its width (headless, real widget calls)."""

from __future__ import annotations

import numpy as np
import torch

from napari_propsam._sample_data import GROUND_TRUTH_NAME
from napari_propsam._widgets import PropSAMWidget
from napari_propsam._widgets._finetune import NO_LABELS
from napari_propsam._widgets._layout import MAX_STATUS_CHARS
from napari_propsam._widgets.widget import NEW_LAYER, NO_PROMPTS

from ._helpers import NothingPredictor, add_sketch, new_output, show_slice


def _blob(shape, center, radius=6):
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, center, strict=True)) < radius**2


def test_a_sketch_never_takes_an_id_the_output_already_holds(env):
    """The 'New sketch layer' paints label 1; the output already holds an object 1."""
    other = _blob(env.truth.shape, (24, 10, 52))
    base = np.where(other, 1, 0).astype(np.int32)
    out = new_output(env, base.copy())
    env.widget._new_sketch_layer()  # the button: a new layer that paints label 1
    sketch = env.widget.prompt_layer
    assert sketch.selected_label == 1
    sketch.data[24][env.truth[24]] = 1
    show_slice(env.viewer, 0, 24)

    result = env.widget.run(block=True)

    assert result.ok and result.label_ids == [2], env.msgs["error"]  # a new id, not the 1 painted
    np.testing.assert_array_equal(out.data == 1, other)  # the first object is untouched
    assert (out.data == 2).sum() > 0.9 * env.truth.sum()
    table = env.widget.measure.measure(block=True).table
    assert list(table["label"]) == [1, 2]  # two objects, two rows


def test_repropagation_never_erases_another_object_under_the_same_id(env):
    """Ids merged by hand: two objects carry 4; re-propagating one keeps the other whole."""
    shape = env.truth.shape
    base = np.zeros(shape, np.int32)
    base[10:23, 20:30, 20:30] = 4  # object A (to be corrected), slices 10..22
    other = _blob(shape, (23, 48, 48), radius=6)  # object B, also 4, on slices 18..28
    base[other] = 4
    base[17, 40:44, 5:9] = 9
    out = new_output(env, base.copy())
    fixed = np.zeros(shape[1:], bool)
    fixed[22:28, 22:28] = True
    out.data[16][:, :35][out.data[16][:, :35] == 4] = 0
    out.data[16][fixed] = 4  # the user repaints A on slice 16
    before = out.data.copy()
    out.selected_label = 4
    env.widget.predictor_override = NothingPredictor()
    env.widget.configure(thickness=3)  # reaches slices 13..19
    show_slice(env.viewer, 0, 16)

    assert env.widget.repropagate(block=True).label_ids == [4], env.msgs["error"]

    # only the corrected object changes: B keeps every voxel
    np.testing.assert_array_equal(out.data[other], before[other])
    assert (out.data[other] == 4).sum() == other.sum()
    a_region = np.zeros(shape, bool)
    a_region[:, :35, :35] = True
    for z in (13, 14, 15, 17, 18, 19):  # A is replaced on the slices the new run reaches
        assert not (out.data[z][a_region[z]] == 4).any()
    np.testing.assert_array_equal(out.data[16][a_region[16]] == 4, fixed[a_region[16]])
    assert (out.data == 9).sum() == 16
    out.undo()
    np.testing.assert_array_equal(out.data, before)


def test_repropagation_refuses_an_id_that_marks_two_objects_on_the_slice(env):
    shape = env.truth.shape
    base = np.zeros(shape, np.int32)
    base[10:23, 20:30, 20:30] = 4
    base[_blob(shape, (16, 48, 48), radius=6)] = 4  # B shares the id and the prompt slice
    out = new_output(env, base.copy())
    out.selected_label = 4
    show_slice(env.viewer, 0, 16)
    assert env.widget.repropagate(block=True) is None
    assert "label 4 marks 2 separate objects" in env.msgs["error"][-1]
    np.testing.assert_array_equal(out.data, base)


def test_a_sketch_painted_in_the_output_itself_targets_that_object(env):
    base = np.zeros(env.truth.shape, np.int32)
    base[24][env.truth[24]] = 6  # the user paints object 6 into the output and runs it
    out = new_output(env, base)
    env.widget.prompt_layer = out
    show_slice(env.viewer, 0, 24)
    assert env.widget.run(block=True).label_ids == [6], env.msgs["error"]
    assert set(np.unique(out.data)) == {0, 6}


def test_a_hidden_output_layer_is_written_and_undone(env):
    out = env.viewer.add_labels(np.zeros(env.truth.shape, np.int32), name="out", visible=False)
    env.widget.output_layer = out
    add_sketch(env, 0, 24, {1: env.truth[24]})
    show_slice(env.viewer, 0, 24)

    result = env.widget.run(block=True)

    assert result.ok and result.label_ids == [1], (result, env.msgs["error"])
    assert (out.data == 1).sum() > 0.9 * env.truth.sum()
    out.visible = True  # napari slices it now and shows what was written
    env.viewer.dims.set_current_step(0, 20)
    assert (np.asarray(out._slice.image.raw) == 1).any()
    out.undo()
    assert not out.data.any()


def test_choosers_never_default_to_ground_truth_or_output(viewer):
    viewer.open_sample("napari-propsam", "glomeruli")
    truth = viewer.layers[1]
    assert "ground truth" in truth.name and truth.name == GROUND_TRUTH_NAME
    widget = PropSAMWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.prompt_layer is None and widget._prompts.value == NO_PROMPTS
    assert widget.finetune.labels_layer is None and widget.finetune.labels.value == NO_LABELS
    assert widget._output.value == NEW_LAYER
    # A first Run without a prompt layer is refused before anything is computed or added.
    n_layers = len(viewer.layers)
    assert widget.run(block=True) is None
    assert "no prompt layer" in widget.controller.status.value and len(viewer.layers) == n_layers
    # An output made by a run is not a default either; a layer made as a prompt is.
    viewer.add_labels(np.zeros(truth.data.shape, np.int32), name="some output")
    assert widget.prompt_layer is None
    widget._new_sketch_layer()
    sketch = widget.prompt_layer
    assert sketch is viewer.layers[-1] and sketch.name == "PropSAM sketch"
    viewer.add_labels(np.zeros(truth.data.shape, np.int32), name="later labels")
    assert widget.prompt_layer is sketch  # a later layer does not steal the choice
    assert widget.finetune.labels_layer is None
    # Fine-tuning without a chosen Labels layer is refused with the reason.
    widget.finetune.out_dir.value = "/tmp/propsam-never-written"
    assert widget.finetune.start(block=True) is None
    assert "choose the Labels layer" in widget.finetune.status.value


def test_a_long_message_or_layer_name_does_not_widen_the_dock(env):
    """The dock keeps its width: its size hints do not grow with text."""
    dock = env.viewer.window._dock_widgets["PropSAM"]
    native = env.widget.native
    width_before = max(native.sizeHint().width(), native.minimumSizeHint().width())
    message = "could not read " + "/very/long/path/" * 80 + "volume.zarr: it is damaged"
    env.widget.not_started(ValueError(message))
    env.viewer.add_labels(np.zeros(env.truth.shape, np.int32), name="a" * 300)
    for part in (native, dock):
        assert part.sizeHint().width() <= max(width_before, 450), part
        assert part.minimumSizeHint().width() <= max(width_before, 450), part
    status = env.widget.controller.status
    assert status.value.endswith("it is damaged")  # the whole text is kept...
    assert len(status.native.text()) == MAX_STATUS_CHARS  # ...the label shows it elided
    assert status.native.toolTip() == status.value and status.native.wordWrap()


def test_a_damaged_resume_state_is_refused_before_fine_tuning(env, tmp_path):
    (tmp_path / "propmask").mkdir()
    (tmp_path / "propmask" / "last.pt").write_bytes(b"")  # a run killed while saving
    panel = env.widget.finetune
    panel.labels_layer = env.viewer.add_labels(env.truth.astype(np.int32), name="corrected")
    panel.out_dir.value = str(tmp_path)
    assert panel.start(block=True) is None
    assert "last.pt" in env.msgs["error"][-1] and "start over" in env.msgs["error"][-1]
    assert not panel.is_running
    torch.save({"model": {}}, tmp_path / "propmask" / "last.pt")
    assert panel.start(block=True) is None and "lacks" in env.msgs["error"][-1]
