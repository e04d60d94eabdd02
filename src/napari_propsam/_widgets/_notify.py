"""User-facing messages of the widget, in one place so every panel reports the same way.

napari's notification functions are looked up here at call time, so tests (and embedding
applications) can redirect all of the widget's messages by patching this module.
"""

from __future__ import annotations

import logging

from napari.utils.notifications import show_error, show_info, show_warning

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


def warning(message: str) -> None:
    """Show a warning notification (and log it)."""
    logger.warning("%s", message)
    show_warning(PREFIX + message)


def relay_warnings(worker: object) -> None:
    """Show the warnings a worker's code issues (e.g. a prompt below Min area) as notifications.

    napari's workers catch warnings and emit them on ``warned``; each distinct message is shown
    once per worker, so a run over many small objects does not flood the screen.
    """
    seen: set[str] = set()

    def show(args: tuple) -> None:
        text = str(args[0])
        if text not in seen:
            seen.add(text)
            warning(text)

    worker.warned.connect(show)  # type: ignore[attr-defined]
