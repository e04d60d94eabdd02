"""GUI tests of the Fine-tune tab: a tiny model trained for a few steps in a worker."""

from __future__ import annotations

import numpy as np

from conftest import TINY
from napari_propsam.registry import resolve_model


def corrected_labels(env):
    return env.viewer.add_labels(env.truth.astype(np.int32), name="corrected")


def test_finetune_adds_the_new_model_to_the_dropdown(env, tmp_path):
    panel = env.widget.finetune
    panel.labels_layer = corrected_labels(env)
    panel.steps.value = 2
    panel.lr.value = 3e-5
    panel.out_dir.value = tmp_path / "mine"
    before = list(env.widget.settings.model.choices)

    result = panel.start(block=True, timeout=300)

    assert result.error is None and not result.cancelled, env.msgs["error"]
    assert set(result.paths) == {"propmask", "box2mask"}
    assert all(p.is_file() and tmp_path / "mine" in p.parents for p in result.paths.values())
    assert result.model_key not in before
    assert env.widget.settings.model.value == result.model_key
    assert env.widget.model_spec == {k: str(p) for k, p in result.paths.items()}
    # Progress reached the end through the loss reports of both networks, two steps each.
    assert [(net, step) for net, step, _ in result.losses] == [
        ("propmask", 1), ("propmask", 2), ("box2mask", 1), ("box2mask", 2)
    ]  # fmt: skip
    assert all(np.isfinite(loss) for *_, loss in result.losses)
    assert panel.progress.value == 1000 and "Done" in panel.status.value
    assert panel.progress is env.widget.controller.progress  # one bar: the dock's footer
    bundle = resolve_model(env.widget.model_spec)  # what Run will use now
    assert bundle.propmask.arch == TINY and bundle.box2mask.arch == TINY
    assert not panel.is_running and panel.button.enabled


def test_finetune_cancel_stops_training_and_adds_nothing(env, tmp_path, qtbot):
    panel = env.widget.finetune
    panel.labels_layer = corrected_labels(env)
    panel.steps.value = 10_000
    panel.box2mask.value = False
    panel.out_dir.value = tmp_path / "cancelled"
    before = list(env.widget.settings.model.choices)
    selected = env.widget.settings.model.value

    assert panel.start() is None and panel.is_running
    assert not panel.button.enabled and panel.cancel_btn.enabled
    assert panel.cancel_btn is env.widget.controller.cancel_button  # one Cancel: the dock's footer
    qtbot.waitUntil(lambda: len(panel.result.losses) >= 3, timeout=60000)
    assert "loss" in panel.status.value and "left" in panel.status.value
    env.widget.controller.cancel_button.native.click()  # the footer's Cancel stops training
    qtbot.waitUntil(lambda: not panel.is_running, timeout=60000)

    result = panel.result
    assert result.cancelled and result.error is None
    assert len(result.losses) < 10_000 and result.model_key is None
    assert list(env.widget.settings.model.choices) == before
    assert env.widget.settings.model.value == selected
    assert panel.status.value.startswith("Cancelled")


def test_finetune_needs_an_annotated_object_and_a_folder(env, tmp_path):
    panel = env.widget.finetune
    panel.labels_layer = env.viewer.add_labels(np.zeros(env.truth.shape, np.int32), name="empty")
    panel.out_dir.value = tmp_path / "x"
    assert panel.start(block=True) is None
    assert "no annotated object" in env.msgs["error"][-1]
    assert not panel.is_running and not (tmp_path / "x").exists()

    panel.labels_layer = corrected_labels(env)
    panel.out_dir.line_edit.value = ""  # the user cleared the field
    assert panel.start(block=True) is None and "choose a folder" in env.msgs["error"][-1]

    panel.labels_layer = env.viewer.add_labels(np.ones((4, 8, 8), np.int32), name="small")
    panel.out_dir.value = tmp_path / "x"
    assert panel.start(block=True) is None and "has shape" in env.msgs["error"][-1]


def labels_with_objects(env, n: int):
    """``n`` separate objects (slabs of the ellipsoid) so some can be held out."""
    data = np.zeros(env.truth.shape, np.int32)
    for i in range(n):
        z0 = 12 + 5 * i
        data[z0 : z0 + 4][env.truth[z0 : z0 + 4]] = i + 1
    return env.viewer.add_labels(data, name="objects")


def test_estimate_time_measures_one_step_and_saves_nothing(env, tmp_path):
    panel = env.widget.finetune
    panel.labels_layer = corrected_labels(env)
    panel.box2mask.value = False
    panel.steps.value = 300
    panel.out_dir.value = tmp_path / "never"
    result = panel.start(block=True, timeout=300, estimate_only=True)
    assert result.error is None and result.paths == {} and result.model_key is None
    per_step, steps = panel.estimate
    assert per_step > 0 and steps == 300
    assert "One step of propmask" in panel.status.value and "300 steps: about" in panel.status.value
    assert not (tmp_path / "never").exists()


def test_time_budget_sets_the_steps_and_best_held_out_weights_are_kept(env, tmp_path):
    panel = env.widget.finetune
    panel.labels_layer = labels_with_objects(env, 5)
    panel.box2mask.value = False
    panel.steps.value = 4  # the upper limit: a budget never trains more than Steps
    panel.budget.value = 1  # minute
    panel.holdout.value = True
    panel.out_dir.value = tmp_path / "budget"
    result = panel.start(block=True, timeout=300)
    assert result.error is None and not result.cancelled, env.msgs["error"]
    per_step, steps = panel.estimate
    assert steps == min(4, int(60 / per_step))
    assert max(step for _, step, _ in result.losses) == steps
    # validated on the held-out object: the best weights are the ones added
    assert result.paths["propmask"].name == "propmask-best.safetensors"
    assert env.widget.model_spec == {"propmask": str(result.paths["propmask"])}
