"""*Find similar*: every object like a few painted (or boxed) examples, streamed in as one step.

The examples are read from the prompt layer on the displayed slice, exactly as for *Run*; a
``thread_worker`` runs :func:`napari_propsam.similar.find_similar_stream`, which first searches
the slice (its progress drives the progress bar) and then streams each object's propagation like
:func:`~napari_propsam.labeling.stream_objects`. The dock widget writes the objects as they
finish, with the whole run as ONE undo step (its ``one_step`` run mode): Ctrl+Z removes
everything a Find similar run added, and Cancel keeps the objects finished so far (in that step)
and rolls back only the interrupted one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, PushButton
from superqt.utils import ensure_main_thread

from ..labeling import max_label
from ..weights import CheckpointError
from ._gather import read_prompt_layer
from ._layer_prompts import check_image, displayed_plane, full_resolution
from ._progress import RunProgress
from ._runner import PromptsFound, RunFailed, RunResult, RunState

if TYPE_CHECKING:
    from .widget import PropSAMWidget

logger = logging.getLogger(__name__)


def similar_work(image: Any, **kwargs: Any) -> Iterator[Any]:
    """Worker body: the core's find-similar stream, its first event turned into the run's prompts.

    Any exception becomes a :class:`RunFailed` value (superqt would swallow a RuntimeError).
    """
    from ..similar import SimilarFound, find_similar_stream

    try:
        for event in find_similar_stream(image, **kwargs):
            if isinstance(event, SimilarFound):
                yield PromptsFound(
                    tuple(event.prompts),
                    f"Found {event.n_found} similar object(s) besides {event.n_examples} "
                    "example(s); segmenting each in 3D…",
                )
            else:
                yield event
    except Exception as err:  # noqa: BLE001 - reported to the user by the main thread
        logger.exception("Find similar failed")
        yield RunFailed(str(err) or type(err).__name__)


class SimilarPanel:
    """The *Find similar* button of the Segment tab.

    Args:
        widget: The dock widget (layers, settings, and its run machinery).
    """

    def __init__(self, widget: PropSAMWidget) -> None:
        self._widget = widget
        self._search_run: RunState | None = None
        self.button = PushButton(
            text="Find similar",
            tooltip="Paint (or box) one or a few examples on this slice; every similar object "
            "on the slice is found and segmented in 3D. One Ctrl+Z undoes the whole run.",
        )
        self.container = Container(widgets=[self.button], labels=False, label="")
        self.button.changed.connect(lambda: self.start())
        widget.controller.on(PromptsFound, self._on_found)
        widget.controller.busy_callbacks.append(self._on_busy)

    def start(self, block: bool = False, timeout: float = 600.0) -> RunResult | None:
        """Find and segment every object like the examples on the displayed slice.

        Args:
            block: Wait (processing Qt events) until the run ends.
            timeout: Longest wait in seconds with ``block=True``; the run is cancelled after it.

        Returns:
            With ``block=True`` the :class:`RunResult` (its ``prompt_ids`` are the examples'
            ids first, then the found objects'), else None. None too when it could not start.
        """
        w = self._widget
        if w.refuse_if_running():
            return None
        try:
            w.check_settings()
            image = check_image(w.image_layer)
            plane = displayed_plane(w.viewer, image)
            found = read_prompt_layer(w.viewer, image, plane, w.prompt_layer)
            boxes = [b for b in found.boxes if b is not None]
            w.settings.check_model(bool(boxes), w.predictor_override)
            output = w.ensure_output(image)
        except (ValueError, RuntimeError, CheckpointError) as err:
            w.not_started(err)
            return None
        examples = None
        if not boxes:  # painted examples: one id per example on the slice plane
            examples = np.zeros(plane.plane_shape, np.int32)
            for i, mask in enumerate(found.masks, start=1):
                examples[mask] = i
        # A zarr-backed output is scanned chunk by chunk for its highest id, never loaded whole.
        start_label = max_label(output.data) + 1
        run = RunState(
            output,
            [],
            bool(w.settings.overwrite.value),
            {},
            threading.Event(),
            one_step=True,
        )
        self._search_run = run
        return w.controller.launch(
            run,
            similar_work,
            full_resolution(image),
            block=block,
            timeout=timeout,
            busy_text=f"Searching slice {plane.index} for objects like {len(found)} example(s)…",
            slice_index=plane.index,
            axis=plane.axis,
            examples_mask=examples,
            boxes=boxes or None,
            spacing=tuple(float(s) for s in image.scale),
            model=w.model_spec,
            device=w.settings.device.value,
            predictor=w.predictor_override,
            cancel=run.cancel_event,
            propagate_3d=True,
            start_label=start_label,
            on_search_progress=partial(self._on_search_progress, run),
            **w.options(),
        )

    @ensure_main_thread
    def _on_search_progress(self, run: RunState, fraction: float) -> None:
        # Called from the worker; ensure_main_thread queues it onto the GUI thread.
        c = self._widget.controller
        if run is self._search_run and run is c.current and not run.prompts:
            c.set_indeterminate(False)
            c.set_progress(fraction)

    def _on_found(self, run: RunState, item: PromptsFound) -> None:
        """The search ended: its objects become the run's prompts (the controller's handler)."""
        run.prompts = list(item.prompts)
        run.progress = RunProgress(len(run.prompts))
        run.result.prompt_ids = [p.label_id for p in run.prompts]
        self._widget.controller.show(item.message)

    def _on_busy(self, busy: bool) -> None:
        self.button.enabled = not busy
