#!/usr/bin/env bash
# Run ON THE GPU MACHINE (device tool) from the repository root, after scripts/gpu_deps.sh ran on
# the build machine and with ".deps" carried. Builds the core without OpenCV against the
# machine's torch, makes the parity fixtures with its transformers, runs the CUDA parity suite
# (fp32 tight, fp16/bf16 cosine and assignment agreement) and the CPU parity suite there, then
# the benchmark on CUDA. Everything it prints is also copied under $OUT (when set).
# Untested until a session is lent a GPU: expect to adjust paths on the first run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/build-gpu/out}"
mkdir -p "$OUT"
PY="$(command -v python3)"
TORCH_PREFIX="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
DEPS="$ROOT/.deps/root/usr"
nvidia-smi | tee "$OUT/nvidia-smi.txt" || true
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DGROUPVIT_WITH_OPENCV=OFF -DGROUPVIT_BUILD_APPS=OFF \
  -DGROUPVIT_BUILD_BENCH=ON -DPython3_EXECUTABLE="$PY" \
  -DCMAKE_PREFIX_PATH="$DEPS;$TORCH_PREFIX" -DCMAKE_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu" \
  -DCMAKE_INCLUDE_PATH="$DEPS/include" 2>&1 | tail -5 | tee "$OUT/configure.txt"
cmake --build build-gpu -j "$(nproc)" --target groupvit_tests groupvit_cuda_tests bench_groupvit 2>&1 | tail -3
export LD_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
(cd build-gpu && ctest -R "fixtures.parity|parity.cuda|parity.model" -V 2>&1 | grep -E "^\[cuda\]|\[parity\].*gradients|tests passed|Failed|Passed|Skipped" \
  | tee "$OUT/ctest.txt")
# The benchmark runs on the full-size fixture model, given the vocabulary carried in .deps.
MODEL=build-gpu/test/fixtures/parity/full/model
cp "$ROOT/.deps/root/bpe_simple_vocab_16e6.txt.gz" "$MODEL/"
build-gpu/bench/bench_groupvit --model "$MODEL" --device cuda --reps 10 \
  --rows gemm_fp32,image_fp32_b1,image_fp32_b8,image_fp32_b32,text_fp32_80,seg_hf_224 | tee "$OUT/bench_cuda.json"
