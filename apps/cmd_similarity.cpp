// groupvit similarity: the probability of each text for each image (softmax over the texts of
// logits_per_image, as Hugging Face's GroupViTModel), on the batch engine: images from files,
// directories, lists or shards in batches; a broken image is reported and the others go on (exit 3).
#include <torch/torch.h>

#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "batch/batch_options.h"
#include "batch/batch_run.h"
#include "cli_common.h"
#include "groupvit/groupvit.h"

namespace groupvit_cli {

namespace {

using json = nlohmann::json;

struct SimilarityResult : ImageResult {
  torch::Tensor logits;  // [texts] float32, CPU
};

// The texts are encoded once; each batch of images is encoded and scored against them. The rows
// are kept (in listing order) for the table or JSON printed at the end.
class SimilarityJob : public BatchJob {
 public:
  SimilarityJob(const Common& c, const std::vector<std::string>& texts) : texts_(texts) {
    const auto placement = model_placement(c);
    model_ = std::make_unique<groupvit::GroupViT>(groupvit::GroupViT::load(c.model_dir, placement.load_options()));
    if (model_->uses_default_preprocessing()) note_default_preprocessing(c.model_dir);
    const auto tokens = model_->tokenize(texts);
    adapt_threads();
    text_embeds_ = model_->encode_texts(tokens.input_ids, tokens.attention_mask);
  }
  const groupvit::ImagePreprocessConfig& preprocessing() const override { return model_->preprocessor(); }
  bool needs_originals() const override { return false; }
  bool on_cuda() const override { return model_->device().is_cuda(); }

  ImageResults run(std::vector<Prepared>& batch) override {
    torch::NoGradGuard no_grad;
    const auto pixels = batch_pixels(batch, model_->device(), model_->dtype());
    const auto logits = model_->similarity(model_->encode_images(pixels), text_embeds_).to(torch::kCPU, torch::kFloat);
    ImageResults results;
    for (int64_t i = 0; i < logits.size(0); ++i) {
      auto r = std::make_unique<SimilarityResult>();
      r->logits = logits[i].clone();
      results.push_back(std::move(r));
    }
    return results;
  }

  void write(Prepared& p, ImageResult& result, RunLog& log) override {
    images_.push_back(p.item.path);
    logits_.push_back(static_cast<SimilarityResult&>(result).logits);
    log.record_done({});
  }

  void print(bool as_json) const;

 private:
  const std::vector<std::string>& texts_;
  std::unique_ptr<groupvit::GroupViT> model_;
  torch::Tensor text_embeds_;
  std::vector<std::string> images_;
  std::vector<torch::Tensor> logits_;
};

void SimilarityJob::print(bool as_json) const {
  if (as_json) {
    json l = json::array(), p = json::array();
    for (const auto& row : logits_) {
      const auto probs = row.softmax(0);
      json lr = json::array(), pr = json::array();
      for (int64_t t = 0; t < row.size(0); ++t) {
        lr.push_back(row[t].item<double>());
        pr.push_back(probs[t].item<double>());
      }
      l.push_back(lr);
      p.push_back(pr);
    }
    std::cout << json{{"images", images_}, {"texts", texts_}, {"logits_per_image", l}, {"probs", p}}.dump() << "\n";
    return;
  }
  for (size_t i = 0; i < logits_.size(); ++i) {
    const auto probs = logits_[i].softmax(0);
    std::cout << images_[i] << "\n";
    for (int64_t t = 0; t < logits_[i].size(0); ++t)
      std::cout << "  " << std::fixed << std::setprecision(4) << probs[t].item<double>() << "  (logit "
                << std::setprecision(3) << logits_[i][t].item<double>() << ")  " << texts_[static_cast<size_t>(t)]
                << "\n";
  }
}

}  // namespace

void add_similarity_options(CLI::App* cmd, SimilarityOptions& o) {
  add_input_option(cmd, o);
  add_deprecated_alias(cmd, "--image", "-i/--input", o.inputs);
  cmd->add_option("--text", o.texts, "a text, e.g. \"a photo of a cat\" (repeat or list several; @FILE: its lines)")
      ->required();
  cmd->add_option("--batch-size", o.batch_size, "images per model call")->capture_default_str();
  cmd->add_option("--workers", o.workers, "decode/preprocess threads (default: min(4, cores - 1))");
  cmd->add_option("--extensions", o.extensions, "image extensions searched in directories and shards");
}

int run_similarity(const Common& c, const SimilarityOptions& o) {
  const auto texts = read_texts(o.texts);
  if (texts.empty()) throw UsageError("give at least one --text");
  if (o.inputs.empty()) throw UsageError("give at least one image with -i/--input");
  check_model_dir(c.model_dir);
  auto settings = batch_settings(o, "groupvit similarity", /*sharded=*/false);
  settings.ordered = true;  // rows in the order the images were given
  settings.writers = 0;
  settings.quiet = true;
  std::unique_ptr<SimilarityJob> job;
  const auto result = run_batch(settings, [&](const OutputDir*) -> BatchJob& {
    job = std::make_unique<SimilarityJob>(c, texts);
    return *job;
  });
  if (result.exit_code != kExitOutputUnusable) job->print(c.json_output);
  return result.exit_code;
}

}  // namespace groupvit_cli
