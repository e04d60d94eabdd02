"""Turning the worker's stream of object events into writes, progress and session records.

:func:`register_object_handlers` gives the run controller one handler per event of
:func:`napari_propsam.labeling.stream_objects` (main thread): slice updates become voxel changes
of the output layer (through the object's :class:`~napari_propsam.labeling.ObjectEdit`, inside
its undo group), the footer's bar and status line follow each forward pass
(:class:`._progress.RunProgress`), and every finished object is passed to a callback (the widget
records it in its :class:`._session.Session` with its prompt slices and quality).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from ..labeling import (
    ObjectEdit,
    ObjectFailed,
    ObjectFinished,
    ObjectStarted,
    ObjectUpdate,
    owned_by_object,
)
from . import _notify
from ._progress import RunProgress
from ._runner import RunState

if TYPE_CHECKING:
    from ._controller import RunController

logger = logging.getLogger(__name__)

#: Called with the run and the position of each object it finished (before its edit is dropped).
ObjectDone = Callable[[RunState, int], None]


def _on_update(c: RunController, run: RunState, item: ObjectUpdate) -> None:
    c.set_indeterminate(False)
    update = item.update
    run.group.write(run.edit.change(run.output.data, update))
    if update.final:
        run.slices_done += 1
    if update.quality is not None:
        run.quality = update.quality
    progress = run.progress or RunProgress(len(run.prompts))
    run.progress = progress
    progress.position = item.position
    c.set_progress(progress.fraction(update.progress))
    prompt = run.prompts[item.position]
    phase = f"{prompt.name}, final pass" if update.final else prompt.name
    c.show(progress.text(update.progress, len(run.edit.slices), phase))


def _on_started(c: RunController, run: RunState, item: ObjectStarted) -> None:
    run.position = item.position
    run.quality = None
    if run.progress is None:
        run.progress = RunProgress(len(run.prompts))
    run.progress.object_started(item.position)
    if run.group is None:
        run.group = c.undo_group(run.output)
    run.edit = ObjectEdit(
        run.output.data.shape,
        item.prompt.label_id,
        run.overwrite,
        item.prompt.whole_slice,
        # Read before the object starts: another object under the same id (ids merged by hand)
        # is never replaced.
        owned=owned_by_object(run.output.data, item.prompt),
    )
    c.set_indeterminate(True)  # Box2Mask / the first forward pass: no fraction yet
    kind = "Box2Mask and first pass" if item.prompt.box is not None else "first pass"
    c.show(f"object {item.position + 1} of {len(run.prompts)} ({item.prompt.name}) · {kind}…")


def _on_finished(c: RunController, done: ObjectDone, run: RunState, item: ObjectFinished) -> None:
    if not run.one_step:
        c.close_group(run)
    prompt = run.prompts[item.position]
    run.result.label_ids.append(prompt.label_id)
    done(run, item.position)
    if run.progress is not None:
        run.progress.object_finished()
    logger.info(
        "object %d (label %d): %d slices", item.position + 1, prompt.label_id, len(run.edit.slices)
    )
    run.edit = None


def _on_failed(c: RunController, run: RunState, item: ObjectFailed) -> None:
    c.set_indeterminate(False)
    c.rollback(run)
    msg = f"{run.prompts[item.position].name}: {item.message}"
    run.result.failed.append(msg)
    _notify.error(msg)


def register_object_handlers(controller: RunController, done: ObjectDone) -> None:
    """Register the handlers of :func:`~napari_propsam.labeling.stream_objects`' events.

    Args:
        controller: The dock's run controller.
        done: Called (main thread) with the run and the position of every finished object.
    """
    controller.on(ObjectStarted, partial(_on_started, controller))
    controller.on(ObjectUpdate, partial(_on_update, controller))
    controller.on(ObjectFinished, partial(_on_finished, controller, done))
    controller.on(ObjectFailed, partial(_on_failed, controller))
