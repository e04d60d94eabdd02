"""Turning the worker's stream of object events into writes, progress and session records.

:func:`handle` runs on the main thread for every value the run's worker yields: slice updates
become voxel changes of the output layer (through the object's
:class:`~napari_propsam.labeling.ObjectEdit`, inside its undo group), the footer's bar and status
line follow each forward pass (:class:`._progress.RunProgress`), and every finished object is
recorded in the widget's :class:`._session.Session` with its prompt slices and quality.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..labeling import (
    ObjectEdit,
    ObjectFailed,
    ObjectFinished,
    ObjectStarted,
    ObjectUpdate,
    owned_by_object,
)
from ..series import SeriesUpdate
from . import _notify
from ._progress import RunProgress
from ._runner import PromptsFound, RunFailed, RunState

if TYPE_CHECKING:
    from .widget import PropSAMWidget

logger = logging.getLogger(__name__)


def _on_update(w: PropSAMWidget, run: RunState, item: ObjectUpdate) -> None:
    update = item.update
    run.group.write(run.edit.change(run.output.data, update))
    if update.final:
        run.slices_done += 1
    if update.quality is not None:
        run.quality = update.quality
    progress = run.progress or RunProgress(len(run.prompts))
    run.progress = progress
    progress.position = item.position
    w._progress.value = int(round(1000 * progress.fraction(update.progress)))
    prompt = run.prompts[item.position]
    phase = f"{prompt.name}, final pass" if update.final else prompt.name
    w._status.value = progress.text(update.progress, len(run.edit.slices), phase)


def _on_started(w: PropSAMWidget, run: RunState, item: ObjectStarted) -> None:
    run.position = item.position
    run.quality = None
    if run.progress is None:
        run.progress = RunProgress(len(run.prompts))
    run.progress.object_started(item.position)
    if run.group is None:
        run.group = w.undo_group(run.output)
    run.edit = ObjectEdit(
        run.output.data.shape,
        item.prompt.label_id,
        run.overwrite,
        item.prompt.whole_slice,
        # Read before the object starts: another object under the same id (ids merged by hand)
        # is never replaced.
        owned=owned_by_object(run.output.data, item.prompt),
    )
    w.set_indeterminate(True)  # Box2Mask / the first forward pass: no fraction yet
    kind = "Box2Mask and first pass" if item.prompt.box is not None else "first pass"
    w._status.value = (
        f"object {item.position + 1} of {len(run.prompts)} ({item.prompt.name}) · {kind}…"
    )


def _on_finished(w: PropSAMWidget, run: RunState, item: ObjectFinished) -> None:
    if not run.one_step:
        w._close_group(run)
    prompt = run.prompts[item.position]
    run.result.label_ids.append(prompt.label_id)
    if item.position in run.box_keys:
        w._box_ids[(id(run.output), *run.box_keys[item.position])] = prompt.label_id
    w.session.record(run.output, prompt, run.quality)
    if run.progress is not None:
        run.progress.object_finished()
    logger.info(
        "object %d (label %d): %d slices", item.position + 1, prompt.label_id, len(run.edit.slices)
    )
    run.edit = None


def handle(w: PropSAMWidget, run: RunState, item: Any) -> None:
    """Apply one value of the run's worker stream (main thread)."""
    if isinstance(item, ObjectUpdate):
        w.set_indeterminate(False)
        _on_update(w, run, item)
    elif isinstance(item, ObjectStarted):
        _on_started(w, run, item)
    elif isinstance(item, ObjectFinished):
        _on_finished(w, run, item)
    elif isinstance(item, ObjectFailed):
        w.set_indeterminate(False)
        w._rollback(run)
        msg = f"{run.prompts[item.position].name}: {item.message}"
        run.result.failed.append(msg)
        _notify.error(msg)
    elif isinstance(item, SeriesUpdate):
        w.set_indeterminate(False)
        w.series.write(run, item)
    elif isinstance(item, PromptsFound):
        run.prompts = list(item.prompts)
        run.progress = RunProgress(len(run.prompts))
        run.result.prompt_ids = [p.label_id for p in run.prompts]
        w._status.value = item.message
    elif isinstance(item, RunFailed):
        w._fail(run, item.message)
