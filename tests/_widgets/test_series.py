"""GUI tests of the 2D series mode: painted images carried to every image, as one undo step."""

from __future__ import annotations

import numpy as np

from conftest import ThresholdPredictor, dice

from ._helpers import new_output, show_slice

N, H, W = 6, 48, 64


def discs_series(seed: int = 0):
    """Six images with two bright discs each that wander a little from image to image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:H, :W]
    truth = np.zeros((N, H, W), np.int32)
    for i in range(N):
        for label, (cy, cx, r) in ((4, (16, 16, 7)), (7, (30, 46, 6))):
            dy, dx = (i % 3) - 1, (i % 2)
            truth[i][(yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= r * r] = label
    image = ((truth > 0) * 100.0 + rng.normal(0, 4, truth.shape)).astype(np.float32)
    return image, truth


def test_series_run_carries_the_painted_image_to_every_image(env):
    image, truth = discs_series()
    env.image.data = image
    env.widget.predictor_override = ThresholdPredictor(0.0)
    sketch_data = np.zeros(truth.shape, np.int32)
    sketch_data[2] = truth[2]  # both objects painted on image 2 only
    env.widget.prompt_layer = env.viewer.add_labels(sketch_data, name="sketch")
    base = np.zeros(truth.shape, np.int32)
    base[5, 44:48, 0:4] = 9  # something made earlier, away from the discs
    out = new_output(env, base.copy())
    env.widget.series.enabled.value = True
    show_slice(env.viewer, 0, 0)  # the displayed image does not matter in series mode
    n_history = len(out._undo_history)

    result = env.widget.run(block=True)

    # Each painted object gets a new id above the output's 9 (painted ids only group prompts).
    assert result.ok and result.label_ids == [10, 11], (result, env.msgs["error"])
    for i in range(N):
        for painted, label in ((4, 10), (7, 11)):
            assert dice(out.data[i] == label, truth[i] == painted) > 0.9, (i, label)
    assert (out.data == 9).sum() == 16
    # Running the same sketch again replaces its objects under the same ids.
    assert env.widget.run(block=True).label_ids == [10, 11]
    assert set(np.unique(out.data)) == {0, 9, 10, 11}
    assert len(out._undo_history) == n_history + 1
    out.undo()
    np.testing.assert_array_equal(out.data, base)


def test_series_mode_needs_a_painted_labels_layer(env):
    image, truth = discs_series()
    env.image.data = image
    env.widget.series.enabled.value = True
    env.widget.prompt_layer = env.viewer.add_shapes(ndim=3, name="boxes")
    show_slice(env.viewer, 0, 0)
    assert env.widget.run(block=True) is None and "painted annotations" in env.msgs["error"][-1]
    env.widget.prompt_layer = env.viewer.add_labels(np.zeros(truth.shape, np.int32), name="s")
    assert env.widget.run(block=True) is None and "nothing painted" in env.msgs["error"][-1]
    assert env.widget.output_layer is None  # nothing was created
