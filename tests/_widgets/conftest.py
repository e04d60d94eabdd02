"""GUI test setup: napari layers on Qt's offscreen platform (no OpenGL), and a docked widget.

Building and closing a napari viewer (napari's ``make_napari_viewer``) cost more than most GUI
tests themselves, so the tests here share one hidden viewer per test process (per xdist worker):
``viewer`` hands it out empty and takes it back empty, ``env`` docks a fresh PropSAMWidget on it.
Every test starts by checking that the viewer is as new (no layer, dock, shortcut or PropSAM
callback left by an earlier test), so a leftover fails loudly instead of steering a later test.
Tests about the viewer or its docks themselves (the plugin menu, opening the widget twice) still
build their own with ``make_napari_viewer``.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from types import SimpleNamespace
from unittest.mock import patch

import pytest

from conftest import ThresholdPredictor, ellipsoid_volume, make_tiny_bundle
from napari_propsam._widgets import PropSAMWidget, _notify

from ._helpers import wait_idle


@pytest.fixture(autouse=True)
def _napari_without_opengl(qapp):
    from napari_propsam._widgets._gl import allow_viewer_without_opengl

    allow_viewer_without_opengl()
    yield


@contextmanager
def _own_app_model():
    """What napari's ``mock_app_model`` does for one test, for the shared viewer's lifetime: its
    menus and actions live in an app of their own, not in napari's."""
    from app_model import Application
    from napari._app_model._app import NapariApplication, _napari_names
    from napari._qt._qapp_model.qactions import init_qactions
    from napari.plugins import _initialize_plugins

    name = "propsam_shared_viewer"
    app = NapariApplication(name)
    app.injection_store.namespace = _napari_names
    try:
        with patch.object(NapariApplication, "get_app_model", return_value=app):
            yield
    finally:
        Application.destroy(name)
        _initialize_plugins.cache_clear()
        init_qactions.cache_clear()


def _no_console(*_args):
    from qtpy.QtWidgets import QWidget

    return QWidget()  # as make_napari_viewer: no IPython kernel per viewer


def _propsam_callbacks(viewer) -> list[tuple[object, object]]:
    """(emitter, callback) of every viewer event still connected to a PropSAM object."""
    found = []
    for group in (viewer.events, viewer.layers.events, viewer.dims.events):
        for emitter in group.emitters.values():
            for cb in emitter.callbacks:
                owner = cb[0]() if isinstance(cb, tuple) else cb
                if type(owner).__module__.startswith("napari_propsam"):
                    found.append((emitter, cb))
    return found


@pytest.fixture(scope="session")
def shared_viewer(qapp):
    """One hidden viewer for the GUI tests of this process (see the module docstring)."""
    import napari
    from napari._qt.qt_viewer import QtViewer
    from napari.settings import get_settings

    from napari_propsam._widgets._gl import allow_viewer_without_opengl

    allow_viewer_without_opengl()
    get_settings().reset()
    with pytest.MonkeyPatch.context() as mp, _own_app_model():
        # as make_napari_viewer: no status-checker thread polling the cursor
        mp.setattr("napari._qt.threads.status_checker.StatusChecker.start", lambda *a: None)
        mp.setattr(QtViewer, "_get_console", _no_console)
        viewer = napari.Viewer(show=False, show_welcome_screen=False)
        # make_napari_viewer refuses to start while a QtViewer it did not make is alive; this one
        # lives until the session ends on purpose, so it is taken off napari's leak count.
        QtViewer._instances.discard(viewer.window._qt_viewer)
        gc.freeze()  # its ~100k objects live all session: no collection needs to walk them
        viewer._propsam_baseline = SimpleNamespace(
            docks=set(viewer.window._wrapped_dock_widgets), keymap=dict(viewer.keymap)
        )
        yield viewer
        with patch.object(viewer.window._qt_window, "_save_current_window_settings"):
            viewer.close()


def viewer_leftovers(viewer) -> list[str]:
    """What differs from the fresh shared viewer (empty: nothing)."""
    base = viewer._propsam_baseline
    out = [f"layer {layer.name!r}" for layer in viewer.layers]
    out += [f"dock {name!r}" for name in set(viewer.window._wrapped_dock_widgets) - base.docks]
    if viewer.dims.ndisplay != 2 or viewer.dims.ndim != 2:
        out.append(f"dims ndim={viewer.dims.ndim} ndisplay={viewer.dims.ndisplay}")
    if dict(viewer.keymap) != base.keymap:
        out.append(f"key bindings {sorted(map(str, viewer.keymap))}")
    out += [f"callback {cb!r}" for _, cb in _propsam_callbacks(viewer)]
    return out


def reset_viewer(viewer) -> None:
    """Take back what a test added: layers, docks (their widgets deleted), shortcuts, 3D view,
    and the callbacks PropSAM widgets connected to the viewer."""
    from qtpy.QtCore import QCoreApplication, QEvent

    for emitter, cb in _propsam_callbacks(viewer):
        emitter.disconnect(cb)  # first: a removed widget must not hear the layers go
    # napari's canvas runs a full gc.collect() after every layer removal (a Windows OpenGL
    # work-around); with a few layers per test that was most of a GUI test's teardown. Objects
    # freed here are still collected by the normal generational collection.
    with patch("gc.collect", lambda *_: 0):
        viewer.layers.clear()  # napari resets dims (2 axes, step 0, order) once the list is empty
    viewer.dims.ndisplay = 2
    docks = viewer.window._wrapped_dock_widgets
    for name in set(docks) - viewer._propsam_baseline.docks:
        dock = docks[name]
        inner = dock.widget()
        viewer.window.remove_dock_widget(dock)  # napari deletes the dock, not what it held
        if inner is not None:
            inner.deleteLater()
    viewer.keymap.clear()
    viewer.keymap.update(viewer._propsam_baseline.keymap)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()


@pytest.fixture
def viewer(shared_viewer):
    """The shared viewer, empty; whatever the test adds is removed after it."""
    leftovers = viewer_leftovers(shared_viewer)
    assert not leftovers, f"an earlier test left {leftovers} in the shared viewer"
    yield shared_viewer
    reset_viewer(shared_viewer)


def busy_parts(widget: PropSAMWidget) -> list[str]:
    """The parts of ``widget`` with a worker still going (a run, a measurement, fine-tuning)."""
    parts = {"run": widget, "finetune": widget.finetune, "measure": widget.measure}
    busy = [name for name, part in parts.items() if part.is_running]
    return busy + [job.name for job in widget.controller._jobs if job.running]


@pytest.fixture
def env(viewer, monkeypatch):
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
    for part in (widget, widget.finetune, widget.measure):
        wait_idle(part)
    # A worker still going would write into the next test's layers through a deleted widget.
    assert not busy_parts(widget), f"still running after the test: {busy_parts(widget)}"
