"""User-facing messages of the widget, in one place so every panel reports the same way.

napari's notification functions are looked up here at call time, so tests (and embedding
applications) can redirect all of the widget's messages by patching this module.
"""

from __future__ import annotations

import logging

from napari.utils.notifications import show_error, show_info

logger = logging.getLogger(__name__)

PREFIX = "PropSAM: "


def error(message: str) -> None:
    """Show an error notification (and log it)."""
    logger.warning("%s", message)
    show_error(PREFIX + message)


def info(message: str) -> None:
    """Show an information notification (and log it)."""
    logger.info("%s", message)
    show_info(PREFIX + message)
