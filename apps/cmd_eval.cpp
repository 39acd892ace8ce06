// groupvit eval: zero-shot segmentation scores on a labelled dataset laid out like PASCAL VOC
// (images, label PNGs with the same file stems, a class list whose line k is label k, 255 =
// ignore). The model runs the paper's protocol (the NVlabs head of `segment`); --predictions
// scores label maps written earlier instead. IoU per class and mean IoU over the classes that
// occur (mmseg's nanmean), pixel accuracy, and foreground accuracy when line 0 is background,
// from the library's confusion matrix (groupvit/segment/metrics.h).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "batch/batch_run.h"
#include "batch/source.h"
#include "cli_common.h"
#include "datasets.h"
#include "groupvit/formats/png_reader.h"
#include "groupvit/groupvit.h"
#include "groupvit/image/image_io.h"
#include "groupvit/segment/metrics.h"
#include "outputs.h"
#include "progress.h"

namespace groupvit_cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A prediction or image must be the size of its ground truth: pixels are compared one to one.
void check_same_size(const std::string& source, int64_t height, int64_t width, const groupvit::LabelMap& truth) {
  if (height != truth.height || width != truth.width)
    throw std::runtime_error(source + ": " + std::to_string(width) + "x" + std::to_string(height) +
                             " but its label map is " + std::to_string(truth.width) + "x" +
                             std::to_string(truth.height));
}

std::string find_with_stem(const std::string& dir, const std::string& stem, const std::vector<std::string>& suffixes) {
  for (const auto& suffix : suffixes) {
    const auto path = (fs::path(dir) / (stem + suffix)).string();
    if (file_exists(path)) return path;
  }
  return "";
}

const std::vector<std::string> kImageSuffixes = {".jpg", ".png", ".jpeg", ".JPG", ".JPEG", ".PNG", ".bmp", ".webp"};

// The class list: line k names label k.
struct EvalClasses {
  std::vector<std::string> names;
  std::vector<std::string> prompts;  // what the text tower sees: the names less background
  bool background = false;           // line 0 is "background", scored by the threshold, not prompted
};

// --dataset NAME --root DIR stands for --input, --ground-truth, --list, --labels-file and the label
// suffix (and the background threshold unless --bg-thresh is given); with neither, --ground-truth and
// --labels or --labels-file.
EvalOptions resolve_dataset(const EvalOptions& given, const DatasetPreset** preset) {
  EvalOptions o = given;
  *preset = nullptr;
  if (o.dataset.empty()) {
    if (!o.root.empty()) throw UsageError("--root goes with --dataset");
    if (o.ground_truth.empty() || (o.labels.empty() && o.labels_file.empty()))
      throw UsageError(
          "give --ground-truth DIR and the classes (--labels or --labels-file), or --dataset voc|context|coco-object "
          "with --root");
    if (!o.labels.empty() && !o.labels_file.empty()) throw UsageError("give --labels or --labels-file, not both");
    return o;
  }
  const auto& p = dataset_preset(o.dataset);
  if (o.root.empty()) throw UsageError("--dataset " + p.name + " needs --root (the dataset's directory)");
  if (!o.images.empty() || !o.ground_truth.empty() || !o.list.empty() || !o.labels.empty() || !o.labels_file.empty())
    throw UsageError(
        "--dataset sets --input, --ground-truth, --list and the classes; give them without --dataset (or "
        "--labels/--labels-file without it)");
  if (!fs::is_directory(o.root)) throw UsageError("--root " + o.root + " is not a directory");
  o.images = (fs::path(o.root) / p.images).string();
  o.ground_truth = (fs::path(o.root) / p.labels).string();
  o.list = p.list.empty() ? "" : (fs::path(o.root) / p.list).string();
  o.label_suffix = p.label_suffix;
  if (!(o.bg_thresh_option && o.bg_thresh_option->count() > 0)) o.seg.bg_thresh = p.bg_thresh;
  *preset = &p;
  return o;
}

EvalClasses read_classes(const EvalOptions& o, const DatasetPreset* preset) {
  EvalClasses classes;
  const std::string source = preset ? preset->classes_file : o.labels_file.empty() ? "--labels" : o.labels_file;
  classes.names = preset                  ? preset->classes
                  : o.labels_file.empty() ? split_labels(o.labels)
                                          : read_lines(o.labels_file, "class list");
  if (classes.names.empty()) throw UsageError("the class list " + source + " is empty");
  classes.background = classes.names[0] == "background" && !o.seg.no_background;
  if (classes.names.size() > 255) throw UsageError("at most 255 classes (label 255 means ignore)");
  // A repeated name would split one class's pixels between two labels and lower its IoU unseen.
  reject_duplicates(classes.names, source);
  classes.prompts.assign(classes.names.begin() + (classes.background ? 1 : 0), classes.names.end());
  if (classes.prompts.empty()) throw UsageError("the class list " + source + " names no class besides background");
  return classes;
}

// The stems to evaluate: --list, or those of every label PNG (sorted); at most --max-images.
std::vector<std::string> eval_stems(const EvalOptions& o) {
  std::vector<std::string> stems;
  if (!o.list.empty()) {
    stems = read_lines(o.list, "list");
  } else {
    if (!fs::is_directory(o.ground_truth)) throw UsageError("label directory " + o.ground_truth + " does not exist");
    const auto& suffix = o.label_suffix;
    for (const auto& entry : fs::directory_iterator(o.ground_truth)) {
      const auto name = entry.path().filename().string();
      if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        stems.push_back(name.substr(0, name.size() - suffix.size()));
    }
    std::sort(stems.begin(), stems.end());
  }
  if (o.max_images > 0 && static_cast<int64_t>(stems.size()) > o.max_images)
    stems.resize(static_cast<size_t>(o.max_images));
  if (stems.empty()) throw UsageError("no label maps to evaluate in " + o.ground_truth);
  return stems;
}

// What to compare for one stem: its label map and its image (or saved prediction).
struct Item {
  std::string stem, label, source;
};

// Every stem's files, found up front: a missing one fails before any work.
std::vector<Item> eval_items(const EvalOptions& o, bool run_model) {
  std::vector<Item> items;
  for (const auto& stem : eval_stems(o)) {
    Item item{stem, (fs::path(o.ground_truth) / (stem + o.label_suffix)).string(), ""};
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
  return items;
}

// One image's predicted label map into the scores; a label outside the class list names the stem.
void add_image(groupvit::SegmentationMetrics& scores, const groupvit::LabelMap& truth, const uint8_t* predicted,
               const std::string& stem) {
  try {
    scores.add(truth.labels.data(), predicted, truth.labels.size());
  } catch (const std::out_of_range& e) {
    throw std::runtime_error(stem + ": " + e.what());
  }
}

// --predictions: scores the saved label maps, until all are scored or a stop signal came; returns
// how many were.
int64_t score_predictions(const EvalOptions& o, const std::vector<Item>& items, groupvit::SegmentationMetrics& scores) {
  Progress progress(static_cast<int64_t>(items.size()), o.seg.progress_interval, !o.seg.quiet);
  int64_t done = 0;
  for (const auto& item : items) {
    const auto truth = groupvit::read_label_png(item.label);
    const auto prediction = groupvit::read_label_png(item.source);
    check_same_size(item.source, prediction.height, prediction.width, truth);
    add_image(scores, truth, prediction.labels.data(), item.stem);
    progress.update(++done, 0);
    if (stop_signal()) break;
  }
  progress.finish(done, 0);
  return done;
}

struct LabelResult : ImageResult {
  std::vector<uint8_t> labels;  // predicted class per pixel at the original size
};

// The model step: the NVlabs head over a batch (the paper's protocol); the writer scores each
// predicted label map against its ground truth. Channel k is class line k with background, line k
// of the prompted classes without.
class EvalJob : public BatchJob {
 public:
  EvalJob(const Common& c, const EvalOptions& o, const EvalClasses& classes, groupvit::SegmentationMetrics& scores)
      : scores_(scores) {
    head_ = nvlabs_head(o.seg);
    head_.with_background = classes.background;
    prep_ = nvlabs_preprocess(o.seg);
    model_ = load_for(c, &device_);
    class_embeds_ = groupvit::class_embeddings(*model_, groupvit::ClipTokenizer::from_directory(c.model_dir),
                                               classes.prompts, read_templates(o.seg.templates), device_);
  }
  const groupvit::ImagePreprocessConfig& preprocessing() const override { return prep_; }
  bool on_cuda() const override { return device_.is_cuda(); }

  ImageResults run(std::vector<Prepared>& batch) override {
    std::vector<torch::Tensor> images;
    std::vector<std::array<int64_t, 2>> sizes;
    for (const auto& p : batch) {
      images.push_back(p.pixels.to(device_));
      sizes.push_back({p.original.height, p.original.width});
    }
    torch::NoGradGuard no_grad;
    const auto scores = groupvit::nvlabs_segment(*model_, images, class_embeds_, sizes, head_);
    ImageResults results;
    for (const auto& s : scores) {
      auto r = std::make_unique<LabelResult>();
      auto predicted = s.argmax(0).to(torch::kCPU, torch::kByte).contiguous();
      r->labels.assign(predicted.data_ptr<uint8_t>(), predicted.data_ptr<uint8_t>() + predicted.numel());
      results.push_back(std::move(r));
    }
    return results;
  }

  // Runs on the model's thread (no writers): the scores need no lock.
  void write(Prepared& p, ImageResult& result, RunLog& log) override {
    const auto truth = groupvit::read_label_png(p.item.extra);
    check_same_size(p.item.path, p.original.height, p.original.width, truth);
    add_image(scores_, truth, static_cast<LabelResult&>(result).labels.data(), p.item.key);
    log.record_done({});
  }

 private:
  groupvit::SegmentationMetrics& scores_;
  groupvit::GroupViTModel model_{nullptr};
  torch::Tensor class_embeds_;
  torch::Device device_ = torch::kCPU;
  groupvit::NvlabsSegmentationOptions head_;
  groupvit::ImagePreprocessConfig prep_;
};

// The model over every item on the batch engine; returns how many were scored (fewer after a stop
// signal). A broken image or a size mismatch ends the run: the scores would not be the dataset's.
int64_t score_model(const Common& c, const EvalOptions& o, const EvalClasses& classes, const std::vector<Item>& items,
                    groupvit::SegmentationMetrics& scores) {
  BatchSettings s;
  s.tool = "groupvit eval";
  s.batch_size = o.seg.batch_size;
  s.workers = o.seg.workers;
  s.writers = 0;
  s.progress_interval = o.seg.progress_interval;
  s.quiet = o.seg.quiet;
  s.stop_on_error = true;
  s.ordered = true;  // the batches of earlier versions: the same windows in each model call
  s.source = [&items](const std::function<bool(const InputItem&)>& visit) {
    for (const auto& item : items) {
      InputItem in;
      in.path = item.source;
      in.key = item.stem;
      in.extra = item.label;
      if (!visit(in)) return;
    }
  };
  std::unique_ptr<EvalJob> job;
  const auto result = run_batch(s, [&](const OutputDir*) -> BatchJob& {
    job = std::make_unique<EvalJob>(c, o, classes, scores);
    return *job;
  });
  return result.processed;
}

// The report: IoU and accuracy per class (null where the class has none), their means, pixel
// accuracy and, with a background line, foreground accuracy.
json eval_report(const Common& c, const EvalOptions& o, const EvalClasses& classes,
                 const groupvit::SegmentationMetrics& scores, int64_t done, size_t items, double seconds,
                 bool run_model) {
  json per_class = json::array();
  for (int64_t k = 0; k < scores.num_classes(); ++k) {
    json entry = {{"class", classes.names[static_cast<size_t>(k)]}, {"pixels", scores.pixels(k)}};
    // A class absent from the ground truth and never predicted has no IoU (mmseg: NaN, left out
    // of the mean); one predicted but absent scores 0.
    const auto iou = scores.iou(k);
    const auto accuracy = scores.accuracy(k);
    entry["iou"] = iou ? json(*iou) : json(nullptr);
    entry["accuracy"] = accuracy ? json(*accuracy) : json(nullptr);
    per_class.push_back(entry);
  }
  json report = {{"images", done},
                 {"classes", per_class},
                 {"mean_iou", scores.mean_iou()},
                 {"mean_accuracy", scores.mean_accuracy()},
                 {"pixel_accuracy", scores.pixel_accuracy()},
                 {"seconds", seconds},
                 {"model", run_model ? c.model_dir : ""},
                 {"predictions", o.predictions},
                 {"complete", done == static_cast<int64_t>(items)}};
  if (classes.background) report["foreground_accuracy"] = scores.foreground_accuracy();
  if (run_model) {  // what decides the numbers, to be set beside the paper's
    report["settings"] = {{"templates", o.seg.templates},
                          {"bg_thresh", o.seg.bg_thresh},
                          {"background", classes.background},
                          {"resize", o.seg.resize},
                          {"short_side", o.seg.short_side},
                          {"long_side", o.seg.long_side},
                          {"whole", o.seg.whole},
                          {"crop_size", o.seg.crop_size},
                          {"stride", o.seg.stride},
                          {"top_k", o.seg.top_k},
                          {"device", c.device},
                          {"dtype", c.dtype}};
  }
  return report;
}

// The dataset a preset resolved to, for the report.
json dataset_record(const EvalOptions& o, const DatasetPreset& p) {
  return {{"name", p.name},     {"title", p.title},          {"root", o.root},
          {"images", o.images}, {"labels", o.ground_truth},  {"label_suffix", p.label_suffix},
          {"list", o.list},     {"classes", p.classes_file}, {"bg_thresh", p.bg_thresh}};
}

// The report as Markdown: per-class IoU in percent, as the paper's tables give it, then the means.
std::string markdown_report(const json& report) {
  std::ostringstream md;
  md << std::fixed << std::setprecision(2);
  const std::string what = report.contains("dataset") ? report["dataset"]["title"].get<std::string>() : "eval";
  md << "GroupViT zero-shot segmentation, " << what << ", " << report["images"].get<int64_t>() << " images";
  if (!report["model"].get<std::string>().empty()) md << ", model `" << report["model"].get<std::string>() << "`";
  md << "\n\n| class | IoU (%) |\n|---|---:|\n";
  for (const auto& e : report["classes"]) {
    md << "| " << e["class"].get<std::string>() << " | ";
    if (e["iou"].is_null())
      md << "-";
    else
      md << 100 * e["iou"].get<double>();
    md << " |\n";
  }
  md << "| **mIoU** | **" << 100 * report["mean_iou"].get<double>() << "** |\n";
  md << "\npixel accuracy " << 100 * report["pixel_accuracy"].get<double>() << "%";
  if (report.contains("foreground_accuracy"))
    md << ", foreground accuracy " << 100 * report["foreground_accuracy"].get<double>() << "%";
  md << "\n";
  return md.str();
}

// The table of the report on stdout.
void print_report(const json& report, bool background, int64_t done) {
  std::cout << std::fixed << std::setprecision(4);
  for (const auto& e : report["classes"]) {
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

}  // namespace

void add_eval_options(CLI::App* cmd, EvalOptions& o) {
  cmd->add_option("-i,--input", o.images, "directory of the images (file stem = the label map's stem)");
  add_deprecated_alias(cmd, "--images", "-i/--input", o.images);
  cmd->add_option("--ground-truth", o.ground_truth,
                  "directory of ground-truth label PNGs (8-bit grey or paletted; 255 = ignore)");
  cmd->add_option("--labels", o.labels,
                  "class names, comma-separated: entry k names label k (a first \"background\" is scored by the "
                  "threshold, not prompted)");
  cmd->add_option("--labels-file", o.labels_file,
                  "class names, one a line: line k names label k; a first line \"background\" is scored by the "
                  "threshold, not prompted (VOC)");
  add_deprecated_alias(cmd, "--classes", "--labels-file", o.labels_file);
  cmd->add_option("--dataset", o.dataset,
                  "a benchmark of the paper, laid out as distributed under --root; sets --input, --ground-truth, "
                  "--list, --labels-file and --bg-thresh (an explicit --bg-thresh wins):" +
                      dataset_presets_help())
      ->check(CLI::IsMember({"voc", "context", "coco-object"}));
  cmd->add_option("--root", o.root, "the --dataset's directory (e.g. VOCdevkit/VOC2012, VOCdevkit/VOC2010, coco)");
  cmd->add_option("--label-suffix", o.label_suffix, "a label map's file is STEM + this")->capture_default_str();
  cmd->add_option("--predictions", o.predictions,
                  "score these label maps instead of running the model (STEM.png, or segment's "
                  "FILE.labels.png)");
  cmd->add_option("--list", o.list, "file of the stems to evaluate, one a line (default: every label PNG)");
  cmd->add_option("-o,--output", o.report, "also write the JSON report to this file");
  add_deprecated_alias(cmd, "--report", "-o/--output", o.report);
  cmd->add_option("--report-md", o.report_md,
                  "also write the report as a Markdown table (per-class IoU in %, mIoU), to set beside the paper's");
  cmd->add_option("--limit,--max-images", o.max_images, "evaluate at most this many, for a quick look (0: all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000000}))
      ->capture_default_str();
  add_nvlabs_options(cmd, o.seg);
  o.bg_thresh_option = cmd->get_option("--bg-thresh");
  cmd->add_option("--batch-size", o.seg.batch_size, "images per model call")
      ->check(CLI::Range(1, kMaxBatchSize))
      ->capture_default_str();
  cmd->add_flag("--quiet", o.seg.quiet, "no progress output");
}

// eval's --labels named the ground-truth directory before the flags' vocabulary gave --labels the
// class names: a directory given there is still taken as the ground truth, with a warning.
EvalOptions with_old_labels_option(EvalOptions o) {
  if (!o.labels.empty() && o.ground_truth.empty() && fs::is_directory(o.labels)) {
    warn_deprecated("eval --labels DIR", "--ground-truth DIR (--labels now takes class names)");
    o.ground_truth = o.labels;
    o.labels.clear();
  }
  return o;
}

int run_eval(const Common& c, const EvalOptions& given) {
  const DatasetPreset* preset = nullptr;
  const auto o = resolve_dataset(with_old_labels_option(given), &preset);
  const auto classes = read_classes(o, preset);
  if (o.seg.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  const bool run_model = o.predictions.empty();
  if (run_model && (o.images.empty() || c.model_dir.empty()))
    throw UsageError("give --model and -i/--input (or --predictions to score saved label maps)");
  const auto items = eval_items(o, run_model);
  if (run_model) nvlabs_head(o.seg);  // its options checked before any work

  groupvit::SegmentationMetrics scores(static_cast<int64_t>(classes.names.size()));
  const auto start = std::chrono::steady_clock::now();
  const int64_t done = run_model ? score_model(c, o, classes, items, scores) : score_predictions(o, items, scores);
  const double seconds = seconds_since(start);

  auto report = eval_report(c, o, classes, scores, done, items.size(), seconds, run_model);
  if (preset) report["dataset"] = dataset_record(o, *preset);
  if (!o.report.empty()) write_file_atomic(o.report, report.dump(2) + "\n");
  if (!o.report_md.empty()) write_file_atomic(o.report_md, markdown_report(report));
  if (c.json_output)
    std::cout << report.dump() << "\n";
  else
    print_report(report, classes.background, done);
  if (stop_signal()) return 128 + stop_signal();
  return kExitOk;
}

}  // namespace groupvit_cli
