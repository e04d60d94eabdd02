"""The run controller on its own: handlers per update type, streaming, cancel, rollback, errors,
and the jobs (measuring, fine-tuning) that share its footer."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from napari_propsam._widgets import _notify
from napari_propsam._widgets._controller import RunController
from napari_propsam._widgets._runner import RunFailed, RunState
from napari_propsam._widgets._stream import register_object_handlers
from napari_propsam.labeling import ObjectFinished, ObjectPrompt, ObjectStarted, ObjectUpdate
from napari_propsam.propagation import SliceUpdate

from ._helpers import wait_idle

SHAPE = (10, 16, 16)


@pytest.fixture
def msgs(monkeypatch):
    out: dict[str, list[str]] = {"error": [], "info": [], "warning": []}
    monkeypatch.setattr(_notify, "show_error", out["error"].append)
    monkeypatch.setattr(_notify, "show_info", out["info"].append)
    monkeypatch.setattr(_notify, "show_warning", out["warning"].append)
    return out


@pytest.fixture
def scene(viewer, msgs):
    """A controller with the object handlers, an output layer holding label 3, and what the
    handlers and callbacks reported."""
    base = np.zeros(SHAPE, np.int32)
    base[:, :3, :3] = 3
    out = viewer.add_labels(base.copy(), name="out")
    c = RunController("ready")
    done: list[tuple[int, int]] = []
    register_object_handlers(c, lambda run, pos: done.append((pos, run.prompts[pos].label_id)))
    busy: list[bool] = []
    finished: list = []
    c.busy_callbacks.append(busy.append)
    c.finished_callbacks.append(finished.append)
    yield c, out, base, done, busy, finished
    wait_idle(c)  # a failed test must not leave a worker writing into the next one


def _prompt(label_id: int, index: int = 5) -> ObjectPrompt:
    mask = np.zeros(SHAPE[1:], bool)
    mask[6:10, 6:10] = True
    return ObjectPrompt(axis=0, index=index, label_id=label_id, mask=mask, name=f"label {label_id}")


def _update(position: int, index: int, progress: float, final: bool = False) -> ObjectUpdate:
    mask = np.ones((4, 4), bool)
    return ObjectUpdate(position, SliceUpdate(0, index, (6, 6), mask, progress, final))


def _object(position: int, prompt: ObjectPrompt, slices=range(3, 8)):
    yield ObjectStarted(position, 1, prompt)
    n = len(slices)
    for k, index in enumerate(slices):
        yield _update(position, index, (k + 1) / n)
    for index in slices:
        yield _update(position, index, 1.0, final=True)
    yield ObjectFinished(position)


def _run(out, prompts, one_step: bool = False) -> RunState:
    return RunState(out, list(prompts), False, {}, threading.Event(), one_step=one_step)


def test_each_update_type_goes_to_its_handler(qapp, caplog):
    @dataclass
    class Base:
        n: int

    class Derived(Base):
        pass

    c = RunController()
    seen: list[tuple[str, int]] = []
    c.on(Base, lambda run, item: seen.append(("base", item.n)))
    c.on(int, lambda run, item: seen.append(("int", item)))
    with pytest.raises(ValueError, match="registered already"):
        c.on(int, lambda run, item: None)  # two panels never share an update type
    assert c.handler_for(RunFailed) is not None  # the controller handles failures itself
    assert c.handler_for(str) is None

    run = None
    c.dispatch(run, Derived(2))  # a subclass reaches its base's handler
    c.dispatch(run, 7)
    with caplog.at_level(logging.WARNING):
        c.dispatch(run, "no one handles this")
    assert seen == [("base", 2), ("int", 7)]
    assert "no handler for str" in caplog.text


def test_a_run_streams_into_the_layer_as_one_undo_step(scene, msgs):
    c, out, base, done, busy, finished = scene
    prompt = _prompt(5)
    run = _run(out, [prompt])

    result = c.launch(run, _object, 0, prompt, block=True, timeout=30, busy_text="go")

    assert result.ok and result.label_ids == [5]
    assert done == [(0, 5)] and finished == [out] and busy == [True, False]
    assert (out.data == 5).sum() == 5 * 16 and (out.data == 3).sum() == (base == 3).sum()
    assert c.current is None and c.last_result is result
    assert c.status.value == "Done: 1 object(s) 5 in 'out'."
    assert c.progress.value == 1000 and c.progress.native.maximum() == 1000
    assert not c.cancel_button.enabled
    assert msgs["info"][-1].endswith("Done: 1 object(s) 5 in 'out'.")
    assert len(out._undo_history) == 1
    out.undo()
    np.testing.assert_array_equal(out.data, base)


def _endless(prompt: ObjectPrompt, cancel: threading.Event):
    """One object that keeps sending updates until it is cancelled."""
    yield ObjectStarted(0, 1, prompt)
    k = 0
    while not cancel.is_set():
        yield _update(0, k % SHAPE[0], 0.5)
        k += 1
        time.sleep(0.01)


def test_cancel_rolls_the_object_back_and_leaves_no_undo_step(scene, qtbot, msgs):
    c, out, base, done, busy, finished = scene
    prompt = _prompt(5)
    run = _run(out, [prompt])
    c.launch(run, _endless, prompt, run.cancel_event, block=False, timeout=30, busy_text="")
    assert c.is_running and c.cancel_button.enabled
    assert c.refuse_if_running() and "already running" in msgs["info"][-1]
    qtbot.waitUntil(lambda: (out.data == 5).sum() >= 3 * 16, timeout=20000)

    c.cancel_button.native.click()  # the footer's Cancel
    assert c.status.value == "Cancelling…" and run.cancel_event.is_set()
    np.testing.assert_array_equal(out.data, base)  # rolled back at once, not when it ends
    qtbot.waitUntil(lambda: not c.is_running, timeout=20000)

    assert run.result.cancelled and run.result.label_ids == [] and done == []
    assert c.status.value == "Cancelled (0 object(s) kept)."
    assert finished == [] and busy == [True, False] and not c.cancel_button.enabled
    np.testing.assert_array_equal(out.data, base)
    assert len(out._undo_history) == 0


def _fails_midway(prompts, error):
    yield from _object(0, prompts[0])
    yield ObjectStarted(1, 2, prompts[1])
    yield _update(1, 2, 0.3)
    yield _update(1, 3, 0.6)
    if isinstance(error, Exception):
        raise error
    yield error


@pytest.mark.parametrize("how", ["value", "raised", "handler"])
def test_a_failure_rolls_back_the_interrupted_object_only(scene, msgs, how):
    c, out, base, done, busy, finished = scene
    prompts = [_prompt(5), _prompt(6, index=2)]
    run = _run(out, prompts)
    error: object = RunFailed("boom: the GPU fell over")
    if how == "raised":  # superqt delivers it on the worker's errored signal
        error = ValueError("boom: the GPU fell over")
    elif how == "handler":  # a handler that raises, e.g. the layer changed under the run

        class Strange:
            pass

        c.on(Strange, lambda run, item: 1 / 0)
        error = Strange()

    result = c.launch(run, _fails_midway, prompts, error, block=True, timeout=30, busy_text="")

    expected = "boom: the GPU fell over"
    if how == "handler":
        expected = "could not write into 'out': division by zero"
    assert result.error == expected and msgs["error"][-1].endswith(expected)
    assert result.label_ids == [5] and done == [(0, 5)]
    assert not (out.data == 6).any()  # the interrupted object is gone
    assert (out.data == 5).sum() == 5 * 16 and c.status.value == f"Failed: {expected}"
    assert finished == [out]  # the finished object was written, so listeners hear of it
    assert len(out._undo_history) == 1  # only the finished object's step
    out.undo()
    np.testing.assert_array_equal(out.data, base)


def test_a_one_step_run_keeps_finished_objects_in_its_one_step(scene):
    c, out, base, done, *_ = scene
    prompts = [_prompt(5), _prompt(6, index=2)]
    run = _run(out, prompts, one_step=True)
    result = c.launch(
        run, _fails_midway, prompts, RunFailed("stop"), block=True, timeout=30, busy_text=""
    )
    assert result.error == "stop" and result.label_ids == [5]
    assert (out.data == 5).sum() == 5 * 16 and not (out.data == 6).any()
    assert len(out._undo_history) == 1  # finished object and rolled-back one: one step
    out.undo()
    np.testing.assert_array_equal(out.data, base)


def test_jobs_report_their_value_their_error_and_share_the_footer_cancel(qapp, qtbot, caplog):
    c = RunController()
    got: list = []
    job = c.submit("adding", lambda: 2 + 3, on_returned=got.append)
    c.wait(job, 10)
    assert got == [5] and not job.running

    errors: list[Exception] = []
    with caplog.at_level(logging.ERROR):
        job = c.submit("dividing", lambda: 1 / 0, on_errored=errors.append)
        c.wait(job, 10)
    assert isinstance(errors[0], ZeroDivisionError) and "dividing failed" in caplog.text

    stop = threading.Event()
    ended: list[str] = []
    job = c.submit(
        "training",
        lambda: stop.wait(20),
        stop=stop,
        on_cancel=lambda: ended.append("cancelled"),
        on_finished=lambda: ended.append("finished"),
        footer=True,
    )
    assert c.cancel_button.enabled and not c.is_running  # Cancel reaches the job
    c.cancel_button.native.click()  # no run going: the footer's Cancel stops the job
    assert stop.is_set() and job.cancelled
    qtbot.waitUntil(lambda: not job.running, timeout=10000)
    assert ended == ["cancelled", "finished"] and not c.cancel_button.enabled


def test_every_panel_registers_its_own_update_types(env):
    from napari_propsam._widgets._runner import PromptsFound
    from napari_propsam.labeling import ObjectFailed
    from napari_propsam.series import SeriesUpdate

    c = env.widget.controller
    assert c.handler_for(SeriesUpdate) == env.widget.series.write
    assert c.handler_for(PromptsFound) == env.widget.similar._on_found
    for kind in (ObjectStarted, ObjectUpdate, ObjectFinished, ObjectFailed, RunFailed):
        assert c.handler_for(kind) is not None
    # One bar and one Cancel for every panel: the footer is the controller's.
    assert env.widget.finetune.progress is c.progress
    assert env.widget.finetune.cancel_btn is c.cancel_button
