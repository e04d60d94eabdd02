"""The footer follows every forward pass: fraction, slices and time left."""

from __future__ import annotations

import re

from napari_propsam._widgets._progress import RunProgress, format_seconds

from ._helpers import SlowPredictor, add_box, new_output, show_slice


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_status_text_estimates_slices_and_time():
    clock = Clock()
    p = RunProgress(4, clock=clock)
    p.object_started(0)
    assert p.text(0.01, 1) == "object 1 of 4 · 1 slices"  # too early for estimates
    clock.t += 2.0
    p.object_finished()
    p.object_started(1)
    clock.t += 1.0
    # half of object 2 in 1 s: 1 s left of it, then 2 objects of the finished one's 2 s
    assert p.text(0.5, 16) == "object 2 of 4 · 16 of ~32 slices · about 5 s left"
    assert p.fraction(0.5) == 1.5 / 4
    assert format_seconds(0.2) == "<1 s" and format_seconds(200) == "3 min"


def test_progress_moves_with_each_forward_pass(env, qtbot):
    pred = env.widget.predictor_override = SlowPredictor(0.0, delay=0.05)
    env.widget.configure(thickness=3)
    add_box(env, 0, 24)
    new_output(env)
    show_slice(env.viewer, 0, 24)
    values, texts = [], []
    env.widget.controller.progress.changed.connect(values.append)
    orig = env.widget.controller.dispatch

    def record(run, item):
        orig(run, item)
        texts.append(env.widget.controller.status.value)

    env.widget.controller.dispatch = record
    result = env.widget.run(block=True)
    assert result.ok
    passes = len(pred.times)
    distinct = sorted(set(values))
    assert passes >= 4 and len(distinct) >= passes // 2  # the bar moved during the run
    assert values[1:] == sorted(values[1:])  # after the reset to 0, it only moves forward
    pattern = r"object 1 of 1 \(box 1(, final pass)?\) · \d+ of ~\d+ slices · about .+ left"
    assert any(re.fullmatch(pattern, t) for t in texts), texts[:5]
    assert any("first pass…" in t for t in texts)  # the Box2Mask / first-pass phase is shown
    assert env.widget.controller.progress.value == 1000
    assert env.widget.controller.progress.native.maximum() == 1000  # not left as a busy indicator
