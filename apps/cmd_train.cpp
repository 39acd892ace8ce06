// groupvit train: learning GroupViT from captioned images (a JSONL file of image, caption and
// phrases) with the library's Trainer. Batches are built on worker threads in step order, from
// a seeded shuffle per epoch, so a run is reproducible and --resume continues it exactly.
// Writes a model directory that every other command loads like a converted one.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "batch/source.h"
#include "batch/webdataset.h"
#include "cli_common.h"
#include "groupvit/formats/atomic_file.h"
#include "groupvit/formats/checksums.h"
#include "groupvit/formats/directory_lock.h"
#include "groupvit/image/image_io.h"
#include "groupvit/model/weights.h"
#include "groupvit/preprocess/image_preprocess.h"
#include "groupvit/preprocess/tokenizer_torch.h"
#include "groupvit/runtime/allocator.h"
#include "groupvit/text/prompt_templates.h"
#include "groupvit/train/training.h"
#include "outputs.h"
#include "progress.h"

namespace groupvit_cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kCheckpointFile = "checkpoint.pt";
constexpr const char* kLogFile = "train_log.jsonl";
constexpr const char* kRunFile = "train_run.json";
constexpr const char* kPreprocessorFile = "preprocessor_config.json";
const char* const kTokenizerFiles[] = {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                                       "special_tokens_map.json"};

struct Sample {
  std::string image;  // resolved path (a shard member: SHARD#KEY.EXT)
  std::string data;   // a shard member's encoded image (empty: read `image`)
  std::string caption;
  std::vector<std::string> phrases;
};

std::vector<Sample> read_captions(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("cannot open training data " + path);
  const fs::path base = fs::path(path).parent_path();
  std::vector<Sample> samples;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (trim(line).empty()) continue;
    const std::string where = path + ":" + std::to_string(number);
    Sample s;
    try {
      const auto j = json::parse(line);
      const auto image = j.at("image").get<std::string>();
      s.image = fs::path(image).is_absolute() ? image : (base / image).string();
      s.caption = j.at("caption").get<std::string>();
      if (j.contains("phrases")) s.phrases = j.at("phrases").get<std::vector<std::string>>();
    } catch (const json::exception& e) {
      throw UsageError(where + ": expected {\"image\": path, \"caption\": text, \"phrases\": [texts]}: " + e.what());
    }
    if (s.caption.empty()) throw UsageError(where + ": empty caption");
    if (!file_exists(s.image)) throw UsageError(where + ": image " + s.image + " does not exist");
    samples.push_back(std::move(s));
  }
  if (samples.empty()) throw UsageError(path + ": no training samples");
  return samples;
}

// WebDataset shards, as the NVlabs configs list them (gcc-train-{000000..000331}.tar): a sample's
// image member (jpg, png, ...), its caption from "txt" and, when present, phrases from "json"
// ({"phrases": [...]}). The encoded images are kept in memory; a damaged shard or a sample without
// image or caption is skipped with a warning.
std::vector<Sample> read_webdataset(const std::string& pattern) {
  std::vector<std::string> shards;
  try {
    shards = expand_braces(pattern);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--data ") + e.what());
  }
  std::vector<Sample> samples;
  for (const auto& shard : shards) {
    if (!file_exists(shard)) throw UsageError("--data: shard " + shard + " does not exist");
    const auto warn = [&](const std::string& where, const std::string& message) {
      std::cerr << "groupvit: warning: " << shard << (where.empty() ? "" : "#" + where) << ": " << message
                << " (skipped)\n";
    };
    for_each_sample(
        shard, false,
        [&](WebDatasetSample& w) {
          Sample s;
          for (const char* ext : {"jpg", "jpeg", "png", "webp", "bmp"})
            if (w.members.count(ext) && s.data.empty()) {
              s.image = shard + "#" + w.key + "." + ext;
              s.data = std::move(w.members[ext]);
            }
          if (w.members.count("txt")) s.caption = trim(w.members["txt"]);
          if (w.members.count("json")) {
            try {
              const auto j = json::parse(w.members["json"]);
              if (j.is_object() && j.contains("phrases")) s.phrases = j.at("phrases").get<std::vector<std::string>>();
            } catch (const json::exception& e) {
              warn(w.key + ".json", std::string("not {\"phrases\": [texts]}: ") + e.what());
            }
          }
          if (s.data.empty() || s.caption.empty())
            warn(w.key, s.data.empty() ? "no image member" : "no caption (.txt)");
          else
            samples.push_back(std::move(s));
          return true;
        },
        warn);
  }
  if (samples.empty()) throw UsageError(pattern + ": no training samples");
  return samples;
}

// A 64-bit mix of the seed and the position in the run: every random choice of a batch depends
// only on (seed, step, index), never on thread timing or on where a run was resumed.
uint64_t mix(uint64_t a, uint64_t b, uint64_t c = 0) {
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
               (c + 0x94D049BB133111EBull) * 0x2545F4914F6CDD1Dull;
  x ^= x >> 31;
  x *= 0xD6E8FEB86659FD93ull;
  return x ^ (x >> 32);
}

// Builds the batches of steps [first, last) on worker threads, at most `ahead` ahead of the
// consumer, and hands them out in step order.
class BatchLoader {
 public:
  BatchLoader(std::function<groupvit::TrainBatch(int64_t)> make, int64_t first, int64_t last, size_t workers,
              int64_t ahead)
      : make_(std::move(make)), next_(first), consumed_(first), last_(last), ahead_(ahead) {
    for (size_t w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
  }
  ~BatchLoader() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    for (auto& t : threads_) t.join();
  }
  groupvit::TrainBatch get(int64_t step) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return ready_.count(step) || errors_.count(step); });
    if (errors_.count(step)) throw std::runtime_error(errors_[step]);
    auto batch = std::move(ready_[step]);
    ready_.erase(step);
    consumed_ = step + 1;
    changed_.notify_all();
    return batch;
  }

 private:
  void work() {
    for (;;) {
      int64_t step;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stop_ || (next_ < last_ && next_ < consumed_ + ahead_); });
        if (stop_) return;
        step = next_++;
      }
      groupvit::TrainBatch batch;
      std::string error;
      try {
        batch = make_(step);
      } catch (const std::exception& e) {
        error = e.what();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (error.empty())
        ready_[step] = std::move(batch);
      else
        errors_[step] = error;
      changed_.notify_all();
    }
  }
  std::function<groupvit::TrainBatch(int64_t)> make_;
  int64_t next_, consumed_, last_, ahead_;
  bool stop_ = false;
  std::map<int64_t, groupvit::TrainBatch> ready_;
  std::map<int64_t, std::string> errors_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::thread> threads_;
};

// The order of samples in each epoch: a seeded shuffle, cached for the epochs in use.
class EpochOrder {
 public:
  EpochOrder(size_t size, uint64_t seed) : size_(size), seed_(seed) {}
  size_t at(int64_t position) {
    const int64_t epoch = position / static_cast<int64_t>(size_);
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = orders_.find(epoch);
    if (it == orders_.end()) {
      std::vector<size_t> order(size_);
      for (size_t i = 0; i < size_; ++i) order[i] = i;
      std::mt19937_64 rng(mix(seed_, static_cast<uint64_t>(epoch), 1));
      std::shuffle(order.begin(), order.end(), rng);
      while (orders_.size() >= 3) orders_.erase(orders_.begin());  // batches span at most two epochs
      it = orders_.emplace(epoch, std::move(order)).first;
    }
    return it->second[static_cast<size_t>(position % static_cast<int64_t>(size_))];
  }

 private:
  size_t size_;
  uint64_t seed_;
  std::map<int64_t, std::vector<size_t>> orders_;
  std::mutex mutex_;
};

groupvit::ImagePreprocessConfig training_preprocessor(const groupvit::GroupViTConfig& config) {
  auto p = groupvit::ImagePreprocessConfig::clip_default();
  const auto& vc = config.vision_config;
  p.shortest_edge = std::min(vc.image_height, vc.image_width);
  p.crop_height = vc.image_height;
  p.crop_width = vc.image_width;
  return p;
}

std::string preprocessor_json(const groupvit::ImagePreprocessConfig& p) {
  return json{{"image_processor_type", "CLIPImageProcessor"},
              {"do_resize", p.do_resize},
              {"size", {{"shortest_edge", p.shortest_edge}}},
              {"resample", static_cast<int>(p.resample)},
              {"do_center_crop", p.do_center_crop},
              {"crop_size", {{"height", p.crop_height}, {"width", p.crop_width}}},
              {"do_rescale", p.do_rescale},
              {"rescale_factor", p.rescale_factor},
              {"do_normalize", p.do_normalize},
              {"image_mean", p.image_mean},
              {"image_std", p.image_std},
              {"do_convert_rgb", p.do_convert_rgb}}
      .dump(2);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void check_train_options(const TrainCliOptions& o) {
  o.train.validate();
  if (o.config.empty() && o.init.empty()) throw UsageError("give --config (from scratch) or --init (fine-tune)");
  if (!o.config.empty() && o.tokenizer.empty()) throw UsageError("--config needs --tokenizer");
  if (o.save_every < 0 || o.stop_after < 0 || o.log_every < 1 || o.workers < 1)
    throw UsageError("--save-every/--stop-after must be >= 0, --log-every/--workers >= 1");
}

// What a run trains: the model of --init (its weights, tokenizer and preprocessing) or a new one
// of --config (with --tokenizer's files and CLIP's preprocessing at the config's image size).
struct TrainModel {
  TrainModel(const TrainCliOptions& o, torch::Device device);

  std::string tokenizer_dir;
  groupvit::ClipTokenizer tokenizer;
  groupvit::GroupViTModel model{nullptr};
  groupvit::ImagePreprocessConfig prep;
};

TrainModel::TrainModel(const TrainCliOptions& o, torch::Device device)
    : tokenizer_dir(o.init.empty() ? o.tokenizer : o.init),
      tokenizer(groupvit::ClipTokenizer::from_directory(tokenizer_dir)) {
  torch::manual_seed(o.train.seed);
  if (!o.init.empty()) {
    check_model_dir(o.init);
    model = groupvit::load_model(o.init, {device, torch::kFloat});
    prep = groupvit::ImagePreprocessConfig::for_model_dir(o.init);
  } else {
    model = groupvit::GroupViTModel(groupvit::GroupViTConfig::from_file(o.config));
    groupvit::initialize_for_training(*model);
    model->to(device);
    prep = training_preprocessor(model->config());
  }
  groupvit::keep_freed_memory_for_reuse();  // every step allocates the same activations again
}

// The batch of a step: a pure function of (seed, step), whichever worker thread builds it.
class BatchMaker {
 public:
  BatchMaker(const TrainCliOptions& o, const TrainModel& m, const std::vector<Sample>& samples)
      : o_(o), m_(m), samples_(samples), order_(samples.size(), o.train.seed) {}

  groupvit::TrainBatch operator()(int64_t step) {
    std::vector<torch::Tensor> pixels;
    std::vector<std::string> texts;
    for (int64_t i = 0; i < o_.train.batch_size; ++i) {
      const auto& s = samples_[order_.at(step * o_.train.batch_size + i)];
      std::mt19937_64 rng(mix(o_.train.seed, static_cast<uint64_t>(step), static_cast<uint64_t>(i) + 2));
      pixels.push_back(image(s, rng));
      texts.push_back(s.caption);
      // K phrases: a seeded shuffle, repeated when the caption has fewer; the caption itself
      // stands in when it has none.
      std::vector<std::string> phrases = s.phrases.empty() ? std::vector<std::string>{s.caption} : s.phrases;
      std::shuffle(phrases.begin(), phrases.end(), rng);
      for (int64_t j = 0; j < o_.train.phrases_per_image; ++j)
        texts.push_back(groupvit::fill_template(o_.phrase_template, phrases[static_cast<size_t>(j) % phrases.size()]));
    }
    auto tokens = groupvit::tokenize_to_tensors(m_.tokenizer, texts, groupvit::Padding::Longest,
                                                m_.model->config().text_config.max_position_embeddings);
    return groupvit::TrainBatch{torch::stack(pixels), tokens.input_ids, tokens.attention_mask};
  }

 private:
  // A sample's pixel_values, flipped by the sample's first draw with --hflip.
  torch::Tensor image(const Sample& s, std::mt19937_64& rng) const {
    torch::Tensor image;
    try {
      const auto decoded =
          s.data.empty() ? groupvit::decode_image_file(s.image)
                         : groupvit::decode_image_bytes(reinterpret_cast<const uint8_t*>(s.data.data()), s.data.size());
      image = groupvit::preprocess(decoded, m_.prep);
    } catch (const std::exception& e) {
      throw std::runtime_error("training image " + s.image + ": " + e.what());
    }
    if (o_.hflip && (rng() & 1)) image = image.flip({2});
    return image;
  }

  const TrainCliOptions& o_;
  const TrainModel& m_;
  const std::vector<Sample>& samples_;
  EpochOrder order_;
};

// Writes checkpoint.pt and the model directory: the weights, and beside them the tokenizer and
// preprocessor files, recorded in its checksums.sha256 like the weights.
struct ModelDirSaver {
  const TrainCliOptions& o;
  const TrainModel& m;
  const groupvit::Trainer& trainer;
  const std::string& checkpoint;
  torch::Dtype dtype;

  void operator()() const {
    trainer.save_checkpoint(checkpoint);
    groupvit::save_model(*m.model, o.output, dtype);
    std::vector<groupvit::AtomicFile> files;
    for (const char* name : kTokenizerFiles) {
      const auto from = (fs::path(m.tokenizer_dir) / name).string();
      if (!file_exists(from)) continue;
      files.emplace_back((fs::path(o.output) / name).string());
      files.back().write(read_file(from));
    }
    files.emplace_back((fs::path(o.output) / kPreprocessorFile).string());
    files.back().write(preprocessor_json(m.prep));
    groupvit::commit_with_checksums(files);
  }
};

// train_run.json: what the run was asked for.
void write_run_file(const TrainCliOptions& o, size_t samples, torch::Device device) {
  json run = {{"data", o.data},
              {"samples", samples},
              {"from", o.init.empty() ? "config " + o.config : "model " + o.init},
              {"options", json::parse(o.train.to_json_string())},
              {"phrase_template", o.phrase_template},
              {"hflip", o.hflip},
              {"threads", torch::get_num_threads()},
              {"device", device.str()}};
  write_file_atomic((fs::path(o.output) / kRunFile).string(), run.dump(2) + "\n");
}

// train_log.jsonl afresh, keeping (with --resume) the lines of the steps already done, so that a
// resumed run's log reads as one run.
void restart_log(const std::string& log_path, bool resume, int64_t steps_done) {
  std::string kept;
  if (resume)
    for (const auto& line : read_complete_lines_and_trim(log_path)) {
      try {
        if (json::parse(line).at("step").get<int64_t>() <= steps_done) kept += line + "\n";
      } catch (const std::exception&) {
      }
    }
  write_file_atomic(log_path, kept);
}

// The mean losses over the steps since the last line of train_log.jsonl.
struct LossWindow {
  double loss = 0, contrastive = 0, multi_label = 0;
  int64_t steps = 0;

  void add(const groupvit::StepResult& r) {
    loss += r.loss;
    contrastive += r.contrastive_loss;
    multi_label += r.multi_label_loss;
    ++steps;
  }
  json line(int64_t step, const groupvit::StepResult& r, double images_per_s, double elapsed) const {
    return json{{"step", step},
                {"loss", loss / static_cast<double>(steps)},
                {"contrastive_loss", contrastive / static_cast<double>(steps)},
                {"multi_label_loss", multi_label / static_cast<double>(steps)},
                {"lr", r.lr},
                {"grad_norm", r.grad_norm},
                {"logit_scale", r.logit_scale},
                {"images_per_s", images_per_s},
                {"elapsed_s", elapsed}};
  }
};

struct StepsOutcome {
  groupvit::StepResult last;  // of the last step taken
  double seconds = 0;         // from the first step to the last save
  int stop_code = 0;          // 128 + the signal when one stopped the run (saved, to continue with --resume)
};

// Steps [first, last): a train_log.jsonl line every --log-every steps, the progress line, the
// model directory every --save-every steps and at the end; a stop signal saves and ends the run
// after its step.
StepsOutcome train_steps(const TrainCliOptions& o, groupvit::Trainer& trainer, BatchLoader& loader, LineAppender& log,
                         Progress& progress, const ModelDirSaver& save_all, const std::string& checkpoint,
                         int64_t first, int64_t last) {
  StepsOutcome out;
  auto& r = out.last;
  LossWindow window;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t step = first; step < last; ++step) {
    adapt_threads();
    r = trainer.step(loader.get(step));
    if (!std::isfinite(r.loss)) {
      throw std::runtime_error("the loss became " + std::to_string(r.loss) + " at step " + std::to_string(step + 1) +
                               " (try a lower --lr); the last checkpoint is " + checkpoint);
    }
    window.add(r);
    const int64_t done = step + 1;
    const double elapsed = seconds_since(start);
    const double images_per_s = static_cast<double>((done - first) * o.train.batch_size) / std::max(elapsed, 1e-9);
    if (done % o.log_every == 0 || done == last) {
      log.append(window.line(done, r, images_per_s, elapsed).dump());
      window = LossWindow();
    }
    char note[96];
    std::snprintf(note, sizeof note, "loss %.4f, %.1f images/s", r.loss, images_per_s);
    progress.set_note(note);
    progress.update(done, 0);
    if (o.save_every > 0 && done % o.save_every == 0 && done < last) save_all();
    if (stop_signal() != 0) {
      save_all();
      progress.finish(done, 0);
      std::cerr << "groupvit: stopped by signal after step " << done << "; continue with --resume\n";
      out.stop_code = 128 + stop_signal();
      return out;
    }
  }
  save_all();
  progress.finish(last, 0);
  out.seconds = seconds_since(start);
  return out;
}

}  // namespace

void add_train_options(CLI::App* cmd, TrainCliOptions& o) {
  cmd->add_option("--data", o.data,
                  "training data: a JSONL file of {\"image\": path, \"caption\": text, "
                  "\"phrases\": [texts]} lines (image paths relative to the file), or WebDataset shards "
                  "(e.g. 'gcc-train-{000000..000331}.tar': KEY.jpg + KEY.txt caption [+ KEY.json {\"phrases\"}])")
      ->required();
  cmd->add_option("-o,--output", o.output,
                  "model directory to write (weights, config, tokenizer, preprocessor, "
                  "checkpoint.pt, train_log.jsonl)")
      ->required();
  auto* config = cmd->add_option("--config", o.config, "train from scratch: a GroupViT config.json");
  auto* init = cmd->add_option("--init", o.init, "fine-tune: start from this model directory's weights");
  config->excludes(init);
  cmd->add_option("--tokenizer", o.tokenizer,
                  "with --config: directory with the tokenizer files (vocab.json + merges.txt or tokenizer.json)");
  cmd->add_option("--steps", o.train.steps, "optimisation steps")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000000}))
      ->capture_default_str();
  cmd->add_option("--batch-size", o.train.batch_size, "images per step")
      ->check(CLI::Range(int64_t{2}, int64_t{65536}))
      ->capture_default_str();
  cmd->add_option("--lr", o.train.lr, "peak learning rate (AdamW)")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--min-lr", o.train.min_lr, "learning rate at the end of the cosine decay")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--warmup-steps", o.train.warmup_steps, "linear warm-up steps")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000000}))
      ->capture_default_str();
  cmd->add_option("--weight-decay", o.train.weight_decay,
                  "AdamW weight decay (not on biases, norms, embeddings, "
                  "group tokens)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--grad-clip", o.train.grad_clip, "max gradient norm (0: no clipping)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--phrases", o.train.phrases_per_image,
                  "phrases per image for the multi-label loss (0: caption loss only)")
      ->check(CLI::Range(int64_t{0}, int64_t{64}))
      ->capture_default_str();
  cmd->add_option("--multi-label-weight", o.train.multi_label_weight, "weight of the multi-label loss")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--phrase-template", o.phrase_template, "how a phrase becomes a text ({} = the phrase)")
      ->capture_default_str();
  cmd->add_flag("--hflip", o.hflip, "flip half of the images horizontally (seeded)");
  cmd->add_option("--seed", o.train.seed, "seed of the initial weights, data order, phrase choice and Gumbel noise")
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "write checkpoint and model every N steps (0: only at the end)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000000}))
      ->capture_default_str();
  cmd->add_option("--stop-after", o.stop_after,
                  "stop (with a checkpoint) after this step, e.g. to fit a job's time limit; --resume continues")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000000}))
      ->capture_default_str();
  cmd->add_flag("--resume", o.resume, "continue from OUTPUT/checkpoint.pt with the same options");
  cmd->add_option("--save-dtype", o.save_dtype, "dtype of the written weights: fp32, fp16 or bf16")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--workers", o.workers, "data loading threads")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->add_option("--log-every", o.log_every, "steps between train_log.jsonl lines")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000000}))
      ->capture_default_str();
  add_progress_options(cmd, o.progress_interval, o.quiet);
}

int run_train(const Common& c, const TrainCliOptions& o) {
  check_train_options(o);
  const auto device = parse_device(c.device);
  apply_threads(c, device);
  const TrainModel m(o, device);
  const bool shards = is_webdataset_shard(o.data) || o.data.find('{') != std::string::npos;
  const auto samples = shards ? read_webdataset(o.data) : read_captions(o.data);
  if (o.train.warmup_steps > o.train.steps)
    std::cerr << "groupvit: warning: --warmup-steps " << o.train.warmup_steps << " is more than --steps "
              << o.train.steps << ": the learning rate never reaches --lr\n";
  if (o.stop_after > o.train.steps)
    std::cerr << "groupvit: warning: --stop-after " << o.stop_after << " is after the last step (" << o.train.steps
              << "): it has no effect\n";
  if (o.train.batch_size > static_cast<int64_t>(samples.size()))
    std::cerr << "groupvit: warning: --batch-size " << o.train.batch_size << " is larger than the " << samples.size()
              << " training samples: each batch repeats samples, and the contrastive loss sees the same pair as "
                 "its own negative\n";

  groupvit::Trainer trainer(m.model, o.train);
  // Held until the command exits: a second train (or a converter) into the same directory would
  // mix its checkpoints and weights with this run's.
  const groupvit::DirectoryLock lock(o.output, "groupvit train");
  const std::string checkpoint = (fs::path(o.output) / kCheckpointFile).string();
  if (o.resume) {
    if (!file_exists(checkpoint)) throw UsageError("--resume: no " + checkpoint);
    trainer.load_checkpoint(checkpoint);
  }
  // A fresh run starts the generator at the seed (after initialisation drew from it), so that
  // a run from --init and one from --config see the same noise sequence.
  if (!o.resume) torch::manual_seed(o.train.seed + 1);

  BatchMaker make_batch(o, m, samples);  // each step's batch is a pure function of (seed, step)
  const ModelDirSaver save_all{o, m, trainer, checkpoint, parse_dtype(o.save_dtype)};
  write_run_file(o, samples.size(), device);
  restart_log((fs::path(o.output) / kLogFile).string(), o.resume, trainer.step_count());
  LineAppender log((fs::path(o.output) / kLogFile).string());

  const int64_t first = trainer.step_count();
  const int64_t last = o.stop_after > 0 ? std::min(o.stop_after, o.train.steps) : o.train.steps;
  install_stop_handlers();
  Progress progress(o.train.steps, o.progress_interval, !o.quiet, "steps");
  BatchLoader loader([&make_batch](int64_t step) { return make_batch(step); }, first, last,
                     static_cast<size_t>(o.workers), 2 * o.workers + 2);
  const auto outcome = train_steps(o, trainer, loader, log, progress, save_all, checkpoint, first, last);
  if (outcome.stop_code) return outcome.stop_code;

  json summary = {{"output", o.output},
                  {"steps", last},
                  {"loss", outcome.last.loss},
                  {"seconds", outcome.seconds},
                  {"finished", last == o.train.steps}};
  if (c.json_output)
    std::cout << summary.dump() << "\n";
  else
    std::cout << "groupvit: trained to step " << last << " of " << o.train.steps << " in "
              << format_duration(outcome.seconds) << ", last loss " << outcome.last.loss << "; model in " << o.output
              << "\n";
  return 0;
}

}  // namespace groupvit_cli
