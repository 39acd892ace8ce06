// Loading weights: a model directory written by scripts/convert_hf.py (config.json +
// groupvit_weights.pt, a torch.save archive of plain tensors) or a Hugging Face snapshot
// with model.safetensors, read directly without Python. Every tensor is checked against the
// module tree by name, shape and dtype kind before anything is copied.
#pragma once

#include <torch/types.h>

#include <map>
#include <stdexcept>
#include <string>

#include "groupvit/model/model.h"

namespace groupvit {

class WeightsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using TensorMap = std::map<std::string, torch::Tensor>;

// File names inside a model directory.
inline constexpr const char* kArchiveFile = "groupvit_weights.pt";
inline constexpr const char* kSafetensorsFile = "model.safetensors";
inline constexpr const char* kConfigFile = "config.json";

// Reads every tensor of a weights file: a torch.save zip archive of a {name: tensor} dict
// (.pt, .bin) or a .safetensors file. Throws WeightsError naming the file and the problem.
TensorMap read_weights_file(const std::string& path);
TensorMap read_safetensors_file(const std::string& path);

// Copies `tensors` into the module's parameters and buffers (converting dtype and device).
// Throws WeightsError listing missing, unexpected and mis-shaped tensors. Tolerated: the
// reference's non-persistent text position_ids, and BatchNorm counters absent from old files.
void load_state_dict(torch::nn::Module& module, const TensorMap& tensors, const std::string& source);

// Reads a safetensors file straight into the module's parameters and buffers (no second copy
// of the weights), after the same checks as load_state_dict.
void load_safetensors(torch::nn::Module& module, const std::string& path);

struct LoadOptions {
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat;
  // GroupViTModelImpl::quantize_linear_int8 after the load: CPU and float32 only.
  bool int8_linear = false;
};

// The weights file load_model would read in `dir`: model.safetensors (which the converter
// writes next to its archive) first, then the converter's archive. Throws WeightsError when
// there is none.
std::string find_weights_file(const std::string& dir);

// Throws WeightsError when the weights file is too small to hold the model `config` describes
// (at 2 bytes per parameter), so that a wrong or hostile config.json fails before the model is
// allocated instead of asking for terabytes. load_model calls it.
void check_file_can_hold(const GroupViTConfig& config, const std::string& weights_path);

// Checks config.json and the weights file against the directory's checksums.sha256 (when it
// lists them; groupvit/formats/checksums.h), so that a damaged file is reported as damaged rather than as
// whatever parse error its bytes happen to cause. Throws ChecksumError naming the file.
void verify_model_files(const std::string& dir);

// Reads config.json and the weights of a model directory; returns the model in eval mode on
// the requested device and dtype. Files listed in the directory's checksums.sha256 are verified
// first (ChecksumError names a damaged one).
GroupViTModel load_model(const std::string& dir, const LoadOptions& options = {});

// Writes `tensors` (CPU or not; float32/float16/bfloat16/int64) as a .safetensors file with
// Hugging Face's "pt" metadata, atomically (groupvit/formats/atomic_file.h): a reader never sees half a file.
void write_safetensors_file(const std::string& path, const TensorMap& tensors);

// The module's parameters and persistent buffers under their checkpoint names.
TensorMap state_dict(const torch::nn::Module& module);

// Writes a model directory that load_model (and transformers' from_pretrained) reads:
// config.json and model.safetensors with floating-point tensors stored as `dtype`, recorded in
// the directory's checksums.sha256. Tokenizer and preprocessor files are the caller's to add.
void save_model(const GroupViTModelImpl& model, const std::string& dir, torch::Dtype dtype = torch::kFloat);

}  // namespace groupvit
