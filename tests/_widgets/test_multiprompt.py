"""Several prompts, one object: same-id sketches / boxes across slices, and re-propagation that
keeps the object's earlier prompts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_propsam._widgets import _runner

from ._helpers import NothingPredictor, add_box, new_output, show_slice


def _sketch(env, painted: dict[int, dict[int, np.ndarray]]):
    """A sketch layer with ``{slice: {label: (Y, X) mask}}`` painted."""
    data = np.zeros(env.truth.shape, np.int32)
    for z, masks in painted.items():
        for label, m in masks.items():
            data[z][m] = label
    layer = env.viewer.add_labels(data, name="sketch")
    env.widget.prompt_layer = layer
    return layer


@pytest.fixture
def seen(monkeypatch):
    """The prompts every run hands to the core."""
    calls: list[list] = []
    real = _runner.stream_objects

    def spy(image, prompts, **kwargs):
        calls.append(list(prompts))
        yield from real(image, prompts, **kwargs)

    monkeypatch.setattr(_runner, "stream_objects", spy)
    return calls


def test_same_sketch_id_on_other_slices_is_one_object(env, seen):
    env.widget.predictor_override = NothingPredictor()  # only the prompt slices are written
    env.widget.configure(thickness=2)
    _sketch(
        env,
        {
            16: {1: env.truth[16], 2: np.zeros_like(env.truth[16])},
            30: {1: env.truth[30]},
            24: {2: env.truth[24] & (np.arange(64) < 30)[None, :]},
        },
    )
    out = new_output(env)
    show_slice(env.viewer, 0, 16)
    result = env.widget.run(block=True)
    assert result.ok and len(result.label_ids) == 1  # label 2 is not on the displayed slice
    (prompt,) = seen[-1]
    assert prompt.indices == [16, 30]
    lid = result.label_ids[0]
    np.testing.assert_array_equal(out.data[16] == lid, env.truth[16])
    np.testing.assert_array_equal(out.data[30] == lid, env.truth[30])
    assert not (out.data[24] == lid).any()  # a gap no guide reached (the stand-in finds nothing)


def test_running_again_from_another_slice_reuses_the_object_id(env, seen):
    _sketch(env, {16: {1: env.truth[16]}, 30: {1: env.truth[30]}})
    out = new_output(env)
    show_slice(env.viewer, 0, 16)
    first = env.widget.run(block=True).label_ids
    show_slice(env.viewer, 0, 30)
    second = env.widget.run(block=True).label_ids
    assert first == second and np.unique(out.data).tolist() == [0, first[0]]
    assert seen[-1][0].indices == [16, 30]


def test_boxes_sharing_an_id_feature_are_one_object(env, seen):
    env.widget.predictor_override = NothingPredictor()
    env.widget.configure(thickness=2)
    shapes = add_box(env, 0, 16)
    other = add_box(env, 0, 30)  # a second layer: move its rectangle into the first
    shapes.add_rectangles(other.data[0])
    env.viewer.layers.remove(other)
    env.widget.prompt_layer = shapes
    shapes.features = {"id": [7, 7]}
    out = new_output(env)
    show_slice(env.viewer, 0, 16)
    result = env.widget.run(block=True)
    assert result.ok and len(result.label_ids) == 1
    assert seen[-1][0].indices == [16, 30] and seen[-1][0].box is not None
    lid = result.label_ids[0]
    assert (out.data[16] == lid).any() and (out.data[30] == lid).any()


def test_boxes_without_ids_stay_one_object_per_box(env, seen):
    shapes = add_box(env, 0, 16)
    other = add_box(env, 0, 30)
    shapes.add_rectangles(other.data[0])
    env.viewer.layers.remove(other)
    env.widget.prompt_layer = shapes
    new_output(env)
    show_slice(env.viewer, 0, 16)
    assert len(env.widget.run(block=True).label_ids) == 1
    assert seen[-1][0].indices == [16] and not seen[-1][0].more


def test_two_boxes_with_one_id_on_one_slice_are_refused(env):
    shapes = add_box(env, 0, 16)
    shapes.add_rectangles(shapes.data[0] + np.array([0, 1, 1]))
    shapes.features = {"id": [3, 3]}
    new_output(env)
    show_slice(env.viewer, 0, 16)
    assert env.widget.run(block=True) is None
    assert any("two rectangles with id 3" in m for m in env.msgs["error"])


def test_repropagate_adds_the_corrected_slice_to_the_earlier_prompts(env, seen):
    _sketch(env, {16: {1: env.truth[16]}})
    out = new_output(env)
    show_slice(env.viewer, 0, 16)
    (lid,) = env.widget.run(block=True).label_ids
    assert seen[-1][0].indices == [16]
    fixed = env.truth[30] & (np.arange(64) < 32)[:, None]
    out.data[30][out.data[30] == lid] = 0
    out.data[30][fixed] = lid  # the user repaints slice 30
    out.selected_label = lid
    show_slice(env.viewer, 0, 30)
    env.widget.predictor_override = NothingPredictor()
    env.widget.configure(thickness=2)
    assert env.widget.repropagate(block=True).label_ids == [lid]
    (prompt,) = seen[-1]
    assert prompt.indices == [16, 30] and prompt.whole_slice
    np.testing.assert_array_equal(prompt.slice_prompts[0].mask, env.truth[16])
    np.testing.assert_array_equal(out.data[30] == lid, fixed)
    np.testing.assert_array_equal(out.data[16] == lid, env.truth[16])  # the earlier prompt kept
    # the session now knows both prompts: a further correction keeps both
    assert env.widget.session.get(out, lid).prompt_slices == (16, 30)


def test_repropagate_of_an_object_from_elsewhere_starts_from_this_slice(env, seen):
    base = np.zeros(env.truth.shape, np.int32)
    base[env.truth] = 5
    out = new_output(env, base)
    out.selected_label = 5
    show_slice(env.viewer, 0, 20)
    assert env.widget.repropagate(block=True).label_ids == [5]
    assert seen[-1][0].indices == [20]

