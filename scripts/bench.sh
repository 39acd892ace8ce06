#!/usr/bin/env bash
# Benchmarks the C++ port against the Python reference on this machine: same seeded full-size
# checkpoint, same inputs, same thread count. Builds what is missing, then writes
# docs/benchmarks.md (a table with ratios) and docs/benchmarks.json.
#
#   scripts/bench.sh [--threads N] [--reps R] [--device cpu|cuda] [--profile] [--peers [--rounds K]] [--int8]
# --peers instead runs the peer benchmark (bench/peers.py): ours against transformers eager, ONNX Runtime
# and OpenVINO (scripts/requirements-bench.txt, installed into build/bench/peers-site), in rotated
# rounds with paired ratios, also beside a busy loop on one core, and the whole embed job of 96 photos
# against the same job with OpenVINO (peak memory, CPU time); writes docs/peers.md and docs/peers.json.
# --profile instead profiles the image tower at batch 1 and 32 on both sides (operator self times)
# and writes docs/profile.md: where the time goes, and what bounds the speed-up.
# --int8 instead compares `segment --dtype int8` with fp32 on the photos bundled in scikit-image
# (bench/int8_segment.py: label and group agreement, embedding cosine, eval of held-out synthetic scenes)
# and writes docs/int8-segment.md.
# Run it on a quiet machine: other processes on the same cores distort every number.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
THREADS="$(nproc)" REPS=7 DEVICE=cpu PROFILE=0 PEERS=0 ROUNDS=3 INT8=0
while (($#)); do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --profile) PROFILE=1; shift ;;
    --peers) PEERS=1; shift ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --int8) INT8=1; shift ;;
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

if [[ $INT8 == 1 ]]; then
  cmake --build "$BUILD_DIR" --target groupvit_cli
  "$PY" bench/int8_segment.py --cli "$BUILD_DIR/apps/groupvit" --full-size "$WORK/model/converted" \
    --work "$WORK/int8-segment" --threads "$THREADS" --report docs/int8-segment.md
  exit 0
fi

if [[ $PEERS == 1 ]]; then
  SITE="$WORK/peers-site"
  # Idempotent: reinstalled only when the pins change.
  if ! cmp -s scripts/requirements-bench.txt "$SITE/.requirements"; then
    rm -rf "$SITE"
    "$PY" -m pip install --quiet --no-deps --target "$SITE" -r scripts/requirements-bench.txt
    cp scripts/requirements-bench.txt "$SITE/.requirements"
  fi
  reps=$REPS; [[ $reps == 7 ]] && reps=3  # rounds repeat the rows; 3 runs a round is the default here
  cmake --build "$BUILD_DIR" --target groupvit_cli  # the embed job
  PYTHONPATH="$SITE" "$PY" bench/peers.py --cpp "$BUILD_DIR/bench/bench_groupvit" --converted "$WORK/model/converted" \
    --cli "$BUILD_DIR/apps/groupvit" \
    --hf "$WORK/model/hf" --cache "$WORK/peers-cache" --threads "$THREADS" --rounds "$ROUNDS" --reps "$reps" \
    --report docs/peers.md
  exit 0
fi

if [[ $PROFILE == 1 ]]; then
  PROF="$WORK/profile"; mkdir -p "$PROF"
  for row in image_fp32_b1 image_fp32_b32; do
    reps=$REPS; [[ $row == image_fp32_b32 ]] && reps=3
    echo "[bench] profiling $row ($THREADS threads, $reps forwards per side)"
    "$BUILD_DIR/bench/bench_groupvit" --model "$WORK/model/converted" --threads "$THREADS" --reps "$reps" \
      --profile "$row" > "$PROF/prof_cpp_$row.json"
    "$PY" bench/bench_reference.py --model "$WORK/model/hf" --threads "$THREADS" --reps "$reps" \
      --profile "$row" > "$PROF/prof_ref_$row.json" 2> "$PROF/ref.stderr" || { cat "$PROF/ref.stderr"; exit 1; }
  done
  # The machine's matrix-multiply rate, the image FLOPs, threads and torch version for the report.
  "$BUILD_DIR/bench/bench_groupvit" --model "$WORK/model/converted" --threads "$THREADS" --rows gemm_fp32 \
    > "$PROF/cpp.json"
  "$PY" bench/profile_report.py "$PROF" docs/profile.md
  cat docs/profile.md
  exit 0
fi

echo "[bench] load time and peak memory, each in a fresh process"
"$BUILD_DIR/bench/bench_groupvit" --model "$WORK/model/converted" --only-load --threads "$THREADS" > "$WORK/cpp_load.json"
"$PY" bench/bench_reference.py --model "$WORK/model/hf" --only-load --threads "$THREADS" > "$WORK/ref_load.json" 2>/dev/null
echo "[bench] C++ rows ($THREADS threads, $REPS repetitions)"
"$BUILD_DIR/bench/bench_groupvit" --model "$WORK/model/converted" --threads "$THREADS" --reps "$REPS" \
  --device "$DEVICE" > "$WORK/cpp.json"
echo "[bench] reference rows"
"$PY" bench/bench_reference.py --model "$WORK/model/hf" --threads "$THREADS" --reps "$REPS" --compile \
  > "$WORK/ref.json" 2>"$WORK/ref.stderr" || { cat "$WORK/ref.stderr"; exit 1; }
echo "[bench] the allocator setting: ours without it, the reference with it (image rows, batch 1 and 32)"
"$BUILD_DIR/bench/bench_groupvit" --model "$WORK/model/converted" --threads "$THREADS" --reps "$REPS" \
  --device "$DEVICE" --rows image_fp32_b1,image_fp32_b32 --system-malloc > "$WORK/cpp_system_malloc.json"
"$PY" bench/bench_reference.py --model "$WORK/model/hf" --threads "$THREADS" --reps "$REPS" --image-only \
  --keep-freed-memory > "$WORK/ref_keep_freed_memory.json" 2>>"$WORK/ref.stderr" || { cat "$WORK/ref.stderr"; exit 1; }
"$PY" bench/report.py "$WORK" docs/benchmarks.md docs/benchmarks.json
cat docs/benchmarks.md
