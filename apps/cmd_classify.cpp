// groupvit classify: zero-shot image classification as Hugging Face's
// zero-shot-image-classification pipeline does it: each candidate label put into the hypothesis
// template ("This is a photo of {}."), the image's logits_per_image over them softmaxed, and the
// labels sorted by score ([{"label", "score"}], ties in the given order). --templates instead
// averages each label's projected text features over several templates, then L2-normalises them,
// as segment's --templates (NVlabs' build_text_embedding). On the
// batch engine: files, directories, lists, shards; with --output DIR, results.jsonl with --resume
// and --shard.
#include <torch/torch.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "batch/batch_options.h"
#include "batch/batch_run.h"
#include "cli_common.h"
#include "groupvit/groupvit.h"
#include "groupvit/text/prompt_templates.h"

namespace groupvit_cli {

namespace {

using json = nlohmann::json;

struct ClassifyResult : ImageResult {
  std::vector<float> scores;  // [labels] softmax over the labels
};

std::vector<std::string> read_candidates(const ClassifyOptions& o) {
  if (!o.labels.empty() && !o.labels_file.empty()) throw UsageError("give --labels or --labels-file, not both");
  if (o.labels.empty() && o.labels_file.empty())
    throw UsageError("give the candidate labels with --labels \"cat,dog\" or --labels-file FILE");
  const std::string source = o.labels_file.empty() ? "--labels" : o.labels_file;
  auto labels = o.labels_file.empty() ? split_labels(o.labels) : read_lines(o.labels_file, "labels file");
  if (labels.empty()) throw UsageError("the label list " + source + " is empty");
  reject_duplicates(labels, source);
  for (size_t i = 0; i < labels.size(); ++i) {
    try {
      groupvit::check_utf8(labels[i]);
    } catch (const groupvit::TokenizerError& e) {
      throw UsageError("label " + std::to_string(i + 1) + " of " + source + ": " + e.what());
    }
  }
  return labels;
}

// The label scores of one image, sorted as the pipeline sorts them, the first top_k (0: all).
json ranked(const std::vector<std::string>& labels, const std::vector<float>& scores, int64_t top_k) {
  std::vector<size_t> order(labels.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  if (top_k > 0 && static_cast<size_t>(top_k) < order.size()) order.resize(static_cast<size_t>(top_k));
  json out = json::array();
  for (size_t i : order) out.push_back({{"label", labels[i]}, {"score", scores[i]}});
  return out;
}

// The label embeddings are made once; each batch of images is encoded and scored against them.
class ClassifyJob : public BatchJob {
 public:
  ClassifyJob(const Common& c, const ClassifyOptions& o, const std::vector<std::string>& labels)
      : o_(o), labels_(labels) {
    const auto placement = model_placement(c);
    model_ = std::make_unique<groupvit::GroupViT>(groupvit::GroupViT::load(c.model_dir, placement.load_options()));
    if (model_->uses_default_preprocessing()) note_default_preprocessing(c.model_dir);
    torch::NoGradGuard no_grad;
    adapt_threads();
    if (o.templates.empty()) {  // the pipeline's way: one text a label, encoded as similarity encodes it
      std::vector<std::string> texts;
      for (const auto& l : labels) texts.push_back(groupvit::fill_template(o.hypothesis_template, l));
      label_embeds_ = model_->encode_texts(texts);
    } else {
      label_embeds_ = model_->encode_classes(labels, read_templates(o.templates)).to(model_->dtype());
    }
  }
  const groupvit::ImagePreprocessConfig& preprocessing() const override { return model_->preprocessor(); }
  bool needs_originals() const override { return false; }
  bool on_cuda() const override { return model_->device().is_cuda(); }

  ImageResults run(std::vector<Prepared>& batch) override {
    torch::NoGradGuard no_grad;
    const auto pixels = batch_pixels(batch, model_->device(), model_->dtype());
    const auto probs = model_->similarity(model_->encode_images(pixels), label_embeds_)
                           .to(torch::kFloat)
                           .softmax(1)
                           .to(torch::kCPU)
                           .contiguous();
    ImageResults results;
    for (int64_t i = 0; i < probs.size(0); ++i) {
      auto r = std::make_unique<ClassifyResult>();
      const float* row = probs[i].data_ptr<float>();
      r->scores.assign(row, row + probs.size(1));
      results.push_back(std::move(r));
    }
    return results;
  }

  void write(Prepared& p, ImageResult& result, RunLog& log) override {
    json line = {{"input", p.item.path},
                 {"key", p.item.key},
                 {"labels", ranked(labels_, static_cast<ClassifyResult&>(result).scores, o_.top_k)}};
    if (o_.output.empty()) rows_.push_back(line);
    log.record_done(line);
  }

  void print(bool as_json) const {
    if (as_json) {
      std::cout << json(rows_).dump() << "\n";
      return;
    }
    for (const auto& row : rows_) {
      std::cout << row["input"].get<std::string>() << "\n";
      for (const auto& e : row["labels"])
        std::cout << "  " << std::fixed << std::setprecision(4) << e["score"].get<double>() << "  "
                  << e["label"].get<std::string>() << "\n";
    }
  }

 private:
  const ClassifyOptions& o_;
  const std::vector<std::string>& labels_;
  std::unique_ptr<groupvit::GroupViT> model_;
  torch::Tensor label_embeds_;
  std::vector<json> rows_;  // without --output: printed at the end, in listing order
};

}  // namespace

void add_classify_options(CLI::App* cmd, ClassifyOptions& o) {
  add_input_option(cmd, o)->required();
  cmd->add_option("--labels", o.labels, "candidate labels, comma-separated, e.g. \"cat,dog,sofa\"");
  cmd->add_option("--labels-file", o.labels_file, "candidate labels, one a line");
  cmd->add_option("--hypothesis-template", o.hypothesis_template,
                  "the text each label is put into ({} = the label), as Hugging Face's pipeline")
      ->capture_default_str();
  cmd->add_option("--templates", o.templates,
                  "instead, average each label's embedding over templates: simple, subset (7), full (80) or a file "
                  "with one template a line");
  cmd->add_option("--top-k", o.top_k, "report the k best labels of each image (0: all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}))
      ->capture_default_str();
  cmd->add_option("-o,--output", o.output,
                  "directory for results.jsonl (one line per image, with --resume and --shard); without it the "
                  "results are printed");
  add_batch_run_options(cmd, o);
}

int run_classify(const Common& c, const ClassifyOptions& o) {
  const auto labels = read_candidates(o);
  if (o.resume && o.output.empty()) throw UsageError("--resume needs -o/--output DIR (its results.jsonl)");
  if (!o.templates.empty() && o.hypothesis_template != ClassifyOptions().hypothesis_template)
    throw UsageError("give --hypothesis-template or --templates, not both");
  if (o.templates.empty() && o.hypothesis_template.find("{}") == std::string::npos)
    std::cerr << "groupvit: warning: --hypothesis-template has no {}: each label is appended after a space\n";
  check_model_dir(c.model_dir);
  auto settings = batch_settings(o, "groupvit classify", /*sharded=*/!o.output.empty());
  settings.verb = "classified";
  settings.ordered = o.output.empty();  // printed rows in the order the images were given
  if (o.output.empty()) settings.quiet = true;
  std::unique_ptr<ClassifyJob> job;
  const auto result = run_batch(settings, [&](const OutputDir*) -> BatchJob& {
    job = std::make_unique<ClassifyJob>(c, o, labels);
    return *job;
  });
  if (result.exit_code == kExitOutputUnusable) return result.exit_code;
  if (o.output.empty())
    job->print(c.json_output);
  else if (c.json_output)
    std::cout << result.summary.dump() << "\n";
  return result.exit_code;
}

}  // namespace groupvit_cli
