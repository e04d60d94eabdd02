"""Segment many objects of one volume, in process or on a dask.distributed cluster.

Each object is one task. A task carries the image *path* (every worker opens the file lazily and
reads only the windows its object needs), the model as a *spec* (a bundled name or weights path,
loaded once per worker process by the registry's cache) and the prompt; it returns the object's
bounding box and the bool mask inside it (:class:`~napari_propsam.api.ObjectROI`), never a
full-size volume. Arrays are ZYX; boxes are ``(row0, col0, row1, col1)`` in the prompt plane.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..api import ObjectROI, segment_roi
from ..config import BoxConfig, PropagationConfig, split_options
from ..device import tune_malloc
from ..labeling import ObjectPrompt
from ..quality import ObjectQuality
from ..registry import ModelBundle, ModelSpec, resolve_model
from ..validation import check_spacing
from ..volume import check_volume
from ..weights import CheckpointError
from ._prompt_table import BatchPrompt, plane_shape_of, validate_prompts

logger = logging.getLogger(__name__)

#: Seconds to wait for a ``scheduler=`` address to answer before giving up.
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ObjectResult:
    """The outcome of one object of a batch run.

    Attributes:
        label_id: The object's id.
        roi: Its bounding box (three ``(z, y, x)`` slices) and bool mask of the box shape, or
            None if it failed.
        error: Why it failed (a prompt the engine rejects, e.g. Box2Mask finds nothing), or None.
        seconds: Time spent on it by its worker.
        digest: Digest of its prompt (what a resumed run compares).
        quality: Its :class:`~napari_propsam.quality.ObjectQuality` (score in [0, 1], slices to
            review along the prompt axis, worst first), or None if it failed.
    """

    label_id: int
    roi: ObjectROI | None
    error: str | None = None
    seconds: float = 0.0
    digest: str = field(default="", repr=False)
    quality: ObjectQuality | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True if the object was segmented."""
        return self.roi is not None

    @property
    def bbox(self) -> tuple[slice, slice, slice] | None:
        """``(z, y, x)`` slices of the object's bounding box (None if it failed)."""
        return None if self.roi is None else self.roi.bbox

    @property
    def mask(self) -> np.ndarray | None:
        """Bool ``(bz, by, bx)`` mask of the bounding box (None if it failed)."""
        return None if self.roi is None else self.roi.mask


@dataclass(frozen=True)
class _Task:
    """Everything a worker needs for one object; small, so it ships cheaply."""

    image: str
    prompt: BatchPrompt
    digest: str
    model: Any
    device: str | None
    spacing: tuple[float, float, float] | None
    config: PropagationConfig
    box_config: BoxConfig


# --- Worker side ------------------------------------------------------------------------------

_images: dict[tuple[str, int], Any] = {}
_images_lock = threading.Lock()
_threads_set = False


class _Windowed:
    """Basic-indexing view of a ``(Z, Y, X)`` memory-mapped array that is not an ``ndarray``.

    The engine checks an in-memory float ``ndarray`` for NaN/Inf as a whole before every
    object; a memory-mapped tif or npy is an ``ndarray`` too, so without this every object would
    read the whole file. Behind this view only the windows an object reads are checked.
    """

    def __init__(self, array: np.ndarray) -> None:
        self._array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self._array[index])


def _open_image(path: str) -> Any:
    """The lazily opened volume at ``path``, kept per process (keyed by mtime: a rewritten file
    is reopened)."""
    from ..io import read_volume

    key = (path, os.stat(path).st_mtime_ns)
    with _images_lock:
        if key not in _images:
            _images.clear()  # one volume per run; never keep stale memory maps around
            image = read_volume(path)
            _images[key] = _Windowed(image) if isinstance(image, np.ndarray) else image
        return _images[key]


def _limit_threads_in_worker() -> None:
    """In a dask worker, give torch the worker's thread count (default 1), once per process.

    Without this every worker process would start one torch thread per core, and N workers on
    N cores would oversubscribe the machine N-fold.
    """
    global _threads_set
    if _threads_set:
        return
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not inside a dask worker: leave the caller's setting
        return
    n = int(getattr(getattr(worker, "state", None), "nthreads", 1) or 1)
    torch.set_num_threads(n)
    tune_malloc()  # a worker process is ours too
    _threads_set = True


def run_task(task: _Task) -> ObjectResult:
    """Segment one object (runs in a worker, or in process).

    Raises:
        CheckpointError, RuntimeError, OSError: failures that are not about this object's prompt
            (they stop the run instead of being recorded per object).
    """
    _limit_threads_in_worker()
    image = _open_image(task.image)
    p = task.prompt
    plane = plane_shape_of(image.shape, p.axis)
    if p.extra:  # several prompt slices: lists, as propagate takes them
        where: dict[str, Any] = {"slice_index": p.indices}
        if p.box is not None:
            where["box"] = [e.box for e in p.entries]
        else:
            where["mask"] = [e.plane_mask(plane) for e in p.entries]
    else:
        where = {"slice_index": p.index, "box": p.box, "mask": p.plane_mask(plane)}
    start = time.perf_counter()
    try:
        roi, quality = segment_roi(
            image,
            axis=p.axis,
            spacing=task.spacing,
            model=task.model,
            device=task.device,
            config=task.config,
            box_config=task.box_config,
            with_quality=True,
            **where,
        )
    except CheckpointError:
        raise
    except ValueError as err:  # this prompt's problem (e.g. Box2Mask finds no object)
        return ObjectResult(p.label_id, None, str(err), time.perf_counter() - start, task.digest)
    seconds = time.perf_counter() - start
    return ObjectResult(p.label_id, roi, None, seconds, task.digest, quality)


# --- Client side ------------------------------------------------------------------------------


def _portable_model(model: ModelSpec) -> Any:
    """The model spec workers receive: absolute paths (a worker's working directory may differ);
    bundled names, bundles and modules as they are (the latter two are pickled to workers)."""
    if isinstance(model, Path) or (isinstance(model, str) and Path(model).exists()):
        return str(Path(model).expanduser().resolve())
    if isinstance(model, Mapping):
        return {k: str(Path(v).expanduser().resolve()) for k, v in model.items() if v is not None}
    return model


def as_batch_prompts(prompts: Sequence[ObjectPrompt | BatchPrompt]) -> list[BatchPrompt]:
    """Accept :class:`~napari_propsam.labeling.ObjectPrompt` or :class:`BatchPrompt` items."""
    out = []
    for p in prompts:
        if isinstance(p, BatchPrompt):
            out.append(p)
        elif isinstance(p, ObjectPrompt):
            out.append(BatchPrompt.from_object_prompt(p))
        else:
            raise TypeError(f"prompts must be ObjectPrompt or BatchPrompt, got {type(p).__name__}")
    return out


@dataclass(frozen=True)
class BatchPlan:
    """A validated batch run, before any work (what :func:`plan_batch` returns).

    Attributes:
        image: Absolute path of the ``(Z, Y, X)`` image.
        shape: Its ``(Z, Y, X)`` shape.
        dtype: Its dtype name.
        prompts: The objects, ascending id.
        digests: ``{id: prompt digest}``.
        bundle: The model, loaded here once to fail early on a bad spec.
        tasks: One task per object, ascending id.
    """

    image: Path
    shape: tuple[int, int, int]
    dtype: str
    prompts: list[BatchPrompt]
    digests: dict[int, str]
    bundle: ModelBundle
    tasks: list[_Task]


def plan_batch(
    image_path: str | Path,
    prompts: Sequence[ObjectPrompt | BatchPrompt],
    *,
    model: ModelSpec = None,
    device: str | None = None,
    spacing: float | Sequence[float] | None = None,
    config: PropagationConfig | None = None,
    box_config: BoxConfig | None = None,
    **options: Any,
) -> BatchPlan:
    """Validate a batch run's inputs (see :func:`iter_batch`) and build its tasks.

    Raises:
        ValueError: bad image, prompts, spacing or options; a box prompt with a model that has
            no Box2Mask network.
        OSError: the image cannot be opened.
        CheckpointError: the model cannot be loaded.
    """
    from ._store import prompt_digest

    path = Path(image_path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"image not found: {image_path}")
    image = _open_image(str(path))
    shape = check_volume(image)
    sp = check_spacing(spacing)
    try:
        prop_cfg, box_cfg = split_options(options, config, box_config)
    except TypeError as err:
        raise ValueError(str(err)) from None
    items = validate_prompts(as_batch_prompts(prompts), shape)
    if not items:
        raise ValueError("no prompts: nothing to segment")
    bundle = resolve_model(model)
    if bundle.box2mask is None and any(p.box is not None for p in items):
        raise ValueError(f"model {bundle.name!r} has no Box2Mask network; use mask prompts")
    spec = _portable_model(model)
    digests = {p.label_id: prompt_digest(p) for p in items}
    tasks = [
        _Task(str(path), p, digests[p.label_id], spec, device, sp, prop_cfg, box_cfg) for p in items
    ]
    dtype = str(np.dtype(getattr(image, "dtype", np.float32)))
    return BatchPlan(path, shape, dtype, items, digests, bundle, tasks)


def start_local_cluster(workers: int) -> Any:
    """The cluster ``workers=N`` starts: N worker processes on 127.0.0.1, one thread each, no
    dashboard.

    dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker by default; that fixes
    glibc's mmap threshold, so torch's large temporary buffers are mapped and unmapped on every
    forward pass, which made inference about 1.7x slower per object (docs/performance.md). It is
    left unset here (a value in the environment still wins).

    Returns:
        A running ``distributed.LocalCluster``; close it when done.
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(
            n_workers=int(workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=logging.WARNING,
        )


def _connect(workers: int | None, scheduler: str | None, timeout: float) -> tuple[Any, Any]:
    """A dask client (and the LocalCluster it owns, if any).

    Raises:
        ImportError: dask.distributed is not installed.
        OSError: the scheduler does not answer within ``timeout`` seconds.
    """
    try:
        from distributed import Client
    except ImportError as err:
        raise ImportError(
            "parallel batch runs need dask.distributed: pip install 'napari-propsam[distributed]'"
        ) from err
    if scheduler is not None:
        try:
            return Client(scheduler, timeout=timeout, set_as_default=False), None
        except Exception as err:  # distributed raises OSError, TimeoutError or ValueError
            raise OSError(
                f"cannot reach the dask scheduler at {scheduler!r} within {timeout:g} s ({err})"
            ) from err
    cluster = start_local_cluster(int(workers))
    try:
        return Client(cluster, set_as_default=False), cluster
    except Exception:
        cluster.close()
        raise


def _run_in_process(tasks: Sequence[_Task]) -> Iterator[ObjectResult]:
    for task in tasks:
        yield run_task(task)


def _run_distributed(
    tasks: Sequence[_Task], workers: int | None, scheduler: str | None, timeout: float
) -> Iterator[ObjectResult]:
    from distributed import as_completed

    client, cluster = _connect(workers, scheduler, timeout)
    futures = []
    try:
        logger.info(
            "dask: %d worker(s) at %s",
            len(client.scheduler_info().get("workers", {})),
            client.scheduler.address,
        )
        run = uuid.uuid4().hex[:8]  # unique keys: a shared scheduler may run other batches
        futures = [
            client.submit(run_task, t, key=f"propsam-{run}-{t.prompt.label_id}", pure=False)
            for t in tasks
        ]
        for fut in as_completed(futures, loop=client.loop):
            yield fut.result()  # re-raises a worker's exception here
    finally:
        # Also on an error or an early close of the generator: stop what is still queued.
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        client.close()
        if cluster is not None:
            cluster.close()


def iter_batch(
    image_path: str | Path,
    prompts: Sequence[ObjectPrompt | BatchPrompt],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    model: ModelSpec = None,
    device: str | None = None,
    spacing: float | Sequence[float] | None = None,
    config: PropagationConfig | None = None,
    box_config: BoxConfig | None = None,
    skip: Sequence[int] = (),
    connect_timeout: float = CONNECT_TIMEOUT,
    **options: Any,
) -> Iterator[ObjectResult]:
    """Segment many objects of one volume; yield each object's ROI as it completes.

    Arguments are validated now (and the model is loaded once here, to fail early); the work runs
    as the returned generator is iterated. Closing it early cancels the queued objects.

    Args:
        image_path: ``(Z, Y, X)`` volume file: tif, zarr or OME-Zarr (read lazily by each worker).
        prompts: The objects (:class:`~napari_propsam.labeling.ObjectPrompt` with a full
            ``(H, W)`` mask or a ``(row0, col0, row1, col1)`` box, or :class:`BatchPrompt`);
            ids unique and positive.
        workers: Start a local dask cluster of this many worker processes (one thread each).
            0 or None (and no ``scheduler``) runs in this process, one object after another.
        scheduler: Address of a running dask scheduler (e.g. one started by dask-jobqueue);
            exclusive with ``workers``. Workers must see ``image_path`` and the model files.
        model: Bundled model name, weights path or ``{"propmask": path, "box2mask": path}``
            (resolved in each worker, once per process); a loaded bundle is pickled to workers.
        device: Device request for every worker (``"auto"``/None, ``"cpu"``, ``"cuda"``, ...).
        spacing: Voxel size ``(z, y, x)`` or one number (see :func:`napari_propsam.segment`).
        config: Base :class:`~napari_propsam.config.PropagationConfig`.
        box_config: Base :class:`~napari_propsam.config.BoxConfig`.
        skip: Ids not to run (e.g. finished in an earlier run).
        connect_timeout: Seconds to wait for ``scheduler``.
        **options: Fields of either config, e.g. ``thickness=10``.

    Returns:
        Generator of :class:`ObjectResult` in completion order (ascending id in process).

    Raises:
        ValueError: bad image, prompts, spacing, options or worker settings.
        OSError: the image cannot be opened; the scheduler cannot be reached (when iterating).
        CheckpointError: the model cannot be loaded.
    """
    check_parallel(workers, scheduler)
    plan = plan_batch(
        image_path,
        prompts,
        model=model,
        device=device,
        spacing=spacing,
        config=config,
        box_config=box_config,
        **options,
    )
    skipped = {int(i) for i in skip}
    return run_plan(plan.tasks, skipped, workers, scheduler, connect_timeout)


def check_parallel(workers: int | None, scheduler: str | None) -> None:
    """Validate the ``workers`` / ``scheduler`` pair.

    Raises:
        ValueError: both given, or a negative worker count.
    """
    if workers is not None and (isinstance(workers, bool) or int(workers) < 0):
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    if scheduler is not None and workers:
        raise ValueError("give either workers (a local cluster) or scheduler, not both")


def run_plan(
    tasks: Sequence[_Task],
    skip: set[int],
    workers: int | None,
    scheduler: str | None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Iterator[ObjectResult]:
    """Run a plan's tasks (except ``skip``), yielding results as they complete."""
    todo = [t for t in tasks if t.prompt.label_id not in skip]
    if not todo:
        return iter(())
    if scheduler is None and not workers:
        return _run_in_process(todo)
    return _run_distributed(todo, workers, scheduler, connect_timeout)


__all__ = [
    "CONNECT_TIMEOUT",
    "BatchPlan",
    "ObjectResult",
    "as_batch_prompts",
    "check_parallel",
    "iter_batch",
    "plan_batch",
    "run_plan",
    "run_task",
    "start_local_cluster",
]
