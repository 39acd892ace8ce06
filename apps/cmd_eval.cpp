// groupvit eval: zero-shot segmentation scores on a labelled dataset laid out like PASCAL VOC
// (images, label PNGs with the same file stems, a class list whose line k is label k, 255 =
// ignore). The model runs the paper's protocol (the NVlabs head of `segment`); --predictions
// scores label maps written earlier instead. IoU per class and mean IoU over the classes that
// occur (mmseg's nanmean), pixel accuracy, and foreground accuracy when line 0 is background.
#include "cli_common.h"
#include "inputs.h"
#include "outputs.h"
#include "progress.h"

#include "groupvit/image/image_io.h"
#include "groupvit/formats/png_reader.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

namespace groupvit_cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr uint8_t kIgnore = 255;

// A prediction or image must be the size of its ground truth: pixels are compared one to one.
void check_same_size(const std::string& source, int64_t height, int64_t width, const groupvit::LabelMap& truth) {
  if (height != truth.height || width != truth.width)
    throw std::runtime_error(source + ": " + std::to_string(width) + "x" + std::to_string(height) +
                             " but its label map is " + std::to_string(truth.width) + "x" +
                             std::to_string(truth.height));
}

std::string find_with_stem(const std::string& dir, const std::string& stem,
                           const std::vector<std::string>& suffixes) {
  for (const auto& suffix : suffixes) {
    const auto path = (fs::path(dir) / (stem + suffix)).string();
    if (file_exists(path)) return path;
  }
  return "";
}

const std::vector<std::string> kImageSuffixes = {".jpg", ".png", ".jpeg", ".JPG", ".JPEG", ".PNG", ".bmp", ".webp"};

}  // namespace

void add_eval_options(CLI::App* cmd, EvalOptions& o) {
  cmd->add_option("--images", o.images, "directory of the images (file stem = the label map's stem)");
  cmd->add_option("--labels", o.labels_dir, "directory of ground-truth label PNGs (8-bit grey or paletted; 255 = "
                                            "ignore)")
      ->required();
  cmd->add_option("--classes", o.classes,
                  "class names, one a line: line k names label k; a first line \"background\" is scored by the "
                  "threshold, not prompted (VOC)")
      ->required();
  cmd->add_option("--predictions", o.predictions,
                  "score these label maps instead of running the model (STEM.png, or segment's "
                  "FILE.labels.png)");
  cmd->add_option("--list", o.list, "file of the stems to evaluate, one a line (default: every label PNG)");
  cmd->add_option("--report", o.report, "also write the JSON report to this file");
  cmd->add_option("--max-images", o.max_images, "evaluate at most this many (0: all)")->capture_default_str();
  add_nvlabs_options(cmd, o.seg);
  cmd->add_option("--batch-size", o.seg.batch_size, "images per model call")->capture_default_str();
  cmd->add_flag("--quiet", o.seg.quiet, "no progress output");
}

int run_eval(const Common& c, const EvalOptions& o) {
  auto classes = read_lines(o.classes, "class list");
  const bool background = classes[0] == "background" && !o.seg.no_background;
  if (classes.size() > 255) throw UsageError("at most 255 classes (label 255 means ignore)");
  const int64_t n = static_cast<int64_t>(classes.size());
  std::vector<std::string> prompts(classes.begin() + (background ? 1 : 0), classes.end());
  if (prompts.empty()) throw UsageError("the class list " + o.classes + " names no class besides background");
  if (o.seg.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  const bool run_model = o.predictions.empty();
  if (run_model && (o.images.empty() || c.model_dir.empty()))
    throw UsageError("give --model and --images (or --predictions to score saved label maps)");

  std::vector<std::string> stems;
  if (!o.list.empty()) {
    stems = read_lines(o.list, "list");
  } else {
    if (!fs::is_directory(o.labels_dir)) throw UsageError("label directory " + o.labels_dir + " does not exist");
    for (const auto& entry : fs::directory_iterator(o.labels_dir))
      if (entry.path().extension() == ".png") stems.push_back(entry.path().stem().string());
    std::sort(stems.begin(), stems.end());
  }
  if (o.max_images > 0 && static_cast<int64_t>(stems.size()) > o.max_images) stems.resize(static_cast<size_t>(o.max_images));
  if (stems.empty()) throw UsageError("no label maps to evaluate in " + o.labels_dir);

  // --- what to compare: (label path, image path or prediction path) per stem, checked up front ---
  struct Item {
    std::string stem, label, source;
  };
  std::vector<Item> items;
  for (const auto& stem : stems) {
    Item item{stem, (fs::path(o.labels_dir) / (stem + ".png")).string(), ""};
    if (!file_exists(item.label)) throw UsageError("no label map " + item.label);
    if (run_model) {
      item.source = find_with_stem(o.images, stem, kImageSuffixes);
      if (item.source.empty()) throw UsageError("no image for " + stem + " in " + o.images);
    } else {
      std::vector<std::string> suffixes = {".png"};
      for (const auto& s : kImageSuffixes) suffixes.push_back(s + ".labels.png");
      item.source = find_with_stem(o.predictions, stem, suffixes);
      if (item.source.empty()) throw UsageError("no prediction for " + stem + " in " + o.predictions);
    }
    items.push_back(item);
  }

  groupvit::GroupViTModel model{nullptr};
  torch::Tensor class_embeds;
  torch::Device device = torch::kCPU;
  auto head = nvlabs_head(o.seg);
  head.with_background = background;
  const auto prep = nvlabs_preprocess(o.seg);
  if (run_model) {
    const auto templates = read_templates(o.seg.templates);
    model = load_for(c, &device);
    class_embeds = class_embeddings(*model, c.model_dir, prompts, templates, device);
  }

  // Confusion matrix: rows ground truth, columns prediction.
  std::vector<int64_t> confusion(static_cast<size_t>(n * n), 0);
  auto accumulate = [&](const groupvit::LabelMap& truth, const uint8_t* predicted, const std::string& stem) {
    for (size_t i = 0; i < truth.labels.size(); ++i) {
      const uint8_t t = truth.labels[i];
      if (t == kIgnore) continue;
      if (t >= n)
        throw std::runtime_error(stem + ": label " + std::to_string(t) + " but the class list has " +
                                 std::to_string(n) + " classes");
      if (predicted[i] >= n) throw std::runtime_error(stem + ": predicted label " + std::to_string(predicted[i]) +
                                                      " outside the class list");
      ++confusion[static_cast<size_t>(t * n + predicted[i])];
    }
  };

  const auto start = std::chrono::steady_clock::now();
  Progress progress(static_cast<int64_t>(items.size()), o.seg.progress_interval, !o.seg.quiet);
  int64_t done = 0;
  for (size_t first = 0; first < items.size(); first += static_cast<size_t>(o.seg.batch_size)) {
    const size_t last = std::min(items.size(), first + static_cast<size_t>(o.seg.batch_size));
    std::vector<groupvit::LabelMap> truths;
    for (size_t i = first; i < last; ++i) truths.push_back(groupvit::read_label_png(items[i].label));
    if (!run_model) {
      for (size_t i = first; i < last; ++i) {
        const auto prediction = groupvit::read_label_png(items[i].source);
        const auto& truth = truths[i - first];
        check_same_size(items[i].source, prediction.height, prediction.width, truth);
        accumulate(truth, prediction.labels.data(), items[i].stem);
      }
    } else {
      std::vector<torch::Tensor> images;
      std::vector<std::array<int64_t, 2>> sizes;
      for (size_t i = first; i < last; ++i) {
        const auto image = groupvit::decode_image_file(items[i].source);
        const auto& truth = truths[i - first];
        check_same_size(items[i].source, image.height, image.width, truth);
        images.push_back(groupvit::preprocess(image, prep).to(device));
        sizes.push_back({image.height, image.width});
      }
      torch::NoGradGuard no_grad;
      const auto scores = groupvit::nvlabs_segment(*model, images, class_embeds, sizes, head);
      for (size_t i = first; i < last; ++i) {
        // Channel k is class line k with background, line k of the prompted classes without.
        auto predicted = scores[i - first].argmax(0).to(torch::kCPU, torch::kByte).contiguous();
        accumulate(truths[i - first], predicted.data_ptr<uint8_t>(), items[i].stem);
      }
    }
    done += static_cast<int64_t>(last - first);
    progress.update(done, 0);
    if (stop_signal()) break;
  }
  progress.finish(done, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // --- scores ---
  int64_t total = 0, correct = 0, fg_total = 0, fg_correct = 0;
  json per_class = json::array();
  double iou_sum = 0, acc_sum = 0;
  int64_t iou_count = 0, acc_count = 0;
  for (int64_t k = 0; k < n; ++k) {
    int64_t row = 0, column = 0;
    for (int64_t j = 0; j < n; ++j) {
      row += confusion[static_cast<size_t>(k * n + j)];
      column += confusion[static_cast<size_t>(j * n + k)];
    }
    const int64_t tp = confusion[static_cast<size_t>(k * n + k)];
    total += row;
    correct += tp;
    if (background && k > 0) {
      fg_total += row;
      fg_correct += tp;
    }
    const int64_t uni = row + column - tp;
    json entry = {{"class", classes[static_cast<size_t>(k)]}, {"pixels", row}};
    // A class absent from the ground truth and never predicted has no IoU (mmseg: NaN, left out
    // of the mean); one predicted but absent scores 0.
    if (uni > 0) {
      const double iou = static_cast<double>(tp) / static_cast<double>(uni);
      entry["iou"] = iou;
      iou_sum += iou;
      ++iou_count;
    } else {
      entry["iou"] = nullptr;
    }
    if (row > 0) {
      const double acc = static_cast<double>(tp) / static_cast<double>(row);
      entry["accuracy"] = acc;
      acc_sum += acc;
      ++acc_count;
    } else {
      entry["accuracy"] = nullptr;
    }
    per_class.push_back(entry);
  }
  json report = {{"images", done},
                 {"classes", per_class},
                 {"mean_iou", iou_count ? iou_sum / static_cast<double>(iou_count) : 0.0},
                 {"mean_accuracy", acc_count ? acc_sum / static_cast<double>(acc_count) : 0.0},
                 {"pixel_accuracy", total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0},
                 {"seconds", seconds},
                 {"model", run_model ? c.model_dir : ""},
                 {"predictions", o.predictions},
                 {"complete", done == static_cast<int64_t>(items.size())}};
  if (background)
    report["foreground_accuracy"] = fg_total ? static_cast<double>(fg_correct) / static_cast<double>(fg_total) : 0.0;
  if (!o.report.empty()) write_file_atomic(o.report, report.dump(2) + "\n");
  if (c.json_output) {
    std::cout << report.dump() << "\n";
  } else {
    std::cout << std::fixed << std::setprecision(4);
    for (const auto& e : per_class) {
      std::cout << "  " << std::left << std::setw(20) << e["class"].get<std::string>() << " IoU ";
      if (e["iou"].is_null())
        std::cout << "   -  ";
      else
        std::cout << e["iou"].get<double>();
      std::cout << "  (" << e["pixels"].get<int64_t>() << " pixels)\n";
    }
    std::cout << "mIoU " << report["mean_iou"].get<double>() << ", pixel accuracy "
              << report["pixel_accuracy"].get<double>();
    if (background) std::cout << ", foreground accuracy " << report["foreground_accuracy"].get<double>();
    std::cout << " over " << done << " images\n";
  }
  if (stop_signal()) return 128 + stop_signal();
  return kExitOk;
}

}  // namespace groupvit_cli
