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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton, Table
from napari.layers import Labels
from napari.qt.threading import thread_worker

from ..measure import measure_labels, write_measurements_csv
from . import _notify
from ._layout import StatusLabel
from ._prompts import PromptError, full_resolution
from ._runner import qt_deleted, wait_until

if TYPE_CHECKING:
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


def _cell(value: Any) -> Any:
    """Table text: integers as they are, floats to 4 significant digits."""
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return int(value) if isinstance(value, np.integer) else value


class MeasurePanel:
    """Widgets and state of the *Measure* tab.

    Args:
        widget: The dock widget (its output and image layers).
    """

    def __init__(self, widget: PropSAMWidget) -> None:
        self._widget = widget
        self._busy = False
        self.last: Measurement | None = None
        self.button = PushButton(text="Measure", tooltip="Measure every object of the output")
        self.auto = CheckBox(text="Measure after each run", value=True)
        self.export = PushButton(text="Export CSV…")
        self.status = StatusLabel(value="Measure the objects of the output layer.")
        self.table = Table(value={"label": []})
        self.table.read_only = True
        self.table.native.setMinimumHeight(160)
        self.table.native.cellDoubleClicked.connect(self._go_to_row)
        self.container = Container(
            widgets=[self.button, self.auto, self.export, self.status, self.table]
        )
        self.button.changed.connect(lambda: self.measure())
        self.export.changed.connect(self._export_dialog)
        widget.run_finished_callbacks.append(self._after_run)

    @property
    def is_running(self) -> bool:
        """A measurement is going."""
        return self._busy

    def measure(self, block: bool = False, timeout: float = 600.0) -> Measurement | None:
        """Measure the output layer's objects in a worker (the *Measure* button).

        Args:
            block: Wait (processing Qt events) until the table is ready.
            timeout: Longest wait in seconds with ``block=True``.

        Returns:
            With ``block=True`` the :class:`Measurement` (None if it failed), else None.
        """
        if self._busy:
            if not block:
                _notify.info("a measurement is already running")
                return None
            # e.g. the automatic measurement after a run: let it end, then measure afresh
            wait_until(lambda: not self._busy, timeout, lambda: None)
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
        self._busy = True
        self.button.enabled = False
        self.status.value = f"Measuring '{layer.name}'…"
        before = self.last
        worker = thread_worker(measure_labels, start_thread=False, ignore_errors=True)(
            layer.data, None if image is None else full_resolution(image), spacing
        )
        worker.returned.connect(lambda table: self._on_returned(layer, table))
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        worker.start()
        if not block:
            return None
        wait_until(lambda: not self._busy, timeout, lambda: None)
        return self.last if self.last is not before else None

    def _after_run(self, layer: Labels) -> None:
        if self.auto.value and not self._busy:
            self.measure()

    def _on_returned(self, layer: Labels, table: dict[str, np.ndarray]) -> None:
        self.last = Measurement(layer, table)
        if qt_deleted(self.table):
            return
        # napari maps a Labels layer's feature rows to label values through the "index" column.
        import pandas as pd

        layer.features = pd.DataFrame({"index": table["label"], **table})
        self.table.value = {k: [_cell(v) for v in col] for k, col in table.items()}
        self.status.value = f"{len(self.last)} object(s) in '{layer.name}'."

    def _on_errored(self, err: Exception) -> None:
        logger.error("measuring failed: %s", err, exc_info=err)
        if qt_deleted(self.status):
            return
        self.status.value = f"Measuring failed: {err}"
        _notify.error(f"measuring failed: {err}")

    def _on_finished(self) -> None:
        self._busy = False
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
        write_measurements_csv(self.last.table, path)
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

    def _go_to_row(self, row: int, _column: int = 0) -> None:
        """Select the row's label and move the viewer to its centroid slice."""
        last = self.last
        if last is None or not 0 <= row < len(last):
            return
        layer = last.layer
        layer.selected_label = int(last.table["label"][row])
        centroid = [float(last.table[f"centroid_{a}"][row]) for a in "zyx"]
        world = np.asarray(layer.data_to_world(centroid), dtype=float)
        dims = self._widget.viewer.dims
        dims.set_point(tuple(range(dims.ndim - len(world), dims.ndim)), tuple(world))
