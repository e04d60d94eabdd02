"""Out-of-core check: one object in a 2048^3 uint16 zarr (16 GiB logical) versus a 256^3 array.

Builds, outside the repository (a temporary directory, or ``--workdir``):

* ``small.npy``: a 256^3 uint16 synthetic kidney-cortex block (glomeruli family of
  :mod:`napari_propsam.devtools.synthetic`);
* ``big.zarr``: a 2048^3 uint16 zarr, chunks 64^3, whose untouched chunks are a constant
  ``fill_value`` (never stored), with the same 256^3 block written at a chunk-aligned offset and
  two mirrored copies elsewhere, so the volume holds several glomeruli.

Then segments the same glomerulus (same box prompt, shifted) with the bundled ``lite`` model in
each volume, each case in a fresh subprocess so that its peak resident memory (``VmHWM``) is
its own. Every subprocess warms the model up with one untimed segmentation, then times ``--rounds``
segmentations. The time ratio comes from a third subprocess that opens both volumes and
alternates small and big ``--rounds x --pairs`` times, so that bursts of load from other
processes fall on both cases alike; the medians are compared.

Needs zarr >= 3 (``zarr.create_array`` and store wrappers).

Targets (exit status 1 if one is missed): peak RSS of the big run <= 1.5 GiB, median time
big / small <= 1.3, and both runs give the same object (Dice >= 0.99).

    python benchmarks/bench_outofcore.py [--workdir DIR] [--rounds 3] [--pairs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench_outofcore")

BIG = 2048
SMALL = 256
CHUNK = 64
# Chunk-aligned corners of the 256^3 block in the big volume: the segmented copy, then two
# mirrored copies so that the big volume has more than one object in it.
OFFSET = (1024, 1216, 1536)
EXTRA_OFFSETS = ((128, 128, 128), (1728, 320, 640))
FAMILY, SEED = "glomeruli", 3
RSS_LIMIT_GIB = 1.5
MARGIN = 24
RATIO_LIMIT = 1.3


# --------------------------------------------------------------------------- build


def _pick_target(labels: np.ndarray, targets: tuple[int, ...]) -> tuple[int, np.ndarray]:
    """The largest target at least ``MARGIN`` voxels from every face, and its 3D box.

    The margin keeps the engine's crop windows inside the written block, so the big volume's
    flat fill value never enters a window and both runs see exactly the same pixels.
    """
    best, best_size, best_box = -1, -1, None
    for t in targets:
        idx = np.nonzero(labels == t)
        lo = np.array([i.min() for i in idx])
        hi = np.array([i.max() + 1 for i in idx])
        margin = int(min(lo.min(), (np.array(labels.shape) - hi).min()))
        if margin >= MARGIN and idx[0].size > best_size:
            best, best_size, best_box = t, idx[0].size, np.concatenate([lo, hi])
    if best_box is None:
        raise RuntimeError(f"no target at least {MARGIN} voxels from the block's faces")
    return best, best_box


def build(workdir: Path) -> dict[str, Any]:
    """Write ``small.npy`` and ``big.zarr`` into ``workdir``; return the prompt and object."""
    import zarr

    from napari_propsam.devtools.synthetic import make_volume

    t0 = time.perf_counter()
    vol = make_volume(FAMILY, SEED, shape=(SMALL,) * 3, anisotropy=1.0)
    small = np.clip(np.rint(vol.image), 0, 65535).astype(np.uint16)
    target, box3 = _pick_target(vol.labels, vol.targets)
    truth = vol.labels == target
    # Prompt on the slice where the object is largest, box = its tight 2D box plus 3 pixels.
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    rows, cols = np.nonzero(truth[z])
    box = [int(rows.min()) - 3, int(cols.min()) - 3, int(rows.max()) + 4, int(cols.max()) + 4]
    np.save(workdir / "small.npy", small)

    # Untouched chunks read as the block's median grey value, a plausible flat background.
    fill = int(np.median(small))
    big = zarr.create_array(
        store=str(workdir / "big.zarr"),
        shape=(BIG,) * 3,
        chunks=(CHUNK,) * 3,
        dtype="uint16",
        fill_value=fill,
        overwrite=True,
    )
    big[tuple(slice(o, o + SMALL) for o in OFFSET)] = small
    for i, off in enumerate(EXTRA_OFFSETS):
        copy = np.flip(small, axis=i)
        big[tuple(slice(o, o + SMALL) for o in off)] = copy
    stored = sum(1 for p in (workdir / "big.zarr").rglob("*") if p.is_file())
    logger.info(
        "built small %s and big %s (%d files stored) in %.1f s",
        small.shape,
        big.shape,
        stored,
        time.perf_counter() - t0,
    )
    return {
        "slice": z,
        "box": box,
        "truth_voxels": int(truth.sum()),
        "truth_box": [int(v) for v in box3],
        "stored_files": stored,
    }


# --------------------------------------------------------------------------- worker


def _segment(image: Any, slice_index: int, box: list[int]) -> tuple[list[int], np.ndarray]:
    """One object through the public API: ``(bbox z0 y0 x0 z1 y1 x1, mask of the bbox)``.

    Nothing of the volume's size is allocated (``segment`` would allocate a 8 GiB bool array
    for the big volume): ``segment_roi`` when the API has it, else the streamed final updates.
    """
    import napari_propsam as ps
    from napari_propsam import api

    if hasattr(api, "segment_roi"):
        roi = api.segment_roi(image, slice_index=slice_index, box=box)
        bbox = [s.start for s in roi.bbox] + [s.stop for s in roi.bbox]
        return bbox, roi.mask
    finals = [u for u in ps.propagate(image, slice_index=slice_index, box=box) if u.final]
    z0, z1 = min(u.index for u in finals), max(u.index for u in finals) + 1
    r0 = min(u.offset[0] for u in finals)
    c0 = min(u.offset[1] for u in finals)
    r1 = max(u.offset[0] + u.mask.shape[0] for u in finals)
    c1 = max(u.offset[1] + u.mask.shape[1] for u in finals)
    local = np.zeros((z1 - z0, r1 - r0, c1 - c0), bool)
    for u in finals:
        r, c = u.offset[0] - r0, u.offset[1] - c0
        local[u.index - z0, r : r + u.mask.shape[0], c : c + u.mask.shape[1]] = u.mask
    return [z0, r0, c0, z1, r1, c1], local


def _peak_rss_kib() -> int:
    """This process's own peak resident set size in KiB.

    ``VmHWM`` belongs to the process's address space, which ``exec`` replaces; ``ru_maxrss``
    (the fallback off Linux) is carried over from the parent on Linux, so it would report the
    builder's peak instead of the worker's.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _count_chunks(workdir: Path, z: int, box: list[int]) -> tuple[int, int]:
    """One more (untimed) big-volume segmentation through a store that records the keys read.

    Returns:
        ``(distinct chunks requested, chunk reads)``; absent (fill-value) chunks count too.
    """
    import zarr
    from zarr.storage import LocalStore, WrapperStore

    class CountingStore(WrapperStore):
        def __init__(self, store: Any) -> None:
            super().__init__(store)
            self.keys: list[str] = []

        async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
            self.keys.append(key)
            return await self._store.get(key, prototype, byte_range)

    store = CountingStore(LocalStore(str(workdir / "big.zarr"), read_only=True))
    _segment(zarr.open_array(store=store, mode="r"), z, box)
    chunk_keys = [k for k in store.keys if k.startswith("c/")]
    return len(set(chunk_keys)), len(chunk_keys)


def _open_case(case: str, workdir: Path, info: dict[str, Any]) -> tuple[Any, int, list[int]]:
    """The volume of one case, the prompt slice and the box, shifted into that volume."""
    if case == "small":
        image: Any = np.load(workdir / "small.npy")  # fully in memory, like a loaded stack
        shift = (0, 0, 0)
    else:
        import zarr

        image = zarr.open_array(str(workdir / "big.zarr"), mode="r")
        shift = OFFSET
    r0, c0, r1, c1 = info["box"]
    box = [r0 + shift[1], c0 + shift[2], r1 + shift[1], c1 + shift[2]]
    return image, info["slice"] + shift[0], box


def worker(case: str, workdir: Path, info: dict[str, Any], rounds: int, threads: int) -> None:
    """Run one case in this fresh process; print one JSON line with its figures.

    ``case`` "small" or "big": warm up, time ``rounds`` segmentations, report the peak RSS and
    save the object. "ratio": open both volumes and alternate small and big ``rounds`` times,
    so that load from other processes falls on both alike.
    """
    import torch

    torch.set_num_threads(threads)
    cases = ("small", "big") if case == "ratio" else (case,)
    opened = {c: _open_case(c, workdir, info) for c in cases}
    for image, z, box in opened.values():
        _segment(image, z, box)  # warm-up: model load, allocator, page cache
    times: dict[str, list[float]] = {c: [] for c in cases}
    cpu: dict[str, list[float]] = {c: [] for c in cases}
    for _ in range(rounds):
        for c, (image, z, box) in opened.items():
            t, t_cpu = time.perf_counter(), time.process_time()
            bbox, mask = _segment(image, z, box)
            times[c].append(time.perf_counter() - t)
            cpu[c].append(time.process_time() - t_cpu)
    result: dict[str, Any] = {"case": case, "times": times, "cpu": cpu}
    if case != "ratio":
        # Back to small-volume coordinates so that the parent can compare the two objects.
        shift = (0, 0, 0) if case == "small" else OFFSET
        result["bbox"] = [b - s for b, s in zip(bbox, list(shift) * 2, strict=True)]
        result["peak_kib"] = _peak_rss_kib()
        if case == "big":
            image, z, box = opened["big"]
            result["chunks"] = _count_chunks(workdir, z, box)
        np.save(workdir / f"mask_{case}.npy", mask)
    print(json.dumps(result))


# --------------------------------------------------------------------------- parent


def _run_case(case: str, workdir: Path, info_path: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, "--workdir", str(workdir)]
    rounds = args.rounds * (args.pairs if case == "ratio" else 1)
    cmd += ["--rounds", str(rounds), "--threads", str(args.threads), "--info", str(info_path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for c, ts in result["times"].items():
        logger.info("%s run, %s volume: %s s", case, c, " ".join(f"{t:.2f}" for t in ts))
    if "peak_kib" in result:
        logger.info("%s run: peak RSS %.0f MiB", case, result["peak_kib"] / 1024)
    return result


def _dice_in_small_coords(workdir: Path, small: dict, big: dict) -> float:
    masks = []
    for res in (small, big):
        m = np.zeros((SMALL,) * 3, bool)
        z0, y0, x0, z1, y1, x1 = res["bbox"]
        m[z0:z1, y0:y1, x0:x1] = np.load(workdir / f"mask_{res['case']}.npy")
        masks.append(m)
    total = masks[0].sum() + masks[1].sum()
    return 1.0 if total == 0 else 2.0 * float((masks[0] & masks[1]).sum()) / float(total)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, help="where to build the volumes (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the built volumes")
    p.add_argument("--rounds", type=int, default=3, help="timed segmentations per case and run")
    p.add_argument("--pairs", type=int, default=3, help="rounds multiplier of the ratio run")
    p.add_argument("--threads", type=int, default=1, help="torch threads per subprocess")
    p.add_argument("--worker", choices=("small", "big", "ratio"), help=argparse.SUPPRESS)
    p.add_argument("--info", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    if args.worker:
        info = json.loads(args.info.read_text())
        worker(args.worker, args.workdir, info, args.rounds, args.threads)
        return 0

    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="propsam-ooc-")) if own_dir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        info = build(workdir)
        info_path = workdir / "info.json"
        info_path.write_text(json.dumps(info))
        small = _run_case("small", workdir, info_path, args)
        big = _run_case("big", workdir, info_path, args)
        both = _run_case("ratio", workdir, info_path, args)
        dice = _dice_in_small_coords(workdir, small, big)
    finally:
        if own_dir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    med = {c: statistics.median(ts) for c, ts in both["times"].items()}
    med_cpu = {c: statistics.median(ts) for c, ts in both["cpu"].items()}
    ratio = med["big"] / med["small"]
    peak_big, peak_small = big["peak_kib"] / 1024**2, small["peak_kib"] / 1024**2
    ok_rss, ok_ratio, ok_dice = peak_big <= RSS_LIMIT_GIB, ratio <= RATIO_LIMIT, dice >= 0.99
    logical_gib = BIG**3 * 2 / 1024**3
    n = len(both["times"]["big"])
    print(f"big volume: {BIG}^3 uint16 zarr, chunks {CHUNK}^3, {logical_gib:.0f} GiB logical")
    n_chunks = (BIG // CHUNK) ** 3
    distinct, reads = big["chunks"]
    print(f"chunks requested: {distinct} distinct of {n_chunks} ({reads} reads)")
    print(f"object: {info['truth_voxels']} voxels, box {info['box']} on slice {info['slice']}")
    print(f"median wall time over {n} alternated rounds: small {med['small']:.3f} s, ", end="")
    print(f"big {med['big']:.3f} s, ratio {ratio:.3f}")
    print(f"median CPU time: small {med_cpu['small']:.3f} s, big {med_cpu['big']:.3f} s, ", end="")
    print(f"ratio {med_cpu['big'] / med_cpu['small']:.3f}")
    print(f"peak RSS (own subprocess): small {peak_small:.2f} GiB, big {peak_big:.2f} GiB")
    print(f"Dice(small, big) = {dice:.4f}")
    print(f"targets: RSS <= {RSS_LIMIT_GIB} GiB {'ok' if ok_rss else 'MISSED'}, ", end="")
    print(f"ratio <= {RATIO_LIMIT} {'ok' if ok_ratio else 'MISSED'}, ", end="")
    print(f"same object {'ok' if ok_dice else 'MISSED'}")
    return 0 if ok_rss and ok_ratio and ok_dice else 1


if __name__ == "__main__":
    sys.exit(main())
