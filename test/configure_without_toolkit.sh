#!/usr/bin/env bash
# Configures groupvit the way a machine without a CUDA toolkit would: in a private mount
# namespace every toolkit outside the project (/usr/local/cuda*, /opt/cuda, /opt/nvidia) is hidden
# under an empty directory, and PATH holds only the system's directories. Configure must succeed
# with the toolkit scripts/setup.sh assembled from the PyPI wheels, and must use that one.
#   test/configure_without_toolkit.sh SOURCE_DIR WORK_DIR TORCH_CMAKE_PREFIX
set -euo pipefail
SOURCE_DIR="$1" WORK="$2" TORCH_PREFIX="$3"
INIT_CACHE="$SOURCE_DIR/.venv/cuda-toolkit/torch-cuda.cmake"
[[ -f "$INIT_CACHE" ]] || { echo "no $INIT_CACHE: run scripts/setup.sh first"; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK/empty"
hidden=()
for d in /usr/local/cuda* /opt/cuda /opt/nvidia; do
  [[ -d "$d" && ! -L "$d" ]] && hidden+=("$d")
done
echo "hiding: ${hidden[*]:-(no toolkit on this machine)}"
# A private mount namespace for the bind mounts; with nothing to hide (a machine without a toolkit,
# e.g. scripts/fresh_machine_test.sh's chroot, where unshare cannot make / private), none is needed.
ns=()
if ((${#hidden[@]})); then
  ns=(unshare --mount)
  [[ $(id -u) -eq 0 ]] || ns=(unshare --mount --map-root-user)
fi
# shellcheck disable=SC2016  # expanded inside the namespace
"${ns[@]}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK" bash -euo pipefail -c '
  WORK="$1" SOURCE_DIR="$2" TORCH_PREFIX="$3" INIT_CACHE="$4"; shift 4
  for d in "$@"; do mount --bind "$WORK/empty" "$d"; done  # unshare makes the mounts private
  if command -v nvcc || [[ -e /usr/local/cuda/bin/nvcc ]]; then echo "a system nvcc is still visible"; exit 1; fi
  cmake -S "$SOURCE_DIR" -B "$WORK/build" -G Ninja -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -C "$INIT_CACHE" \
    -DGROUPVIT_BUILD_TESTS=OFF -DGROUPVIT_BUILD_APPS=OFF > "$WORK/configure.log" 2>&1 \
    || { cat "$WORK/configure.log"; exit 1; }
' _ "$WORK" "$SOURCE_DIR" "$TORCH_PREFIX" "$INIT_CACHE" "${hidden[@]}"
grep "PyTorch: CUDA detected" "$WORK/configure.log"
root="$(sed -n 's/^CUDA_TOOLKIT_ROOT_DIR:[A-Z]*=//p' "$WORK/build/CMakeCache.txt")"
echo "CUDA_TOOLKIT_ROOT_DIR=$root"
[[ "$root" == "$SOURCE_DIR/.venv/cuda-toolkit" ]] || { echo "configure used another toolkit: $root"; exit 1; }
echo "configured without a system CUDA toolkit: OK"
