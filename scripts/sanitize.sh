#!/usr/bin/env bash
# Builds the project's own code with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# GROUPVIT_SANITIZE) in build-asan/ and runs the Catch2 suites that need no full-size model:
# config, safetensors, model, tokenizer, image, robust and train; then `groupvit serve` of that build
# through the serve tests that attack it (test/serve_test.py: api, bad_input, auth, limits, sigterm,
# schemathesis). They read the fixtures of the normal build (made by its CTest run, or here when missing).
#   scripts/sanitize.sh             (scripts/test.sh runs it with CI=true or GROUPVIT_SANITIZE=1)
#   GROUPVIT_ASAN_BUILD_DIR=...     build folder (default: build-asan)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${GROUPVIT_ASAN_BUILD_DIR:-build-asan}"
JOBS="${GROUPVIT_JOBS:-$(nproc)}"
PY="$ROOT/.venv/bin/python"
FIXTURES="${GROUPVIT_FIXTURES:-$ROOT/${GROUPVIT_BUILD_DIR:-build}/test/fixtures}"
start=$(date +%s)

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  TORCH_PREFIX="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  # -O1: the usual choice for sanitizer builds (readable reports, about half the compile time of -O3).
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DGROUPVIT_SANITIZE=ON -DGROUPVIT_BUILD_APPS=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DPython3_EXECUTABLE="$PY" -C "$ROOT/.venv/cuda-toolkit/torch-cuda.cmake" > /dev/null
fi
# A build folder made before the server was part of this stage: turn the CLI on.
grep -q "GROUPVIT_BUILD_APPS:BOOL=ON" "$BUILD/CMakeCache.txt" || cmake -S "$ROOT" -B "$BUILD" -DGROUPVIT_BUILD_APPS=ON > /dev/null
cmake --build "$BUILD" --target groupvit_tests groupvit_webdataset_tests groupvit_cli -j "$JOBS"
echo "[sanitize] build took $(( $(date +%s) - start )) s"

# The fixture scripts skip work that is already done.
[[ -f "$FIXTURES/tokenizer/manifest.json" ]] || "$PY" scripts/make_tokenizer_fixtures.py "$FIXTURES/tokenizer"
[[ -f "$FIXTURES/image/manifest.json" ]] || "$PY" scripts/make_image_fixtures.py "$FIXTURES/image"
[[ -f "$FIXTURES/train/ref.pt" ]] || "$PY" scripts/make_train_fixtures.py "$FIXTURES/train"
[[ -f "$FIXTURES/webdataset/expected.json" ]] || "$PY" scripts/make_webdataset_fixtures.py "$FIXTURES/webdataset"
[[ -f "$FIXTURES/cli/manifest.json" ]] || "$PY" scripts/make_cli_fixtures.py "$FIXTURES/cli"

# LibTorch is not instrumented, so ASan sees its allocations but not their origin:
# - detect_leaks=0: LibTorch and OpenBLAS keep global caches and thread pools alive until exit
#   (reported as leaks on every run, none of them ours); LeakSanitizer would fail every test.
# - alloc_dealloc_mismatch=0: LibTorch frees with free() some blocks allocated with new[] in its
#   own uninstrumented code paths; nothing our code can fix or cause.
# - halt_on_error=1 / abort_on_error=1 and -fno-sanitize-recover (CMake): any report fails the run.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:alloc_dealloc_mismatch=0:halt_on_error=1:abort_on_error=1:check_initialization_order=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export GROUPVIT_FIXTURES="$FIXTURES" GROUPVIT_SOURCE_DIR="$ROOT"
status=0
for tag in config safetensors files model tokenizer image robust train; do
  t0=$(date +%s)
  if "$BUILD/test/groupvit_tests" "[$tag]" > "$BUILD/asan-$tag.log" 2>&1; then
    echo "[sanitize] [$tag] passed in $(( $(date +%s) - t0 )) s ($(grep -Eo 'All tests passed.*' "$BUILD/asan-$tag.log"))"
  else
    echo "[sanitize] [$tag] FAILED under ASan/UBSan; log $BUILD/asan-$tag.log:"
    tail -n 60 "$BUILD/asan-$tag.log"
    status=1
  fi
done
# The WebDataset reader on damaged shards (cut, overwritten bytes): libarchive's callbacks and ours.
t0=$(date +%s)
if "$BUILD/test/groupvit_webdataset_tests" "[webdataset]" > "$BUILD/asan-webdataset.log" 2>&1; then
  echo "[sanitize] [webdataset] passed in $(( $(date +%s) - t0 )) s ($(grep -Eo 'All tests passed.*' "$BUILD/asan-webdataset.log"))"
else
  echo "[sanitize] [webdataset] FAILED under ASan/UBSan; log $BUILD/asan-webdataset.log:"
  tail -n 60 "$BUILD/asan-webdataset.log"
  status=1
fi
# The HTTP server under attack: every request of these cases (truncated multipart, bodies over the
# limit, invalid UTF-8, slow and vanishing clients, schemathesis' generated requests, SIGTERM in
# flight) runs through the instrumented server, and an ASan/UBSan report aborts it, failing the case.
for case in api bad_input auth limits sigterm schemathesis; do
  t0=$(date +%s)
  if "$ROOT/.venv-tools/bin/python" test/serve_test.py "$BUILD/apps/groupvit" "$FIXTURES/cli" "$BUILD/serve_work" \
    "$case" > "$BUILD/asan-serve-$case.log" 2>&1; then
    echo "[sanitize] [serve.$case] passed in $(( $(date +%s) - t0 )) s"
  else
    echo "[sanitize] [serve.$case] FAILED under ASan/UBSan; log $BUILD/asan-serve-$case.log:"
    tail -n 80 "$BUILD/asan-serve-$case.log"
    status=1
  fi
done
echo "[sanitize] total $(( $(date +%s) - start )) s"
exit $status
