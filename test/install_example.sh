#!/usr/bin/env bash
# Installs groupvit into a temporary prefix, builds examples/segment_frames against it as a
# separate project (find_package(groupvit)), and runs it on a model directory.
#   test/install_example.sh BUILD_DIR SOURCE_DIR TORCH_CMAKE_PREFIX MODEL_DIR
set -euo pipefail
BUILD_DIR="$1" SOURCE_DIR="$2" TORCH_PREFIX="$3" MODEL_DIR="$4"
WORK="$BUILD_DIR/test/install-example"
rm -rf "$WORK" && mkdir -p "$WORK"
cmake --install "$BUILD_DIR" --prefix "$WORK/prefix" > "$WORK/install.log"
test -f "$WORK/prefix/lib/cmake/groupvit/groupvitConfig.cmake"
test -f "$WORK/prefix/include/groupvit/groupvit.h"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# The CUDA torch wheel's CMake config needs a CUDA toolkit: the same one the build used
# (scripts/setup.sh assembles it from the wheels), as a user's project would be pointed at it.
cuda_args=()
for var in CUDA_TOOLKIT_ROOT_DIR CUDAToolkit_ROOT CMAKE_CUDA_COMPILER CMAKE_CUDA_FLAGS; do
  value="$(sed -n "s/^$var:[A-Z]*=//p" "$BUILD_DIR/CMakeCache.txt")"
  [[ -n "$value" ]] && cuda_args+=("-D$var=$value")
done
cmake -S "$SOURCE_DIR/examples/segment_frames" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$WORK/prefix;$TORCH_PREFIX" "${launcher[@]}" "${cuda_args[@]}" > "$WORK/configure.log" 2>&1 \
  || { cat "$WORK/configure.log"; exit 1; }
cmake --build "$WORK/build" > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
"$WORK/build/segment_frames" "$MODEL_DIR" "cat,dog,grass" --device cpu --frames 3 | tee "$WORK/output.txt"
grep -q "^frame 2:  cat [0-9.]*%  dog [0-9.]*%  grass [0-9.]*%$" "$WORK/output.txt"
echo "install + example: OK"
