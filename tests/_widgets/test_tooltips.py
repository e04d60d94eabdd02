"""Every control of the dock carries a tooltip; opening the widget twice reuses the open one."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QHeaderView,
    QLineEdit,
    QProgressBar,
    QSlider,
    QTabBar,
    QWidget,
)

from napari_propsam._widgets import PropSAMWidget, find_widget, open_widget

CONTROLS = (
    QAbstractButton,
    QComboBox,
    QAbstractSpinBox,
    QLineEdit,
    QProgressBar,
    QSlider,
    QAbstractItemView,
)


def _inside(w: QWidget, kinds: tuple[type, ...], root: QWidget) -> bool:
    p = w.parentWidget()
    while p is not None and p is not root:
        if isinstance(p, kinds):
            return True
        p = p.parentWidget()
    return False


def _tooltip(w: QWidget, root: QWidget, levels: int = 2) -> str:
    """The control's tooltip, or (Qt shows the parent's) that of a composite it is part of, e.g.
    the line edit and button of a file chooser."""
    for _ in range(levels + 1):
        if w is None or w is root:
            return ""
        if w.toolTip().strip():
            return w.toolTip()
        w = w.parentWidget()
    return ""


def controls(root: QWidget) -> list[QWidget]:
    out = []
    for w in root.findChildren(QWidget):
        if not isinstance(w, CONTROLS) or isinstance(w, QHeaderView):
            continue
        # parts of a control: a spin box's editor, a table's corner button, a tab bar's scrollers
        if _inside(w, (QAbstractSpinBox, QAbstractItemView, QTabBar, QComboBox), root):
            continue
        out.append(w)
    return out


def test_every_control_has_a_tooltip(env):
    root = env.widget.native
    found = controls(root)
    assert len(found) >= 25  # the walk reaches every tab, not just the visible one
    missing = [
        f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r} {w.objectName()!r}"
        for w in found
        if not _tooltip(w, root)
    ]
    assert not missing, missing
    for name in ("Run", "Cancel", "New box layer", "New sketch layer", "Export CSV…"):
        button = next(w for w in found if isinstance(w, QAbstractButton) and name in w.text())
        assert button.toolTip().strip(), name
    tabs = env.widget._tabs
    assert all(tabs.tabToolTip(i).strip() for i in range(tabs.count()))


def test_menu_then_script_reuses_the_open_widget(make_napari_viewer):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    get_app_model().commands.execute_command("napari-propsam.widget")  # Plugins > PropSAM
    first = find_widget(viewer)
    assert isinstance(first, PropSAMWidget)
    assert open_widget(viewer) is first
    # napari's own call reuses what it docked itself under its name
    _dock, w1 = viewer.window.add_plugin_dock_widget("napari-propsam", "PropSAM")
    _dock, w2 = viewer.window.add_plugin_dock_widget("napari-propsam", "PropSAM")
    assert w1 is w2
    docked = [w for w in viewer.window.dock_widgets.values() if isinstance(w, PropSAMWidget)]
    assert first in docked


def test_open_widget_docks_one_when_none_is_open(make_napari_viewer):
    viewer = make_napari_viewer()
    assert find_widget(viewer) is None
    w = open_widget(viewer)
    assert isinstance(w, PropSAMWidget) and open_widget(viewer) is w
    docked = [x for x in viewer.window.dock_widgets.values() if isinstance(x, PropSAMWidget)]
    assert docked == [w]
