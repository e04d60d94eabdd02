"""GUI test setup: napari layers on Qt's offscreen platform (no OpenGL), and a docked widget."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conftest import ThresholdPredictor, ellipsoid_volume, make_tiny_bundle
from napari_propsam._widgets import PropSAMWidget, _notify

from ._helpers import wait_idle


@pytest.fixture(autouse=True)
def _napari_without_opengl(qapp):
    from napari_propsam._widgets._gl import allow_viewer_without_opengl

    allow_viewer_without_opengl()
    yield


@pytest.fixture
def env(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    image, truth = ellipsoid_volume()
    layer = viewer.add_image(image, name="img")
    widget = PropSAMWidget(viewer)
    viewer.window.add_dock_widget(widget, name="PropSAM")
    widget.image_layer = layer
    widget.set_model(make_tiny_bundle(fg_bias=5))  # Box2Mask keeps the whole box
    widget.predictor_override = ThresholdPredictor(0.0)
    msgs: dict[str, list[str]] = {"error": [], "info": [], "warning": []}
    monkeypatch.setattr(_notify, "show_error", msgs["error"].append)
    monkeypatch.setattr(_notify, "show_info", msgs["info"].append)
    monkeypatch.setattr(_notify, "show_warning", msgs["warning"].append)
    yield SimpleNamespace(viewer=viewer, widget=widget, image=layer, truth=truth, msgs=msgs)
    wait_idle(widget)
    wait_idle(widget.finetune)
    wait_idle(widget.measure)
