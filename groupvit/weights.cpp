// Weight files and model directories (see weights.h).
#include "groupvit/weights.h"

#include "groupvit/safetensors.h"

#include <torch/torch.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

namespace groupvit {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

torch::Dtype dtype_from_safetensors(const std::string& dtype, const std::string& where) {
  if (dtype == "F32") return torch::kFloat;
  if (dtype == "F16") return torch::kHalf;
  if (dtype == "BF16") return torch::kBFloat16;
  if (dtype == "F64") return torch::kDouble;
  if (dtype == "I64") return torch::kLong;
  if (dtype == "I32") return torch::kInt;
  if (dtype == "I16") return torch::kShort;
  if (dtype == "I8") return torch::kChar;
  if (dtype == "U8") return torch::kByte;
  if (dtype == "BOOL") return torch::kBool;
  throw WeightsError(where + ": dtype " + dtype + " is not supported");
}

// A read-only memory map that unmaps itself.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw WeightsError(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw WeightsError(path + ": not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (p == MAP_FAILED) {
        ::close(fd_);
        throw WeightsError(path + ": cannot map: " + std::strerror(errno));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

std::string shape_string(c10::IntArrayRef shape) {
  std::ostringstream s;
  s << shape;
  return s.str();
}

}  // namespace

TensorMap read_safetensors_file(const std::string& path) {
  MappedFile file(path);
  SafetensorsHeader header;
  try {
    header = parse_safetensors_header(file.data(), file.size(), file.size(), path);
  } catch (const FormatError& e) {
    throw WeightsError(e.what());
  }
  TensorMap out;
  const uint8_t* base = file.data() + header.data_offset;
  for (const auto& e : header.tensors) {
    const auto dtype = dtype_from_safetensors(e.dtype, path + ": tensor '" + e.name + "'");
    // Copy out of the mapping: the map is released when this function returns.
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(dtype));
    if (e.end > e.begin) std::memcpy(t.data_ptr(), base + e.begin, e.end - e.begin);
    out.emplace(e.name, std::move(t));
  }
  return out;
}

TensorMap read_weights_file(const std::string& path) {
  if (!fs::exists(path)) throw WeightsError(path + ": no such file");
  if (ends_with(path, ".safetensors")) return read_safetensors_file(path);

  std::ifstream in(path, std::ios::binary);
  if (!in) throw WeightsError(path + ": cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw WeightsError(path + ": the file is empty");
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    std::string why = e.what();
    why = why.substr(0, why.find('\n'));
    throw WeightsError(path + ": not a readable torch.save archive (" + why + ")");
  }
  if (!value.isGenericDict()) throw WeightsError(path + ": expected a dict of tensors at the top level");
  TensorMap out;
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString()) throw WeightsError(path + ": a key of the archive is not a string");
    const auto& name = item.key().toStringRef();
    if (!item.value().isTensor()) throw WeightsError(path + ": entry '" + name + "' is not a tensor");
    out.emplace(name, item.value().toTensor());
  }
  return out;
}

void load_state_dict(torch::nn::Module& module, const TensorMap& tensors, const std::string& source) {
  std::vector<std::string> missing, mismatched, unexpected;
  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) targets.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) targets.emplace(b.key(), b.value());

  for (const auto& [name, target] : targets) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      if (!ends_with(name, "num_batches_tracked")) missing.push_back(name);
      continue;
    }
    const auto& src = it->second;
    if (src.sizes() != target.sizes()) {
      mismatched.push_back(name + " (file " + shape_string(src.sizes()) + ", model " + shape_string(target.sizes()) + ")");
    } else if (src.is_floating_point() != target.is_floating_point()) {
      mismatched.push_back(name + " (file dtype " + std::string(c10::toString(src.scalar_type())) + ", model " +
                           c10::toString(target.scalar_type()) + ")");
    }
  }
  for (const auto& [name, tensor] : tensors) {
    (void)tensor;
    if (!targets.count(name) && name != "text_model.embeddings.position_ids") unexpected.push_back(name);
  }
  if (!missing.empty() || !mismatched.empty() || !unexpected.empty()) {
    std::ostringstream msg;
    msg << source << ": the weights do not fit the model of config.json";
    auto list = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg << "\n  " << what << " (" << names.size() << "):";
      for (size_t i = 0; i < names.size() && i < 20; ++i) msg << "\n    " << names[i];
      if (names.size() > 20) msg << "\n    ... and " << names.size() - 20 << " more";
    };
    list("missing", missing);
    list("wrong shape or dtype", mismatched);
    list("unexpected", unexpected);
    throw WeightsError(msg.str());
  }

  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) {
    auto it = tensors.find(name);
    if (it != tensors.end()) target.copy_(it->second);
  }
}

std::string find_weights_file(const std::string& dir) {
  if (!fs::is_directory(dir)) throw WeightsError(dir + ": not a model directory (no such directory)");
  for (const char* name : {kArchiveFile, kSafetensorsFile}) {
    auto path = fs::path(dir) / name;
    if (fs::exists(path)) return path.string();
  }
  if (fs::exists(fs::path(dir) / "pytorch_model.bin"))
    throw WeightsError(dir + ": has only pytorch_model.bin, a Python pickle that LibTorch cannot read; convert "
                       "the directory with scripts/convert_hf.py");
  throw WeightsError(dir + ": no weights found (expected " + kArchiveFile + " from scripts/convert_hf.py, or " +
                     kSafetensorsFile + ")");
}

GroupViTModel load_model(const std::string& dir, const LoadOptions& options) {
  const auto config_path = (fs::path(dir) / kConfigFile).string();
  if (!fs::is_directory(dir)) throw WeightsError(dir + ": not a model directory (no such directory)");
  if (!fs::exists(config_path)) throw WeightsError(dir + ": not a model directory (no " + kConfigFile + ")");
  const auto config = GroupViTConfig::from_file(config_path);
  const auto weights_path = find_weights_file(dir);
  GroupViTModel model(config);
  load_state_dict(*model, read_weights_file(weights_path), weights_path);
  model->eval();
  model->to(options.device, options.dtype);
  return model;
}

}  // namespace groupvit
