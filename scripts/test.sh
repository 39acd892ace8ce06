#!/usr/bin/env bash
# Sets up (scripts/setup.sh: packages, environment, build) if needed, then runs the whole test
# suite through CTest. Reference fixtures are made on the first run by Python scripts with
# transformers and reused afterwards.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -R parity       any extra arguments go to ctest
#   GROUPVIT_TEST_JOBS=N            tests run in parallel (default 2)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${GROUPVIT_BUILD_DIR:-build}"
cd "$ROOT"
start=$(date +%s)
bash scripts/setup.sh
echo "[test] setup and build took $(( $(date +%s) - start )) s"
cd "$BUILD_DIR"
ctest --output-on-failure --parallel "${GROUPVIT_TEST_JOBS:-2}" "$@"
echo "[test] total $(( $(date +%s) - start )) s"
