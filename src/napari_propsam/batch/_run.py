"""``run_batch``: many objects into one labels volume, resumable, with progress and an ETA."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import BoxConfig, PropagationConfig
from ..labeling import ObjectPrompt
from ..registry import ModelBundle, ModelSpec
from ..weights import LoadedNetwork
from ._engine import (
    CONNECT_TIMEOUT,
    BatchPlan,
    ObjectResult,
    check_parallel,
    plan_batch,
    run_plan,
)
from ._prompt_table import BatchPrompt
from ._report import (
    REVIEW_BELOW,
    ObjectReport,
    read_report,
    report_path,
    to_review,
    write_report,
)
from ._store import (
    finished_ids,
    merge_parts,
    output_kind,
    part_review,
    parts_dir,
    prepare_parts,
    remove_parts,
    write_part,
)

logger = logging.getLogger(__name__)

#: Seconds between two progress lines (the first and the last object are always logged).
PROGRESS_INTERVAL = 5.0


def _network_fingerprint(net: LoadedNetwork | None) -> Any:
    """A loaded network's identity: its file (path, size, mtime) or a hash of its weights."""
    if net is None:
        return None
    src = Path(net.source)
    if src.is_file():
        st = src.stat()
        return {"file": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    h = hashlib.sha256()
    for name, tensor in sorted(net.model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"sha256": h.hexdigest()}


def _image_fingerprint(plan: BatchPlan) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(plan.image), "shape": plan.shape, "dtype": plan.dtype}
    if plan.image.is_file():  # a directory's (zarr) mtime does not track its chunks' contents
        st = plan.image.stat()
        out.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    return out


def run_fingerprint(plan: BatchPlan) -> dict[str, Any]:
    """What every part of a run depends on besides its own prompt (compared on resume).

    The device is not part of it: resuming on another machine reuses the finished objects.
    """
    task = plan.tasks[0]
    bundle: ModelBundle = plan.bundle
    return {
        "format": 1,
        "image": _image_fingerprint(plan),
        "model": {
            "propmask": _network_fingerprint(bundle.propmask),
            "box2mask": _network_fingerprint(bundle.box2mask),
        },
        "options": {
            "spacing": task.spacing,
            "propagation": asdict(task.config),
            "box": asdict(task.box_config),
        },
    }


class _Progress:
    """Logs ``done / total`` objects with a rate and an ETA, at most every ``interval`` s."""

    def __init__(self, total: int, todo: int, interval: float = PROGRESS_INTERVAL) -> None:
        self.total, self.todo, self.interval = total, todo, interval
        self.done = 0
        self.start = self.last = time.perf_counter()

    def step(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.done not in (1, self.todo) and now - self.last < self.interval:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.todo - self.done) / rate
        logger.info(
            "%d/%d objects done (%.2f objects/s, ETA %s)",
            self.total - self.todo + self.done,
            self.total,
            rate,
            _format_seconds(eta),
        )


def _format_seconds(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def _report_rows(
    plan: BatchPlan,
    parts: Path,
    computed: dict[int, ObjectResult],
    painted: dict[int, int],
) -> list[ObjectReport]:
    """One report row per object: this run's results, and the stored parts of resumed ones."""
    rows = []
    for p in plan.prompts:
        voxels = painted.get(p.label_id, 0)
        r = computed.get(p.label_id)
        if r is not None and r.roi is None:
            row = ObjectReport(p.label_id, p.label, "failed", p.axis, 0, math.nan, (), r.seconds,
                               r.error or "failed")  # fmt: skip
        elif r is not None:
            q = r.quality
            score = math.nan if q is None else float(q.score)
            review = () if q is None else tuple(q.review_indices)
            row = ObjectReport(p.label_id, p.label, "computed", p.axis, voxels, score, review,
                               r.seconds)  # fmt: skip
        else:
            score, review, seconds = part_review(parts, p.label_id)
            row = ObjectReport(p.label_id, p.label, "resumed", p.axis, voxels, score, review,
                               seconds)  # fmt: skip
        rows.append(row)
    return rows


def _check_run(
    out_path: str | Path,
    overwrite: bool,
    resume: bool,
    workers: int | None,
    scheduler: str | None,
) -> tuple[Path, Path]:
    """The output path and its parts directory, after checking the output and worker settings.

    Raises:
        FileExistsError: the output exists and neither ``overwrite`` nor ``resume``.
        ValueError: an unsupported output suffix, both ``overwrite`` and ``resume``, or bad
            worker settings.
    """
    out = Path(out_path).expanduser()
    output_kind(out)
    if overwrite and resume:
        raise ValueError("overwrite and resume exclude each other")
    parts = parts_dir(out)
    if out.exists() and not (overwrite or resume):
        raise FileExistsError(
            f"{out} exists; pass --overwrite (overwrite=True) to replace it or --resume "
            "(resume=True) to finish an earlier run"
        )
    check_parallel(workers, scheduler)
    return out, parts


def _prepare_resume(
    out: Path, parts: Path, plan: BatchPlan, resume: bool, overwrite: bool
) -> set[int]:
    """Prepare the parts directory for this run; the ids whose stored parts can be reused.

    Raises:
        ValueError: the output is the image, or resumed parts were made from other inputs.
    """
    if out.resolve() == plan.image:
        raise ValueError("the output would overwrite the image")
    prepare_parts(parts, run_fingerprint(plan), resume=resume, overwrite=overwrite)
    done = finished_ids(parts, plan.prompts, plan.shape)
    if done:
        logger.info("resuming: %d of %d objects already done", len(done), len(plan.prompts))
    return done


def _store_results(
    plan: BatchPlan,
    parts: Path,
    n_done: int,
    results: Iterator[ObjectResult],
    on_result: Callable[[ObjectResult], None] | None,
) -> tuple[dict[int, ObjectResult], dict[int, str]]:
    """Store each successful result as a part as soon as it arrives, logging the progress.

    Args:
        n_done: How many objects an earlier run finished (the progress counts them as done).
        results: This run's results, in completion order.

    Returns:
        ``(computed, failed)``: every result of this run by id, and the failed ids' errors.

    Raises:
        RuntimeError: every object failed.
    """
    total = len(plan.prompts)
    progress = _Progress(total, total - n_done)
    failed: dict[int, str] = {}
    computed: dict[int, ObjectResult] = {}
    for result in results:
        if result.roi is None:
            failed[result.label_id] = result.error or "failed"
            logger.warning("object %d failed: %s", result.label_id, result.error)
        else:
            write_part(
                parts, result.label_id, result.roi, result.digest, result.seconds, result.quality
            )
        computed[result.label_id] = result
        progress.step()
        if on_result is not None:
            on_result(result)
    if len(failed) == total:
        raise RuntimeError(
            f"all {total} objects failed; first error: {next(iter(failed.values()))}"
        )
    return computed, failed


def _finish(
    out: Path,
    parts: Path,
    plan: BatchPlan,
    computed: dict[int, ObjectResult],
    failed: dict[int, str],
    report: bool | str | Path,
    keep_parts: bool,
) -> Path:
    """Paint the parts into the output (lowest id wins), write the report, drop the parts.

    Returns:
        ``out``.
    """
    ids = [p.label_id for p in plan.prompts if p.label_id not in failed]
    spacing = plan.tasks[0].spacing if plan.tasks else None
    _, painted = merge_parts(out, parts, ids, plan.shape, spacing)
    hidden = [i for i, n in painted.items() if n == 0]
    if hidden:
        logger.warning("objects %s have no voxel left after overlaps (lower ids won)", hidden)
    logger.info(
        "wrote %s: %d objects%s", out, len(painted), f", {len(failed)} failed" if failed else ""
    )
    if report:
        where = report_path(out) if report is True else Path(report).expanduser()
        write_report(where, _report_rows(plan, parts, computed, painted))
        low = to_review(read_report(where))
        logger.info("wrote %s (%d objects scored below %.2f)", where, len(low), REVIEW_BELOW)
    if not keep_parts:
        remove_parts(parts)
    return out


def run_batch(
    image_path: str | Path,
    prompts: Sequence[ObjectPrompt | BatchPrompt],
    out_path: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    model: ModelSpec = None,
    device: str | None = None,
    spacing: float | Sequence[float] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    keep_parts: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT,
    config: PropagationConfig | None = None,
    box_config: BoxConfig | None = None,
    on_result: Callable[[ObjectResult], None] | None = None,
    report: bool | str | Path = True,
    **options: Any,
) -> Path:
    """Segment many objects of one volume into one labels volume (tif or zarr).

    Each finished object is stored at once as a part in ``OUT.parts/`` (its ZYX bounding box and
    mask), so an interrupted run loses at most the objects in flight; with ``resume=True`` a
    rerun skips every object whose part matches its prompt, after checking that the image,
    model and options are those of the stored parts. When all objects are done the parts are
    painted into the output in ascending id, each object only onto voxels still 0: where objects
    overlap **the lowest id wins**, whatever the completion order or worker count. The output is
    written under a temporary name and renamed, so ``out_path`` is never left half-written.

    Args:
        image_path: ``(Z, Y, X)`` image file (tif, zarr, OME-Zarr).
        prompts: The objects (:class:`~napari_propsam.labeling.ObjectPrompt` or
            :class:`BatchPrompt`; boxes are ``(row0, col0, row1, col1)``), unique ids > 0.
        out_path: Labels file, ``.tif``/``.tiff`` or ``.zarr``; written as ``(Z, Y, X)`` of the
            smallest unsigned dtype holding the largest id.
        workers: Local dask cluster size (see :func:`iter_batch`); 0/None = in process.
        scheduler: Address of an existing dask scheduler (exclusive with ``workers``).
        model: Model spec (see :func:`iter_batch`).
        device: Device request for every worker.
        spacing: Voxel size ``(z, y, x)`` or one number.
        overwrite: Replace an existing output and discard its parts.
        resume: Reuse the finished parts of an earlier run of the same inputs.
        keep_parts: Keep ``OUT.parts/`` after success (a later ``resume`` then only runs new or
            changed prompts); False deletes it.
        connect_timeout: Seconds to wait for ``scheduler``.
        config: Base :class:`~napari_propsam.config.PropagationConfig`.
        box_config: Base :class:`~napari_propsam.config.BoxConfig`.
        on_result: Called with every :class:`ObjectResult` computed in this run (not the ones
            resumed), after its part is stored.
        report: Write the per-object report (id, name, status, axis, voxels, quality score,
            slices to review worst first, seconds, error; resumed objects included) to
            ``OUT.objects.csv`` (True), to this path, or not at all (False).
        **options: Fields of either config, e.g. ``thickness=10``.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: the output or its parts exist and neither ``overwrite`` nor ``resume``.
        ValueError: bad inputs (see :func:`iter_batch`), both ``overwrite`` and ``resume``, an
            unsupported output suffix, or resuming parts made from other inputs.
        OSError: files cannot be read or written; the scheduler cannot be reached.
        RuntimeError: every object failed.
    """
    out, parts = _check_run(out_path, overwrite, resume, workers, scheduler)
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
    done = _prepare_resume(out, parts, plan, resume, overwrite)
    results = run_plan(plan.tasks, done, workers, scheduler, connect_timeout)
    computed, failed = _store_results(plan, parts, len(done), results, on_result)
    return _finish(out, parts, plan, computed, failed, report, keep_parts)


__all__ = ["PROGRESS_INTERVAL", "run_batch", "run_fingerprint"]
