#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang + ASan + UBSan) and runs each for SECONDS (default 60)
# on a working copy of its seeds (fuzz/corpus/<target>/ and fuzz/regressions/<target>/). Any crash,
# sanitizer report, hang (-timeout) or memory blow-up (-rss_limit_mb, which also caps a single
# allocation) fails the script and leaves the input as build-fuzz/{crash,timeout,oom,leak}-*: fix
# the bug, then add the input to fuzz/regressions/<target>/, which the normal suite replays ([robust]).
#   scripts/fuzz.sh [SECONDS] [TARGET ...]      CI runs 60 s each; run longer on demand, e.g. 3600
# GROUPVIT_FUZZ_SEED picks libFuzzer's random seed; CI (CI=true) uses a fixed one so that a failure there
# replays the same way on the next run, elsewhere each run explores afresh. Long exploratory runs (random
# seeds, hours) are how new bugs are found; CI's bounded run guards against regressions.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${1:-60}"; shift || true
TARGETS=("$@"); ((${#TARGETS[@]})) || TARGETS=(safetensors config tokenizer image)
start=$(date +%s)
if ! command -v clang++ > /dev/null || [[ ! -f "$(clang++ -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]]; then
  GROUPVIT_FUZZ=1 GROUPVIT_SKIP_BUILD=1 bash scripts/setup.sh
fi
if [[ ! -f build-fuzz/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S fuzz -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
fi
cmake --build build-fuzz -j "${GROUPVIT_JOBS:-$(nproc)}"
echo "[fuzz] build took $(( $(date +%s) - start )) s"
export GROUPVIT_BPE="$("$ROOT/.venv/bin/python" -c "import sys; sys.path.insert(0, 'scripts'); from convert_hf import open_clip_vocabulary; print(open_clip_vocabulary())")"
# Leaks are real bugs here (no LibTorch in these programs), so LeakSanitizer stays on.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
SEED="${GROUPVIT_FUZZ_SEED:-}"
[[ -z "$SEED" && "${CI:-}" == true ]] && SEED=20261127
seed_args=(); [[ -n "$SEED" ]] && seed_args=(-seed="$SEED")
echo "[fuzz] seed: ${SEED:-random}"
status=0
for t in "${TARGETS[@]}"; do
  if [[ ! -x build-fuzz/fuzz_$t ]]; then
    echo "[fuzz] $t not built (OpenCV missing?)"; status=1; continue
  fi
  work="build-fuzz/corpus-$t"
  mkdir -p "$work"
  for seeds in fuzz/corpus/"$t" fuzz/regressions/"$t"; do
    [[ -d "$seeds" ]] && cp -n "$seeds"/* "$work"/ 2>/dev/null || true
  done
  echo "[fuzz] $t for ${SECONDS_EACH}s"
  # -timeout: one input taking 10 s is a hang; the outer timeout guards the fuzzer itself.
  rc=0
  (cd build-fuzz && timeout $((SECONDS_EACH + 120)) ./fuzz_"$t" -max_total_time="$SECONDS_EACH" -max_len=65536 \
     "${seed_args[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "corpus-$t" > "fuzz-$t.log" 2>&1) || rc=$?
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|ERROR|SUMMARY|Done" "build-fuzz/fuzz-$t.log" || true
  if [[ $rc != 0 ]]; then
    echo "[fuzz] $t: exit $rc; see build-fuzz/fuzz-$t.log and the failure inputs in build-fuzz/:"
    ls build-fuzz/crash-* build-fuzz/leak-* build-fuzz/oom-* build-fuzz/timeout-* 2>/dev/null || true
    # CI keeps only the printed log: show the report and the input itself (base64, when small) so the
    # failure can be reproduced from the log alone.
    grep -a -A40 -E "^==[0-9]+==.*ERROR" "build-fuzz/fuzz-$t.log" | head -60 || true
    for f in build-fuzz/crash-* build-fuzz/leak-* build-fuzz/oom-* build-fuzz/timeout-*; do
      [[ -f "$f" && $(stat -c %s "$f") -le 4096 ]] && { echo "[fuzz] $f (base64):"; base64 -w 0 "$f"; echo; }
    done
    status=1
  fi
done
echo "[fuzz] total $(( $(date +%s) - start )) s"
exit $status
