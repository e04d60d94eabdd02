"""Run state shared by the widget and its worker: results, per-run bookkeeping, worker body.

The worker body only streams values from the core; the main thread owns everything in
:class:`RunState` and is the only one to touch layers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from napari.layers import Labels

from ..labeling import ObjectEdit, ObjectPrompt, stream_objects
from ._history import UndoGroup

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run did.

    Attributes:
        label_ids: Ids of the objects written (each one undo step), in order.
        prompt_ids: The id each prompt of the run was given, in prompt order (whether or not it
            was written), e.g. to match boxes with results.
        failed: One message per object whose prompt was rejected (its voxels untouched).
        cancelled: The run was cancelled (the interrupted object was rolled back).
        error: Why the whole run stopped early, if it did.
    """

    label_ids: list[int] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.failed or self.cancelled or self.error)


@dataclass(frozen=True)
class RunFailed:
    """The worker stopped on an exception (sent as a value: superqt would swallow RuntimeError)."""

    message: str


@dataclass(frozen=True)
class PromptsFound:
    """The run's objects became known in the worker (Find similar): they replace the prompts.

    Attributes:
        prompts: The objects that the following events refer to by position.
        message: Status text for the user, e.g. how many similar objects were found.
    """

    prompts: tuple[ObjectPrompt, ...]
    message: str = ""


@dataclass
class RunState:
    """State of one run, owned by the main thread.

    ``one_step``: the whole run is one undo step (Find similar) instead of one per object.
    """

    output: Labels
    prompts: list[ObjectPrompt]
    overwrite: bool
    box_keys: dict[int, tuple]
    cancel_event: threading.Event
    worker: Any = None
    edit: ObjectEdit | None = None
    group: UndoGroup | None = None
    position: int = -1
    slices_done: int = 0
    stopped: bool = False  # cancelled or failed: ignore whatever the worker still sends
    one_step: bool = False
    series_edits: dict[int, ObjectEdit] = field(default_factory=dict)  # 2D series: id -> edit
    progress: Any = None  # :class:`._progress.RunProgress` of the run
    quality: Any = None  # the current object's ObjectQuality, once the engine sent it
    result: RunResult = field(default_factory=RunResult)


def work(image: Any, prompts: list[ObjectPrompt], **kwargs: Any) -> Iterator[Any]:
    """Worker body: the core's object stream, with any exception turned into a value."""
    try:
        yield from stream_objects(image, prompts, **kwargs)
    except Exception as err:  # noqa: BLE001 - reported to the user by the main thread
        logger.exception("PropSAM run failed")
        yield RunFailed(str(err) or type(err).__name__)


def wait_until(done: Callable[[], bool], timeout: float, on_timeout: Callable[[], None]) -> None:
    """Process Qt events until ``done()``; after ``timeout`` seconds call ``on_timeout`` once.

    The blocking mode of the widget's long operations (scripts and tests): the worker's signals
    are delivered by the event loop, so waiting must keep it turning.
    """
    from qtpy.QtCore import QCoreApplication, QEventLoop

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            on_timeout()
            deadline = float("inf")  # still wait for the worker to wind down
        QCoreApplication.processEvents(QEventLoop.AllEvents, 50)
        time.sleep(0.002)


def qt_deleted(widget: Any) -> bool:
    """Whether a magicgui widget's Qt object is gone (its dock widget was closed).

    A worker may finish after the viewer is closed; its main-thread callbacks then must not touch
    the widgets.
    """
    native = getattr(widget, "native", widget)
    try:
        from qtpy import sip

        return bool(sip.isdeleted(native))
    except ImportError:  # pragma: no cover - PySide
        import shiboken6

        return not shiboken6.isValid(native)
