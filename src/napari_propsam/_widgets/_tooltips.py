"""Tooltips of the dock widget's controls that are not set where the control is made.

Every control of the dock widget carries a tooltip (``tests/_widgets/test_tooltips.py`` walks
them all). Controls made with a ``tooltip=`` argument keep theirs; :func:`apply_tooltips` sets
the rest from :data:`TIPS` (dotted attribute paths from the :class:`~.widget.PropSAMWidget`), and
the tabs' tooltips.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

TIPS: dict[str, str] = {
    "settings.model": "Model used by Run, Re-propagate, Find similar and as the start of "
    "Fine-tune: the bundled weights, a file added with Browse…, or a fine-tuned model",
    "settings.device": "Where the networks run: auto picks CUDA, then Apple MPS, then the CPU",
    "settings.overwrite": "Let new objects take voxels of other labels in the output layer "
    "(off: other labels are never overwritten)",
    "_add_boxes": "Add a Shapes layer for boxes and switch to the rectangle tool: each "
    "rectangle on the displayed slice is one object",
    "_add_sketch": "Add a Labels layer for sketches and switch to the brush: paint each object "
    "with its own label (the same label on several slices: one object, several prompts)",
    "_run_btn": "Segment every box / sketch on the displayed slice in 3D, streaming into the "
    "output layer (Shift-R with the canvas focused); Ctrl+Z undoes one object",
    "controller.cancel_button": "Stop the running segmentation or fine-tuning within about one "
    "forward pass (segmenting: the interrupted object is removed, finished ones are kept)",
    "controller.progress": "Progress of the running segmentation or fine-tuning (a moving bar: "
    "a phase without a fraction, e.g. loading the model)",
    "measure.auto": "Measure the output layer again after every run that wrote objects",
    "measure.export": "Write the table to a CSV file (the same columns and full-precision "
    "values; measures first if needed)",
    "measure.table": "One row per object; click a header to sort, double-click a row to jump to "
    "the object (in the review slices column: to its worst slice)",
    "finetune.box2mask": "Also fine-tune the box network (Box2Mask) on the same objects, so box "
    "prompts improve too",
    "finetune.button": "Train the selected model on the chosen labels in the background; the "
    "result is added to the Model dropdown and selected",
}

TAB_TIPS: tuple[str, ...] = (
    "Prompts, settings, Run, Re-propagate, Find similar and 2D series",
    "Per-object measurements, quality score and slices to review; CSV export",
    "Adapt the model to objects you have corrected",
)


def _resolve(root: Any, path: str) -> Any | None:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def apply_tooltips(widget: Any) -> None:
    """Give every control listed in :data:`TIPS` its tooltip (keeping one set already), and the
    tabs theirs."""
    for path, text in TIPS.items():
        control = _resolve(widget, path)
        if control is None:
            logger.debug("no control %s for a tooltip", path)
            continue
        if not getattr(control, "tooltip", None):
            control.tooltip = text
    tabs = getattr(widget, "_tabs", None)
    if tabs is not None:
        for i, text in enumerate(TAB_TIPS[: tabs.count()]):
            tabs.setTabToolTip(i, text)
