"""The per-object report of a batch run: quality score and slices to review, one CSV row each.

A run over thousands of objects ends with ``LABELS.objects.csv`` next to the labels ``LABELS``:
one row per object (ascending id) with its status, voxels in the output, quality score and the
slices worth a look (indices along the object's prompt axis of the ZYX volume, worst first,
``;``-separated). :func:`to_review` picks the short list to check first.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Columns of the report, in order.
REPORT_COLUMNS = ("id", "name", "status", "axis", "voxels", "score", "review_slices", "seconds",
                  "error")  # fmt: skip

#: Objects scored below this are listed for review (the benchmark's failure line is DSC 0.7).
REVIEW_BELOW = 0.7


@dataclass(frozen=True)
class ObjectReport:
    """One object's row of the report.

    Attributes:
        label_id: The object's id in the labels volume.
        name: Its name for messages (``"label 5"``, ``"prompts.csv line 4"``, ...).
        status: ``"computed"`` (in this run), ``"resumed"`` (from a stored part) or ``"failed"``.
        axis: Its prompt axis (the axis of ``review``'s slice indices).
        voxels: Voxels it holds in the merged labels (after overlaps; 0 if failed or hidden).
        score: Quality score in [0, 1] (NaN if failed or stored by an older version).
        review: Slice indices along ``axis`` worth a look, worst first.
        seconds: Worker time spent on it (NaN if unknown).
        error: Why it failed ("" otherwise).
    """

    label_id: int
    name: str
    status: str
    axis: int
    voxels: int
    score: float
    review: tuple[int, ...]
    seconds: float
    error: str = ""


def report_path(out: str | Path) -> Path:
    """The report of an output ``LABELS``: ``LABELS.objects.csv`` next to it."""
    out = Path(out)
    return out.with_name(out.name + ".objects.csv")


def _fmt(value: float, digits: int) -> str:
    return "" if not math.isfinite(value) else f"{value:.{digits}f}"


def write_report(path: str | Path, rows: Sequence[ObjectReport]) -> Path:
    """Write the report CSV (header :data:`REPORT_COLUMNS`, rows in ascending id) atomically."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.propsam-tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(REPORT_COLUMNS)
        for r in sorted(rows, key=lambda r: r.label_id):
            w.writerow(
                [r.label_id, r.name, r.status, r.axis, r.voxels, _fmt(r.score, 4),
                 ";".join(str(i) for i in r.review), _fmt(r.seconds, 3), r.error]
            )  # fmt: skip
    os.replace(tmp, path)
    return path


def read_report(path: str | Path) -> list[ObjectReport]:
    """Read a report written by :func:`write_report`."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.append(
                ObjectReport(
                    int(row["id"]),
                    row["name"],
                    row["status"],
                    int(row["axis"]),
                    int(row["voxels"]),
                    float(row["score"]) if row["score"] else math.nan,
                    tuple(int(v) for v in row["review_slices"].split(";") if v),
                    float(row["seconds"]) if row["seconds"] else math.nan,
                    row["error"],
                )
            )
    return out


def to_review(rows: Sequence[ObjectReport], below: float = REVIEW_BELOW) -> list[ObjectReport]:
    """Segmented objects scored below ``below``, lowest score first (ties: ascending id)."""
    low = [r for r in rows if r.status != "failed" and math.isfinite(r.score) and r.score < below]
    return sorted(low, key=lambda r: (r.score, r.label_id))


__all__ = [
    "REPORT_COLUMNS",
    "REVIEW_BELOW",
    "ObjectReport",
    "read_report",
    "report_path",
    "to_review",
    "write_report",
]
