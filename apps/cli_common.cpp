// Shared CLI plumbing (see cli_common.h).
#include "cli_common.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "batch/source.h"
#include "groupvit/runtime/allocator.h"
#include "groupvit/runtime/cpu_share.h"
#include "groupvit/runtime/fast_dtype.h"
#include "groupvit/text/prompt_templates.h"
#include "model_source.h"

namespace groupvit_cli {

namespace {

std::atomic<int> g_stop_signal{0};

void on_stop_signal(int sig) { g_stop_signal.store(sig); }

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

void add_common(CLI::App* cmd, Common& c, bool with_device) {
  cmd->add_option("-m,--model", c.model_dir,
                  "model directory (converted by scripts/convert_hf.py, or a Hugging Face snapshot with "
                  "model.safetensors), or a Hugging Face id such as nvidia/groupvit-gcc-yfcc already in the local "
                  "hub cache (pytorch_model.bin is converted once, into $GROUPVIT_CACHE or ~/.cache/groupvit)")
      ->required();
  cmd->add_option("--revision", c.revision,
                  "with a Hugging Face id: a branch or tag of the cache's refs/, or a commit (or a unique prefix "
                  "of 4+ digits); default main, else the newest snapshot");
  if (with_device) {
    cmd->add_option("--device", c.device, "cpu, cuda or cuda:N")->capture_default_str();
    cmd->add_option("--dtype", c.dtype,
                    "fp32, fp16 or bf16; int8 (CPU only): Linear layers in dynamic int8, all else float32; auto: "
                    "bf16 where it is the faster (CUDA; a CPU whose bf16 matrix multiply, timed once at start, "
                    "runs 1.5x fp32's rate or more), else fp32 - the choice is printed on stderr")
        ->capture_default_str();
    cmd->add_option("-t,--threads", c.threads, threads_help());
    cmd->add_flag("--fixed-threads", c.fixed_threads,
                  "keep the thread count while other processes use the cores (default on the CPU: fewer "
                  "threads while they do, measured between batches, so that spinning threads do not fight them)");
  }
  cmd->add_flag("--json", c.json_output, "print JSON for scripts instead of a table");
}

torch::Device parse_device(const std::string& text) {
  std::optional<torch::Device> device;
  try {
    device = torch::Device(text);
  } catch (const std::exception&) {
    throw UsageError("unknown device '" + text + "' (expected cpu, cuda or cuda:N)");
  }
  if (device->is_cuda()) {
    if (!torch::cuda::is_available())
      throw UsageError("device '" + text + "': no CUDA device is available on this machine (use --device cpu)");
    const auto index = device->has_index() ? device->index() : 0;
    if (index >= static_cast<int>(torch::cuda::device_count()))
      throw UsageError("device '" + text + "': only " + std::to_string(torch::cuda::device_count()) +
                       " CUDA device(s)");
  } else if (!device->is_cpu()) {
    throw UsageError("unsupported device '" + text + "' (expected cpu, cuda or cuda:N)");
  }
  return *device;
}

torch::Dtype parse_dtype(const std::string& text) {
  if (text == "fp32") return torch::kFloat;
  if (text == "fp16") return torch::kHalf;
  if (text == "bf16") return torch::kBFloat16;
  throw UsageError("unknown dtype '" + text + "' (expected fp32, fp16 or bf16)");
}

bool is_int8(const std::string& dtype) { return dtype == "int8"; }

void check_dtype(const std::string& text) {
  if (is_int8(text) || text == "auto") return;
  try {
    parse_dtype(text);
  } catch (const UsageError&) {
    throw UsageError("unknown dtype '" + text + "' (expected fp32, fp16, bf16, int8 or auto)");
  }
}

torch::Dtype compute_dtype(const std::string& text, const torch::Device& device) {
  check_dtype(text);
  if (is_int8(text)) return torch::kFloat;
  if (text != "auto") return parse_dtype(text);
  const auto dtype = groupvit::fastest_dtype(device);
  static std::once_flag said;
  std::call_once(said, [&] {
    std::cerr << "groupvit: --dtype auto: " << (dtype == torch::kBFloat16 ? "bf16" : "fp32");
    if (device.is_cuda()) {
      std::cerr << " (CUDA)\n";
      return;
    }
    const auto& c = groupvit::cpu_bf16_check();
    if (!c.instructions)
      std::cerr << " (this CPU has no bf16 instructions)\n";
    else
      std::cerr << " (this CPU's matrix multiply, " << c.threads << " threads: bf16 " << std::lround(c.bf16_gflops)
                << " GFLOP/s, fp32 " << std::lround(c.fp32_gflops) << ")\n";
  });
  return dtype;
}

groupvit::LoadOptions ModelPlacement::load_options() const {
  groupvit::LoadOptions lo;
  lo.device = device;
  lo.dtype = dtype;
  lo.int8_linear = int8;
  return lo;
}

void resolve_model_option(Common& c) {
  if (c.model_dir.empty()) {
    if (!c.revision.empty()) throw UsageError("--revision " + c.revision + " needs --model");
    return;
  }
  const auto resolved = resolve_model(c.model_dir, c.revision);
  c.model_dir = resolved.dir;
  c.model_description = resolved.description;
}

void check_model_dir(const std::string& dir) {
  if (!is_directory(dir))
    throw UsageError("model directory '" + dir +
                     "' does not exist (convert a checkpoint with scripts/convert_hf.py, or pass a Hugging Face "
                     "snapshot directory)");
}

void warn_deprecated(const std::string& old_name, const std::string& new_name) {
  static std::mutex mu;
  static std::set<std::string> warned;
  std::lock_guard<std::mutex> lock(mu);
  if (warned.insert(old_name).second)
    std::cerr << "groupvit: warning: " << old_name << " is now " << new_name
              << "; the old name still works in this release and goes away in the next\n";
}

std::vector<std::string> split_labels(const std::string& list) {
  std::vector<std::string> labels;
  size_t start = 0;
  while (start <= list.size()) {
    auto end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    const auto label = trim(list.substr(start, end - start));
    if (!label.empty()) labels.push_back(label);
    start = end + 1;
  }
  return labels;
}

int max_threads() { return 4 * std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

std::string threads_help() {
  return "CPU threads for LibTorch, 1 to " + std::to_string(max_threads()) +
         " (4x the cores); 0 or not given: LibTorch's own choice";
}

void check_threads(int threads) {
  if (threads < 0 || threads > max_threads())
    throw UsageError("--threads " + std::to_string(threads) + " is out of range: give 1 to " +
                     std::to_string(max_threads()) + " (4x the " + std::to_string(max_threads() / 4) +
                     " cores), or 0 for LibTorch's own choice");
}

namespace {
std::mutex adaptive_threads_mutex;
std::unique_ptr<groupvit::AdaptiveThreads> adaptive_threads;  // the process's one policy, once started
int fewest_threads = 0;                                       // the fewest it gave a forward; 0: none yet
}  // namespace

void apply_threads(const Common& c, const torch::Device& device) {
  if (c.threads > 0) torch::set_num_threads(c.threads);
  if (!device.is_cpu() || c.fixed_threads) return;
  // Started before the load, so that its first measurement sees a busy neighbour before the first forward.
  std::lock_guard<std::mutex> lock(adaptive_threads_mutex);
  if (!adaptive_threads) adaptive_threads = std::make_unique<groupvit::AdaptiveThreads>(c.threads);
}

void adapt_threads() {
  std::lock_guard<std::mutex> lock(adaptive_threads_mutex);
  if (!adaptive_threads) return;
  const int threads = adaptive_threads->update();
  fewest_threads = fewest_threads == 0 ? threads : std::min(fewest_threads, threads);
}

ThreadUse thread_use() {
  std::lock_guard<std::mutex> lock(adaptive_threads_mutex);
  if (!adaptive_threads) return {false, torch::get_num_threads(), torch::get_num_threads()};
  const int most = adaptive_threads->max_threads();
  return {true, most, fewest_threads == 0 ? most : fewest_threads};
}

ModelPlacement model_placement(const Common& c) {
  check_model_dir(c.model_dir);
  const auto device = parse_device(c.device);
  check_dtype(c.dtype);
  if (is_int8(c.dtype) && !device.is_cpu())
    throw UsageError("--dtype int8 runs on the CPU only (got --device " + c.device + ")");
  apply_threads(c, device);  // first: auto times the matrix multiply with the threads that will run it
  return {device, compute_dtype(c.dtype, device), is_int8(c.dtype)};
}

groupvit::GroupViTModel load_for(const Common& c, torch::Device* device_out, torch::Dtype* dtype_out) {
  const auto placement = model_placement(c);
  if (device_out) *device_out = placement.device;
  if (dtype_out) *dtype_out = placement.dtype;
  auto model = groupvit::load_model(c.model_dir, placement.load_options());
  // After the load, so its temporary buffers are not kept: repeated forwards then reuse their
  // activation memory instead of page-faulting it in again (groupvit/runtime/allocator.h).
  groupvit::keep_freed_memory_for_reuse();
  return model;
}

void note_default_preprocessing(const std::string& model_dir) {
  std::cerr << "groupvit: note: " << model_dir << " has no preprocessor_config.json; using CLIP's defaults\n";
}

groupvit::ImagePreprocessConfig preprocessor_for(const std::string& model_dir) {
  bool used_default = false;
  auto config = groupvit::ImagePreprocessConfig::for_model_dir(model_dir, &used_default);
  if (used_default) note_default_preprocessing(model_dir);
  return config;
}

void add_progress_options(CLI::App* cmd, double& interval_s, bool& quiet) {
  cmd->add_option("--progress-interval", interval_s, "seconds between progress lines when not on a terminal")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  cmd->add_flag("--quiet", quiet, "no progress output");
}

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second signal takes the default action: a way out of a stuck run
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int stop_signal() { return g_stop_signal.load(); }

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::vector<std::string> read_templates(const std::string& name) {
  if (name == "simple") return groupvit::kSimpleTemplates;
  if (name == "subset") return groupvit::kSubsetTemplates;
  if (name == "full") return groupvit::kFullTemplates;
  if (!std::ifstream(name))
    throw UsageError("--templates: '" + name + "' is neither simple, subset, full nor a readable file");
  return read_lines(name, "--templates file");
}

std::vector<std::string> read_lines(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) throw UsageError("cannot read " + what + " " + path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line))
    if (!trim(line).empty()) lines.push_back(trim(line));
  if (lines.empty()) throw UsageError(what + " " + path + " is empty");
  return lines;
}

std::vector<std::string> read_texts(const std::vector<std::string>& given) {
  std::vector<std::string> texts;
  for (const auto& t : given) {
    if (t.size() < 2 || t[0] != '@') {
      texts.push_back(t);
      continue;
    }
    std::ifstream in(t.substr(1));
    if (!in) throw UsageError("--text " + t + ": cannot read " + t.substr(1));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!trim(line).empty()) texts.push_back(line);
    }
  }
  return texts;
}

void reject_duplicates(const std::vector<std::string>& names, const std::string& source) {
  std::map<std::string, size_t> first;
  for (size_t i = 0; i < names.size(); ++i) {
    const auto [it, added] = first.emplace(names[i], i);
    if (!added)
      throw UsageError(source + ": \"" + names[i] + "\" is given twice (entries " + std::to_string(it->second + 1) +
                       " and " + std::to_string(i + 1) + "): each class needs one name");
  }
}

}  // namespace groupvit_cli
