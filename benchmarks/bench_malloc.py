"""Effect of ``napari_propsam.tune_malloc`` on the lite engine's CPU speed.

glibc's malloc settings are process-wide and cannot be undone inside a process, so each
measurement runs in a fresh subprocess; default and tuned subprocesses alternate, so both see
the same machine load, and the medians are compared.

    python benchmarks/bench_malloc.py [--pairs 3] [--threads 1] [--object-slices 80]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger("bench_malloc")


def child(tuned: bool, threads: int, object_slices: int) -> None:
    """One measurement: warm up, then time 3 rounds of the lite engine; print JSON."""
    import torch

    import napari_propsam as ps

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_speed import ellipsoid, run

    if tuned and not ps.tune_malloc():
        raise SystemExit("tune_malloc() is not available here (needs glibc on Linux)")
    torch.set_num_threads(threads)
    image, truth = ellipsoid(object_slices)
    run("lite", image, truth, 1)  # warm-up: weights, allocator, caches
    before = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    r = run("lite", image, truth, 3)
    after = resource.getrusage(resource.RUSAGE_SELF)
    r.update(
        wall=time.perf_counter() - t,
        user=after.ru_utime - before.ru_utime,
        sys=after.ru_stime - before.ru_stime,
        minor_faults=after.ru_minflt - before.ru_minflt,
    )
    print(json.dumps(r))  # noqa: T201 - read by the parent process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--object-slices", type=int, default=80)
    parser.add_argument("--child", choices=("default", "tuned"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child == "tuned", args.threads, args.object_slices)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results: dict[str, list[dict]] = {"default": [], "tuned": []}
    for _ in range(args.pairs):
        for mode in ("default", "tuned"):
            cmd = [sys.executable, __file__, "--child", mode, "--threads", str(args.threads)]
            cmd += ["--object-slices", str(args.object_slices)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[mode].append(json.loads(out.strip().splitlines()[-1]))
    logger.info("lite engine, %d thread(s), %d subprocesses per mode", args.threads, args.pairs)
    logger.info(
        "%-8s %16s %10s %10s %14s", "malloc", "engine ms/slice", "user s", "sys s", "minor faults"
    )
    med = {}
    for mode, rs in results.items():
        med[mode] = statistics.median(r["engine_ms_per_slice"] for r in rs)
        logger.info(
            "%-8s %16.1f %10.2f %10.2f %14d",
            mode,
            med[mode],
            statistics.median(r["user"] for r in rs),
            statistics.median(r["sys"] for r in rs),
            int(statistics.median(r["minor_faults"] for r in rs)),
        )
    logger.info("default / tuned time per slice: %.2fx", med["default"] / med["tuned"])


if __name__ == "__main__":
    main()
