#!/usr/bin/env bash
# Benchmarks the C++ port against the Python reference on this machine: same seeded full-size
# checkpoint, same inputs, same thread count. Builds what is missing, then writes
# docs/benchmarks.md (a table with ratios) and docs/benchmarks.json.
#
#   scripts/bench.sh [--threads N] [--reps R] [--device cpu|cuda]
# Run it on a quiet machine: other processes on the same cores distort every number.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
THREADS="$(nproc)" REPS=7 DEVICE=cpu
while (($#)); do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
BUILD_DIR="${GROUPVIT_BUILD_DIR:-build}"
bash scripts/setup.sh
cmake -B "$BUILD_DIR" -DGROUPVIT_BUILD_BENCH=ON . > /dev/null
cmake --build "$BUILD_DIR" --target bench_groupvit
PY="$ROOT/.venv/bin/python"
WORK="$ROOT/$BUILD_DIR/bench"
"$PY" scripts/make_demo_model.py "$WORK/model" 2>&1 | grep -v "it/s" || true
[[ -f "$WORK/model/converted/groupvit_weights.pt" ]] || "$PY" scripts/convert_hf.py "$WORK/model/hf" "$WORK/model/converted"

echo "[bench] load time and peak memory, each in a fresh process"
"$BUILD_DIR/bench/bench_groupvit" --model "$WORK/model/converted" --only-load --threads "$THREADS" > "$WORK/cpp_load.json"
"$PY" bench/bench_reference.py --model "$WORK/model/hf" --only-load --threads "$THREADS" > "$WORK/ref_load.json" 2>/dev/null
echo "[bench] C++ rows ($THREADS threads, $REPS repetitions)"
"$BUILD_DIR/bench/bench_groupvit" --model "$WORK/model/converted" --threads "$THREADS" --reps "$REPS" \
  --device "$DEVICE" > "$WORK/cpp.json"
echo "[bench] reference rows"
"$PY" bench/bench_reference.py --model "$WORK/model/hf" --threads "$THREADS" --reps "$REPS" --compile \
  > "$WORK/ref.json" 2>"$WORK/ref.stderr" || { cat "$WORK/ref.stderr"; exit 1; }
"$PY" bench/report.py "$WORK" docs/benchmarks.md docs/benchmarks.json
cat docs/benchmarks.md
