#!/usr/bin/env bash
# Run ON THE GPU MACHINE (device tool) from the repository root, after scripts/gpu_deps.sh ran on
# the build machine and with ".deps" carried:  OUT=$OUT bash scripts/gpu_check.sh
# Builds the core without OpenCV against the machine's torch, makes the parity fixtures with its
# transformers, runs the CUDA suite (fp32 parity tight, fp16/bf16 cosine and assignment agreement,
# CUDA graph replays against eager forwards) and the CPU parity suite there, then the benchmarks on
# CUDA: ours (eager and CUDA graphs) and transformers eager (+ torch.compile reduce-overhead) at
# batch 64, reported in $OUT/benchmarks-gpu.md (copy it to docs/ and commit). Every step's output
# is also under $OUT; a failed step is reported and the later ones still run.
# Dry run on a CPU machine (GPU steps skip, the gpu_* rows run at batch 2 in fp32):
#   GPU_CHECK_DEVICE=cpu bash scripts/gpu_check.sh
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/build-gpu/out}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
mkdir -p "$OUT"
PY="${GPU_CHECK_PYTHON:-$(command -v python3)}"
DEPS="$ROOT/.deps/root/usr"
[[ -f "$ROOT/.deps/root/.complete-3" ]] || { echo "gpu_check: run scripts/gpu_deps.sh first and carry .deps" >&2; exit 2; }
TORCH_PREFIX="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
FAILED=()
step() {  # step NAME COMMAND...: runs, times and logs one step
  local name="$1" t0=$SECONDS; shift
  echo "== $name"
  if "$@" > "$OUT/$name.log" 2>&1; then echo "   ok ($((SECONDS - t0)) s)"; else
    echo "   FAILED ($((SECONDS - t0)) s); last lines:"; tail -25 "$OUT/$name.log"; FAILED+=("$name"); fi
}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
# Debian's libssl-dev keeps opensslconf.h/configuration.h in the multiarch include folder.
export CPATH="$DEPS/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
step configure cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DGROUPVIT_WITH_OPENCV=OFF \
  -DGROUPVIT_BUILD_APPS=OFF -DGROUPVIT_BUILD_BENCH=ON -DPython3_EXECUTABLE="$PY" \
  -DCMAKE_PREFIX_PATH="$DEPS;$TORCH_PREFIX" -DCMAKE_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu" \
  -DCMAKE_INCLUDE_PATH="$DEPS/include" -DOPENSSL_ROOT_DIR="$DEPS"
step build cmake --build build-gpu -j "$(nproc)" --target groupvit_tests groupvit_cuda_tests bench_groupvit
export LD_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
step ctest bash -c 'cd build-gpu && ctest -R "fixtures.parity|parity.cuda|parity.model" -V --timeout 900'
grep -E "^\[cuda\]|tests passed|Failed|Passed|Skipped|FAILED" "$OUT/ctest.log" | tail -60

# Benchmarks on the full-size fixture model: ours from its converted directory, the reference
# from its Hugging Face directory plus the tokenizer files gpu_deps.sh made.
FIX=build-gpu/test/fixtures/parity/full
cp "$ROOT/.deps/root/bpe_simple_vocab_16e6.txt.gz" "$FIX/model/" 2>/dev/null
cp "$ROOT"/.deps/root/clip-tokenizer/* "$FIX/hf/" 2>/dev/null
if [[ $DEVICE == cuda ]]; then
  ROWS=gemm_fp32,image_fp32_b1,image_fp32_b8,image_fp32_b32,text_fp32_80,seg_hf_224
  for t in fp16 bf16; do ROWS+=",gpu_image_$t,gpu_image_${t}_graph,gpu_seg_hf_$t,gpu_seg_hf_${t}_graph"; done
  GPU_ARGS=(--gpu-batch 64) REF_ARGS=(--gpu-batch 64 --gpu-dtypes fp16,bf16 --compile) REPS=10
else
  ROWS=gpu_image_fp32,gpu_image_fp32_graph,gpu_seg_hf_fp32,gpu_seg_hf_fp32_graph
  GPU_ARGS=(--gpu-batch 2) REF_ARGS=(--gpu-batch 2 --gpu-dtypes fp32) REPS=2
fi
step bench_ours bash -c "build-gpu/bench/bench_groupvit --model $FIX/model --device $DEVICE --reps $REPS ${GPU_ARGS[*]} \
  --rows $ROWS > $OUT/bench_ours.json"
step bench_reference bash -c "'$PY' bench/bench_reference.py --model $FIX/hf --gpu-rows --device $DEVICE --reps $REPS \
  ${REF_ARGS[*]} > $OUT/bench_reference.json"
step report bash -c "cd bench && '$PY' gpu_report.py $OUT/bench_ours.json $OUT/bench_reference.json $OUT/benchmarks-gpu.md"
cat "$OUT/benchmarks-gpu.md" 2>/dev/null
if ((${#FAILED[@]})); then echo "gpu_check: failed steps: ${FAILED[*]}"; exit 1; fi
echo "gpu_check: all steps passed"
