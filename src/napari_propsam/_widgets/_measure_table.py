"""The Measure tab's table: headers with units, full-precision cells that sort as numbers, the
per-object quality columns, and moving the viewer to an object's slice.

Cells show what the CSV holds (integers as integers, floats with full ``repr`` precision), so a
value in the table and in the exported file are the same text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QStyledItemDelegate, QTableWidget, QTableWidgetItem

from ..measure import COLUMN_UNITS
from ..quality import ObjectQuality

logger = logging.getLogger(__name__)

#: Quality columns added to the measurements for objects segmented in this session.
SCORE, REVIEW = "score", "review slices"
QUALITY_UNITS = {SCORE: "", REVIEW: "slices"}
_POWERS = {"u^3": "³", "u^2": "²", "u": ""}


def length_unit(layer: Any) -> str:
    """The physical length unit of ``layer`` for headers: its napari ``units`` when they are one
    real unit (e.g. ``µm``), ``px`` when they are pixels at scale 1, else ``units`` (the unit of
    the layer's ``scale``, which napari does not know)."""
    units = tuple(getattr(layer, "units", ()) or ())
    names = {f"{u:~}" if hasattr(u, "dimensionality") else str(u) for u in units}
    if len(names) == 1:
        name = names.pop()
        if name not in ("px", "pixel"):
            return name
    scale = np.asarray(getattr(layer, "scale", [1.0]), float)
    return "px" if np.allclose(scale, 1.0) else "units"


def header(column: str, unit: str) -> str:
    """``"volume (µm³)"``: the column with its unit (none for dimensionless columns)."""
    kind = QUALITY_UNITS.get(column, COLUMN_UNITS.get(column, ""))
    if kind in _POWERS:
        kind = unit + _POWERS[kind]
    return f"{column} ({kind})" if kind else column


def cell_text(value: Any) -> str:
    """The CSV's text of a value: integers as integers, floats in full precision, NaN ``nan``."""
    v = value.item() if isinstance(value, np.generic) else value
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return str(v)


def with_quality(
    table: Mapping[str, np.ndarray], qualities: Mapping[int, ObjectQuality]
) -> dict[str, np.ndarray]:
    """``table`` plus ``score`` (NaN: not segmented in this session) and ``review slices``
    (count; -1: unknown) per label."""
    labels = [int(v) for v in table["label"]]
    out = dict(table)
    out[SCORE] = np.array(
        [qualities[i].score if i in qualities else np.nan for i in labels], float
    )
    out[REVIEW] = np.array(
        [len(qualities[i].slices_to_review) if i in qualities else -1 for i in labels], np.int64
    )
    return out


class NumericItem(QTableWidgetItem):
    """A read-only cell that shows ``text`` and sorts by ``number``."""

    def __init__(self, text: str, number: float) -> None:
        super().__init__(text)
        self.number = number
        self.setData(Qt.ItemDataRole.UserRole, number)
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.number, getattr(other, "number", math.inf)
        return (math.isnan(a), a) < (math.isnan(b), b)  # NaN last


def fill(table: QTableWidget, columns: Mapping[str, np.ndarray], unit: str) -> list[str]:
    """Fill ``table`` with ``columns`` (sortable by a header click); returns the headers."""
    names = list(columns)
    headers = [header(c, unit) for c in names]
    n = len(columns[names[0]]) if names else 0
    if type(table.itemDelegate()) is not QStyledItemDelegate:
        # magicgui's delegate shows numbers with 4 decimals or 4 significant digits
        # (44660.75 as 4.466e+04): show the cell's text, i.e. the CSV's, as it is
        table.setItemDelegate(QStyledItemDelegate(table))
    table.setSortingEnabled(False)
    table.clear()
    table.setColumnCount(len(names))
    table.setRowCount(n)
    table.setHorizontalHeaderLabels(headers)
    for c, name in enumerate(names):
        col = columns[name]
        for r in range(n):
            v = col[r]
            try:
                number = float(v)
            except (TypeError, ValueError):
                number = math.nan
            table.setItem(r, c, NumericItem(cell_text(v), number))
    table.setSortingEnabled(True)
    return headers


def row_label(table: QTableWidget, row: int) -> int | None:
    """The label id in (sorted) row ``row`` (column 0 is ``label``)."""
    item = table.item(row, 0)
    return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))


def go_to(viewer: Any, layer: Any, label: int, point: list[float], axis: int | None = None) -> None:
    """Select ``label`` in ``layer`` and move the viewer to the data ``point`` (z, y, x); with
    ``axis``, show the plane perpendicular to it (the slice ``point[axis]``)."""
    layer.selected_label = int(label)
    world = np.asarray(layer.data_to_world(point), dtype=float)
    dims = viewer.dims
    offset = dims.ndim - len(world)
    if axis is not None and dims.ndisplay == 2 and offset + axis in dims.displayed:
        order = list(dims.order)
        order.remove(offset + axis)
        dims.order = tuple(order[: len(order) - 2] + [offset + axis] + order[len(order) - 2 :])
    dims.set_point(tuple(range(offset, dims.ndim)), tuple(world))
