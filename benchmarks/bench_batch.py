"""Batch segmentation throughput: objects per second in process and on 1 and 2 dask workers.

Tiles several synthetic glomeruli volumes into one volume with many objects, writes it as a tif
with a prompts CSV (one box per ground-truth object, on its largest slice), and runs
``napari_propsam.run_batch`` with the bundled lite model: in this process (``--threads`` torch
threads, default 1), then on a loopback LocalCluster with 1 and with 2 worker processes (one torch
thread each). Cluster start-up and the workers' first model load are excluded (a warm-up task runs
first), so the figures compare steady-state throughput; the start-up time is printed separately.

    python benchmarks/bench_batch.py [--tiles 2 2] [--tile-shape 64 128 128] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_propsam.batch import read_prompts, run_batch, start_local_cluster
from napari_propsam.devtools.synthetic import make_volume
from napari_propsam.io import read_volume

logger = logging.getLogger("bench_batch")


def tiled_volume(rows: int, cols: int, tile: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``rows x cols`` glomeruli volumes side by side in Y/X: ``(image float32, labels int32)``.

    Only each tile's targets are kept in the labels, renumbered 1..n across tiles.
    """
    z, h, w = tile
    image = np.zeros((z, rows * h, cols * w), np.float32)
    labels = np.zeros(image.shape, np.int32)
    next_id = 1
    for i in range(rows):
        for j in range(cols):
            vol = make_volume("glomeruli", seed=100 + i * cols + j, shape=tile, anisotropy=1.0)
            window = (slice(None), slice(i * h, (i + 1) * h), slice(j * w, (j + 1) * w))
            image[window] = vol.image
            for t in vol.targets:
                labels[window][vol.labels == t] = next_id
                next_id += 1
    return image, labels


def write_prompts(labels: np.ndarray, path: Path, pad: int = 2) -> int:
    """One box per object on its largest-area slice along Z; returns the number of objects."""
    lines = ["id,slice,row0,col0,row1,col1"]
    ids = [i for i in np.unique(labels) if i > 0]
    for lid in ids:
        obj = labels == lid
        z = int(np.argmax(obj.sum(axis=(1, 2))))
        rr, cc = np.nonzero(obj[z])
        r0, c0 = max(0, rr.min() - pad), max(0, cc.min() - pad)
        r1 = min(labels.shape[1], rr.max() + 1 + pad)
        c1 = min(labels.shape[2], cc.max() + 1 + pad)
        lines.append(f"{lid},{z},{r0},{c0},{r1},{c1}")
    path.write_text("\n".join(lines) + "\n")
    return len(ids)


def dice_per_object(pred: np.ndarray, truth: np.ndarray) -> float:
    scores = []
    for lid in np.unique(truth):
        if lid == 0:
            continue
        a, b = pred == lid, truth == lid
        scores.append(2.0 * (a & b).sum() / max(1, a.sum() + b.sum()))
    return float(np.mean(scores))


def _warm_up(image: str) -> int:
    """Load the bundled model and open the image in a worker (excluded from the timing)."""
    from napari_propsam.batch._engine import _limit_threads_in_worker, _open_image
    from napari_propsam.registry import resolve_model

    _limit_threads_in_worker()
    resolve_model(None)
    return int(_open_image(image).shape[0])


def run(image: Path, csv: Path, out: Path, workers: int) -> tuple[float, float, np.ndarray]:
    """One timed run; returns ``(seconds, start-up seconds, labels)``."""
    prompts = read_prompts(csv, tifffile.TiffFile(image).series[0].shape)
    if workers == 0:
        _warm_up(str(image))
        start = time.perf_counter()
        run_batch(image, prompts, out, overwrite=True, keep_parts=False)
        return time.perf_counter() - start, 0.0, np.asarray(read_volume(out))
    from distributed import Client

    t0 = time.perf_counter()
    cluster = start_local_cluster(workers)  # the cluster run_batch(workers=N) starts
    with Client(cluster, set_as_default=False) as client:
        client.run(_warm_up, str(image))
        startup = time.perf_counter() - t0
        start = time.perf_counter()
        run_batch(
            image,
            prompts,
            out,
            scheduler=cluster.scheduler_address,
            overwrite=True,
            keep_parts=False,
        )
        seconds = time.perf_counter() - start
    cluster.close()
    return seconds, startup, np.asarray(read_volume(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs=2, default=(2, 2), metavar=("ROWS", "COLS"))
    parser.add_argument("--tile-shape", type=int, nargs=3, default=(64, 128, 128))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-in-process", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the in-process run (workers always use 1), so that in process "
        "vs 1 worker isolates the dask overhead",
    )
    parser.add_argument("--out", default=None, help="working directory (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import distributed  # noqa: F401 - creates dask's loggers, which log each connection at INFO

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):
            logging.getLogger(name).setLevel(logging.WARNING)

    torch.set_num_threads(args.threads)
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_batch_"))
    work.mkdir(parents=True, exist_ok=True)
    image, truth = tiled_volume(*args.tiles, tuple(args.tile_shape))
    tifffile.imwrite(work / "image.tif", image)
    n = write_prompts(truth, work / "prompts.csv")
    print(f"volume {image.shape}, {n} objects, bundled lite model, CPU")  # noqa: T201

    counts = ([] if args.no_in_process else [0]) + list(args.workers)
    results: dict[int, float] = {}
    reference = None
    for w in counts:
        seconds, startup, labels = run(
            work / "image.tif", work / "prompts.csv", work / f"w{w}.tif", w
        )
        results[w] = n / seconds
        same = (
            "" if reference is None else f", identical labels: {np.array_equal(labels, reference)}"
        )
        reference = labels if reference is None else reference
        name = "in process" if w == 0 else f"{w} worker{'s' if w > 1 else ''}"
        print(  # noqa: T201 - the benchmark's output is the report
            f"{name:>12s}: {seconds:6.1f} s, {results[w]:.2f} objects/s "
            f"(cluster start-up {startup:.1f} s), mean DSC {dice_per_object(labels, truth):.3f}"
            f"{same}"
        )
    if 1 in results and 2 in results:
        print(f"2 workers / 1 worker: {results[2] / results[1]:.2f}x")  # noqa: T201
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
