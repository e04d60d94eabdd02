"""Shared helpers of the GUI tests: PropMask stand-ins and prompt/output layer builders."""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QCoreApplication

from conftest import ThresholdPredictor

CENTER = (24, 32, 30)
# napari shows the last two axes of dims.order; the first is the one we slice along.
ORDER = {0: (0, 1, 2), 1: (1, 0, 2), 2: (2, 0, 1)}


class SlowPredictor(ThresholdPredictor):
    """ThresholdPredictor that takes a while per forward pass and records when it ran."""

    def __init__(self, level: float = 0.0, delay: float = 0.05, fail_after: int | None = None):
        super().__init__(level)
        self.delay, self.fail_after = delay, fail_after
        self.times: list[float] = []

    def predict(self, tasks):
        if self.fail_after is not None and len(self.times) >= self.fail_after:
            raise RuntimeError("boom: the GPU fell over")
        time.sleep(self.delay)
        self.times.append(time.monotonic())
        return super().predict(tasks)


class NothingPredictor:
    """PropMask stand-in that never finds the object on a neighbouring slice."""

    def predict(self, tasks):
        return [np.zeros(t.adjacent.shape, bool) for t in tasks]


def show_slice(viewer, axis: int, index: int) -> None:
    viewer.dims.order = ORDER[axis]
    viewer.dims.set_current_step(axis, index)


def add_box(env, axis: int, index: int, label: int = 1, scale=None):
    """A rectangle around the truth's section, as napari draws it (corners on pixel edges)."""
    section = env.truth.take(index, axis=axis)
    rows, cols = np.nonzero(section)
    r0, r1, c0, c1 = rows.min() - 0.5, rows.max() + 0.5, cols.min() - 0.5, cols.max() + 0.5
    corners = []
    for r, c in [(r0, c0), (r0, c1), (r1, c1), (r1, c0)]:
        v = [r, c]
        v.insert(axis, float(index))
        corners.append(v)
    geo = {} if scale is None else {"scale": env.image.scale, "translate": env.image.translate}
    shapes = env.viewer.add_shapes([np.array(corners)], shape_type="rectangle", name="boxes", **geo)
    env.widget.prompt_layer = shapes
    return shapes


def add_sketch(env, axis: int, index: int, masks: dict[int, np.ndarray]):
    data = np.zeros(env.truth.shape, np.int32)
    for label, m in masks.items():
        idx = [slice(None), slice(None)]
        idx.insert(axis, index)
        data[tuple(idx)][m] = label
    layer = env.viewer.add_labels(data, name="sketch")
    env.widget.prompt_layer = layer
    return layer


def new_output(env, data=None):
    out = env.viewer.add_labels(
        np.zeros(env.truth.shape, np.int32) if data is None else data, name="out"
    )
    env.widget.output_layer = out
    return out


def wait_idle(part, timeout: float = 10.0) -> None:
    """Cancel work left going (by a failed test, or a measurement after a run) and let it end."""
    if part.is_running and hasattr(part, "cancel"):
        part.cancel()
    t = time.monotonic()
    while part.is_running and time.monotonic() - t < timeout:
        QCoreApplication.processEvents()
