#include "groupvit/runtime/fast_dtype.h"

#include <ATen/cpu/Utils.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <mutex>
#include <string>

namespace groupvit {
namespace {

bool cpuinfo_says(const std::unordered_map<std::string, c10::IValue>& caps, const std::string& key) {
  const auto it = caps.find(key);
  return it != caps.end() && it->second.isBool() && it->second.toBool();
}

// The best of three runs after one warm-up: the machine's rate, not its neighbours'.
double gemm_gflops(torch::Dtype dtype) {
  // One MLP matrix multiply of the image tower at batch 8 or so: rows x 384 -> 1536.
  const int64_t rows = 2048, in = 384, out = 1536;
  const auto a = torch::randn({rows, in}).to(dtype), b = torch::randn({in, out}).to(dtype);
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 4; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto c = torch::mm(a, b);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i > 0) best = std::min(best, s);
  }
  return 2.0 * rows * in * out / best / 1e9;
}

CpuBf16Check measure() {
  CpuBf16Check c;
  const auto caps = at::cpu::get_cpu_capabilities();
  c.instructions = cpuinfo_says(caps, "avx512_bf16") || cpuinfo_says(caps, "amx_bf16");
  c.threads = torch::get_num_threads();
  if (!c.instructions) return c;
  torch::NoGradGuard no_grad;
  c.fp32_gflops = gemm_gflops(torch::kFloat);
  c.bf16_gflops = gemm_gflops(torch::kBFloat16);
  c.native = c.bf16_gflops >= kNativeBf16Speedup * c.fp32_gflops;
  return c;
}

}  // namespace

const CpuBf16Check& cpu_bf16_check() {
  static std::once_flag once;
  static CpuBf16Check check;
  std::call_once(once, [] { check = measure(); });
  return check;
}

torch::Dtype fastest_dtype(const torch::Device& device) {
  if (device.is_cuda()) return torch::kBFloat16;
  return cpu_bf16_check().native ? torch::kBFloat16 : torch::kFloat;
}

}  // namespace groupvit
