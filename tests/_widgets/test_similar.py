"""GUI tests of Find similar: objects stream into the output; the whole run is ONE undo step."""

from __future__ import annotations

import numpy as np

from conftest import ThresholdPredictor, dice

from ._helpers import SlowPredictor, add_sketch, new_output, show_slice

SHAPE = (20, 96, 96)
# (z, y, x, radius): four balls across slice 10 and one that only exists on slices 1..5.
BALLS = [(10, 20, 20, 6), (10, 20, 70, 6), (10, 70, 25, 7), (10, 72, 72, 5), (3, 48, 48, 5)]


def balls_volume(noise: float = 4.0, seed: int = 0):
    """``(image float32, labels int32)``: bright balls (100) in noisy background (0)."""
    grids = np.ogrid[tuple(slice(0, s) for s in SHAPE)]
    labels = np.zeros(SHAPE, np.int32)
    for i, (z, y, x, r) in enumerate(BALLS, start=1):
        d = (grids[0] - z) ** 2 + (grids[1] - y) ** 2 + (grids[2] - x) ** 2
        labels[d <= r * r] = i
    rng = np.random.default_rng(seed)
    image = ((labels > 0) * 100.0 + rng.normal(0, noise, SHAPE)).astype(np.float32)
    return image, labels


def setup_scene(env, predictor):
    image, truth = balls_volume()
    env.image.data = image
    env.truth = truth > 0  # the helpers size prompt layers by it
    env.widget.predictor_override = predictor
    add_sketch(env, 0, 10, {1: truth[10] == 1})  # one painted example: ball 1
    base = np.zeros(SHAPE, np.int32)
    base[0:2, 0:3, 90:93] = 3  # an object made earlier, away from every ball
    out = new_output(env, base.copy())
    env.widget.configure(thickness=3, min_area=5)
    show_slice(env.viewer, 0, 10)
    return truth, base, out


def test_find_similar_segments_every_ball_as_one_undo_step(env):
    truth, base, out = setup_scene(env, ThresholdPredictor())
    n_history = len(out._undo_history)

    result = env.widget.similar.start(block=True)

    assert result.ok, (result, env.msgs["error"])
    assert result.prompt_ids == [4, 5, 6, 7]  # after the output's highest id; example first
    assert result.label_ids == [4, 5, 6, 7]
    for label_id in result.label_ids:
        truth_id = int(np.bincount(truth[out.data == label_id]).argmax())
        assert truth_id in (1, 2, 3, 4)  # the balls across slice 10, not the one off it
        assert dice(out.data == label_id, truth == truth_id) > 0.9
    assert (out.data[truth == 1] == 4).mean() > 0.95  # the example is the first object
    assert (out.data == 3).sum() == (base == 3).sum()  # the earlier object is kept
    assert len(out._undo_history) == n_history + 1
    done = out.data.copy()
    out.undo()
    np.testing.assert_array_equal(out.data, base)
    out.redo()
    np.testing.assert_array_equal(out.data, done)
    assert "Done: 4 object(s)" in env.widget.controller.status.value


def test_cancel_keeps_finished_objects_in_the_one_step(env, qtbot):
    # Each forward pass sleeps long enough that the remaining objects take seconds: a loaded
    # machine that is slow to run the main thread's poll must not see all four finish before
    # the cancel lands (it did with 0.05 s).
    truth, base, out = setup_scene(env, SlowPredictor(delay=0.25))
    n_history = len(out._undo_history)

    env.widget.similar.start()
    assert env.widget.is_running and not env.widget.similar.button.enabled
    assert env.widget.run() is None  # runs never interleave
    assert "already running" in env.msgs["info"][-1]
    run = env.widget.controller.current
    qtbot.waitUntil(lambda: len(run.result.label_ids) >= 1, timeout=60000)
    env.widget.cancel()
    qtbot.waitUntil(lambda: not env.widget.is_running, timeout=60000)

    result = env.widget.last_result
    assert result.cancelled and 1 <= len(result.label_ids) < 4
    kept = set(result.label_ids)
    assert set(np.unique(out.data)) == {0, 3} | kept  # the interrupted object is gone
    for label_id in kept:
        truth_id = int(np.bincount(truth[out.data == label_id]).argmax())
        assert dice(out.data == label_id, truth == truth_id) > 0.9
    assert len(out._undo_history) == n_history + 1
    out.undo()
    np.testing.assert_array_equal(out.data, base)


def test_find_similar_needs_an_example_on_this_slice(env):
    _truth, base, out = setup_scene(env, ThresholdPredictor())
    show_slice(env.viewer, 0, 4)
    assert env.widget.similar.start(block=True) is None
    assert "nothing painted on slice 4" in env.msgs["error"][-1]
    np.testing.assert_array_equal(out.data, base)
    assert not env.widget.is_running
