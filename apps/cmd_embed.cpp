// groupvit embed: projected image and text features exactly as Hugging Face's
// get_image_features / get_text_features return them (L2-normalised with --normalize), on the
// batch engine. Into one file (FILE.json, FILE.npy) for small jobs, or streamed into a directory
// for large ones: every --chunk-size images an embeddings-NNNNN.npy with its index-NNNNN.jsonl,
// written together and atomically, then recorded in results.jsonl (so --resume and shards work as
// in segment, and memory stays flat in the number of images).
#include <sys/stat.h>
#include <torch/torch.h>

#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "batch/batch_options.h"
#include "batch/batch_run.h"
#include "cli_common.h"
#include "groupvit/model/model.h"
#include "groupvit/preprocess/tokenizer_torch.h"
#include "outputs.h"

namespace groupvit_cli {

namespace {

using json = nlohmann::json;

constexpr int64_t kTextBatch = 256;  // texts per model call: 3,000 long texts need not sit in one batch

std::string extension_of(const std::string& path) {
  const auto dot = path.rfind('.');
  const auto slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  return path.substr(dot);
}

json rows(const torch::Tensor& t) {
  json out = json::array();
  auto c = t.contiguous();
  const float* p = c.data_ptr<float>();
  for (int64_t i = 0; i < c.size(0); ++i) out.push_back(std::vector<float>(p + i * c.size(1), p + (i + 1) * c.size(1)));
  return out;
}

std::string npy_of(const torch::Tensor& t) {
  auto c = t.contiguous();
  std::vector<float> v(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return npy_bytes(v, {c.size(0), c.size(1)});
}

struct EmbedResult : ImageResult {
  torch::Tensor features;  // [dim] float32, CPU
};

// The model step: image features of a batch; texts once, at the end. Output: the file of a small
// job (everything kept until finish) or a directory's chunks.
class EmbedJob : public BatchJob {
 public:
  EmbedJob(const Common& c, const EmbedOptions& o, const std::vector<std::string>& texts, const OutputDir* out)
      : o_(o), texts_(texts), out_(out) {
    model_ = load_for(c, &device_, &dtype_);
    prep_ = preprocessor_for(c.model_dir);
    model_dir_ = c.model_dir;
    if (out_)
      while (file_exists(chunk_path("embeddings", "npy", next_chunk_))) ++next_chunk_;  // --resume: go on after them
  }

  const groupvit::ImagePreprocessConfig& preprocessing() const override { return prep_; }
  bool needs_originals() const override { return false; }
  bool on_cuda() const override { return device_.is_cuda(); }

  ImageResults run(std::vector<Prepared>& batch) override {
    torch::NoGradGuard no_grad;
    const auto features = finish_features(model_->get_image_features(batch_pixels(batch, device_, dtype_)));
    ImageResults results;
    for (int64_t i = 0; i < features.size(0); ++i) {
      auto r = std::make_unique<EmbedResult>();
      r->features = features[i].clone();
      results.push_back(std::move(r));
    }
    return results;
  }

  void write(Prepared& p, ImageResult& result, RunLog& log) override {
    const std::lock_guard<std::mutex> lock(mu_);
    inputs_.push_back({p.item.path, p.item.key});
    features_.push_back(static_cast<EmbedResult&>(result).features);
    if (out_ && static_cast<int64_t>(features_.size()) >= o_.chunk_size) write_chunk(log);
  }

  void finish(RunLog& log) override {
    const std::lock_guard<std::mutex> lock(mu_);
    if (out_ && !features_.empty()) write_chunk(log);
    if (!texts_.empty() && (!out_ || o_.shard_index == 0)) text_embeds_ = embed_texts();
    if (!out_) write_file();
  }

  // "embed": the files written and the arrays' shapes (one file: the whole --json summary).
  void add_to_summary(json& summary) const override {
    json e = {{"output", written_}, {"normalized", o_.normalize}};
    if (!image_shape_.empty()) e["image_embeds_shape"] = image_shape_;
    if (text_embeds_.defined()) e["text_embeds_shape"] = text_embeds_.sizes().vec();
    summary["embed"] = e;
  }

 private:
  torch::Tensor finish_features(torch::Tensor f) const {
    f = f.to(torch::kCPU, torch::kFloat);
    return o_.normalize ? groupvit::l2_normalize(f) : f;
  }

  torch::Tensor embed_texts() {
    torch::NoGradGuard no_grad;
    auto tokenizer = groupvit::ClipTokenizer::from_directory(model_dir_);
    std::vector<torch::Tensor> parts;
    for (size_t start = 0; start < texts_.size(); start += kTextBatch) {
      const std::vector<std::string> chunk(
          texts_.begin() + static_cast<std::ptrdiff_t>(start),
          texts_.begin() + static_cast<std::ptrdiff_t>(std::min(texts_.size(), start + kTextBatch)));
      auto tokens = groupvit::tokenize_to_tensors(tokenizer, chunk, groupvit::Padding::Longest,
                                                  groupvit::context_length(model_->config()));
      adapt_threads();
      parts.push_back(
          finish_features(model_->get_text_features(tokens.input_ids.to(device_), tokens.attention_mask.to(device_))));
    }
    auto texts = torch::cat(parts);
    if (out_) {
      std::string index;
      for (size_t i = 0; i < texts_.size(); ++i) index += json{{"text", texts_[i]}, {"row", i}}.dump() + "\n";
      const std::string npy = out_->dir + "/texts.npy", jsonl = out_->dir + "/texts.jsonl";
      write_files_atomic({{npy, npy_of(texts)}, {jsonl, index}});
      written_.push_back(npy);
    }
    return texts;
  }

  std::string chunk_path(const std::string& name, const std::string& ext, int64_t n) const {
    char number[16];
    std::snprintf(number, sizeof number, "%05lld", static_cast<long long>(n));
    return out_->dir + "/" + name + (out_->part.empty() ? "" : "." + out_->part) + "-" + number + "." + ext;
  }

  // The chunk's array and index, both or neither; then its images count as done.
  void write_chunk(RunLog& log) {
    const auto npy = chunk_path("embeddings", "npy", next_chunk_), index = chunk_path("index", "jsonl", next_chunk_);
    std::string lines;
    for (size_t i = 0; i < inputs_.size(); ++i)
      lines += json{{"input", inputs_[i].first}, {"key", inputs_[i].second}, {"row", i}}.dump() + "\n";
    try {
      write_files_atomic({{npy, npy_of(torch::stack(features_))}, {index, lines}});
    } catch (const OutputError& e) {
      if (e.location_unusable()) throw;
      for (const auto& in : inputs_) {
        InputItem item;
        item.path = in.first, item.key = in.second;
        log.record_error(item, std::string("writing outputs: ") + e.what());
      }
      inputs_.clear(), features_.clear();
      return;
    }
    for (size_t i = 0; i < inputs_.size(); ++i)
      log.record_done({{"input", inputs_[i].first}, {"key", inputs_[i].second}, {"chunk", npy}, {"row", i}});
    written_.push_back(npy);
    inputs_.clear(), features_.clear();
    ++next_chunk_;
  }

  // The one file of a small job.
  void write_file() {
    torch::Tensor images = features_.empty() ? torch::Tensor() : torch::stack(features_);
    std::vector<std::string> paths;
    for (const auto& in : inputs_) paths.push_back(in.first);
    if (extension_of(o_.output) == ".json") {
      json j = {{"normalized", o_.normalize}};
      if (images.defined()) j["images"] = paths, j["image_embeds"] = rows(images);
      if (text_embeds_.defined()) j["texts"] = texts_, j["text_embeds"] = rows(text_embeds_);
      write_file_atomic(o_.output, j.dump() + "\n");
      written_.push_back(o_.output);
    } else {
      // One array per .npy file: with both kinds, NAME.npy becomes NAME.image.npy and NAME.text.npy,
      // which belong together: both are written before either replaces an older one.
      const bool both = images.defined() && text_embeds_.defined();
      const std::string stem = o_.output.substr(0, o_.output.size() - 4);
      std::vector<std::pair<std::string, std::string>> files;
      if (images.defined()) files.emplace_back(both ? stem + ".image.npy" : o_.output, npy_of(images));
      if (text_embeds_.defined()) files.emplace_back(both ? stem + ".text.npy" : o_.output, npy_of(text_embeds_));
      write_files_atomic(files);
      for (const auto& file : files) written_.push_back(file.first);
    }
    if (images.defined()) image_shape_ = images.sizes().vec();
  }

  const EmbedOptions& o_;
  const std::vector<std::string>& texts_;
  const OutputDir* out_;
  groupvit::GroupViTModel model_{nullptr};
  torch::Device device_ = torch::kCPU;
  torch::Dtype dtype_ = torch::kFloat;
  groupvit::ImagePreprocessConfig prep_;
  std::string model_dir_;
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> inputs_;  // (path, key) of the rows in features_
  std::vector<torch::Tensor> features_;
  torch::Tensor text_embeds_;
  int64_t next_chunk_ = 0;
  json written_ = json::array();
  std::vector<int64_t> image_shape_;  // one file: [images, dim]
};

// One file: the files and shapes (and failures, if any); a directory: the engine's summary too.
void print_embed_summary(const Common& c, const BatchOutcome& result, bool one_file) {
  json summary = result.summary;
  const json embed = summary["embed"];
  if (one_file) {
    summary = embed;
    if (result.failed) summary["failed"] = result.failed;
  } else {
    summary.erase("embed");
    summary.update(embed);
  }
  if (c.json_output) {
    std::cout << summary.dump() << "\n";
    return;
  }
  for (const auto& p : embed["output"]) std::cout << "wrote " << p.get<std::string>() << "\n";
  if (embed.contains("image_embeds_shape"))
    std::cout << "  " << embed["image_embeds_shape"][0] << " image embeddings of " << embed["image_embeds_shape"][1]
              << "\n";
  if (embed.contains("text_embeds_shape"))
    std::cout << "  " << embed["text_embeds_shape"][0] << " text embeddings of " << embed["text_embeds_shape"][1]
              << "\n";
}

}  // namespace

void add_embed_options(CLI::App* cmd, EmbedOptions& o) {
  add_input_option(cmd, o);
  add_deprecated_alias(cmd, "--image", "-i/--input", o.inputs);
  cmd->add_option("--text", o.texts, "texts; @FILE: the file's lines, one text a line");
  cmd->add_option("-o,--output", o.output,
                  "FILE.json, FILE.npy (with both images and texts: FILE.image.npy and FILE.text.npy), or a "
                  "directory: embeddings-NNNNN.npy + index-NNNNN.jsonl every --chunk-size images, texts.npy + "
                  "texts.jsonl, results.jsonl, errors.jsonl (resumable, shardable)")
      ->required();
  cmd->add_flag("--normalize", o.normalize, "L2-normalise the features");
  cmd->add_option("--chunk-size", o.chunk_size, "--output DIR: images per embeddings file")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}))
      ->capture_default_str();
  add_batch_run_options(cmd, o);
}

int run_embed(const Common& c, const EmbedOptions& given) {
  EmbedOptions o = given;
  const auto texts = read_texts(o.texts);
  const std::string ext = extension_of(o.output);
  const bool one_file = ext == ".json" || ext == ".npy";
  struct stat st {};
  const bool is_dir = ::stat(o.output.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  if (!one_file && !ext.empty() && !is_dir)  // x.txt is more likely a typo than a directory name
    throw UsageError("--output must be FILE.json, FILE.npy or a directory (got '" + o.output + "')");
  if (o.inputs.empty() && texts.empty()) throw UsageError("give at least one image (-i/--input) or --text");
  if (o.chunk_size < 1) throw UsageError("--chunk-size must be at least 1");
  if (one_file && (o.resume || !o.shard.empty() || o.shard_count))
    throw UsageError("--resume and shards need --output DIR (a directory, not " + o.output + ")");
  check_model_dir(c.model_dir);
  auto settings = batch_settings(o, "groupvit embed", /*sharded=*/!one_file);
  settings.verb = "embedded";
  settings.ordered = true;
  settings.writers = 0;                                     // the rows of a chunk are kept in listing order
  if (one_file) settings.output.clear();                    // a small job: no results files
  if (one_file || o.inputs.empty()) settings.quiet = true;  // no progress bar for a few images or texts only
  o.shard_index = settings.shard.index;
  std::unique_ptr<EmbedJob> job;
  const auto result = run_batch(settings, [&](const OutputDir* out) -> BatchJob& {
    job = std::make_unique<EmbedJob>(c, o, texts, out);
    return *job;
  });
  if (result.exit_code == kExitOutputUnusable) return result.exit_code;
  print_embed_summary(c, result, one_file);
  return result.exit_code;
}

}  // namespace groupvit_cli
