// groupvit segment: zero-shot semantic segmentation of many images. Inputs stream from the
// enumerator through decode/preprocess worker threads (bounded queues) to batches on the model's
// device, and (by default on CUDA) each batch's host results on to writer threads that encode and
// write them while the model runs the next batch; outputs are written atomically and recorded in results.jsonl, so
// that --resume can skip finished images. The maths is in the core library (nvlabs_segmentation.h, model.h).
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "cli_common.h"
#include "groupvit/formats/directory_lock.h"
#include "groupvit/formats/png_writer.h"
#include "groupvit/groupvit.h"
#include "groupvit/image/image_io.h"
#include "groupvit/runtime/cuda_graph.h"
#include "groupvit/segment/nvlabs_segmentation.h"
#include "inputs.h"
#include "outputs.h"
#include "progress.h"
#include "work_queue.h"

namespace groupvit_cli {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::vector<std::string> read_labels(const SegmentOptions& o) {
  std::vector<std::string> labels;
  if (!o.labels.empty() && !o.labels_file.empty()) throw UsageError("give --labels or --labels-file, not both");
  if (!o.labels_file.empty()) {
    std::ifstream in(o.labels_file);
    if (!in) throw UsageError("cannot read labels file " + o.labels_file);
    std::string line;
    while (std::getline(in, line))
      if (!trim(line).empty() && trim(line)[0] != '#') labels.push_back(trim(line));
  } else {
    size_t start = 0;
    while (start <= o.labels.size()) {
      auto end = o.labels.find(',', start);
      if (end == std::string::npos) end = o.labels.size();
      if (!trim(o.labels.substr(start, end - start)).empty())
        labels.push_back(trim(o.labels.substr(start, end - start)));
      start = end + 1;
    }
  }
  // A first "background" is label 0 of the nvlabs head (the threshold), not a prompt: the class lists
  // in datasets/ (and eval --classes files) then give the dataset's label ids.
  if (o.mode == "nvlabs" && !o.no_background && !labels.empty() && labels[0] == "background")
    labels.erase(labels.begin());
  if (labels.empty())
    throw UsageError("the label list is empty: give class names with --labels \"cat,dog\" or --labels-file FILE");
  if (labels.size() > 255) throw UsageError("at most 255 labels (the label PNG holds one byte per pixel)");
  // Checked here, before the model loads, so that the message can say which label and where it came from.
  for (size_t i = 0; i < labels.size(); ++i) {
    try {
      groupvit::check_utf8(labels[i]);
    } catch (const groupvit::TokenizerError& e) {
      throw UsageError("label " + std::to_string(i + 1) + " of " +
                       (o.labels_file.empty() ? std::string("--labels") : o.labels_file) + ": " + e.what());
    }
  }
  return labels;
}

// Host to device. On CUDA through page-locked memory (LibTorch's caching host allocator, which
// keeps the buffer until the copy is done), so the copy is asynchronous and the next batch's
// decoding overlaps it; elsewhere a plain conversion.
torch::Tensor to_device(const torch::Tensor& host, torch::Device device, torch::Dtype dtype) {
  if (!device.is_cuda()) return host.to(device, dtype);
  return host.pin_memory().to(device, dtype, /*non_blocking=*/true);
}

torch::Tensor stack_to_device(const std::vector<torch::Tensor>& images, torch::Device device, torch::Dtype dtype) {
  if (!device.is_cuda()) return torch::stack(images).to(device, dtype);
  auto sizes = images.front().sizes().vec();
  sizes.insert(sizes.begin(), static_cast<int64_t>(images.size()));
  auto pinned = torch::empty(sizes, images.front().options().pinned_memory(true));
  torch::stack_out(pinned, images);
  return pinned.to(device, dtype, /*non_blocking=*/true);
}

struct Prepared {
  InputItem item;
  groupvit::RgbImage original;
  torch::Tensor pixels;  // [3, h, w] float32, CPU
  std::string error;
  double prep_ms = 0;
};

// One image's results on the host, handed from the model thread to a writer thread.
struct ToWrite {
  Prepared p;
  std::vector<uint8_t> labels;               // [height * width] class index per pixel
  torch::Tensor logits;                      // --save-logits: [channels, h, w] float32, CPU
  std::vector<std::vector<uint8_t>> groups;  // --save-groups: a group map per stage
  double model_ms = 0, host_ms = 0;          // host_ms: argmax and copies to the host
};

void join_all(std::vector<std::thread>& threads) {
  for (auto& t : threads)
    if (t.joinable()) t.join();
}

struct Paths {
  std::string labels, overlay, logits;
  std::vector<std::string> groups;
};

}  // namespace

void add_nvlabs_options(CLI::App* cmd, SegmentOptions& o) {
  cmd->add_option("--templates", o.templates,
                  "prompt templates: simple, subset (7), full (80) or a file with one "
                  "template a line ({} = class name)")
      ->capture_default_str();
  cmd->add_option("--bg-thresh", o.bg_thresh, "nvlabs: background below this score (VOC/COCO 0.95, Context 0.35)")
      ->capture_default_str();
  cmd->add_flag("--no-background", o.no_background, "nvlabs: every pixel gets a class (no background label)");
  cmd->add_flag("--whole", o.whole, "nvlabs: one pass over the whole resized image instead of sliding windows");
  cmd->add_option("--short-side", o.short_side, "nvlabs: resize so the short side is this")->capture_default_str();
  cmd->add_option("--resize", o.resize,
                  "nvlabs: how to resize: mmcv (OpenCV bilinear at mmcv's imrescale size, as the paper's pipeline, "
                  "bit for bit) or pillow (Pillow bicubic)")
      ->check(CLI::IsMember({"mmcv", "pillow"}))
      ->capture_default_str();
  cmd->add_option("--long-side", o.long_side, "nvlabs: ... unless the long side would exceed this")
      ->capture_default_str();
  cmd->add_option("--crop-size", o.crop_size, "nvlabs: sliding window side")->capture_default_str();
  cmd->add_option("--stride", o.stride, "nvlabs: sliding window stride")->capture_default_str();
  cmd->add_option("--top-k", o.top_k, "nvlabs: classes kept by the image-level gate")->capture_default_str();
}

groupvit::NvlabsSegmentationOptions nvlabs_head(const SegmentOptions& o) {
  if (o.short_side < 1 || o.long_side < o.short_side) throw UsageError("need 1 <= --short-side <= --long-side");
  if (!o.whole && (o.crop_size < 1 || o.stride < 1 || o.stride > o.crop_size))
    throw UsageError("need 1 <= --stride <= --crop-size (or --whole)");
  if (o.top_k < 1) throw UsageError("--top-k must be at least 1");
  groupvit::NvlabsSegmentationOptions seg;
  seg.with_background = !o.no_background;
  seg.bg_thresh = o.bg_thresh;
  seg.whole = o.whole;
  seg.crop_size = o.crop_size;
  seg.stride = o.stride;
  seg.top_k = o.top_k;
  return seg;
}

groupvit::ImagePreprocessConfig nvlabs_preprocess(const SegmentOptions& o) {
  auto prep = groupvit::ImagePreprocessConfig::nvlabs_eval();
  prep.shortest_edge = o.short_side;
  prep.longest_edge = o.long_side;
  if (o.resize == "pillow") prep.resize_method = groupvit::ResizeMethod::kPillow;  // resample: bicubic
  return prep;
}

void add_segment_options(CLI::App* cmd, SegmentOptions& o) {
  cmd->add_option("--mode", o.mode,
                  "nvlabs: the paper's evaluation (templates, background threshold, 448 short side, sliding "
                  "windows, one-hot groups, top-k gating); hf: Hugging Face segmentation_logits at the model's "
                  "input size")
      ->check(CLI::IsMember({"nvlabs", "hf"}))
      ->capture_default_str();
  cmd->add_option("--labels", o.labels, "comma-separated class names, e.g. \"cat,dog,sofa\"");
  cmd->add_option("--labels-file", o.labels_file,
                  "a file with one class name per line (a first line \"background\" is the nvlabs background label 0, "
                  "not a prompt: see datasets/)");
  cmd->add_option("--input", o.inputs,
                  "image files, directories (searched recursively by extension) and @list.txt files (one path a "
                  "line)")
      ->required();
  cmd->add_option("--output", o.output, "output directory")->required();
  add_nvlabs_options(cmd, o);
  cmd->add_option("--batch-size", o.batch_size, "images per model call")->capture_default_str();
  cmd->add_option("--workers", o.workers, "decode/preprocess threads (default: min(4, cores - 1))");
  cmd->add_option("--writers", o.writers,
                  "threads that encode and write a batch's outputs while the model runs the next batch; 0: the "
                  "model's thread writes between batches (default: as many as --workers on CUDA, 0 on the CPU, "
                  "whose cores the model's own threads already use)");
  cmd->add_flag(
      "--cuda-graphs", o.cuda_graphs,
      "hf mode on CUDA: replay each batch shape's forward as a CUDA graph, captured on its second batch "
      "(less launch overhead at small batches; a failed capture falls back to eager, see the --json summary)");
  cmd->add_flag("--save-groups", o.save_groups, "also write each grouping stage's group map (paletted PNG)");
  cmd->add_flag("--save-logits", o.save_logits,
                "also write the scores as .npy (nvlabs: [labels+1, H, W] at the original size; hf: "
                "segmentation_logits [labels, h, w] at the model's input size)");
  cmd->add_option("--overlay-format", o.overlay_format, "jpg or png")
      ->check(CLI::IsMember({"jpg", "png"}))
      ->capture_default_str();
  cmd->add_flag("--no-overlay", o.no_overlay, "skip the overlay images");
  cmd->add_flag("--resume", o.resume, "skip images already recorded in results.jsonl with their outputs present");
  cmd->add_option("--shard", o.shard,
                  "I/N: process the I-th of N deterministic parts of the inputs (default: from SLURM_ARRAY_TASK_ID/"
                  "SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shard-count)");
  cmd->add_option("--shard-count", o.shard_count, "number of shards of a Kubernetes indexed Job");
  add_progress_options(cmd, o.progress_interval, o.quiet);
  cmd->add_option("--extensions", o.extensions,
                  "image extensions searched in directories (default: "
                  "jpg,jpeg,png,bmp,tif,tiff,webp)");
}

namespace {

// --- the request: everything that can be wrong with it fails here, before any work ---------

struct SegmentRequest {
  std::vector<std::string> labels, templates;
  std::vector<std::string> names;  // value k of a label map names names[k]: "background", then the labels
  groupvit::NvlabsSegmentationOptions head;
  Shard shard;
  std::set<std::string> extensions;
  bool nvlabs = true;      // --mode nvlabs, else hf
  bool background = true;  // nvlabs with a background channel; without one the classes start at 1
};

// --extensions (comma-separated, the dot optional), or the default set when it is not given.
std::set<std::string> image_extensions(const std::string& list) {
  std::set<std::string> extensions = default_image_extensions();
  if (list.empty()) return extensions;
  extensions.clear();
  std::stringstream ss(list);
  std::string e;
  while (std::getline(ss, e, ','))
    if (!trim(e).empty()) extensions.insert(trim(e)[0] == '.' ? trim(e).substr(1) : trim(e));
  return extensions;
}

SegmentRequest check_request(const Common& c, const SegmentOptions& o) {
  SegmentRequest r;
  r.labels = read_labels(o);
  r.templates = read_templates(o.templates);
  if (o.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  if (o.writers < -1 || o.writers > 256) throw UsageError("--writers must be between 0 and 256");
  if (o.workers > 256) throw UsageError("--workers must be at most 256");
  r.head = nvlabs_head(o);
  check_model_dir(c.model_dir);
  if (o.cuda_graphs && o.mode != "hf")
    throw UsageError("--cuda-graphs needs --mode hf (nvlabs batches hold a varying number of windows)");
  if (!parse_device(c.device).is_cuda() && o.cuda_graphs) throw UsageError("--cuda-graphs needs --device cuda");
  parse_dtype(c.dtype);
  r.shard = resolve_shard(o.shard, o.shard_count);
  r.extensions = image_extensions(o.extensions);
  r.nvlabs = o.mode == "nvlabs";
  r.background = r.nvlabs && !o.no_background;
  r.head.with_background = r.background;
  r.names = {"background"};
  r.names.insert(r.names.end(), r.labels.begin(), r.labels.end());
  return r;
}

// --- the output directory --------------------------------------------------------------------

// `dir`, created with its parents; a failure names --output.
const std::string& created_output_dir(const std::string& dir) {
  try {
    make_directories(dir);
  } catch (const OutputError& e) {
    throw OutputError("--output " + dir + ": " + e.what(), e.error());
  }
  return dir;
}

// The output directory, locked for the run, and the names of what is written into it.
struct OutputDir {
  OutputDir(const SegmentOptions& options, const Shard& shard);
  // The files of the input with this key (`stages` group maps with --save-groups).
  Paths paths_for(const std::string& key, int64_t stages) const;

  const SegmentOptions& o;
  std::string part;  // "shard-I-of-N" when sharded, else empty
  // Two runs into one directory would interleave results.jsonl and overwrite each other's outputs;
  // the shards of one run share it (each has its own results file).
  groupvit::DirectoryLock lock;
  std::string results_path, errors_path, overlay_ext;
};

OutputDir::OutputDir(const SegmentOptions& options, const Shard& shard)
    : o(options),
      part(shard.count > 1 ? "shard-" + std::to_string(shard.index) + "-of-" + std::to_string(shard.count) : ""),
      lock(created_output_dir(options.output), "groupvit segment", part) {
  const std::string suffix = part.empty() ? "" : "." + part;
  results_path = o.output + "/results" + suffix + ".jsonl";
  errors_path = o.output + "/errors" + suffix + ".jsonl";
  overlay_ext = "." + o.overlay_format;
}

Paths OutputDir::paths_for(const std::string& key, int64_t stages) const {
  Paths p;
  const std::string base = o.output + "/" + key;
  p.labels = base + ".labels.png";
  if (!o.no_overlay) p.overlay = base + ".overlay" + overlay_ext;
  if (o.save_logits) p.logits = base + ".logits.npy";
  for (int64_t s = 0; o.save_groups && s < stages; ++s)
    p.groups.push_back(base + ".groups" + std::to_string(s) + ".png");
  return p;
}

// --resume: the keys that results.jsonl records as done (a partial last line is dropped).
std::unordered_set<std::string> finished_keys(const std::string& results_path) {
  std::unordered_set<std::string> done;
  for (const auto& line : read_complete_lines_and_trim(results_path)) {
    try {
      done.insert(json::parse(line).at("key").get<std::string>());
    } catch (const std::exception&) {  // a foreign or damaged line: its image is redone
    }
  }
  return done;
}

// --- the model: set up once, then one call per batch -------------------------------------------

// A batch's results per image, on the model's device.
struct BatchScores {
  std::vector<torch::Tensor> scores;               // [channels, H, W] at the original size, float
  std::vector<torch::Tensor> saved;                // what --save-logits writes
  std::vector<std::vector<torch::Tensor>> groups;  // --save-groups: a group map per stage
};

// The model and what a run computes from it once: the label embeddings, the mode's
// preprocessing, and (hf) the forward of one batch, replayed as CUDA graphs with --cuda-graphs.
// Neither copied nor moved: the graphs call back into it.
class SegmentModel {
 public:
  SegmentModel(const Common& c, const SegmentOptions& o, const SegmentRequest& r);
  SegmentModel(const SegmentModel&) = delete;
  SegmentModel& operator=(const SegmentModel&) = delete;

  // One model call for the whole batch (nvlabs: all windows of all images together).
  BatchScores run(const std::vector<Prepared>& batch);

  torch::Device device = torch::kCPU;
  int64_t stages = 0;  // grouping stages: the group maps of --save-groups
  groupvit::ImagePreprocessConfig prep;
  std::unique_ptr<groupvit::CudaGraphCache> graphs;

 private:
  std::vector<torch::Tensor> hf_forward(const torch::Tensor& pixels);

  const SegmentOptions& o_;
  const SegmentRequest& r_;
  groupvit::GroupViTModel model_{nullptr};
  torch::Dtype dtype_ = torch::kFloat;
  torch::Tensor class_embeds_;        // float32, on the device (the NVlabs head)
  torch::Tensor class_embeds_model_;  // in the model's dtype: what the hf forward and its CUDA graphs read
};

SegmentModel::SegmentModel(const Common& c, const SegmentOptions& o, const SegmentRequest& r) : o_(o), r_(r) {
  model_ = load_for(c, &device);
  dtype_ = parse_dtype(c.dtype);
  const auto& vc = model_->config().vision_config;
  stages = static_cast<int64_t>(vc.depths.size()) -
           static_cast<int64_t>(std::count(vc.num_group_tokens.begin(), vc.num_group_tokens.end(), 0));
  class_embeds_ = groupvit::class_embeddings(*model_, groupvit::ClipTokenizer::from_directory(c.model_dir), r.labels,
                                             r.templates, device);
  class_embeds_model_ = class_embeds_.to(device, dtype_);
  if (o.cuda_graphs)
    graphs =
        std::make_unique<groupvit::CudaGraphCache>([this](const torch::Tensor& pixels) { return hf_forward(pixels); });
  if (r.nvlabs) {
    prep = nvlabs_preprocess(o);
  } else {
    prep = preprocessor_for(c.model_dir);
    prep.do_resize = true;
    prep.size_rule = groupvit::SizeRule::kHeightWidth;  // the whole image at the model's input size
    prep.height = vc.image_height;
    prep.width = vc.image_width;
    prep.do_center_crop = false;
  }
}

std::vector<torch::Tensor> SegmentModel::hf_forward(const torch::Tensor& pixels) {
  auto vision = model_->vision_model(pixels, false, true);
  return {model_->segmentation_logits(vision, class_embeds_model_, pixels.size(2), pixels.size(3))};
}

BatchScores SegmentModel::run(const std::vector<Prepared>& batch) {
  torch::NoGradGuard no_grad;
  BatchScores out;
  out.groups.resize(batch.size());
  std::vector<std::array<int64_t, 2>> sizes;
  for (const auto& p : batch) sizes.push_back({p.original.height, p.original.width});
  if (r_.nvlabs) {
    std::vector<torch::Tensor> images;
    for (const auto& p : batch) images.push_back(to_device(p.pixels, device, torch::kFloat));
    out.scores = groupvit::nvlabs_segment(*model_, images, class_embeds_.to(device), sizes, r_.head);
    out.saved = out.scores;
  } else {
    std::vector<torch::Tensor> px;
    for (const auto& p : batch) px.push_back(p.pixels);
    auto pixels = stack_to_device(px, device, dtype_);
    auto logits = (graphs ? (*graphs)(pixels) : hf_forward(pixels)).front().to(torch::kFloat);
    for (size_t i = 0; i < batch.size(); ++i) {
      out.saved.push_back(logits[static_cast<int64_t>(i)]);
      out.scores.push_back(torch::nn::functional::interpolate(logits[static_cast<int64_t>(i)].unsqueeze(0),
                                                              torch::nn::functional::InterpolateFuncOptions()
                                                                  .size(std::vector<int64_t>{sizes[i][0], sizes[i][1]})
                                                                  .mode(torch::kBilinear)
                                                                  .align_corners(false))
                               .squeeze(0));
    }
  }
  if (o_.save_groups)
    for (size_t i = 0; i < batch.size(); ++i)
      out.groups[i] = groupvit::group_masks(*model_, batch[i].pixels.to(device), sizes[i]);
  return out;
}

// --- inputs ----------------------------------------------------------------------------------

// Which inputs this run segments: those of its shard, less (--resume) those recorded as done whose
// label map is there.
struct InputFilter {
  const Shard& shard;
  const std::unordered_set<std::string>& done;
  const OutputDir& out;
  int64_t stages;
  bool operator()(const InputItem& item) const {
    if (!shard.contains(item.key)) return false;
    return !(done.count(item.key) && file_exists(out.paths_for(item.key, stages).labels));
  }
};

struct InputCounts {
  int64_t total = 0;    // to segment: the progress bar's total
  int64_t skipped = 0;  // of this shard, but already done
};

// One pass over the inputs before the streaming one, for the progress bar.
InputCounts count_inputs(const SegmentOptions& o, const SegmentRequest& r, const InputFilter& wanted) {
  InputCounts n;
  for_each_input(o.inputs, r.extensions, [&](const InputItem& item) {
    if (r.shard.contains(item.key)) (wanted(item) ? n.total : n.skipped) += 1;
    return true;
  });
  return n;
}

// --- what the model's thread and the writers share ---------------------------------------------

// results.jsonl, errors.jsonl, the progress display and the counts, under one mutex.
class RunLog {
 public:
  RunLog(LineAppender& results, LineAppender& errors, Progress& progress)
      : results_(results), errors_(errors), progress_(progress) {}

  // An image that failed (decoding, the model, writing): its line in errors.jsonl.
  void record_error(const Prepared& p, const std::string& what) {
    const std::lock_guard<std::mutex> lock(mu_);
    errors_.append(json{{"input", p.item.path}, {"key", p.item.key}, {"error", what}}.dump());
    ++failed;
    progress_.update(processed, failed);
  }
  // An image whose outputs are all written: its line in results.jsonl.
  void record_done(const json& line) {
    const std::lock_guard<std::mutex> lock(mu_);
    results_.append(line.dump());
    ++processed;
    progress_.update(processed, failed);
  }

  int64_t processed = 0, failed = 0;  // read without the lock only once the other threads are joined

 private:
  LineAppender& results_;
  LineAppender& errors_;
  Progress& progress_;
  std::mutex mu_;
};

// --- writing one image's outputs -----------------------------------------------------------------

// {label: fraction of the image's pixels} for the labels present.
json pixel_share(const std::vector<uint8_t>& label_map, const std::vector<std::string>& names, int64_t pixels) {
  std::vector<int64_t> counts(names.size(), 0);
  for (uint8_t l : label_map) ++counts[l];
  json share = json::object();
  for (size_t l = 0; l < names.size(); ++l)
    if (counts[l]) share[names[l]] = static_cast<double>(counts[l]) / static_cast<double>(pixels);
  return share;
}

// Encodes and writes one image's outputs, on a writer thread (or the model's when there are none).
class ImageWriter {
 public:
  ImageWriter(const SegmentOptions& o, const OutputDir& out, const std::vector<std::string>& names, int64_t stages,
              RunLog& log)
      : o_(o), out_(out), names_(names), stages_(stages), log_(log) {}

  // The image counts as done (its line in results.jsonl) only once everything is written. A
  // failed write is recorded in errors.jsonl, except an OutputError saying that the output
  // location is unusable: that one is thrown, since every later image would fail the same way.
  void write(const ToWrite& w) const;

 private:
  // Writes the image's files; returns the "outputs" of its results line.
  json write_files(const ToWrite& w) const;

  const SegmentOptions& o_;
  const OutputDir& out_;
  const std::vector<std::string>& names_;
  int64_t stages_;
  RunLog& log_;
  const std::vector<std::array<uint8_t, 3>> palette_ = groupvit::label_palette();
  const std::vector<std::array<uint8_t, 3>> group_palette_ = groupvit::label_palette();
};

void ImageWriter::write(const ToWrite& w) const {
  const auto& p = w.p;
  const auto t1 = Clock::now();
  try {
    const int64_t h = p.original.height, wd = p.original.width;
    const json share = pixel_share(w.labels, names_, h * wd);
    const json outputs = write_files(w);
    json line = {
        {"input", p.item.path},
        {"key", p.item.key},
        {"width", wd},
        {"height", h},
        {"mode", o_.mode},
        {"labels", names_},
        {"pixel_share", share},
        {"outputs", outputs},
        {"timings_ms", {{"decode_preprocess", p.prep_ms}, {"model", w.model_ms}, {"write", w.host_ms + ms_since(t1)}}}};
    log_.record_done(line);  // last: the image counts as done only once everything is written
  } catch (const OutputError& e) {
    if (e.location_unusable()) throw;  // every later image would fail the same way: stop
    log_.record_error(p, std::string("writing outputs: ") + e.what());
  } catch (const std::exception& e) {
    log_.record_error(p, std::string("writing outputs: ") + e.what());
  }
}

json ImageWriter::write_files(const ToWrite& w) const {
  const auto& p = w.p;
  const auto paths = out_.paths_for(p.item.key, stages_);
  const int64_t h = p.original.height, wd = p.original.width;
  const std::vector<std::array<uint8_t, 3>> label_colours(
      palette_.begin(), palette_.begin() + static_cast<std::ptrdiff_t>(names_.size()));
  const auto png = groupvit::encode_paletted_png(w.labels, h, wd, label_colours);
  write_file_atomic(paths.labels, png.data(), png.size());
  json outputs = {{"labels", paths.labels}};
  if (!o_.no_overlay) {
    const auto overlay = overlay_image(p.original, w.labels, names_, palette_, out_.overlay_ext);
    write_file_atomic(paths.overlay, overlay.data(), overlay.size());
    outputs["overlay"] = paths.overlay;
  }
  if (o_.save_logits) {
    const auto& t = w.logits;
    std::vector<float> v(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    write_file_atomic(paths.logits, npy_bytes(v, t.sizes().vec()));
    outputs["logits"] = paths.logits;
  }
  if (o_.save_groups) {
    outputs["groups"] = json::array();
    for (size_t st = 0; st < w.groups.size() && st < paths.groups.size(); ++st) {
      const auto gpng = groupvit::encode_paletted_png(w.groups[st], h, wd, group_palette_);
      write_file_atomic(paths.groups[st], gpng.data(), gpng.size());
      outputs["groups"].push_back(paths.groups[st]);
    }
  }
  return outputs;
}

// --- the threads around the model's ----------------------------------------------------------------

// Inputs stream from an enumerator thread through `pending` to the decode/preprocess workers, whose
// results wait in `ready` for the model's thread; writer threads take host results from
// `to_write`. The queues are bounded, so a list of millions of images never sits in memory.
class Pipeline {
 public:
  Pipeline(size_t batch_size, size_t workers)
      : workers_(workers),
        pending_(batch_size * 2 + workers),
        ready_(batch_size * 2 + workers),
        to_write_(batch_size),  // one batch: nvlabs logits at the original size can be large
        workers_left_(workers) {}
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;
  ~Pipeline() { stop(); }  // also on the way out of an error: a joinable std::thread must not be destroyed

  // The enumerator: the inputs that `wanted` accepts, in order. Its error (an input that does not
  // exist) is kept for enumerate_error(): the images before it are still segmented.
  void start_enumerator(const SegmentOptions& o, const SegmentRequest& r, std::function<bool(const InputItem&)> wanted);
  void start_workers(const groupvit::ImagePreprocessConfig& prep);
  void start_writers(size_t count, const ImageWriter& writer);

  // The next decoded and preprocessed image; none once all are done or the pipeline stopped.
  std::optional<Prepared> next() { return ready_.pop(); }
  bool has_writers() const { return !writers_.empty(); }
  // To the writers; false when they stopped (rethrow_fatal says why).
  bool hand_over(ToWrite w) { return to_write_.push(std::move(w)); }
  // The writers finish what is queued.
  void finish_writing() {
    to_write_.close();
    join_all(writers_);
  }
  // The first error that stopped a writer (e.g. a full disk, which every later write would hit).
  void rethrow_fatal() {
    const std::lock_guard<std::mutex> lock(fatal_mu_);
    if (fatal_) std::rethrow_exception(fatal_);
  }
  // Stops and joins every thread; may be called again.
  void stop() {
    pending_.abort();
    ready_.abort();
    to_write_.abort();
    if (enumerator_.joinable()) enumerator_.join();
    join_all(pool_);
    join_all(writers_);
  }
  const std::string& enumerate_error() const { return enumerate_error_; }

 private:
  size_t workers_;
  WorkQueue<InputItem> pending_;
  WorkQueue<Prepared> ready_;
  WorkQueue<ToWrite> to_write_;
  std::thread enumerator_;
  std::vector<std::thread> pool_, writers_;
  std::string enumerate_error_;
  std::atomic<size_t> workers_left_;
  std::mutex fatal_mu_;
  std::exception_ptr fatal_;
};

void Pipeline::start_enumerator(const SegmentOptions& o, const SegmentRequest& r,
                                std::function<bool(const InputItem&)> wanted) {
  enumerator_ = std::thread([this, inputs = &o.inputs, extensions = &r.extensions, wanted = std::move(wanted)] {
    try {
      for_each_input(*inputs, *extensions, [&](const InputItem& item) { return !wanted(item) || pending_.push(item); });
    } catch (const std::exception& e) {
      enumerate_error_ = e.what();
    }
    pending_.close();
  });
}

void Pipeline::start_workers(const groupvit::ImagePreprocessConfig& prep) {
  try {
    for (size_t w = 0; w < workers_; ++w)
      pool_.emplace_back([this, prep = &prep] {
        while (auto item = pending_.pop()) {
          Prepared p;
          p.item = *item;
          const auto t0 = Clock::now();
          try {
            p.original = groupvit::decode_image_file(item->path);
            p.pixels = groupvit::preprocess(p.original, *prep);
          } catch (const std::exception& e) {
            p.error = e.what();
          }
          p.prep_ms = ms_since(t0);
          if (!ready_.push(std::move(p))) break;
        }
        if (--workers_left_ == 0) ready_.close();
      });
  } catch (...) {  // e.g. no more threads: stop the ones started
    stop();
    throw;
  }
}

void Pipeline::start_writers(size_t count, const ImageWriter& writer) {
  try {
    for (size_t w = 0; w < count; ++w)
      writers_.emplace_back([this, writer = &writer] {
        while (auto item = to_write_.pop()) {
          try {
            writer->write(*item);
          } catch (...) {  // the outputs or errors.jsonl are unusable: stop all; the model thread reports it
            {
              const std::lock_guard<std::mutex> lock(fatal_mu_);
              if (!fatal_) fatal_ = std::current_exception();
            }
            to_write_.abort();
            ready_.abort();
            return;
          }
        }
      });
  } catch (...) {
    stop();
    throw;
  }
}

// --- the model's thread ---------------------------------------------------------------------------

// What the model's thread works with.
struct ModelThread {
  const SegmentOptions& o;
  const SegmentRequest& r;
  SegmentModel& model;
  Pipeline& pipeline;
  const ImageWriter& writer;
  RunLog& log;

  // Batches until the inputs are done or a stop signal came. Throws OutputError when the
  // outputs became unusable (here or in a writer).
  void run();

 private:
  // Up to --batch-size images; those that failed to decode go to errors.jsonl. `more` becomes
  // false once the workers are done.
  std::vector<Prepared> next_batch(bool& more);
  // Each image of a segmented batch on to the writers, or written here when there are none. False
  // when the writers stopped.
  bool hand_over(std::vector<Prepared>& batch, const BatchScores& out, double model_ms);
};

void ModelThread::run() {
  bool more = true;
  while (more && !stop_signal()) {
    auto batch = next_batch(more);
    pipeline.rethrow_fatal();  // a writer stopped the pipeline: no model call for the rest
    if (batch.empty()) continue;
    const auto t0 = Clock::now();
    BatchScores out;
    try {
      out = model.run(batch);
    } catch (const c10::Error& e) {
      for (const auto& p : batch) log.record_error(p, std::string("model: ") + e.what_without_backtrace());
      continue;
    } catch (const std::exception& e) {
      for (const auto& p : batch) log.record_error(p, std::string("model: ") + e.what());
      continue;
    }
    const double model_ms = ms_since(t0) / static_cast<double>(batch.size());
    if (!hand_over(batch, out, model_ms)) more = false;
  }
}

std::vector<Prepared> ModelThread::next_batch(bool& more) {
  std::vector<Prepared> batch;
  while (static_cast<int>(batch.size()) < o.batch_size) {
    auto p = pipeline.next();
    if (!p) {
      more = false;
      break;
    }
    if (!p->error.empty()) {
      log.record_error(*p, p->error);
      continue;
    }
    batch.push_back(std::move(*p));
  }
  return batch;
}

// One image's results as plain host buffers: tensor work stays on the model's thread (the
// device's stream, LibTorch's thread pool).
void to_host(const BatchScores& out, size_t i, bool background, bool save_logits, ToWrite& w) {
  torch::NoGradGuard no_grad;
  auto label_t = out.scores[i].argmax(0);
  if (!background) label_t = label_t + 1;  // no background channel: classes start at 1
  label_t = label_t.to(torch::kCPU, torch::kByte).contiguous();
  w.labels.assign(label_t.data_ptr<uint8_t>(), label_t.data_ptr<uint8_t>() + label_t.numel());
  if (save_logits) w.logits = out.saved[i].to(torch::kCPU, torch::kFloat).contiguous();
  for (const auto& g : out.groups[i]) {
    auto gc = g.to(torch::kCPU, torch::kByte).contiguous();
    w.groups.emplace_back(gc.data_ptr<uint8_t>(), gc.data_ptr<uint8_t>() + gc.numel());
  }
}

bool ModelThread::hand_over(std::vector<Prepared>& batch, const BatchScores& out, double model_ms) {
  for (size_t i = 0; i < batch.size(); ++i) {
    const auto t1 = Clock::now();
    ToWrite w;
    try {
      to_host(out, i, r.background, o.save_logits, w);
    } catch (const std::exception& e) {
      log.record_error(batch[i], std::string("writing outputs: ") + e.what());
      continue;
    }
    w.p = std::move(batch[i]);
    w.p.pixels = torch::Tensor();  // the writers need the decoded image, not the model input
    w.model_ms = model_ms;
    w.host_ms = ms_since(t1);
    if (!pipeline.has_writers()) {
      writer.write(w);                               // an unusable output throws from here to run_segment
    } else if (!pipeline.hand_over(std::move(w))) {  // aborted: a writer found the output unusable
      pipeline.rethrow_fatal();
      return false;
    }
  }
  return true;
}

// The --json summary, the closing lines on stderr and the exit code of a run that finished or
// was stopped by a signal.
int report_run(const Common& c, const SegmentOptions& o, const SegmentRequest& r, const OutputDir& out,
               const RunLog& log, int64_t skipped, const groupvit::CudaGraphCache* graphs) {
  const int sig = stop_signal();
  json summary = {{"processed", log.processed},
                  {"failed", log.failed},
                  {"skipped_done", skipped},
                  {"output", o.output},
                  {"results", out.results_path},
                  {"errors", out.errors_path},
                  {"shard", {{"index", r.shard.index}, {"count", r.shard.count}, {"source", r.shard.source}}},
                  {"interrupted", sig != 0}};
  if (graphs)
    summary["cuda_graphs"] = {{"captured_shapes", graphs->graphs()},
                              {"replayed_batches", graphs->replays()},
                              {"fallback_reason", graphs->fallback_reason()}};
  if (c.json_output) std::cout << summary.dump() << "\n";
  if (!o.quiet || sig || log.failed) {
    std::cerr << "groupvit: segmented " << log.processed << " image(s) into " << o.output;
    if (skipped) std::cerr << ", " << skipped << " already done";
    if (log.failed) std::cerr << ", " << log.failed << " failed (see " << out.errors_path << ")";
    std::cerr << "\n";
  }
  if (sig) {
    std::cerr << "groupvit: stopped by signal " << sig << " after finishing the current batch; rerun with --resume\n";
    return 128 + sig;
  }
  return log.failed ? kExitSomeImagesFailed : kExitOk;
}

}  // namespace

int run_segment(const Common& c, const SegmentOptions& o) {
  const auto request = check_request(c, o);
  const OutputDir out(o, request.shard);
  const auto done = o.resume ? finished_keys(out.results_path) : std::unordered_set<std::string>{};
  LineAppender results(out.results_path, /*truncate=*/!o.resume);
  LineAppender errors(out.errors_path, /*truncate=*/true);
  SegmentModel model(c, o, request);  // the model and the label embeddings, computed once

  // Inputs: counted once for the progress bar, then streamed.
  const InputFilter wanted{request.shard, done, out, model.stages};
  const auto counts = count_inputs(o, request, wanted);

  install_stop_handlers();
  const size_t workers = static_cast<size_t>(
      o.workers > 0 ? o.workers : std::max(1, std::min(4, static_cast<int>(std::thread::hardware_concurrency()) - 1)));
  // On the CPU the model's intra-op threads already use every core (and spin between operators),
  // so writer threads only compete with them; on a GPU the cores are otherwise idle.
  const size_t writer_count = static_cast<size_t>(o.writers >= 0           ? o.writers
                                                  : model.device.is_cuda() ? static_cast<int>(workers)
                                                                           : 0);
  Progress progress(counts.total, o.progress_interval, !o.quiet);
  RunLog log(results, errors, progress);
  const ImageWriter writer(o, out, request.names, model.stages, log);
  // Last of the locals: its threads use everything above, and it joins them when destroyed.
  Pipeline pipeline(static_cast<size_t>(o.batch_size), workers);
  pipeline.start_enumerator(o, request, wanted);
  pipeline.start_workers(model.prep);
  pipeline.start_writers(writer_count, writer);

  try {
    ModelThread{o, request, model, pipeline, writer, log}.run();
    pipeline.finish_writing();
    pipeline.rethrow_fatal();
  } catch (const OutputError& e) {  // the output location is unusable, or errors.jsonl cannot be written
    pipeline.stop();
    progress.finish(log.processed, log.failed);
    std::cerr << "groupvit: error: " << e.what() << "\n"
              << "groupvit: stopped after " << log.processed << " image(s), each complete and recorded in "
              << out.results_path << "; fix the output location (e.g. free space) and rerun with --resume\n";
    return kExitOutputUnusable;
  } catch (...) {
    pipeline.stop();
    throw;
  }
  pipeline.stop();
  progress.finish(log.processed, log.failed);
  if (!pipeline.enumerate_error().empty()) throw UsageError(pipeline.enumerate_error());
  return report_run(c, o, request, out, log, counts.skipped, model.graphs.get());
}

}  // namespace groupvit_cli
