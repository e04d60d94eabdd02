"""*2D series*: the image's first axis indexes separate 2D images, not the slices of a volume.

With the checkbox ticked, Run reads the objects painted in the sketch (Labels) layer on one or a
few images and a ``thread_worker`` runs :func:`napari_propsam.series.propagate_series_stream`,
which guides every other image directly by the nearest annotated one. Each finished image is
written into its plane of the output layer as it arrives (one
:class:`~napari_propsam.labeling.ObjectEdit` per painted id, replacing that id on the plane and
keeping other labels unless *Overwrite* is ticked); the whole run is ONE undo step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox
from napari.layers import Labels

from ..labeling import ObjectEdit, assign_label_ids, chunked_view
from ..propagation import SliceUpdate
from ..series import SeriesUpdate
from ..weights import CheckpointError
from ._layer_prompts import PromptError, check_image, full_resolution
from ._runner import RunFailed, RunResult, RunState

if TYPE_CHECKING:
    from .widget import PropSAMWidget

logger = logging.getLogger(__name__)


def series_work(images: Any, annotations: dict[int, np.ndarray], **kwargs: Any) -> Iterator[Any]:
    """Worker body: the core's series stream, with any exception turned into a value."""
    from ..series import propagate_series_stream

    try:
        yield from propagate_series_stream(images, annotations, **kwargs)
    except Exception as err:  # noqa: BLE001 - reported to the user by the main thread
        logger.exception("series propagation failed")
        yield RunFailed(str(err) or type(err).__name__)


def annotated_images(layer: Labels) -> dict[int, np.ndarray]:
    """``{image index: (H, W) labels}`` of every image painted in an ``(N, H, W)`` layer.

    Which images hold paint is found chunk by chunk (a zarr-backed layer is never loaded whole);
    only those images are read.
    """
    painted = chunked_view(layer.data).any(axis=(1, 2))
    painted = np.asarray(painted.compute() if hasattr(painted, "compute") else painted)
    return {int(i): np.asarray(layer.data[int(i)]) for i in np.flatnonzero(painted)}


class SeriesPanel:
    """The *2D series* checkbox of the Segment tab and what Run does when it is ticked.

    Args:
        widget: The dock widget (layers, settings, and its run machinery).
    """

    def __init__(self, widget: PropSAMWidget) -> None:
        self._widget = widget
        widget.controller.on(SeriesUpdate, self.write)
        self.enabled = CheckBox(
            text="2D series (first axis = separate images)",
            value=False,
            tooltip="The image is a stack of separate 2D images: Run carries the objects painted "
            "on one or a few images to every other image (one undo step)",
        )

    def start(self, block: bool, timeout: float) -> RunResult | None:
        """Propagate the painted images to the whole series (Run with the checkbox ticked).

        Same arguments and return value as :meth:`PropSAMWidget.run`; the result's
        ``label_ids`` are the output ids written (a new id per painted object, see
        :meth:`_output_ids`).
        """
        w = self._widget
        if w.refuse_if_running():
            return None
        try:
            w.check_settings()
            image = check_image(w.image_layer)
            source = w.prompt_layer
            if not isinstance(source, Labels):
                raise PromptError(
                    "a 2D series needs painted annotations: choose a sketch (Labels) layer and "
                    "paint the objects on one or a few images"
                )
            if tuple(source.data.shape) != tuple(full_resolution(image).shape):
                raise PromptError(
                    f"sketch layer '{source.name}' has shape {tuple(source.data.shape)}, which "
                    f"does not match image '{image.name}' {tuple(full_resolution(image).shape)}"
                )
            annotations = annotated_images(source)
            if not annotations:
                raise PromptError(
                    f"nothing painted in '{source.name}': paint the objects (one label per "
                    "object) on one or a few images of the series"
                )
            w.settings.check_model(False, w.predictor_override)
            output = w.ensure_output(image)
        except (ValueError, RuntimeError, CheckpointError) as err:
            w.not_started(err)
            return None
        painted = sorted({int(v) for a in annotations.values() for v in np.unique(a) if v > 0})
        ids = self._output_ids(source, output, painted)
        overwrite = bool(w.settings.overwrite.value)
        run = RunState(output, [], overwrite, {}, threading.Event(), one_step=True)
        # whole_slice: an id's old voxels on a finished image are replaced, as in re-propagation.
        run.series_edits = {
            k: ObjectEdit(output.data.shape, ids[k], overwrite, True) for k in painted
        }
        run.result.prompt_ids = [ids[k] for k in painted]
        return w.controller.launch(
            run,
            series_work,
            full_resolution(image),
            annotations,
            block=block,
            timeout=timeout,
            busy_text=f"Series: {len(ids)} object(s) from {len(annotations)} painted image(s)…",
            model=w.model_spec,
            device=w.settings.device.value,
            predictor=w.predictor_override,
            cancel=run.cancel_event,
            **w.options(),
        )

    def _output_ids(self, source: Labels, output: Labels, painted: list[int]) -> dict[int, int]:
        """``{painted id: output id}``: a new id per painted object, the same one when this
        sketch layer's objects were run into this output before, and the painted id itself only
        when the sketch is the output layer (the user targets those objects)."""
        if source is output:
            return {k: k for k in painted}
        keys = [(id(output), "series", id(source), k) for k in painted]
        known = self._widget.known_ids
        reused = {i: known[key] for i, key in enumerate(keys) if key in known}
        new = assign_label_ids(output.data, [None] * len(painted), reused)
        known.update(zip(keys, new, strict=True))
        return dict(zip(painted, new, strict=True))

    def write(self, run: RunState, item: SeriesUpdate) -> None:
        """Write one finished image into its plane of the output layer (main thread).

        The run controller's handler of :class:`~napari_propsam.series.SeriesUpdate`.
        """
        c = self._widget.controller
        c.set_indeterminate(False)
        if run.group is None:
            run.group = c.undo_group(run.output)
        mask = np.asarray(item.mask)
        for painted, edit in run.series_edits.items():
            update = SliceUpdate(0, int(item.index), (0, 0), mask == painted, item.progress, True)
            run.group.write(edit.change(run.output.data, update))
        run.slices_done += 1
        written = {run.series_edits[int(v)].label_id for v in np.unique(mask) if v > 0}
        run.result.label_ids = sorted(written | set(run.result.label_ids))
        n = int(run.output.data.shape[0])
        c.set_progress(item.progress)
        c.show(f"Series: image {item.index} done ({run.slices_done}/{n})")
