"""napari integration (the only package that imports napari, Qt and magicgui)."""

from __future__ import annotations

from ._dock import find_widget, open_widget
from .widget import PropSAMWidget, RunResult

__all__ = ["PropSAMWidget", "RunResult", "find_widget", "open_widget"]
