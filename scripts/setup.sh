#!/usr/bin/env bash
# Installs what groupvit needs and builds it. Idempotent: every step checks first and
# reuses what is there, so a warm machine pays only for what changed.
#
#   scripts/setup.sh            Debian packages, the Python environment, configure + build
#   scripts/setup.sh --list-debian-packages   print the Debian packages it installs (all stages)
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
# scripts/check_deps.py checks that the build uses nothing else (setup.sh --list-debian-packages).
DEB_PACKAGES=(
  # toolchain and build tools
  build-essential cmake ninja-build ccache pkg-config python3-venv
  # the core: header-only JSON, Unicode classes/NFC, zlib (the CLIP vocabulary is gzipped),
  # SHA-256 for checksums.sha256 (OpenSSL's libcrypto)
  nlohmann-json3-dev libutf8proc-dev zlib1g-dev libssl-dev
  # the CLI and the tests; clang-format for the format check (scripts/format.sh, CTest format.check)
  libcli11-dev catch2 clang-format libarchive-dev  # libarchive: WebDataset shards (apps/batch/webdataset.cpp)
  libcpp-httplib-dev curl  # groupvit serve's HTTP server (apps/serve/cmd_serve.cpp); curl for demo.sh's call of it
  # image decoding: OpenCV's split packages (found by cmake/GroupViTOpenCV.cmake; libopencv-dev
  # would bring about 145 more packages) and libwebp for the WebP header check
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libwebp-dev
  # the overlay legend's text (apps/text_renderer.cpp): shaping, font lookup and bidi through pkg-config,
  # and the fonts it looks up: Latin/Greek/Cyrillic/Arabic/Hebrew, CJK, colour emoji
  libfreetype-dev libharfbuzz-dev libfontconfig-dev libfribidi-dev
  fonts-dejavu-core fonts-noto-cjk fonts-noto-color-emoji)
# The libFuzzer targets (scripts/fuzz.sh) need clang and its fuzzer runtime; CI runs them.
FUZZ_PACKAGES=(clang libclang-rt-dev)
# The Slurm cluster of test/slurm_test.py (test/slurm_cluster.py starts munged, slurmctld and slurmd by hand).
# Debian's Chromium and its WebDriver for the serve page's browser test (test/serve_browser_test.py).
TEST_PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge chromium chromium-driver)
if [[ "${1:-}" == --list-debian-packages ]]; then
  printf '%s\n' "${DEB_PACKAGES[@]}" "${FUZZ_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
  exit 0
fi
DEB_PACKAGES+=("${TEST_PACKAGES[@]}")
if [[ "${CI:-}" == true || "${GROUPVIT_FUZZ:-0}" == 1 ]]; then
  DEB_PACKAGES+=("${FUZZ_PACKAGES[@]}")
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
REQ_NODEPS="$ROOT/scripts/requirements-nodeps.txt"
STAMP="$VENV/.groupvit-requirements"
want="$(cat "$REQ" "$REQ_NODEPS" | sha256sum | cut -d' ' -f1)"
# Debian's Python (python3-venv brings it), never whichever python3 is first on PATH (a pyenv or
# /usr/local one exists only on the machine it was installed on; scripts/check_deps.py refuses it).
BASE_PYTHON=/usr/bin/python3
if [[ -x "$VENV/bin/python" ]] && ! grep -qx "home = $(dirname "$BASE_PYTHON")" "$VENV/pyvenv.cfg"; then
  say "recreating $VENV: it was made from another Python than $BASE_PYTHON"
  rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtual environment $VENV"
  "$BASE_PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
  say "installing Python packages (torch wheel carries LibTorch; a few GB the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQ"
  # Only the BPE vocabulary file inside open-clip-torch is used; its training dependencies are not.
  "$VENV/bin/python" -m pip install -q --no-deps -r "$REQ_NODEPS"
  echo "$want" > "$STAMP"
else
  say "Python environment up to date"
fi

# --- the outside tools the end-to-end tests drive (scripts/requirements-tools.txt) ---------
TOOLS_VENV="$ROOT/.venv-tools"
TOOLS_REQ="$ROOT/scripts/requirements-tools.txt"
want_tools="$(sha256sum < "$TOOLS_REQ" | cut -d' ' -f1)"
if [[ ! -f "$TOOLS_VENV/.groupvit-requirements" || "$(cat "$TOOLS_VENV/.groupvit-requirements")" != "$want_tools" ]]; then
  say "installing the test tools into $TOOLS_VENV"
  rm -rf "$TOOLS_VENV"
  "$BASE_PYTHON" -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/python" -m pip install -q -r "$TOOLS_REQ"
  echo "$want_tools" > "$TOOLS_VENV/.groupvit-requirements"
fi

[[ "${GROUPVIT_SKIP_BUILD:-0}" == 1 ]] && exit 0

# --- CUDA toolkit for configuring ---------------------------------------------------
# The PyPI torch wheel is a CUDA build: its CMake config runs FindCUDA and enable_language(CUDA),
# so configuring needs nvcc, headers and libraries even for a CPU-only machine. They come from the
# CUDA wheels in requirements.txt (nvidia-cuda-nvcc and friends, the version torch was built with), never
# from a toolkit installed on the machine, so that every machine configures the same way.
# The wheels ship only versioned libraries (libcudart.so.13) in nvidia/cu13; this folder adds the
# unversioned names FindCUDA looks for.
CUDA_WHEELS="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"
CUDA_ROOT="$VENV/cuda-toolkit"
if [[ ! -f "$CUDA_ROOT/.complete" || "$(cat "$CUDA_ROOT/.complete")" != "$CUDA_WHEELS" ]]; then
  say "assembling the CUDA toolkit from the wheels in $CUDA_ROOT"
  rm -rf "$CUDA_ROOT" && mkdir -p "$CUDA_ROOT/lib"
  for d in bin include nvvm; do ln -s "$CUDA_WHEELS/$d" "$CUDA_ROOT/$d"; done
  for f in "$CUDA_WHEELS"/lib/*; do
    name="$(basename "$f")"
    ln -s "$f" "$CUDA_ROOT/lib/$name"
    [[ "$name" == *.so.* && ! -e "$CUDA_ROOT/lib/${name%%.so.*}.so" ]] && ln -s "$f" "$CUDA_ROOT/lib/${name%%.so.*}.so"
  done
  ln -s lib "$CUDA_ROOT/lib64"
  echo "$CUDA_WHEELS" > "$CUDA_ROOT/.complete"
fi
# An initial cache (cmake -C) that points every CMake project finding this torch at it
# (scripts/sanitize.sh and test/install_example.sh too). -L: nvcc looks for libcudart_static.a
# beside its own real location, where the wheels have no lib64.
cat > "$CUDA_ROOT/torch-cuda.cmake" <<EOF
set(CUDA_TOOLKIT_ROOT_DIR "$CUDA_ROOT" CACHE PATH "CUDA toolkit assembled from the wheels by scripts/setup.sh")
set(CUDAToolkit_ROOT "$CUDA_ROOT" CACHE PATH "")
set(CMAKE_CUDA_COMPILER "$CUDA_ROOT/bin/nvcc" CACHE FILEPATH "")
set(CMAKE_CUDA_FLAGS "-L$CUDA_ROOT/lib" CACHE STRING "")
# FindCUDAToolkit falls back to /usr/local for what the wheels lack (the driver's link-time
# libcuda.so, culibos): a toolkit installed there by hand must not be picked up, and nothing
# setup.sh installs lives there.
set(CMAKE_IGNORE_PREFIX_PATH "/usr/local" CACHE STRING "")
EOF

# --- configure + build -------------------------------------------------------------
TORCH_PREFIX="$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  say "configuring $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE="${GROUPVIT_BUILD_TYPE:-Release}" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -C "$CUDA_ROOT/torch-cuda.cmake" \
    ${GROUPVIT_CMAKE_ARGS:-}
fi
# Warnings in the project's own code fail the build here (and so in CI); LibTorch's headers are
# system headers and do not count. An older build directory is switched on once.
if ! grep -q '^GROUPVIT_WERROR:BOOL=ON$' "$BUILD_DIR/CMakeCache.txt"; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DGROUPVIT_WERROR=ON > /dev/null
fi
say "building $BUILD_DIR with $JOBS jobs"
cmake --build "$BUILD_DIR" -j "$JOBS"
