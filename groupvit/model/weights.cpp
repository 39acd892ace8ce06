// Weight files and model directories (see weights.h).
#include "groupvit/model/weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iomanip>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "groupvit/formats/atomic_file.h"
#include "groupvit/formats/checksums.h"
#include "groupvit/formats/safetensors.h"

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

// A file read with pread: header and tensors go straight to their destination, so loading
// needs no second copy of the weights in memory.
class File {
 public:
  explicit File(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw WeightsError(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw WeightsError(path + ": not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~File() { ::close(fd_); }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  uint64_t size() const { return size_; }
  void read(void* dst, uint64_t bytes, uint64_t offset) const {
    auto* out = static_cast<char*>(dst);
    while (bytes > 0) {
      const ssize_t n = ::pread(fd_, out, std::min<uint64_t>(bytes, 1u << 30), static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        throw WeightsError(path_ + ": read error at byte " + std::to_string(offset) +
                           (n < 0 ? std::string(": ") + std::strerror(errno) : ": unexpected end of file"));
      out += n;
      bytes -= static_cast<uint64_t>(n);
      offset += static_cast<uint64_t>(n);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

SafetensorsHeader read_header(const File& file, const std::string& path) {
  uint8_t length_bytes[8] = {};
  if (file.size() < 8) throw WeightsError(path + ": not a valid safetensors file: shorter than 8 bytes");
  file.read(length_bytes, 8, 0);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | length_bytes[i];
  // The parser rejects lengths beyond the file or 100 MB before anything is allocated.
  const uint64_t available = std::min<uint64_t>(header_len, std::min<uint64_t>(file.size() - 8, 100ull << 20));
  std::vector<uint8_t> buffer(8 + available);
  std::memcpy(buffer.data(), length_bytes, 8);
  if (available > 0) file.read(buffer.data() + 8, available, 8);
  try {
    return parse_safetensors_header(buffer.data(), buffer.size(), file.size(), path);
  } catch (const FormatError& e) {
    throw WeightsError(e.what());
  }
}

struct TensorInfo {
  std::vector<int64_t> shape;
  torch::Dtype dtype;
};

std::map<std::string, torch::Tensor> module_targets(torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) targets.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) targets.emplace(b.key(), b.value());
  return targets;
}

std::string shape_string(c10::IntArrayRef shape) {
  std::ostringstream s;
  s << shape;
  return s.str();
}

}  // namespace

TensorMap read_safetensors_file(const std::string& path) {
  File file(path);
  const auto header = read_header(file, path);
  TensorMap out;
  for (const auto& e : header.tensors) {
    const auto dtype = dtype_from_safetensors(e.dtype, path + ": tensor '" + e.name + "'");
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(dtype));
    if (e.end > e.begin) file.read(t.data_ptr(), e.end - e.begin, header.data_offset + e.begin);
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

namespace {

// Throws WeightsError listing every missing, unexpected and mis-shaped tensor.
void check_fit(const std::map<std::string, torch::Tensor>& targets, const std::map<std::string, TensorInfo>& infos,
               const std::string& source) {
  std::vector<std::string> missing, mismatched, unexpected;
  for (const auto& [name, target] : targets) {
    auto it = infos.find(name);
    if (it == infos.end()) {
      if (!ends_with(name, "num_batches_tracked")) missing.push_back(name);
      continue;
    }
    const auto& info = it->second;
    if (c10::IntArrayRef(info.shape) != target.sizes()) {
      mismatched.push_back(name + " (file " + shape_string(info.shape) + ", model " + shape_string(target.sizes()) +
                           ")");
    } else if (c10::isFloatingType(info.dtype) != target.is_floating_point()) {
      mismatched.push_back(name + " (file dtype " + std::string(c10::toString(info.dtype)) + ", model " +
                           c10::toString(target.scalar_type()) + ")");
    }
  }
  for (const auto& [name, info] : infos) {
    (void)info;
    if (!targets.count(name) && name != "text_model.embeddings.position_ids") unexpected.push_back(name);
  }
  if (missing.empty() && mismatched.empty() && unexpected.empty()) return;
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

}  // namespace

void load_state_dict(torch::nn::Module& module, const TensorMap& tensors, const std::string& source) {
  auto targets = module_targets(module);
  std::map<std::string, TensorInfo> infos;
  for (const auto& [name, t] : tensors) infos.emplace(name, TensorInfo{t.sizes().vec(), t.scalar_type()});
  check_fit(targets, infos, source);
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) {
    auto it = tensors.find(name);
    if (it != tensors.end()) target.copy_(it->second);
  }
}

void load_safetensors(torch::nn::Module& module, const std::string& path) {
  File file(path);
  const auto header = read_header(file, path);
  auto targets = module_targets(module);
  std::map<std::string, TensorInfo> infos;
  for (const auto& e : header.tensors)
    infos.emplace(e.name, TensorInfo{e.shape, dtype_from_safetensors(e.dtype, path + ": tensor '" + e.name + "'")});
  check_fit(targets, infos, path);
  torch::NoGradGuard no_grad;
  for (const auto& e : header.tensors) {
    auto it = targets.find(e.name);
    if (it == targets.end() || e.end == e.begin) continue;
    auto& target = it->second;
    const auto dtype = infos.at(e.name).dtype;
    const uint64_t offset = header.data_offset + e.begin;
    if (target.device().is_cpu() && target.is_contiguous() && target.scalar_type() == dtype) {
      // Read, not memory-mapped: parameters viewing a mapped file made the forward measurably slower
      // on the 2-core EPYC here (batch 1: min 114-129 ms against 96-116 ms over three paired runs);
      // most tensors of a converted file start 20 bytes past a cache line, and file pages are 4 KB.
      file.read(target.data_ptr(), e.end - e.begin, offset);  // straight into the parameter
    } else {
      auto staging = torch::empty(e.shape, torch::TensorOptions().dtype(dtype));
      file.read(staging.data_ptr(), e.end - e.begin, offset);
      target.copy_(staging);
    }
  }
}

std::string find_weights_file(const std::string& dir) {
  if (!fs::is_directory(dir)) throw WeightsError(dir + ": not a model directory (no such directory)");
  // model.safetensors first: it loads without a second copy of the weights in memory.
  for (const char* name : {kSafetensorsFile, kArchiveFile}) {
    auto path = fs::path(dir) / name;
    if (fs::exists(path)) return path.string();
  }
  if (fs::exists(fs::path(dir) / "pytorch_model.bin"))
    throw WeightsError(dir +
                       ": has only pytorch_model.bin, a Python pickle that LibTorch cannot read; convert "
                       "the directory with scripts/convert_hf.py");
  throw WeightsError(dir + ": no weights found (expected " + kArchiveFile + " from scripts/convert_hf.py, or " +
                     kSafetensorsFile + ")");
}

namespace {

// A lower bound of the parameters config describes: embeddings, projections and the weight
// matrices of every transformer layer (biases, norms and the grouping blocks' extra layers are
// left out). In double: hostile values would overflow int64.
double minimum_parameter_count(const GroupViTConfig& config) {
  const auto& t = config.text_config;
  const auto& v = config.vision_config;
  auto layer = [](double width, double intermediate) { return 4 * width * width + 2 * width * intermediate; };
  double depth = 0, group_tokens = 0;
  for (int64_t d : v.depths) depth += static_cast<double>(d);
  for (int64_t g : v.num_group_tokens) group_tokens += static_cast<double>(g);
  const double th = static_cast<double>(t.hidden_size), vh = static_cast<double>(v.hidden_size);
  const double proj = static_cast<double>(config.projection_dim);
  const double inter = static_cast<double>(config.projection_intermediate_dim);
  return static_cast<double>(t.vocab_size + t.max_position_embeddings) * th +
         static_cast<double>(t.num_hidden_layers) * layer(th, static_cast<double>(t.intermediate_size)) +
         (static_cast<double>(v.num_patches()) + group_tokens +
          static_cast<double>(v.num_channels * v.patch_size * v.patch_size)) *
             vh +
         depth * layer(vh, static_cast<double>(v.intermediate_size)) + (th + vh) * inter + 2 * inter * proj;
}

}  // namespace

void check_file_can_hold(const GroupViTConfig& config, const std::string& weights_path) {
  struct stat st {};
  if (::stat(weights_path.c_str(), &st) != 0)
    throw WeightsError(weights_path + ": cannot read the file size: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw WeightsError(weights_path + ": not a regular file");
  const auto bytes = static_cast<uint64_t>(st.st_size);
  const double params = minimum_parameter_count(config);
  if (params * 2 > static_cast<double>(bytes)) {
    std::ostringstream msg;
    msg << weights_path << ": holds " << bytes << " bytes, but " << kConfigFile << " describes a model of at least "
        << std::setprecision(4) << params << " parameters (" << params * 2
        << " bytes even in 16-bit); the config and the weights do not belong together";
    throw WeightsError(msg.str());
  }
}

void verify_model_files(const std::string& dir) {
  verify_checksum(dir, kConfigFile);
  verify_checksum(dir, fs::path(find_weights_file(dir)).filename().string());
}

namespace {

GroupViTModel build_and_read(const std::string& config_path, const std::string& weights_path,
                             const LoadOptions& options) {
  const auto config = GroupViTConfig::from_file(config_path);
  // The file is checked first (its header, or the whole archive), so that a broken file is
  // reported as such; then its size against the config, before the model is allocated.
  const bool safetensors = ends_with(weights_path, ".safetensors");
  TensorMap tensors;
  if (safetensors) {
    read_header(File(weights_path), weights_path);
  } else {
    tensors = read_weights_file(weights_path);
  }
  check_file_can_hold(config, weights_path);
  GroupViTModel model = [&] {
    const SkipParameterInit every_parameter_is_loaded;  // load_state_dict refuses a missing one
    return GroupViTModel(config);
  }();
  if (safetensors) {
    load_safetensors(*model, weights_path);
  } else {
    load_state_dict(*model, tensors, weights_path);
    tensors.clear();
  }
  model->eval();
  model->to(options.device, options.dtype);
  if (options.int8_linear) {
    if (!options.device.is_cpu() || options.dtype != torch::kFloat)
      throw std::invalid_argument("int8 Linear layers need the CPU and float32 activations");
    model->quantize_linear_int8();
  }
  return model;
}

}  // namespace

GroupViTModel load_model(const std::string& dir, const LoadOptions& options) {
  const auto config_path = (fs::path(dir) / kConfigFile).string();
  if (!fs::is_directory(dir)) throw WeightsError(dir + ": not a model directory (no such directory)");
  if (!fs::exists(config_path)) throw WeightsError(dir + ": not a model directory (no " + kConfigFile + ")");
  const auto weights_path = find_weights_file(dir);
  verify_checksum(dir, kConfigFile);
  // The weights' SHA-256 (a sixth of a second for the full-size model) is taken on a thread of its own
  // while the model is built and read. No model is returned before it matched, and a mismatch is the
  // error reported even when the damaged file made the reading fail first.
  auto weights_verified = std::async(
      std::launch::async, [&dir, &weights_path] { verify_checksum(dir, fs::path(weights_path).filename().string()); });
  GroupViTModel model{nullptr};
  try {
    model = build_and_read(config_path, weights_path, options);
  } catch (...) {
    weights_verified.get();  // throws ChecksumError instead when that is the cause
    throw;
  }
  weights_verified.get();  // once only: a second get() on a future throws future_error
  return model;
}

namespace {

std::string safetensors_dtype(torch::Dtype dtype, const std::string& name) {
  switch (dtype) {
    case torch::kFloat:
      return "F32";
    case torch::kHalf:
      return "F16";
    case torch::kBFloat16:
      return "BF16";
    case torch::kLong:
      return "I64";
    default:
      throw WeightsError("cannot store tensor " + name + " of type " + c10::toString(dtype) + " in safetensors");
  }
}

void write_safetensors(AtomicFile& file, const TensorMap& tensors) {
  nlohmann::json header = {{"__metadata__", {{"format", "pt"}}}};
  std::vector<torch::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", safetensors_dtype(t.scalar_type(), name)},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(t);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  file.write(length, 8);
  file.write(text);
  for (const auto& t : contiguous) file.write(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
}

}  // namespace

void write_safetensors_file(const std::string& path, const TensorMap& tensors) {
  AtomicFile file(path);
  write_safetensors(file, tensors);
  file.commit();
}

TensorMap state_dict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& item : module.named_parameters()) out[item.key()] = item.value();
  for (const auto& item : module.named_buffers()) out[item.key()] = item.value();
  return out;
}

void save_model(const GroupViTModelImpl& model, const std::string& dir, torch::Dtype dtype) {
  TensorMap tensors = state_dict(model);
  for (auto& [name, t] : tensors) {
    // A counter, even where Module::to(dtype) has turned it into a float.
    if (ends_with(name, "num_batches_tracked"))
      t = t.detach().to(torch::kCPU, torch::kLong);
    else if (t.is_floating_point())
      t = t.detach().to(torch::kCPU, dtype);
  }
  std::vector<AtomicFile> files;
  files.emplace_back((fs::path(dir) / kSafetensorsFile).string());
  write_safetensors(files.back(), tensors);
  files.emplace_back((fs::path(dir) / kConfigFile).string());
  files.back().write(model.config().to_json_string());
  commit_with_checksums(files);
}

}  // namespace groupvit
