"""Open the PropSAM dock widget once per viewer, however it is asked for.

napari keys plugin dock widgets by a name, and the two ways of opening ours use different names
(napari 0.5-0.9): *Plugins › PropSAM* docks ``"PropSAM (PropSAM)"`` (the plugin's display name)
while ``viewer.window.add_plugin_dock_widget("napari-propsam", "PropSAM")`` looks for and docks
``"PropSAM (napari-propsam)"`` (the package name). Each call reuses its own name's dock, but
menu-then-script makes a second widget. :func:`open_widget` finds any docked
:class:`~.widget.PropSAMWidget` first.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

PLUGIN = "napari-propsam"
WIDGET = "PropSAM"


def find_widget(viewer: Any) -> Any | None:
    """The PropSAM widget docked in ``viewer``'s window (None: none is docked)."""
    from .widget import PropSAMWidget

    window = getattr(viewer, "window", None)
    docks = getattr(window, "dock_widgets", None)
    if docks is None:
        return None
    for name in list(docks):
        inner = docks[name]
        if isinstance(inner, PropSAMWidget):
            return inner
    return None


def open_widget(viewer: Any) -> Any:
    """The PropSAM widget of ``viewer``: the docked one (shown and raised), else a new one docked
    with ``viewer.window.add_plugin_dock_widget``.

    Args:
        viewer: A napari viewer with a window.

    Returns:
        The :class:`~.widget.PropSAMWidget`.
    """
    widget = find_widget(viewer)
    if widget is None:
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
        return widget
    dock = widget.native.parent()
    if dock is not None:
        dock.show()
        dock.raise_()
    return widget
