// groupvit segment: zero-shot semantic segmentation of many images, on the batch engine
// (batch/batch_run.h): the model step segments a batch (the NVlabs head or Hugging Face's
// segmentation_logits), the writer encodes each image's label map, overlay, group maps and logits
// and records it in results.jsonl. The maths is in the core library (nvlabs_segmentation.h, model.h).
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "batch/batch_options.h"
#include "batch/batch_run.h"
#include "cli_common.h"
#include "groupvit/formats/directory_lock.h"
#include "groupvit/formats/png_writer.h"
#include "groupvit/groupvit.h"
#include "groupvit/image/image_io.h"
#include "groupvit/runtime/cuda_graph.h"
#include "groupvit/segment/nvlabs_segmentation.h"
#include "label_formats/exports.h"
#include "outputs.h"
#include "segment_job.h"

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
    labels = split_labels(o.labels);
  }
  // A first "background" is label 0 of the nvlabs head (the threshold), not a prompt: the class lists
  // in datasets/ (and eval --classes files) then give the dataset's label ids.
  if (o.mode == "nvlabs" && !o.no_background && !labels.empty() && labels[0] == "background")
    labels.erase(labels.begin());
  if (labels.empty())
    throw UsageError("the label list is empty: give class names with --labels \"cat,dog\" or --labels-file FILE");
  // Label 0 is background and 255 means "ignore" to eval and the VOC convention: 254 classes fit a byte.
  if (labels.size() > 254)
    throw UsageError("at most 254 labels (the label PNG holds one byte per pixel: 0 is background, 255 ignore)");
  reject_duplicates(labels, o.labels_file.empty() ? std::string("--labels") : o.labels_file);
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

struct Paths {
  std::string labels, overlay, logits;
  std::vector<std::string> groups;
};

}  // namespace

void add_nvlabs_options(CLI::App* cmd, SegmentOptions& o) {
  o.nvlabs_only.clear();
  o.nvlabs_only.push_back(cmd->add_option("--templates", o.templates,
                                          "prompt templates: simple, subset (7), full (80) or a file with one "
                                          "template a line ({} = class name)")
                              ->capture_default_str());
  o.bg_thresh_option =
      cmd->add_option("--bg-thresh", o.bg_thresh, "nvlabs: background below this score (VOC/COCO 0.95, Context 0.35)")
          ->check(CLI::Range(0.0, 1.0))
          ->capture_default_str();
  o.nvlabs_only.push_back(o.bg_thresh_option);
  o.nvlabs_only.push_back(
      cmd->add_flag("--no-background", o.no_background, "nvlabs: every pixel gets a class (no background label)"));
  o.nvlabs_only.push_back(
      cmd->add_flag("--whole", o.whole, "nvlabs: one pass over the whole resized image instead of sliding windows"));
  o.nvlabs_only.push_back(cmd->add_option("--short-side", o.short_side, "nvlabs: resize so the short side is this")
                              ->check(CLI::Range(int64_t{1}, int64_t{8192}))
                              ->capture_default_str());
  o.nvlabs_only.push_back(
      cmd->add_option("--resize", o.resize,
                      "nvlabs: how to resize: mmcv (OpenCV bilinear at mmcv's imrescale size, as the paper's pipeline, "
                      "bit for bit) or pillow (Pillow bicubic)")
          ->check(CLI::IsMember({"mmcv", "pillow"}))
          ->capture_default_str());
  o.nvlabs_only.push_back(
      cmd->add_option("--long-side", o.long_side, "nvlabs: ... unless the long side would exceed this")
          ->check(CLI::Range(int64_t{1}, int64_t{16384}))
          ->capture_default_str());
  o.nvlabs_only.push_back(cmd->add_option("--crop-size", o.crop_size, "nvlabs: sliding window side")
                              ->check(CLI::Range(int64_t{1}, int64_t{4096}))
                              ->capture_default_str());
  o.nvlabs_only.push_back(cmd->add_option("--stride", o.stride, "nvlabs: sliding window stride")
                              ->check(CLI::Range(int64_t{1}, int64_t{4096}))
                              ->capture_default_str());
  o.nvlabs_only.push_back(cmd->add_option("--top-k", o.top_k, "nvlabs: classes kept by the image-level gate")
                              ->check(CLI::Range(int64_t{1}, int64_t{254}))
                              ->capture_default_str());
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
  add_input_option(cmd, o)->required();
  cmd->add_option("-o,--output", o.output, "output directory")->required();
  add_nvlabs_options(cmd, o);
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
  cmd->add_option("--format", o.formats,
                  "label map formats, one or several (comma-separated): png (KEY.labels.png, VOC palette), coco "
                  "(coco.json: RLE masks, bbox, area, score), labelstudio (labelstudio.json predictions + "
                  "labelstudio-config.xml), cvat (cvat/: CVAT's Segmentation mask 1.1)")
      ->delimiter(',')
      ->check(CLI::IsMember({"png", "coco", "labelstudio", "cvat"}))
      ->capture_default_str();
  cmd->add_option("--image-url-prefix", o.image_url_prefix,
                  "labelstudio: a task's image URL is this + the image's key (default: Label Studio's local "
                  "files, serving the --input directory as LOCAL_FILES_DOCUMENT_ROOT)")
      ->capture_default_str();
  add_batch_run_options(cmd, o);
}

namespace {

bool has(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// Settings that cannot mean what the user expects: the paper protocol's options with --mode hf, a
// background threshold with --no-background.
void warn_ineffective_options(const SegmentOptions& o) {
  std::string given;
  for (const auto* opt : o.nvlabs_only)
    if (opt->count() > 0) given += (given.empty() ? "" : ", ") + opt->get_name();
  if (o.mode == "hf" && !given.empty())
    std::cerr << "groupvit: warning: " << given
              << " apply to --mode nvlabs only; --mode hf ignores them (no templates, threshold or windows)\n";
  if (o.mode == "nvlabs" && o.no_background && o.bg_thresh_option && o.bg_thresh_option->count() > 0)
    std::cerr << "groupvit: warning: --bg-thresh has no effect with --no-background (every pixel gets a class)\n";
}

}  // namespace

SegmentRequest segment_request(const SegmentOptions& o) {
  SegmentRequest r;
  r.labels = read_labels(o);
  r.templates = read_templates(o.templates);
  r.head = nvlabs_head(o);
  r.nvlabs = o.mode == "nvlabs";
  r.background = r.nvlabs && !o.no_background;
  r.head.with_background = r.background;
  r.names = {"background"};
  r.names.insert(r.names.end(), r.labels.begin(), r.labels.end());
  r.png = has(o.formats, "png");
  r.coco = has(o.formats, "coco");
  r.labelstudio = has(o.formats, "labelstudio");
  r.cvat = has(o.formats, "cvat");
  if (!r.png && !r.coco && !r.labelstudio && !r.cvat) throw UsageError("--format: give at least one format");
  for (size_t i = 0; r.cvat && i < r.labels.size(); ++i)
    if (r.labels[i].find_first_of(":\n") != std::string::npos)
      throw UsageError("--format cvat: label " + std::to_string(i + 1) + " '" + r.labels[i] +
                       "' holds a ':', which CVAT's labelmap.txt uses to separate its fields");
  return r;
}

SegmentRequest check_request(const Common& c, const SegmentOptions& o) {
  auto r = segment_request(o);
  check_model_dir(c.model_dir);
  if (o.cuda_graphs && o.mode != "hf")
    throw UsageError("--cuda-graphs needs --mode hf (nvlabs batches hold a varying number of windows)");
  if (!parse_device(c.device).is_cuda() && o.cuda_graphs) throw UsageError("--cuda-graphs needs --device cuda");
  warn_ineffective_options(o);
  check_dtype(c.dtype);
  return r;
}

namespace {

// The files of the input with this key (`stages` group maps with --save-groups).
Paths paths_for(const SegmentOptions& o, const std::string& key, int64_t stages) {
  Paths p;
  const std::string base = o.output + "/" + key;
  p.labels = base + ".labels.png";
  if (!o.no_overlay) p.overlay = base + ".overlay." + o.overlay_format;
  if (o.save_logits) p.logits = base + ".logits.npy";
  for (int64_t s = 0; o.save_groups && s < stages; ++s)
    p.groups.push_back(base + ".groups" + std::to_string(s) + ".png");
  return p;
}

}  // namespace

// --- the model step and the writer --------------------------------------------------------------

SegmentJob::SegmentJob(const Common& c, const SegmentOptions& o, const SegmentRequest& r, const OutputDir* out)
    : o_(o), r_(r), out_(out), model_name_(c.model_dir) {
  model_ = load_for(c, &device_, &dtype_);
  init(c.model_dir);
}

SegmentJob::SegmentJob(groupvit::GroupViTModel model, torch::Device device, torch::Dtype dtype,
                       const std::string& model_dir, const SegmentOptions& o, const SegmentRequest& r)
    : o_(o), r_(r), device_(device), dtype_(dtype), model_(std::move(model)), model_name_(model_dir) {
  init(model_dir);
}

void SegmentJob::init(const std::string& model_dir) {
  const auto& o = o_;
  const auto& r = r_;
  const auto& vc = model_->config().vision_config;
  stages_ = static_cast<int64_t>(vc.depths.size()) -
            static_cast<int64_t>(std::count(vc.num_group_tokens.begin(), vc.num_group_tokens.end(), 0));
  class_embeds_ = groupvit::class_embeddings(*model_, groupvit::ClipTokenizer::from_directory(model_dir), r.labels,
                                             r.templates, device_);
  class_embeds_model_ = class_embeds_.to(device_, dtype_);
  if (o.cuda_graphs)
    graphs_ =
        std::make_unique<groupvit::CudaGraphCache>([this](const torch::Tensor& pixels) { return hf_forward(pixels); });
  if (r.nvlabs) {
    prep_ = nvlabs_preprocess(o);
  } else {
    prep_ = preprocessor_for(model_dir);
    prep_.do_resize = true;
    prep_.size_rule = groupvit::SizeRule::kHeightWidth;  // the whole image at the model's input size
    prep_.height = vc.image_height;
    prep_.width = vc.image_width;
    prep_.do_center_crop = false;
  }
}

std::vector<torch::Tensor> SegmentJob::hf_forward(const torch::Tensor& pixels) {
  auto vision = model_->vision_model(pixels, false, true);
  return {model_->segmentation_logits(vision, class_embeds_model_, pixels.size(2), pixels.size(3))};
}

std::vector<torch::Tensor> SegmentJob::scores(const std::vector<Prepared>& batch, std::vector<torch::Tensor>& saved) {
  std::vector<std::array<int64_t, 2>> sizes;
  for (const auto& p : batch) sizes.push_back({p.original.height, p.original.width});
  if (r_.nvlabs) {
    std::vector<torch::Tensor> images;
    for (const auto& p : batch) images.push_back(to_device(p.pixels, device_, torch::kFloat));
    saved = groupvit::nvlabs_segment(*model_, images, class_embeds_.to(device_), sizes, r_.head);
    return saved;
  }
  std::vector<torch::Tensor> out;
  auto pixels = batch_pixels(batch, device_, dtype_);
  auto logits = (graphs_ ? (*graphs_)(pixels) : hf_forward(pixels)).front().to(torch::kFloat);
  for (size_t i = 0; i < batch.size(); ++i) {
    saved.push_back(logits[static_cast<int64_t>(i)]);
    out.push_back(torch::nn::functional::interpolate(logits[static_cast<int64_t>(i)].unsqueeze(0),
                                                     torch::nn::functional::InterpolateFuncOptions()
                                                         .size(std::vector<int64_t>{sizes[i][0], sizes[i][1]})
                                                         .mode(torch::kBilinear)
                                                         .align_corners(false))
                      .squeeze(0));
  }
  return out;
}

namespace {

std::vector<uint8_t> bytes_of(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kByte).contiguous();
  return {c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel()};
}

// Each region's score, by label value: the mean over the region's pixels of its label's probability
// there (hf: the softmax over the labels of segmentation_logits; nvlabs: the head's score, itself a
// softmax over the classes kept by the top-k gate). `channel`: the argmax of score_map; channel c
// is label value c + offset.
std::vector<float> label_region_scores(const torch::Tensor& score_map, const torch::Tensor& channel, bool softmax,
                                       int64_t offset) {
  const int64_t channels = score_map.size(0);
  const auto probs = softmax ? score_map.softmax(0) : score_map;
  const auto flat = channel.flatten();
  // In float64: a float32 running sum over a million pixels drifts in the third digit.
  const auto best = probs.gather(0, channel.unsqueeze(0)).flatten().to(torch::kDouble);
  const auto sums = torch::zeros({channels}, best.options()).index_add_(0, flat, best);
  const auto counts = torch::bincount(flat, {}, channels).to(best.scalar_type()).clamp_min(1);
  const auto mean = (sums / counts).to(torch::kCPU, torch::kFloat).contiguous();
  std::vector<float> scores(static_cast<size_t>(channels + offset), 0.0f);
  std::copy(mean.data_ptr<float>(), mean.data_ptr<float>() + channels, scores.begin() + offset);
  return scores;
}

}  // namespace

ImageResults SegmentJob::run(std::vector<Prepared>& batch) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> saved;
  const auto score_maps = scores(batch, saved);
  ImageResults results;
  for (size_t i = 0; i < batch.size(); ++i) {
    auto r = std::make_unique<SegmentResult>();
    const auto t1 = std::chrono::steady_clock::now();
    try {
      const auto channel = score_maps[i].argmax(0);
      const int64_t offset = r_.background ? 0 : 1;  // no background channel: classes start at 1
      r->labels = bytes_of(channel + offset);
      r->scores = label_region_scores(score_maps[i], channel, !r_.nvlabs, offset);
      if (o_.save_logits) r->logits = saved[i].to(torch::kCPU, torch::kFloat).contiguous();
      if (o_.save_groups)
        for (const auto& g : groupvit::group_masks(*model_, batch[i].pixels.to(device_),
                                                   {batch[i].original.height, batch[i].original.width}))
          r->groups.push_back(bytes_of(g));
    } catch (const std::exception& e) {
      r->error = e.what();
    }
    r->host_ms = ms_since(t1);
    results.push_back(std::move(r));
  }
  return results;
}

// {label: fraction of the image's pixels} for the labels present.
json pixel_share(const std::vector<uint8_t>& label_map, const std::vector<std::string>& names, int64_t pixels) {
  std::vector<int64_t> counts(names.size(), 0);
  for (uint8_t l : label_map) ++counts[l];
  json share = json::object();
  for (size_t l = 0; l < names.size(); ++l)
    if (counts[l]) share[names[l]] = static_cast<double>(counts[l]) / static_cast<double>(pixels);
  return share;
}

// The image counts as done (its line in results.jsonl) only once everything is written. A failed
// write is recorded in errors.jsonl, except an OutputError saying that the output location is
// unusable: that one is thrown, since every later image would fail the same way.
void SegmentJob::write(Prepared& p, ImageResult& result, RunLog& log) {
  const auto& r = static_cast<const SegmentResult&>(result);
  const auto t1 = std::chrono::steady_clock::now();
  try {
    const int64_t h = p.original.height, wd = p.original.width;
    const json share = pixel_share(r.labels, r_.names, h * wd);
    const json outputs = write_files(p, r);
    log.record_done({{"input", p.item.path},
                     {"key", p.item.key},
                     {"width", wd},
                     {"height", h},
                     {"mode", o_.mode},
                     {"labels", r_.names},
                     {"pixel_share", share},
                     {"regions", label_regions(r.labels, h, wd, r_.names, r.scores, r_.rles())},
                     {"outputs", outputs},
                     {"timings_ms",
                      {{"decode_preprocess", p.prep_ms}, {"model", r.model_ms}, {"write", r.host_ms + ms_since(t1)}}}});
  } catch (const OutputError& e) {
    if (e.location_unusable()) throw;
    log.record_error(p.item, std::string("writing outputs: ") + e.what());
  } catch (const std::exception& e) {
    log.record_error(p.item, std::string("writing outputs: ") + e.what());
  }
}

json SegmentJob::write_files(const Prepared& p, const SegmentResult& r) const {
  const auto paths = paths_for(o_, p.item.key, stages_);
  const int64_t h = p.original.height, wd = p.original.width;
  const std::vector<std::array<uint8_t, 3>> label_colours(
      palette_.begin(), palette_.begin() + static_cast<std::ptrdiff_t>(r_.names.size()));
  json outputs = json::object();
  if (r_.png) {
    const auto png = groupvit::encode_paletted_png(r.labels, h, wd, label_colours);
    write_file_atomic(paths.labels, png.data(), png.size());
    outputs["labels"] = paths.labels;
  }
  if (r_.cvat) {
    const auto masks = cvat_masks(o_.output + "/cvat", p.item.key, r.labels, h, wd, label_colours);
    claim_cvat_name(p.item.key);
    write_files_atomic(masks);
    outputs["cvat"] = masks.front().first;
  }
  if (!o_.no_overlay) {
    const auto overlay = overlay_image(p.original, r.labels, r_.names, palette_, "." + o_.overlay_format);
    write_file_atomic(paths.overlay, overlay.data(), overlay.size());
    outputs["overlay"] = paths.overlay;
  }
  if (o_.save_logits) {
    const auto& t = r.logits;
    std::vector<float> v(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    write_file_atomic(paths.logits, npy_bytes(v, t.sizes().vec()));
    outputs["logits"] = paths.logits;
  }
  if (o_.save_groups) {
    outputs["groups"] = json::array();
    for (size_t st = 0; st < r.groups.size() && st < paths.groups.size(); ++st) {
      const auto gpng = groupvit::encode_paletted_png(r.groups[st], h, wd, palette_);
      write_file_atomic(paths.groups[st], gpng.data(), gpng.size());
      outputs["groups"].push_back(paths.groups[st]);
    }
  }
  return outputs;
}

void SegmentJob::claim_cvat_name(const std::string& key) const {
  std::lock_guard<std::mutex> lock(cvat_mu_);
  const auto [it, inserted] = cvat_names_.emplace(cvat_name(key), key);
  if (!inserted && it->second != key)
    throw std::runtime_error("--format cvat: its mask name '" + it->first + "' is also that of " + it->second +
                             " (CVAT pairs masks and images by the name less its extension)");
}

namespace {

void warn_unusable(int64_t lines, const std::string& format, const std::string& results) {
  if (lines > 0)
    std::cerr << "groupvit: warning: " << lines << " line(s) of " << results << " have no " << format
              << " data (segmented without --format " << format << "): left out; rerun without --resume\n";
}

}  // namespace

void SegmentJob::finish(RunLog&) {
  if (!out_) return;
  const Palette colours(palette_.begin(), palette_.begin() + static_cast<std::ptrdiff_t>(r_.names.size()));
  const ExportInputs in{out_->results_path, r_.names, model_name_, o_.image_url_prefix};
  if (r_.coco) {
    const auto path = out_->file("coco", "json");
    warn_unusable(write_coco(in, path), "coco", in.results_path);
    exports_["coco"] = path;
  }
  if (r_.labelstudio) {
    const auto path = out_->file("labelstudio", "json");
    write_file_atomic(out_->dir + "/labelstudio-config.xml", label_studio_config(r_.names, colours));
    warn_unusable(write_label_studio(in, path), "labelstudio", in.results_path);
    exports_["labelstudio"] = path;
    exports_["labelstudio_config"] = out_->dir + "/labelstudio-config.xml";
  }
  if (r_.cvat) {
    const std::string dir = out_->dir + "/cvat";
    write_file_atomic(dir + "/labelmap.txt", cvat_labelmap(r_.names, colours));
    const auto list = dir + "/ImageSets/Segmentation/default" + (out_->part.empty() ? "" : "." + out_->part) + ".txt";
    warn_unusable(write_cvat_list(in, list), "cvat", in.results_path);
    exports_["cvat"] = dir;
  }
}

int run_segment(const Common& c, const SegmentOptions& o) {
  const auto request = check_request(c, o);
  auto settings = batch_settings(o, "groupvit segment");
  settings.verb = "segmented";
  // --resume: an image counts as done when its label map is there too.
  // --resume: an image counts as done when its label map is there too (a per-image format's).
  if (request.png)
    settings.outputs_present = [&o](const std::string& key) { return file_exists(paths_for(o, key, 0).labels); };
  else if (request.cvat)
    settings.outputs_present = [&o](const std::string& key) {
      return file_exists(o.output + "/cvat/SegmentationClass/" + cvat_name(key) + ".png");
    };
  std::unique_ptr<SegmentJob> job;
  const auto result = run_batch(settings, [&](const OutputDir* out) -> BatchJob& {
    job = std::make_unique<SegmentJob>(c, o, request, out);  // the model and the label embeddings, once
    return *job;
  });
  if (result.exit_code == kExitOutputUnusable) return result.exit_code;
  if (c.json_output) std::cout << result.summary.dump() << "\n";
  return result.exit_code;
}

}  // namespace groupvit_cli
