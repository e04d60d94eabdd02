"""The run controller: the one place that starts, streams, cancels, rolls back and reports work.

Every long operation of the dock widget goes through :class:`RunController`:

* a *run* (Run, Re-propagate, Find similar, 2D series) is a core generator in a napari
  ``thread_worker`` (:meth:`RunController.launch`). Each value it yields reaches the main thread
  and goes to the handler the panel concerned registered for its type (:meth:`RunController.on`);
  the controller itself handles :class:`~._runner.RunFailed`. A cancelled or failed run rolls
  back the object it was writing (:class:`~napari_propsam.labeling.ObjectEdit` through
  :mod:`._history`), and the footer tells how the run ended.
* a *job* (a measurement, fine-tuning) is a plain function in a worker, with callbacks for its
  value, its error and its end (:meth:`RunController.submit`).

The controller owns the dock's footer: ONE progress bar, ONE status line and ONE Cancel, shared
by every panel. Workers never touch layers or widgets; everything here runs on the main thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from magicgui.widgets import Container, ProgressBar, PushButton
from napari.layers import Labels
from napari.qt.threading import thread_worker

from . import _notify
from ._history import UndoGroup
from ._layout import StatusLabel
from ._runner import RunFailed, RunResult, RunState, qt_deleted, wait_until

logger = logging.getLogger(__name__)

#: The footer bar's range: progress fractions are shown in thousandths.
PROGRESS_MAX = 1000

#: A handler of one update type: called on the main thread with the run and the value.
Handler = Callable[[RunState, Any], None]


@dataclass(eq=False)
class Job:
    """Background work that is not a segmentation run (see :meth:`RunController.submit`).

    Attributes:
        name: What the job does, for the log ("measuring", "fine-tuning").
        stop: Set by :meth:`RunController.cancel_job`; the job's body polls it.
        footer: The footer's Cancel reaches the job (when no run is going).
        on_cancel: Called on the main thread when the job is cancelled.
        worker: The napari worker.
        running: The worker has not finished yet.
        cancelled: Cancel was asked for.
    """

    name: str
    stop: threading.Event = field(default_factory=threading.Event)
    footer: bool = False
    on_cancel: Callable[[], None] | None = None
    worker: Any = None
    running: bool = True
    cancelled: bool = False


class RunController:
    """Starts, streams, cancels, rolls back and reports the dock widget's work.

    Args:
        status: The footer's first status line.
    """

    def __init__(self, status: str = "") -> None:
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=PROGRESS_MAX, value=0, label="Progress")
        self.status = StatusLabel(value=status)
        #: The footer (Cancel, bar, status) for the dock to place under its tabs.
        self.footer = Container(widgets=[self.cancel_button, self.progress, self.status])
        #: The segmentation run going, if any (runs never interleave).
        self.current: RunState | None = None
        #: The result of the last run that ended.
        self.last_result: RunResult | None = None
        #: Called with the output layer after every run that wrote something.
        self.finished_callbacks: list[Callable[[Labels], None]] = []
        #: Called with True when a run starts and False when it ends (panels grey their buttons).
        self.busy_callbacks: list[Callable[[bool], None]] = []
        self._handlers: dict[type, Handler] = {RunFailed: self._on_run_failed}
        self._jobs: list[Job] = []
        self.cancel_button.changed.connect(lambda: self.cancel())

    # --- update handlers -----------------------------------------------------------------------

    def on(self, kind: type, handler: Handler) -> None:
        """Register the handler of the run values of type ``kind`` (and its subclasses).

        Raises:
            ValueError: ``kind`` has a handler already (two panels would fight over it).
        """
        if kind in self._handlers:
            raise ValueError(f"a handler for {kind.__name__} is registered already")
        self._handlers[kind] = handler

    def handler_for(self, kind: type) -> Handler | None:
        """The handler of values of type ``kind`` (the nearest registered base class), or None."""
        for base in kind.__mro__:
            if base in self._handlers:
                return self._handlers[base]
        return None

    def dispatch(self, run: RunState, item: Any) -> None:
        """Give one value of the run's stream to its handler (main thread)."""
        handler = self.handler_for(type(item))
        if handler is None:  # a core event no panel handles yet: a bug, not the user's problem
            logger.warning("no handler for %s; ignored", type(item).__name__)
            return
        handler(run, item)

    # --- the footer ----------------------------------------------------------------------------

    def set_indeterminate(self, busy: bool) -> None:
        """Show the footer bar as a busy indicator (a phase without a fraction) or as a bar."""
        self.progress.native.setMaximum(0 if busy else PROGRESS_MAX)

    def set_progress(self, fraction: float) -> None:
        """Show ``fraction`` (0..1) done on the footer bar."""
        self.progress.value = int(round(PROGRESS_MAX * min(max(float(fraction), 0.0), 1.0)))

    def show(self, text: str) -> None:
        """Show ``text`` in the footer's status line."""
        self.status.value = text

    def _update_cancel(self) -> None:
        if not qt_deleted(self.cancel_button):
            footer_jobs = any(job.footer and job.running for job in self._jobs)
            self.cancel_button.enabled = self.current is not None or footer_jobs

    # --- runs ----------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """A run is going (or its worker is still winding down after a cancel)."""
        return self.current is not None

    def refuse_if_running(self) -> bool:
        """Tell the user and return True when a run is going (runs never interleave)."""
        if self.current is None:
            return False
        _notify.info("already running: wait for it to finish or press Cancel")
        return True

    def not_started(self, err: Exception) -> None:
        """Report why a run (or a job) could not start."""
        self.show(f"Not started: {err}")
        _notify.error(str(err))

    def launch(
        self,
        run: RunState,
        body: Callable[..., Any],
        *args: Any,
        block: bool,
        timeout: float,
        busy_text: str,
        **kwargs: Any,
    ) -> RunResult | None:
        """Run the generator ``body(*args, **kwargs)`` in a worker, its values to the handlers.

        Args:
            run: The run's state; it becomes :attr:`current`.
            body: A generator function (core calls only; exceptions yielded as ``RunFailed``).
            block: Wait (processing Qt events) until the run ends.
            timeout: Longest wait in seconds with ``block=True``; the run is cancelled after it.
            busy_text: The status line until the first value arrives.

        Returns:
            With ``block=True`` the run's :class:`RunResult`, else None.
        """
        self.current = run
        self._set_busy(True, busy_text)
        worker = thread_worker(body, start_thread=False, ignore_errors=True)(*args, **kwargs)
        run.worker = worker
        worker.yielded.connect(partial(self._on_yielded, run))
        worker.errored.connect(partial(self._on_errored, run))
        worker.finished.connect(partial(self._on_finished, run))
        _notify.relay_warnings(worker)
        worker.start()
        if not block:
            return None
        wait_until(lambda: self.current is not run, timeout, self.cancel)
        return run.result

    def cancel(self) -> None:
        """Stop the run within about one forward pass, rolling back its current object; with no
        run going, cancel the jobs shown in the footer (fine-tuning)."""
        run = self.current
        if run is None:
            for job in [job for job in self._jobs if job.footer]:
                self.cancel_job(job)
            return
        if run.stopped:
            return
        self._stop(run)
        run.result.cancelled = True
        self.show("Cancelling…")
        _notify.info("cancelled; the interrupted object was removed")

    def fail(self, run: RunState, message: str) -> None:
        """End ``run`` on an error: stop the worker, roll back its current object, tell the user."""
        if run.stopped:
            return
        run.result.error = message
        self._stop(run)
        _notify.error(message)

    def _stop(self, run: RunState) -> None:
        run.stopped = True  # whatever the worker still sends is ignored from now on
        run.cancel_event.set()
        if run.worker is not None:
            run.worker.quit()
        self.rollback(run)
        self.close_group(run)

    def rollback(self, run: RunState) -> None:
        """Put the output layer back as it was before the run's current object started."""
        if run.one_step:
            # The run is one undo step: undo the object by writing its baseline back into the
            # open group, so the objects finished before it stay in that step.
            if run.group is not None and run.edit is not None:
                run.group.write(run.edit.restore(run.output.data))
                run.output.refresh()
        elif run.group is not None:
            run.group.abort(run.edit)
            run.group = None
        run.edit = None

    @staticmethod
    def undo_group(layer: Labels) -> UndoGroup:
        """Open an undo group on ``layer``: the writes until its commit are one Ctrl+Z."""
        group = UndoGroup(layer)
        group.begin()
        return group

    def close_group(self, run: RunState) -> None:
        """Commit what the run wrote as its undo step (one-step runs keep one group open)."""
        if run.group is not None:
            run.group.commit()
            run.group = None

    def _on_run_failed(self, run: RunState, item: RunFailed) -> None:
        self.fail(run, item.message)

    def _on_yielded(self, run: RunState, item: Any) -> None:
        if run.stopped or run is not self.current:
            return  # left over from a cancelled or failed run
        try:
            self.dispatch(run, item)
        except Exception as err:  # noqa: BLE001 - e.g. the output layer was changed under us
            logger.exception("writing into the output layer failed")
            self.fail(run, f"could not write into '{run.output.name}': {err}")

    def _on_errored(self, run: RunState, err: Exception) -> None:
        self.fail(run, str(err) or type(err).__name__)

    def _on_finished(self, run: RunState) -> None:
        if run.edit is not None:  # the worker ended inside an object without saying why
            self.rollback(run)
        self.close_group(run)
        if run is not self.current:
            return
        self.current = None
        self.last_result = res = run.result
        if qt_deleted(self.status):  # the dock was closed while the worker wound down
            return
        text = self._end_text(run)
        if not (res.cancelled or res.error):
            self.set_indeterminate(False)
            self.set_progress(1.0)
            if res.label_ids:
                _notify.info(text)
        self._set_busy(False, text)
        if res.label_ids:
            for callback in list(self.finished_callbacks):
                callback(run.output)

    @staticmethod
    def _end_text(run: RunState) -> str:
        res = run.result
        if res.cancelled:
            return f"Cancelled ({len(res.label_ids)} object(s) kept)."
        if res.error:
            return f"Failed: {res.error}"
        return (
            f"Done: {len(res.label_ids)} object(s) "
            f"{', '.join(map(str, res.label_ids))} in '{run.output.name}'"
            + (f"; {len(res.failed)} failed" if res.failed else "")
            + "."
        )

    def _set_busy(self, busy: bool, text: str) -> None:
        for callback in list(self.busy_callbacks):
            callback(busy)
        self._update_cancel()
        self.set_indeterminate(busy)  # loading the model: no fraction until the first pass
        if busy:
            self.progress.value = 0
        self.show(text)

    # --- jobs ----------------------------------------------------------------------------------

    def submit(
        self,
        name: str,
        call: Callable[[], Any],
        *,
        on_returned: Callable[[Any], None] | None = None,
        on_errored: Callable[[Exception], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
        on_cancel: Callable[[], None] | None = None,
        footer: bool = False,
    ) -> Job:
        """Run ``call()`` in a worker; its callbacks run on the main thread.

        Args:
            name: What the job does, for the log.
            call: The work (core calls only; it never touches a layer or widget).
            on_returned: Called with ``call``'s value when it returns.
            on_errored: Called with the exception when it raises (after it is logged).
            on_finished: Called last, whether it returned, raised or was cancelled.
            stop: The event :meth:`cancel_job` sets (``call`` polls it); a new one if None.
            on_cancel: Called when the job is cancelled.
            footer: The footer's Cancel reaches the job, and is enabled while it runs.
        """
        job = Job(name, stop or threading.Event(), footer, on_cancel)
        job.worker = worker = thread_worker(call, start_thread=False, ignore_errors=True)()
        if on_returned is not None:
            worker.returned.connect(on_returned)
        worker.errored.connect(partial(self._job_errored, job, on_errored))
        worker.finished.connect(partial(self._job_finished, job, on_finished))
        self._jobs.append(job)
        self._update_cancel()
        worker.start()
        return job

    def cancel_job(self, job: Job) -> None:
        """Ask ``job`` to stop (it ends at its next check of ``job.stop``)."""
        if not job.running or job.cancelled:
            return
        job.cancelled = True
        job.stop.set()
        if job.on_cancel is not None:
            job.on_cancel()

    def wait(self, job: Job, timeout: float, cancel: bool = True) -> None:
        """Process Qt events until ``job`` ends; after ``timeout`` s cancel it (if ``cancel``)."""
        on_timeout = partial(self.cancel_job, job) if cancel else (lambda: None)
        wait_until(lambda: not job.running, timeout, on_timeout)

    def _job_errored(
        self, job: Job, callback: Callable[[Exception], None] | None, err: Exception
    ) -> None:
        logger.error("%s failed: %s", job.name, err, exc_info=err)
        if callback is not None:
            callback(err)

    def _job_finished(self, job: Job, callback: Callable[[], None] | None) -> None:
        job.running = False
        if job in self._jobs:
            self._jobs.remove(job)
        if callback is not None:
            callback()
        self._update_cancel()
