"""Calibrate the quality score and the review ranking, and measure them on held-out runs.

Fits, on runs saved by ``quality_data.py`` (validation seeds 50,000+, training families only;
never the benchmark's seeds nor the held-out families):

- the score: least squares of the object's DSC on ``quality.OBJECT_FEATURES``;
- the review ranking: least squares of log((wrong pixels + 1) / (boundary pixels + 1)) per
  reached slice on ``quality.SLICE_FEATURES``;

prints both as constants and, with ``--write``, puts them into ``napari_propsam/quality.py``.
``--eval`` files (e.g. the benchmark's runs) are scored with the constants in quality.py and
with the new fit: Spearman(score, DSC), failures caught among the 10 % lowest-scored, and the
share of wrong voxels on the flagged slices, as ``propsam bench`` reports them.

When the weights change, one command collects the validation runs (~25 min on 1 core) and
rewrites the constants:

    python benchmarks/calibrate_quality.py --collect quality_val.json --write
    python benchmarks/calibrate_quality.py --data quality_val.json --eval quality_bench.json
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from quality_data import load, stats_of
from scipy.stats import spearmanr

from napari_propsam import quality

logger = logging.getLogger("calibrate_quality")
QUALITY_PY = Path(quality.__file__)
COLLECT = (
    "--seed-base 50000 --per-family 2 --axes 0 1 2 --axis-cycle --cases offsets counts "
    "--offsets -0.2 0 0.2 --counts 2 3"
).split()


def _slice_rows(runs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Slice features (with a constant column) and log wrong-pixel rates of every run."""
    x, y = [], []
    for run in runs:
        stats = stats_of(run)
        wrong = {t[0]: t[2] + t[3] for t in run["truth"]}
        for s, sig in quality.slice_signals(stats, run["cut_ends"]).items():
            x.append([sig[k] for k in quality.SLICE_FEATURES] + [1.0])
            y.append(math.log((wrong.get(s, 0) + 1) / (stats[s].perimeter + 1)))
    return np.array(x), np.array(y)


def fit(runs: list[dict]) -> dict:
    """Score and review constants fitted on ``runs``."""
    x = np.array([
        [quality.features(stats_of(r), r["cut_ends"])[k] for k in quality.OBJECT_FEATURES] + [1.0]
        for r in runs
    ])  # fmt: skip
    y = np.array([r["dsc"] for r in runs])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    sx, sy = _slice_rows(runs)
    scoef, *_ = np.linalg.lstsq(sx, sy, rcond=None)
    return {
        "_WEIGHTS": dict(
            zip(quality.OBJECT_FEATURES, np.round(coef[:-1], 4).tolist(), strict=True)
        ),
        "_BIAS": round(float(coef[-1]), 4),
        "_SLICE_WEIGHTS": dict(
            zip(quality.SLICE_FEATURES, np.round(scoef[:-1], 4).tolist(), strict=True)
        ),
        "_SLICE_BIAS": round(float(scoef[-1]), 4),
    }


def _apply(constants: dict) -> None:
    for name, value in constants.items():
        setattr(quality, name, value)


def report(runs: list[dict], label: str) -> dict[str, float]:
    """Spearman, catch rate and flagged share of the current constants on ``runs``."""
    scores, shares, fracs = [], [], []
    for r in runs:
        q = quality.assess(stats_of(r), r["cut_ends"], r["axis"])
        scores.append(q.score)
        wrong = {t[0]: t[2] + t[3] for t in r["truth"]}
        total = sum(wrong.values())
        flagged = q.review_indices
        if r["dsc"] < 1.0:
            shares.append(sum(wrong.get(i, 0) for i in flagged) / total if total and flagged
                          else (0.0 if total else 1.0))  # fmt: skip
        fracs.append(len(flagged) / max(1, int(q.signals.get("slices", 1))))
    d, s = np.array([r["dsc"] for r in runs]), np.array(scores)
    lowest = np.argsort(s, kind="stable")[: max(1, int(round(0.1 * len(runs))))]
    failed = d < 0.7
    out = {
        "spearman": float(spearmanr(s, d).statistic),
        "caught": float(failed[lowest].sum() / failed.sum()) if failed.any() else 1.0,
        "failures": int(failed.sum()),
        "error_share": float(np.mean(shares)),
        "slice_fraction": float(np.mean(fracs)),
    }
    logger.info("%-28s n=%3d Spearman %.3f; lowest 10%% catch %.0f%% of %d failures; flagged "
                "slices hold %.0f%% of wrong voxels on %.0f%% of slices", label, len(runs),
                out["spearman"], 100 * out["caught"], out["failures"], 100 * out["error_share"],
                100 * out["slice_fraction"])  # fmt: skip
    return out


def write(constants: dict) -> None:
    """Replace the constants' lines in quality.py."""
    text = QUALITY_PY.read_text()
    for name, value in constants.items():
        text, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, count=1, flags=re.M)
        if n != 1:
            raise RuntimeError(f"{name} not found in {QUALITY_PY}")
    QUALITY_PY.write_text(text)
    subprocess.run([sys.executable, "-m", "ruff", "format", str(QUALITY_PY)], check=False)
    logger.info("constants written to %s", QUALITY_PY)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", nargs="+", default=[], help="validation runs to fit on")
    p.add_argument("--collect", default=None, help="first collect the validation runs here")
    p.add_argument("--model", default=None, help="weights to collect with (default: bundled)")
    p.add_argument("--eval", nargs="+", default=[], help="runs to evaluate on (not fitted)")
    p.add_argument("--write", action="store_true", help="write the fit into quality.py")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.collect:
        model = ["--model", args.model] if args.model else []
        script = Path(__file__).with_name("quality_data.py")
        subprocess.run([sys.executable, str(script), *COLLECT, *model, "--out", args.collect],
                       check=True)  # fmt: skip
        args.data.append(args.collect)
    runs = load(args.data)
    evals = {path: load([path]) for path in args.eval}
    for path, rs in [("fit set", runs), *evals.items()]:
        report(rs, f"quality.py on {path}")
    constants = fit(runs)
    for name, value in constants.items():
        print(f"{name} = {value!r}")  # noqa: T201 - paste-ready constants
    _apply(constants)
    for path, rs in [("fit set", runs), *evals.items()]:
        report(rs, f"new fit on {path}")
    if args.write:
        write(constants)


if __name__ == "__main__":
    main()
