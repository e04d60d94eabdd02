"""Find similar: every object that looks like a few annotated examples, then each one in 3D.

The user annotates one or a few examples on ONE slice (painted masks, or boxes that Box2Mask
turns into masks). PropMask, which was trained to carry a guiding slice's mask to the adjacent
slices, is used as a similarity detector: each example (its image crop and mask, cut and
normalised exactly as a guiding slice, docs/method.md) guides a query window that slides over
the slice (or a region of it) with overlap, as if each window were an "adjacent slice". Window
predictions are stitched into a per-pixel vote map, split into instances (connected components;
a distance-transform watershed splits blobs much larger than the examples), filtered by the
examples' size range, and the examples themselves are set aside. Every instance found (plus the
examples) then becomes its own :class:`~napari_propsam.labeling.ObjectPrompt` and is propagated
in 3D with :func:`~napari_propsam.labeling.stream_objects`.

Arrays are ZYX; a slice plane is the 2D array left after removing ``axis``; boxes and regions are
``(row0, col0, row1, col1)`` in that plane, half-open. No napari imports here.
"""

from __future__ import annotations

from ._search import SimilarConfig, detect_similar, similarity_map, split_instances
from ._volume import SimilarFound, find_similar, find_similar_stream

__all__ = [
    "SimilarConfig",
    "SimilarFound",
    "detect_similar",
    "find_similar",
    "find_similar_stream",
    "similarity_map",
    "split_instances",
]
