"""Batch segmentation: many objects of one volume, one or more prompts each, on dask.distributed.

* :func:`run_batch` segments every prompt and merges the objects into one labels volume (tif or
  zarr), resumable through per-object parts stored next to the output;
* :func:`iter_batch` is the engine underneath: it yields each object's bounding box and mask
  (:class:`ObjectResult`) as it completes;
* :func:`read_prompts` reads prompts from a CSV file or a sparse labels volume (rows sharing
  an ``id``, or an id painted on several slices, give one object several prompts);
* :func:`read_report` reads the per-object report a run writes (quality score, slices to
  review); :func:`to_review` picks the objects to check first.

Work runs in process, on a local cluster (``workers=N``) or on an existing dask scheduler
(``scheduler="tcp://..."``). Arrays are ZYX; boxes are ``(row0, col0, row1, col1)`` in the plane
left after removing the propagation axis.
"""

from ._engine import ObjectResult, iter_batch, plan_batch, start_local_cluster
from ._prompt_table import (
    CSV_COLUMNS,
    BatchPrompt,
    SlicePrompt,
    prompts_from_sketches,
    read_prompts,
    read_prompts_csv,
)
from ._report import REPORT_COLUMNS, ObjectReport, read_report, report_path, to_review
from ._run import run_batch
from ._store import parts_dir

__all__ = [
    "CSV_COLUMNS",
    "REPORT_COLUMNS",
    "BatchPrompt",
    "ObjectReport",
    "ObjectResult",
    "SlicePrompt",
    "iter_batch",
    "parts_dir",
    "plan_batch",
    "prompts_from_sketches",
    "read_prompts",
    "read_prompts_csv",
    "read_report",
    "report_path",
    "run_batch",
    "start_local_cluster",
    "to_review",
]
