#!/usr/bin/env bash
# Installs what groupvit needs and builds it. Idempotent: every step checks first and
# reuses what is there, so a warm machine pays only for what changed.
#
#   scripts/setup.sh            Debian packages, the Python environment, configure + build
#   GROUPVIT_BUILD_DIR=...      build folder (default: build)
#   GROUPVIT_JOBS=N             parallel compile jobs (default: nproc)
#   GROUPVIT_SKIP_BUILD=1       stop after installing dependencies
#   GROUPVIT_FUZZ=1             also install clang + libFuzzer (always with CI=true)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${GROUPVIT_BUILD_DIR:-build}"
JOBS="${GROUPVIT_JOBS:-$(nproc)}"
VENV="$ROOT/.venv"

say() { printf '[setup] %s\n' "$*"; }

# --- Debian packages ---------------------------------------------------------------
# The core needs only header-only libraries and utf8proc; OpenCV is for the image target.
DEB_PACKAGES=(build-essential cmake ninja-build ccache python3-venv
  nlohmann-json3-dev catch2 libcli11-dev libutf8proc-dev zlib1g-dev pkg-config
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libwebp-dev)
# The libFuzzer targets (scripts/fuzz.sh) need clang and its fuzzer runtime; CI runs them.
if [[ "${CI:-}" == true || "${GROUPVIT_FUZZ:-0}" == 1 ]]; then
  DEB_PACKAGES+=(clang libclang-rt-dev)
fi
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

# --- Python environment (LibTorch, converter, reference) ---------------------------
REQ="$ROOT/scripts/requirements.txt"
STAMP="$VENV/.groupvit-requirements"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtual environment $VENV"
  python3 -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
  say "installing Python packages (torch wheel carries LibTorch; a few GB the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQ"
  # Only the BPE vocabulary file inside this package is used; its training dependencies are not.
  "$VENV/bin/python" -m pip install -q --no-deps open-clip-torch==3.3.0
  echo "$want" > "$STAMP"
else
  say "Python environment up to date"
fi

[[ "${GROUPVIT_SKIP_BUILD:-0}" == 1 ]] && exit 0

# --- configure + build -------------------------------------------------------------
TORCH_PREFIX="$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  say "configuring $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE="${GROUPVIT_BUILD_TYPE:-Release}" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DPython3_EXECUTABLE="$VENV/bin/python" \
    ${GROUPVIT_CMAKE_ARGS:-}
fi
say "building $BUILD_DIR with $JOBS jobs"
cmake --build "$BUILD_DIR" -j "$JOBS"
