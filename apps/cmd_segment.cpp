// groupvit segment: zero-shot semantic segmentation of many images. Inputs stream from the
// enumerator through decode/preprocess worker threads (bounded queues) to batches on the model's
// device, and (by default on CUDA) each batch's host results on to writer threads that encode and
// write them while the model runs the next batch; outputs are written atomically and recorded in results.jsonl, so
// that --resume can skip finished images. The maths is in the core library (nvlabs_segmentation.h, model.h).
#include "cli_common.h"
#include "inputs.h"
#include "outputs.h"
#include "progress.h"
#include "work_queue.h"

#include "groupvit/runtime/cuda_graph.h"
#include "groupvit/formats/directory_lock.h"
#include "groupvit/image/image_io.h"
#include "groupvit/segment/nvlabs_segmentation.h"
#include "groupvit/formats/png_writer.h"
#include "groupvit/text/prompt_templates.h"
#include "groupvit/preprocess/tokenizer_torch.h"
#include "groupvit/text/tokenizer_unicode.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_set>

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
  if (labels.empty())
    throw UsageError("the label list is empty: give class names with --labels \"cat,dog\" or --labels-file FILE");
  if (labels.size() > 255) throw UsageError("at most 255 labels (the label PNG holds one byte per pixel)");
  // Checked here, before the model loads, so that the message can say which label and where it came from.
  for (size_t i = 0; i < labels.size(); ++i) {
    try {
      groupvit::unicode::decode_utf8(labels[i]);
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
  cmd->add_option("--labels-file", o.labels_file, "a file with one class name per line");
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
  cmd->add_option("--progress-interval", o.progress_interval, "seconds between progress lines when not on a terminal")
      ->capture_default_str();
  cmd->add_flag("--quiet", o.quiet, "no progress output");
  cmd->add_option("--extensions", o.extensions,
                  "image extensions searched in directories (default: "
                  "jpg,jpeg,png,bmp,tif,tiff,webp)");
}

int run_segment(const Common& c, const SegmentOptions& o) {
  // --- everything that can be wrong with the request fails here, before any work ---
  const auto labels = read_labels(o);
  const auto templates = read_templates(o.templates);
  if (o.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  if (o.writers < -1 || o.writers > 256) throw UsageError("--writers must be between 0 and 256");
  if (o.workers > 256) throw UsageError("--workers must be at most 256");
  auto seg = nvlabs_head(o);
  check_model_dir(c.model_dir);
  if (o.cuda_graphs && o.mode != "hf")
    throw UsageError("--cuda-graphs needs --mode hf (nvlabs batches hold a varying number of windows)");
  if (!parse_device(c.device).is_cuda() && o.cuda_graphs) throw UsageError("--cuda-graphs needs --device cuda");
  parse_dtype(c.dtype);
  const Shard shard = resolve_shard(o.shard, o.shard_count);
  std::set<std::string> extensions = default_image_extensions();
  if (!o.extensions.empty()) {
    extensions.clear();
    std::stringstream ss(o.extensions);
    std::string e;
    while (std::getline(ss, e, ','))
      if (!trim(e).empty()) extensions.insert(trim(e)[0] == '.' ? trim(e).substr(1) : trim(e));
  }
  const bool nvlabs = o.mode == "nvlabs";
  const bool background = nvlabs && !o.no_background;
  std::vector<std::string> names = {"background"};
  names.insert(names.end(), labels.begin(), labels.end());

  try {
    make_directories(o.output);
  } catch (const OutputError& e) {
    throw OutputError("--output " + o.output + ": " + e.what(), e.error());
  }
  const std::string part =
      shard.count > 1 ? "shard-" + std::to_string(shard.index) + "-of-" + std::to_string(shard.count) : "";
  // Two runs into one directory would interleave results.jsonl and overwrite each other's outputs;
  // the shards of one run share it (each has its own results file).
  const groupvit::DirectoryLock lock(o.output, "groupvit segment", part);
  const std::string suffix = part.empty() ? "" : "." + part;
  const std::string results_path = o.output + "/results" + suffix + ".jsonl";
  const std::string errors_path = o.output + "/errors" + suffix + ".jsonl";
  const std::string overlay_ext = "." + o.overlay_format;
  auto paths_for = [&](const std::string& key, int64_t stages) {
    Paths p;
    const std::string base = o.output + "/" + key;
    p.labels = base + ".labels.png";
    if (!o.no_overlay) p.overlay = base + ".overlay" + overlay_ext;
    if (o.save_logits) p.logits = base + ".logits.npy";
    for (int64_t s = 0; o.save_groups && s < stages; ++s)
      p.groups.push_back(base + ".groups" + std::to_string(s) + ".png");
    return p;
  };

  // --- resume: what results.jsonl records as done (a partial last line is dropped) ---
  std::unordered_set<std::string> done;
  if (o.resume) {
    for (const auto& line : read_complete_lines_and_trim(results_path)) {
      try {
        done.insert(json::parse(line).at("key").get<std::string>());
      } catch (const std::exception&) {  // a foreign or damaged line: its image is redone
      }
    }
  }
  LineAppender results(results_path, /*truncate=*/!o.resume);
  LineAppender errors(errors_path, /*truncate=*/true);

  // --- the model and the label embeddings, computed once ---
  torch::Device device = torch::kCPU;
  auto model = load_for(c, &device);
  const auto dtype = parse_dtype(c.dtype);
  const auto& vc = model->config().vision_config;
  const int64_t stages = static_cast<int64_t>(vc.depths.size()) -
                         static_cast<int64_t>(std::count(vc.num_group_tokens.begin(), vc.num_group_tokens.end(), 0));
  const auto class_embeds = class_embeddings(*model, c.model_dir, labels, templates, device);
  // The hf forward of one batch; the CUDA graphs read class_embeds_model, which lives as long as they do.
  const auto class_embeds_model = class_embeds.to(device, dtype);
  auto hf_forward = [&](const torch::Tensor& pixels) -> std::vector<torch::Tensor> {
    auto vision = model->vision_model(pixels, false, true);
    return {model->segmentation_logits(vision, class_embeds_model, pixels.size(2), pixels.size(3))};
  };
  std::unique_ptr<groupvit::CudaGraphCache> graphs;
  if (o.cuda_graphs) graphs = std::make_unique<groupvit::CudaGraphCache>(hf_forward);
  groupvit::ImagePreprocessConfig prep;
  if (nvlabs) {
    prep = nvlabs_preprocess(o);
  } else {
    prep = preprocessor_for(c.model_dir);
    prep.do_resize = true;
    prep.size_rule = groupvit::SizeRule::kHeightWidth;  // the whole image at the model's input size
    prep.height = vc.image_height;
    prep.width = vc.image_width;
    prep.do_center_crop = false;
  }
  seg.with_background = background;

  // --- inputs: counted once for the progress bar, then streamed ---
  auto wanted = [&](const InputItem& item) {
    if (!shard.contains(item.key)) return false;
    return !(done.count(item.key) && file_exists(paths_for(item.key, stages).labels));
  };
  int64_t total = 0, skipped = 0;
  for_each_input(o.inputs, extensions, [&](const InputItem& item) {
    if (shard.contains(item.key)) (wanted(item) ? total : skipped) += 1;
    return true;
  });

  install_stop_handlers();
  const size_t workers = static_cast<size_t>(
      o.workers > 0 ? o.workers : std::max(1, std::min(4, static_cast<int>(std::thread::hardware_concurrency()) - 1)));
  WorkQueue<InputItem> todo(static_cast<size_t>(o.batch_size) * 2 + workers);
  WorkQueue<Prepared> ready(static_cast<size_t>(o.batch_size) * 2 + workers);
  // On the CPU the model's intra-op threads already use every core (and spin between operators),
  // so writer threads only compete with them; on a GPU the cores are otherwise idle. The queue
  // holds one batch: nvlabs logits at the original size can be large.
  const size_t writer_count = static_cast<size_t>(o.writers >= 0     ? o.writers
                                                  : device.is_cuda() ? static_cast<int>(workers)
                                                                     : 0);
  WorkQueue<ToWrite> to_write(static_cast<size_t>(o.batch_size));
  std::vector<std::thread> pool, writers;
  std::string enumerate_error;
  std::thread enumerator([&] {
    try {
      for_each_input(o.inputs, extensions, [&](const InputItem& item) { return !wanted(item) || todo.push(item); });
    } catch (const std::exception& e) {
      enumerate_error = e.what();
    }
    todo.close();
  });
  auto stop_pipeline = [&] {
    todo.abort();
    ready.abort();
    to_write.abort();
    if (enumerator.joinable()) enumerator.join();
    join_all(pool);
    join_all(writers);
  };
  std::atomic<size_t> workers_left{workers};
  try {
    for (size_t w = 0; w < workers; ++w)
      pool.emplace_back([&] {
        while (auto item = todo.pop()) {
          Prepared p;
          p.item = *item;
          const auto t0 = Clock::now();
          try {
            p.original = groupvit::decode_image_file(item->path);
            p.pixels = groupvit::preprocess(p.original, prep);
          } catch (const std::exception& e) {
            p.error = e.what();
          }
          p.prep_ms = ms_since(t0);
          if (!ready.push(std::move(p))) break;
        }
        if (--workers_left == 0) ready.close();
      });
  } catch (...) {  // e.g. no more threads: stop the ones started
    stop_pipeline();
    throw;
  }
  Progress progress(total, o.progress_interval, !o.quiet);
  int64_t processed = 0, failed = 0;
  std::mutex out_mu;  // results, errors, progress and the counts: shared by the model and writer threads
  auto record_error = [&](const Prepared& p, const std::string& what) {
    const std::lock_guard<std::mutex> lock(out_mu);
    errors.append(json{{"input", p.item.path}, {"key", p.item.key}, {"error", what}}.dump());
    ++failed;
    progress.update(processed, failed);
  };
  const auto palette = groupvit::label_palette();
  const auto group_palette = groupvit::label_palette();

  // --- writers: PNG/JPEG encoding and file writes of one batch overlap the model's next batch ---
  std::mutex fatal_mu;
  std::exception_ptr fatal;  // the first error that makes every later write fail (e.g. a full disk)
  auto rethrow_fatal = [&] {
    const std::lock_guard<std::mutex> lock(fatal_mu);
    if (fatal) std::rethrow_exception(fatal);
  };
  auto write_one = [&](ToWrite& w) {
    const auto& p = w.p;
    const auto t1 = Clock::now();
    try {
      const auto paths = paths_for(p.item.key, stages);
      const auto& label_map = w.labels;
      const int64_t h = p.original.height, wd = p.original.width;
      std::vector<int64_t> counts(names.size(), 0);
      for (uint8_t l : label_map) ++counts[l];
      json share = json::object();
      for (size_t l = 0; l < names.size(); ++l)
        if (counts[l]) share[names[l]] = static_cast<double>(counts[l]) / static_cast<double>(h * wd);

      const std::vector<std::array<uint8_t, 3>> label_colours(
          palette.begin(), palette.begin() + static_cast<std::ptrdiff_t>(names.size()));
      const auto png = groupvit::encode_paletted_png(label_map, h, wd, label_colours);
      write_file_atomic(paths.labels, png.data(), png.size());
      json outputs = {{"labels", paths.labels}};
      if (!o.no_overlay) {
        const auto overlay = overlay_image(p.original, label_map, names, palette, overlay_ext);
        write_file_atomic(paths.overlay, overlay.data(), overlay.size());
        outputs["overlay"] = paths.overlay;
      }
      if (o.save_logits) {
        const auto& t = w.logits;
        std::vector<float> v(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
        write_file_atomic(paths.logits, npy_bytes(v, t.sizes().vec()));
        outputs["logits"] = paths.logits;
      }
      if (o.save_groups) {
        outputs["groups"] = json::array();
        for (size_t st = 0; st < w.groups.size() && st < paths.groups.size(); ++st) {
          const auto gpng = groupvit::encode_paletted_png(w.groups[st], h, wd, group_palette);
          write_file_atomic(paths.groups[st], gpng.data(), gpng.size());
          outputs["groups"].push_back(paths.groups[st]);
        }
      }
      json line = {{"input", p.item.path},
                   {"key", p.item.key},
                   {"width", wd},
                   {"height", h},
                   {"mode", o.mode},
                   {"labels", names},
                   {"pixel_share", share},
                   {"outputs", outputs},
                   {"timings_ms",
                    {{"decode_preprocess", p.prep_ms}, {"model", w.model_ms}, {"write", w.host_ms + ms_since(t1)}}}};
      const std::lock_guard<std::mutex> lock(out_mu);
      results.append(line.dump());  // last: the image counts as done only once everything is written
      ++processed;
      progress.update(processed, failed);
    } catch (const OutputError& e) {
      if (e.location_unusable()) throw;  // every later image would fail the same way: stop
      record_error(p, std::string("writing outputs: ") + e.what());
    } catch (const std::exception& e) {
      record_error(p, std::string("writing outputs: ") + e.what());
    }
  };
  try {
    for (size_t w = 0; w < writer_count; ++w)
      writers.emplace_back([&] {
        while (auto item = to_write.pop()) {
          try {
            write_one(*item);
          } catch (...) {  // the outputs or errors.jsonl are unusable: stop all; the model thread reports it
            {
              const std::lock_guard<std::mutex> lock(fatal_mu);
              if (!fatal) fatal = std::current_exception();
            }
            to_write.abort();
            ready.abort();
            return;
          }
        }
      });
  } catch (...) {
    stop_pipeline();
    throw;
  }

  try {
    bool more = true;
    while (more && !stop_signal()) {
      std::vector<Prepared> batch;
      while (static_cast<int>(batch.size()) < o.batch_size) {
        auto p = ready.pop();
        if (!p) {
          more = false;
          break;
        }
        if (!p->error.empty()) {
          record_error(*p, p->error);
          continue;
        }
        batch.push_back(std::move(*p));
      }
      rethrow_fatal();  // a writer stopped the pipeline: no model call for the rest
      if (batch.empty()) continue;

      // The model: one call per batch (nvlabs: all windows of all images together).
      const auto t0 = Clock::now();
      std::vector<torch::Tensor> scores;  // per image: [channels, H, W] at the original size, float
      std::vector<torch::Tensor> saved;   // what --save-logits writes
      std::vector<std::vector<torch::Tensor>> groups(batch.size());
      try {
        torch::NoGradGuard no_grad;
        std::vector<std::array<int64_t, 2>> sizes;
        for (const auto& p : batch) sizes.push_back({p.original.height, p.original.width});
        if (nvlabs) {
          std::vector<torch::Tensor> images;
          for (const auto& p : batch) images.push_back(to_device(p.pixels, device, torch::kFloat));
          scores = groupvit::nvlabs_segment(*model, images, class_embeds.to(device), sizes, seg);
          saved = scores;
        } else {
          std::vector<torch::Tensor> px;
          for (const auto& p : batch) px.push_back(p.pixels);
          auto pixels = stack_to_device(px, device, dtype);
          auto logits = (graphs ? (*graphs)(pixels) : hf_forward(pixels)).front().to(torch::kFloat);
          for (size_t i = 0; i < batch.size(); ++i) {
            saved.push_back(logits[static_cast<int64_t>(i)]);
            scores.push_back(
                torch::nn::functional::interpolate(logits[static_cast<int64_t>(i)].unsqueeze(0),
                                                   torch::nn::functional::InterpolateFuncOptions()
                                                       .size(std::vector<int64_t>{sizes[i][0], sizes[i][1]})
                                                       .mode(torch::kBilinear)
                                                       .align_corners(false))
                    .squeeze(0));
          }
        }
        if (o.save_groups)
          for (size_t i = 0; i < batch.size(); ++i)
            groups[i] = groupvit::group_masks(*model, batch[i].pixels.to(device), sizes[i]);
      } catch (const c10::Error& e) {
        for (const auto& p : batch) record_error(p, std::string("model: ") + e.what_without_backtrace());
        continue;
      } catch (const std::exception& e) {
        for (const auto& p : batch) record_error(p, std::string("model: ") + e.what());
        continue;
      }
      const double model_ms = ms_since(t0) / static_cast<double>(batch.size());

      // Tensor work stays on this thread (the device's stream, LibTorch's thread pool); the
      // writers get plain host buffers.
      for (size_t i = 0; i < batch.size(); ++i) {
        const auto t1 = Clock::now();
        ToWrite w;
        try {
          torch::NoGradGuard no_grad;
          auto label_t = scores[i].argmax(0);
          if (!background) label_t = label_t + 1;  // no background channel: classes start at 1
          label_t = label_t.to(torch::kCPU, torch::kByte).contiguous();
          w.labels.assign(label_t.data_ptr<uint8_t>(), label_t.data_ptr<uint8_t>() + label_t.numel());
          if (o.save_logits) w.logits = saved[i].to(torch::kCPU, torch::kFloat).contiguous();
          for (const auto& g : groups[i]) {
            auto gc = g.to(torch::kCPU, torch::kByte).contiguous();
            w.groups.emplace_back(gc.data_ptr<uint8_t>(), gc.data_ptr<uint8_t>() + gc.numel());
          }
        } catch (const std::exception& e) {
          record_error(batch[i], std::string("writing outputs: ") + e.what());
          continue;
        }
        w.p = std::move(batch[i]);
        w.p.pixels = torch::Tensor();  // the writers need the decoded image, not the model input
        w.model_ms = model_ms;
        w.host_ms = ms_since(t1);
        if (writers.empty()) {
          write_one(w);                             // an unusable output throws from here to the handler below
        } else if (!to_write.push(std::move(w))) {  // aborted: a writer found the output unusable
          rethrow_fatal();
          more = false;
          break;
        }
      }
    }
    to_write.close();  // the writers finish what is queued
    join_all(writers);
    rethrow_fatal();
  } catch (const OutputError& e) {  // the output location is unusable, or errors.jsonl cannot be written
    stop_pipeline();
    progress.finish(processed, failed);
    std::cerr << "groupvit: error: " << e.what() << "\n"
              << "groupvit: stopped after " << processed << " image(s), each complete and recorded in " << results_path
              << "; fix the output location (e.g. free space) and rerun with --resume\n";
    return kExitOutputUnusable;
  } catch (...) {
    stop_pipeline();
    throw;
  }
  stop_pipeline();
  progress.finish(processed, failed);
  if (!enumerate_error.empty()) throw UsageError(enumerate_error);

  const int sig = stop_signal();
  json summary = {{"processed", processed},
                  {"failed", failed},
                  {"skipped_done", skipped},
                  {"output", o.output},
                  {"results", results_path},
                  {"errors", errors_path},
                  {"shard", {{"index", shard.index}, {"count", shard.count}, {"source", shard.source}}},
                  {"interrupted", sig != 0}};
  if (graphs)
    summary["cuda_graphs"] = {{"captured_shapes", graphs->graphs()},
                              {"replayed_batches", graphs->replays()},
                              {"fallback_reason", graphs->fallback_reason()}};
  if (c.json_output) std::cout << summary.dump() << "\n";
  if (!o.quiet || sig || failed) {
    std::cerr << "groupvit: segmented " << processed << " image(s) into " << o.output;
    if (skipped) std::cerr << ", " << skipped << " already done";
    if (failed) std::cerr << ", " << failed << " failed (see " << errors_path << ")";
    std::cerr << "\n";
  }
  if (sig) {
    std::cerr << "groupvit: stopped by signal " << sig << " after finishing the current batch; rerun with --resume\n";
    return 128 + sig;
  }
  return failed ? kExitSomeImagesFailed : kExitOk;
}

}  // namespace groupvit_cli
