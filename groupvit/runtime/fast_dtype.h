// The precision worth running on this machine, chosen at run time (the CLI's `--dtype auto`).
//
// Why measured and not read off the CPU flags alone: CPUs with the AVX512-BF16 instructions differ.
// On a Zen 4 EPYC LibTorch's bf16 matrix multiply ran 2.8x faster than fp32, on a Xeon with
// AVX512-BF16 but no AMX it ran slower than fp32 (docs/peers.md), and without the instructions it
// falls back to a scalar kernel hundreds of times slower. So: no bf16 instructions, float32 (nothing
// timed); with them, one model-sized matrix multiply is timed in both precisions, once per process.
#pragma once

#include <torch/torch.h>

namespace groupvit {

struct CpuBf16Check {
  bool instructions = false;  // cpuinfo's avx512_bf16 or amx_bf16
  int threads = 0;            // LibTorch's intra-op threads when measured
  double fp32_gflops = 0.0;   // measured rates; 0 where not measured (no bf16 instructions)
  double bf16_gflops = 0.0;
  bool native = false;  // bf16 runs the model's matrix multiplies at least kNativeBf16Speedup x faster
};

// The margin keeps the choice the same from one process to the next (batch jobs compare rows of
// separate processes bit for bit): the CPUs seen differ by 2.8x one way or the other, not near 1.
constexpr double kNativeBf16Speedup = 1.5;

// Measured on the first call (about 0.1 s where the instructions exist), then cached.
const CpuBf16Check& cpu_bf16_check();

// bf16 on CUDA (the GPUs this project runs on have bf16 tensor cores; pass fp16 on older ones),
// bf16 on a CPU whose cpu_bf16_check() says native, float32 otherwise.
torch::Dtype fastest_dtype(const torch::Device& device);

}  // namespace groupvit
