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

    napari's workers catch warnings and emit them on ``warned`` as ``warnings.showwarning``
    arguments. Each warning class is shown once per worker: a Find similar run over fifty small
    objects warns once, not fifty times with fifty different pixel counts.
    """
    seen: set[type] = set()

    def show(args: tuple) -> None:
        kind = args[1] if len(args) > 1 else UserWarning
        if kind not in seen:
            seen.add(kind)
            warning(str(args[0]))

    worker.warned.connect(show)  # type: ignore[attr-defined]
