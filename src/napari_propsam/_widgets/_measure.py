"""The *Measure* tab: per-object measurements of the output layer, as features, table and CSV.

:func:`napari_propsam.measure.measure_labels` runs in a ``thread_worker`` (it reads a lazy layer
chunk by chunk, then object by object), with the image layer's ``scale`` as the voxel spacing and
its data for the intensity columns. The result becomes the output layer's ``features`` (so napari
shows an object's values under the cursor), fills the table, and *Export CSV…* writes it with
:func:`napari_propsam.measure.write_measurements_csv`. Double-clicking a row selects that label
and moves the viewer to the object's centroid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton, Table
from napari.layers import Labels

from ..measure import measure_labels, write_measurements_csv
from . import _notify
from ._layer_prompts import PromptError, full_resolution
from ._layout import StatusLabel
from ._measure_table import REVIEW, fill, go_to, header, length_unit, row_label, with_quality
from ._runner import qt_deleted

if TYPE_CHECKING:
    from ._controller import Job
    from .widget import PropSAMWidget

logger = logging.getLogger(__name__)


@dataclass
class Measurement:
    """A finished measurement.

    Attributes:
        layer: The Labels layer that was measured.
        table: ``column -> 1D array``, one row per object (first column ``label``).
    """

    layer: Labels
    table: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.table["label"]) if "label" in self.table else 0


class MeasurePanel:
    """Widgets and state of the *Measure* tab.

    Args:
        widget: The dock widget (its output and image layers).
    """

    def __init__(self, widget: PropSAMWidget) -> None:
        self._widget = widget
        self._job: Job | None = None  # the measurement going (its worker, via the controller)
        self.last: Measurement | None = None
        self.button = PushButton(text="Measure", tooltip="Measure every object of the output")
        self.auto = CheckBox(text="Measure after each run", value=True)
        self.export = PushButton(text="Export CSV…")
        self.review_btn = PushButton(
            text="Review next",
            tooltip="Go to the next slice worth a look: the worst slices of the objects with the "
            "lowest score first (objects segmented in this session)",
        )
        self._review_pos = -1
        self.status = StatusLabel(value="Measure the objects of the output layer.")
        self.table = Table(value={"label": []})
        self.table.read_only = True
        self.table.native.setMinimumHeight(160)
        self.table.native.cellDoubleClicked.connect(self._go_to_row)
        #: The table's headers (with units), as in the exported CSV.
        self.headers: list[str] = []
        self.container = Container(
            widgets=[self.button, self.auto, self.export, self.review_btn, self.status, self.table]
        )
        self.review_btn.changed.connect(lambda: self.review_next())
        self.button.changed.connect(lambda: self.measure())
        self.export.changed.connect(self._export_dialog)
        widget.run_finished_callbacks.append(self._after_run)

    @property
    def is_running(self) -> bool:
        """A measurement is going."""
        return self._job is not None and self._job.running

    def measure(self, block: bool = False, timeout: float = 600.0) -> Measurement | None:
        """Measure the output layer's objects in a worker (the *Measure* button).

        Args:
            block: Wait (processing Qt events) until the table is ready.
            timeout: Longest wait in seconds with ``block=True``.

        Returns:
            With ``block=True`` the :class:`Measurement` (None if it failed), else None.
        """
        if self.is_running:
            if not block:
                _notify.info("a measurement is already running")
                return None
            # e.g. the automatic measurement after a run: let it end, then measure afresh
            self._widget.controller.wait(self._job, timeout, cancel=False)
        layer = self._widget.output_layer
        image = self._widget.image_layer
        try:
            if layer is None:
                raise PromptError("no output labels layer to measure: run first or choose one")
            if image is not None and tuple(full_resolution(image).shape) != tuple(layer.data.shape):
                image = None  # measure shapes only; intensities need a voxel-aligned image
            spacing = tuple(float(s) for s in (image.scale if image is not None else layer.scale))
        except PromptError as err:
            self.status.value = str(err)
            _notify.error(str(err))
            return None
        self.button.enabled = False
        self.status.value = f"Measuring '{layer.name}'…"
        before = self.last
        intensities = None if image is None else full_resolution(image)
        self._job = self._widget.controller.submit(
            "measuring",
            partial(measure_labels, layer.data, intensities, spacing),
            on_returned=partial(self._on_returned, layer),
            on_errored=self._on_errored,
            on_finished=self._on_finished,
        )
        if not block:
            return None
        self._widget.controller.wait(self._job, timeout, cancel=False)
        return self.last if self.last is not before else None

    def _after_run(self, layer: Labels) -> None:
        if self.auto.value and not self.is_running:
            self.measure()

    def _on_returned(self, layer: Labels, table: dict[str, np.ndarray]) -> None:
        table = with_quality(table, self._widget.session.qualities(layer))
        self.last = Measurement(layer, table)
        if qt_deleted(self.table):
            return
        # napari maps a Labels layer's feature rows to label values through the "index" column.
        import pandas as pd

        feats = {k.replace(" ", "_"): v for k, v in table.items()}
        layer.features = pd.DataFrame({"index": table["label"], **feats})
        self.unit = length_unit(self._widget.image_layer or layer)
        self.headers = fill(self.table.native, table, self.unit)
        self.status.value = f"{len(self.last)} object(s) in '{layer.name}'."

    def _on_errored(self, err: Exception) -> None:
        # The controller has logged it with its traceback.
        if qt_deleted(self.status):
            return
        self.status.value = f"Measuring failed: {err}"
        _notify.error(f"measuring failed: {err}")

    def _on_finished(self) -> None:
        if not qt_deleted(self.button):
            self.button.enabled = True

    def export_csv(self, path: str | Path) -> Path:
        """Write the last measurement as CSV (measuring first if there is none for the output).

        Raises:
            ValueError: nothing to measure, or the measurement failed.
        """
        if self.last is None or self.last.layer is not self._widget.output_layer:
            if self.measure(block=True) is None:
                raise ValueError("nothing measured: choose an output layer with objects")
        path = Path(path)
        if path.suffix.lower() != ".csv":
            path = path.with_suffix(".csv")
        unit = getattr(self, "unit", "units")
        write_measurements_csv({header(k, unit): v for k, v in self.last.table.items()}, path)
        self.status.value = f"Wrote {len(self.last)} row(s) to {path}."
        return path

    def _export_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        layer = self._widget.output_layer
        default = f"{layer.name if layer is not None else 'objects'} measurements.csv"
        path, _ = QFileDialog.getSaveFileName(
            self.container.native, "Export measurements", default, "CSV (*.csv)"
        )
        if path:
            try:
                self.export_csv(path)
            except (OSError, ValueError) as err:
                _notify.error(str(err))

    def _go_to_row(self, row: int, column: int = 0) -> None:
        """Select the row's label and move the viewer to its centroid slice, or, in the review
        column, to its worst slice to review."""
        last = self.last
        label = row_label(self.table.native, row)
        if last is None or label is None:
            return
        if list(last.table)[column] == REVIEW:
            q = self._widget.session.qualities(last.layer).get(label)
            if q is not None and q.slices_to_review:
                self._show_slice(label, q.axis, q.slices_to_review[0].index)
                return
        i = int(np.flatnonzero(np.asarray(last.table["label"]) == label)[0])
        centroid = [float(last.table[f"centroid_{a}"][i]) for a in "zyx"]
        go_to(self._widget.viewer, last.layer, label, centroid)

    def _show_slice(self, label: int, axis: int, index: int) -> None:
        layer = self._widget.output_layer if self.last is None else self.last.layer
        rec = self._widget.session.get(layer, label)
        point = list(np.asarray(self._widget.viewer.dims.point, float)[-3:])
        point = [float(v) for v in layer.world_to_data(point)]
        point[axis] = float(index)
        go_to(self._widget.viewer, layer, label, point, axis=axis if rec else None)

    def review_next(self) -> tuple[int, int] | None:
        """Go to the next slice to review (the *Review next* button).

        Returns:
            ``(label id, slice index)`` shown, or None when nothing is listed for review.
        """
        layer = self._widget.output_layer
        queue = [] if layer is None else self._widget.session.review_queue(layer)
        if not queue:
            self.status.value = "Nothing to review: no object of this session lists a slice."
            return None
        self._review_pos = (self._review_pos + 1) % len(queue)
        label, axis, item = queue[self._review_pos]
        self._show_slice(label, axis, item.index)
        q = self._widget.session.qualities(layer)[label]
        self.status.value = (
            f"Review {self._review_pos + 1} of {len(queue)}: label {label} (score "
            f"{q.score:.2f}), slice {item.index} along axis {axis}: {item.reason}"
        )
        return label, item.index
