"""What the widget remembers about the objects it segmented in this session.

Per output layer and label id: the object's prompt slices (so *Re-propagate from this slice* adds
the corrected slice to the object's earlier prompts instead of starting over) and its
:class:`~napari_propsam.quality.ObjectQuality` (score and slices to review, for the *Measure*
table and *Review next*). Bookkeeping only, on the main thread; nothing here touches a layer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..labeling import ObjectPrompt
from ..quality import ObjectQuality, ReviewSlice

logger = logging.getLogger(__name__)


@dataclass
class ObjectRecord:
    """One object segmented in this session.

    Attributes:
        layer: The output Labels layer it was written into.
        label_id: Its id there.
        axis: Propagation axis of its prompts.
        prompt_slices: Its prompt slices along ``axis``, ascending.
        quality: Its quality from the last run that wrote it (None if the engine gave none).
    """

    layer: Any
    label_id: int
    axis: int
    prompt_slices: tuple[int, ...]
    quality: ObjectQuality | None = None


@dataclass
class Session:
    """The records of the session's objects, keyed by ``(id(output layer), label id)``."""

    records: dict[tuple[int, int], ObjectRecord] = field(default_factory=dict)

    def record(
        self, layer: Any, prompt: ObjectPrompt, quality: ObjectQuality | None
    ) -> ObjectRecord:
        """Remember an object a run has just finished (replacing any earlier record)."""
        rec = ObjectRecord(layer, int(prompt.label_id), int(prompt.axis), tuple(prompt.indices))
        rec.quality = quality
        self.records[(id(layer), rec.label_id)] = rec
        return rec

    def get(self, layer: Any, label_id: int) -> ObjectRecord | None:
        """The record of ``label_id`` in ``layer`` (None: not segmented in this session)."""
        rec = self.records.get((id(layer), int(label_id)))
        return rec if rec is not None and rec.layer is layer else None

    def qualities(self, layer: Any) -> dict[int, ObjectQuality]:
        """``{label id: quality}`` of the session's objects in ``layer``."""
        return {
            r.label_id: r.quality
            for r in self.records.values()
            if r.layer is layer and r.quality is not None
        }

    def review_queue(self, layer: Any) -> list[tuple[int, int, ReviewSlice]]:
        """``(label id, axis, slice)`` to review in ``layer``: the objects by score, worst first,
        and each object's slices to review, worst first."""
        recs = [r for r in self.records.values() if r.layer is layer and r.quality is not None]
        recs.sort(key=lambda r: (r.quality.score, r.label_id))  # type: ignore[union-attr]
        return [
            (r.label_id, int(r.quality.axis), s)  # type: ignore[union-attr]
            for r in recs
            for s in r.quality.slices_to_review  # type: ignore[union-attr]
        ]
