#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang) and runs each for SECONDS (default 60) on a copy of
# its seed corpus. A crash leaves its input as build-fuzz/crash-* and fails the script: add such
# inputs to fuzz/corpus/<target>/ and a regression test once fixed.
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${1:-60}"; shift || true
TARGETS=("$@"); ((${#TARGETS[@]})) || TARGETS=(safetensors config tokenizer image)
if [[ ! -f build-fuzz/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S fuzz -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
fi
cmake --build build-fuzz
export GROUPVIT_BPE="$("$ROOT/.venv/bin/python" -c "import sys; sys.path.insert(0, 'scripts'); from convert_hf import open_clip_vocabulary; print(open_clip_vocabulary())")"
for t in "${TARGETS[@]}"; do
  [[ -x build-fuzz/fuzz_$t ]] || { echo "[fuzz] $t not built (OpenCV missing?)"; continue; }
  work="build-fuzz/corpus-$t"
  mkdir -p "$work" && cp -n fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  echo "[fuzz] $t for ${SECONDS_EACH}s"
  (cd build-fuzz && ./fuzz_"$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 \
     -print_final_stats=1 "corpus-$t" 2>&1 | grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done" || true)
  if ls build-fuzz/crash-* build-fuzz/leak-* build-fuzz/oom-* 2>/dev/null | grep -q .; then
    echo "[fuzz] $t: failure inputs left in build-fuzz/"; exit 1
  fi
done
