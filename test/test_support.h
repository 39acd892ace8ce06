// Helpers shared by the test suites: where fixtures live and how to read the reference
// outputs that the Python fixture scripts write with torch.save({...}).
#pragma once

#include <ftw.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace groupvit::test {

// Folder the fixture scripts wrote to (CTest sets GROUPVIT_FIXTURES).
inline std::string fixtures_dir() {
  const char* dir = std::getenv("GROUPVIT_FIXTURES");
  if (!dir) throw std::runtime_error("GROUPVIT_FIXTURES is not set: run the tests through ctest");
  return dir;
}

inline std::string source_dir() {
  const char* dir = std::getenv("GROUPVIT_SOURCE_DIR");
  if (!dir) throw std::runtime_error("GROUPVIT_SOURCE_DIR is not set: run the tests through ctest");
  return dir;
}

// Reads a file written by Python's torch.save of a plain dict {str: tensor | int | float | str}.
inline c10::Dict<c10::IValue, c10::IValue> load_pickled_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open fixture " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict();
}

// A fresh directory, removed with everything in it at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("groupvit-test-" + std::to_string(::getpid()) + "-" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    std::filesystem::create_directories(path);
  }
  // POSIX nftw rather than std::filesystem::remove_all: libtorch.so exports its own, broken
  // copy of that symbol, which the dynamic linker binds first (seen: a call through null).
  ~TempDir() {
    ::nftw(
        path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
};

inline std::map<std::string, torch::Tensor> load_tensor_dict(const std::string& path) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : load_pickled_dict(path)) {
    if (item.value().isTensor()) out[item.key().toStringRef()] = item.value().toTensor();
  }
  return out;
}

// max|ours - ref| / max(max|ref|, floor): the error relative to the reference's scale.
inline double scaled_error(const torch::Tensor& ours, const torch::Tensor& ref, double floor = 1e-30) {
  auto a = ours.detach().to(torch::kCPU, torch::kDouble);
  auto b = ref.detach().to(torch::kCPU, torch::kDouble);
  const double scale = std::max(b.abs().max().item<double>(), floor);
  return (a - b).abs().max().item<double>() / scale;
}

}  // namespace groupvit::test
