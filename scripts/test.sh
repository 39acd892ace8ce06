#!/usr/bin/env bash
# Sets up (scripts/setup.sh: packages, environment, build) if needed, then runs the whole test
# suite through CTest. Reference fixtures are made on the first run by Python scripts with
# transformers and reused afterwards. With CI=true (or the variables below) two more stages follow:
# the unit suites (and the WebDataset reader) under AddressSanitizer + UBSan (scripts/sanitize.sh, its own build-asan/) and
# bounded fuzzing of every libFuzzer target (scripts/fuzz.sh).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -R parity       any extra arguments go to ctest
#   GROUPVIT_TEST_JOBS=N            tests run in parallel (default 2)
#   GROUPVIT_SANITIZE=1             also the sanitizer stage (default: only with CI=true)
#   GROUPVIT_FUZZ_SECONDS=S         also fuzz each target for S seconds (CI=true: 60)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${GROUPVIT_BUILD_DIR:-build}"
cd "$ROOT"
start=$(date +%s)
ci=0; [[ "${CI:-}" == true ]] && ci=1
bash scripts/setup.sh
echo "[test] setup and build took $(( $(date +%s) - start )) s"
status=0
(cd "$BUILD_DIR" && ctest --output-on-failure --parallel "${GROUPVIT_TEST_JOBS:-2}" "$@") || status=1
echo "[test] ctest done at $(( $(date +%s) - start )) s"
if [[ $ci == 1 || "${GROUPVIT_SANITIZE:-0}" == 1 ]]; then
  bash scripts/sanitize.sh || status=1
  echo "[test] sanitizer stage done at $(( $(date +%s) - start )) s"
fi
if [[ $ci == 1 || -n "${GROUPVIT_FUZZ_SECONDS:-}" ]]; then
  bash scripts/fuzz.sh "${GROUPVIT_FUZZ_SECONDS:-60}" || status=1
  echo "[test] fuzzing done at $(( $(date +%s) - start )) s"
fi
echo "[test] total $(( $(date +%s) - start )) s"
exit $status
