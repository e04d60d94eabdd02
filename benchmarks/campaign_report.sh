#!/usr/bin/env bash
# Every benchmark a candidate pair of default weights must pass before it ships (issue 12), in two
# lanes that each use one core. Run from the repository root with the candidate weights already
# copied into src/napari_propsam/weights/ (lite-propmask.safetensors, lite-box2mask.safetensors):
#
#   bash benchmarks/campaign_report.sh [OUT]          # OUT defaults to runs/campaign-report
#
# The old weights' side of every comparison is already on disk (docs/benchmarks/*.csv, measured
# with the same commands), so only the candidate is run here. Afterwards: calibrate_quality.py
# --write has rewritten quality.py's constants; review the diff, then update docs/models.md.
set -euo pipefail
OUT=${1:-runs/campaign-report}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
PY=${PYTHON:-.venv/bin/python}
BENCH=${PROPSAM:-.venv/bin/propsam}

lane_a() {
    # The 24-volume default set (12 training families, 3 axes, 5 offsets, mask and box): the old
    # weights' run with the random walker is docs/benchmarks/campaign2_old_default.csv.
    "$BENCH" bench --no-baseline --csv "$OUT/default.csv" > "$OUT/default.txt" 2>&1
    # Several prompts per object (issue 15); old: docs/benchmarks/multi_prompt.csv.
    "$BENCH" bench --no-baseline --prompts-per-object 1 2 3 --axes 0 --csv "$OUT/multi.csv" \
        > "$OUT/multi.txt" 2>&1
    "$PY" benchmarks/bench_speed.py --threads 1 --archs lite full > "$OUT/speed.txt" 2>&1
}

lane_b() {
    # Held-out families; old weights and the random walker: docs/benchmarks/lite_heldout_families.csv.
    "$BENCH" bench --families cysts vessels_fluo texture --no-baseline --csv "$OUT/heldout.csv" \
        > "$OUT/heldout.txt" 2>&1
    # Quality score (issue 17): refit on validation runs, then evaluate on the benchmark's cases.
    "$PY" benchmarks/calibrate_quality.py --collect "$OUT/quality_val.json" --write \
        > "$OUT/quality_fit.txt" 2>&1
    "$PY" benchmarks/quality_data.py --cases counts --axes 0 --out "$OUT/quality_bench.json" \
        > /dev/null 2>&1
    "$PY" benchmarks/quality_data.py --cases counts --axes 0 --families cysts vessels_fluo texture \
        --out "$OUT/quality_heldout.json" > /dev/null 2>&1
    "$PY" benchmarks/calibrate_quality.py --data "$OUT/quality_val.json" \
        --eval "$OUT/quality_bench.json" "$OUT/quality_heldout.json" > "$OUT/quality_eval.txt" 2>&1
}

lane_a & A=$!
lane_b & B=$!
wait $A && echo "lane A done: default, multi-prompt, speed"
wait $B && echo "lane B done: held-out, quality"
echo "next: python benchmarks/bench_finetune.py --family texture --out $OUT/ft-texture"
