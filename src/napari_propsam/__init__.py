"""napari-propsam: segment any 3D object from one 2D prompt (PropSAM / PAM).

Scripting API (no napari needed)::

    import napari_propsam
    labels = napari_propsam.segment(volume, slice_index=40, box=(120, 80, 160, 130))
    for update in napari_propsam.propagate(volume, slice_index=40, mask=sketch):
        ...  # stream: update.index, update.offset, update.mask, update.progress

Arrays are ZYX; boxes are ``(row0, col0, row1, col1)`` in the prompt slice's plane.
"""

from ._version import __version__
from .api import ObjectROI, apply_update, box_to_mask, propagate, segment, segment_roi
from .batch import iter_batch, run_batch
from .config import BoxConfig, PropagationConfig
from .device import select_device, tune_malloc
from .propagation import SliceUpdate, SmallPromptWarning
from .quality import ObjectQuality, ReviewSlice
from .registry import ModelBundle, ModelInfo, list_models, resolve_model
from .series import SeriesUpdate, propagate_series, propagate_series_stream, read_series
from .similar import SimilarConfig, SimilarFound, detect_similar, find_similar, find_similar_stream
from .weights import CheckpointError

__all__ = [
    "BoxConfig",
    "CheckpointError",
    "ModelBundle",
    "ModelInfo",
    "ObjectQuality",
    "ObjectROI",
    "PropagationConfig",
    "ReviewSlice",
    "SeriesUpdate",
    "SimilarConfig",
    "SimilarFound",
    "SliceUpdate",
    "SmallPromptWarning",
    "__version__",
    "apply_update",
    "box_to_mask",
    "detect_similar",
    "find_similar",
    "find_similar_stream",
    "iter_batch",
    "list_models",
    "propagate",
    "propagate_series",
    "propagate_series_stream",
    "read_series",
    "resolve_model",
    "run_batch",
    "segment",
    "segment_roi",
    "select_device",
    "tune_malloc",
]
