#include "groupvit/train/training.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/serialize.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "groupvit/formats/atomic_file.h"
#include "groupvit/formats/checksums.h"

namespace groupvit {

namespace {

using json = nlohmann::json;

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// NVlabs clamps the learned temperature of both losses here.
constexpr double kMaxLogitScale = 100.0;

}  // namespace

void TrainOptions::validate() const {
  auto fail = [](const std::string& what) { throw std::invalid_argument("training option " + what); };
  if (steps < 1) fail("steps must be at least 1");
  if (batch_size < 2) fail("batch size must be at least 2 (the contrastive loss needs negatives)");
  if (!(lr > 0) || !std::isfinite(lr)) fail("lr must be a positive number");
  if (!(min_lr >= 0) || min_lr > lr) fail("min lr must be in [0, lr]");
  if (warmup_steps < 0) fail("warm-up steps must not be negative");
  if (!(weight_decay >= 0)) fail("weight decay must not be negative");
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) fail("betas must be in [0, 1)");
  if (!(eps > 0)) fail("eps must be positive");
  if (!(grad_clip >= 0)) fail("gradient clip must not be negative (0 disables it)");
  if (phrases_per_image < 0) fail("phrases per image must not be negative");
  if (!(multi_label_weight >= 0)) fail("multi-label loss weight must not be negative");
}

std::string TrainOptions::to_json_string() const {
  return json{{"steps", steps},
              {"batch_size", batch_size},
              {"lr", lr},
              {"min_lr", min_lr},
              {"warmup_steps", warmup_steps},
              {"weight_decay", weight_decay},
              {"beta1", beta1},
              {"beta2", beta2},
              {"eps", eps},
              {"grad_clip", grad_clip},
              {"phrases_per_image", phrases_per_image},
              {"multi_label_weight", multi_label_weight},
              {"seed", seed}}
      .dump();
}

TrainOptions TrainOptions::from_json_string(const std::string& text) {
  const auto j = json::parse(text);
  TrainOptions o;
  o.steps = j.at("steps").get<int64_t>();
  o.batch_size = j.at("batch_size").get<int64_t>();
  o.lr = j.at("lr").get<double>();
  o.min_lr = j.at("min_lr").get<double>();
  o.warmup_steps = j.at("warmup_steps").get<int64_t>();
  o.weight_decay = j.at("weight_decay").get<double>();
  o.beta1 = j.at("beta1").get<double>();
  o.beta2 = j.at("beta2").get<double>();
  o.eps = j.at("eps").get<double>();
  o.grad_clip = j.at("grad_clip").get<double>();
  o.phrases_per_image = j.at("phrases_per_image").get<int64_t>();
  o.multi_label_weight = j.at("multi_label_weight").get<double>();
  o.seed = j.at("seed").get<uint64_t>();
  return o;
}

double learning_rate_at(const TrainOptions& o, int64_t step) {
  if (step < o.warmup_steps) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps + 1);
  const double span = static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) / span);
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + std::cos(M_PI * progress));
}

torch::Tensor multi_label_contrastive_loss(const torch::Tensor& image_embeds, const torch::Tensor& phrase_embeds,
                                           const torch::Tensor& scale) {
  TORCH_CHECK(image_embeds.dim() == 2 && phrase_embeds.dim() == 3 && phrase_embeds.size(0) == image_embeds.size(0),
              "multi-label loss: expected image embeds [B, C] and phrase embeds [B, K, C], got ", image_embeds.sizes(),
              " and ", phrase_embeds.sizes());
  namespace F = torch::nn::functional;
  const auto batch = phrase_embeds.size(0);
  const auto k = phrase_embeds.size(1);
  auto images = l2_normalize(image_embeds);
  auto phrases = l2_normalize(phrase_embeds).reshape({batch * k, -1});
  auto logits_per_image = torch::matmul(images, phrases.t()) * scale;   // [B, B*K]
  auto logits_per_phrase = torch::matmul(phrases, images.t()) * scale;  // [B*K, B]
  // Image b's target: 1/K on columns b*K .. b*K+K-1.
  auto owner = torch::arange(batch * k, image_embeds.options().dtype(torch::kLong)).div(k, "floor");
  auto image_targets =
      (owner.unsqueeze(0) == torch::arange(batch, owner.options()).unsqueeze(1)).to(logits_per_image.dtype()) /
      static_cast<double>(k);
  auto image_loss = (-image_targets * torch::log_softmax(logits_per_image, -1)).sum(-1).mean();
  auto phrase_loss = F::cross_entropy(logits_per_phrase, owner);
  return 0.5 * (image_loss + phrase_loss);
}

TrainLosses training_losses(GroupViTModelImpl& model, const torch::Tensor& multi_label_logit_scale,
                            const TrainBatch& batch, int64_t phrases_per_image, double multi_label_weight) {
  const auto images = batch.pixel_values.size(0);
  const auto per_image = 1 + phrases_per_image;
  TORCH_CHECK(batch.input_ids.size(0) == images * per_image, "training batch: ", images, " images need ",
              images * per_image, " texts (caption + ", phrases_per_image, " phrases each), got ",
              batch.input_ids.size(0));
  auto image_features = model.get_image_features(batch.pixel_values);
  auto text_features = model.get_text_features(batch.input_ids, batch.attention_mask)
                           .reshape({images, per_image, -1});  // caption, then phrases
  auto image_embeds = l2_normalize(image_features);
  auto caption_embeds = l2_normalize(text_features.select(1, 0));
  auto scale = model.logit_scale.exp().clamp_max(kMaxLogitScale);
  TrainLosses out;
  out.contrastive = image_text_contrastive_loss(torch::matmul(caption_embeds, image_embeds.t()) * scale);
  out.total = out.contrastive;
  if (phrases_per_image > 0) {
    out.multi_label = multi_label_contrastive_loss(image_features, text_features.slice(1, 1),
                                                   multi_label_logit_scale.exp().clamp_max(kMaxLogitScale));
    out.total = out.total + multi_label_weight * out.multi_label;
  } else {
    out.multi_label = torch::zeros({}, out.total.options());
  }
  return out;
}

void initialize_for_training(GroupViTModelImpl& model) {
  torch::NoGradGuard no_grad;
  constexpr double kStd = 0.02;
  for (auto& item : model.named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    if (name == "logit_scale") continue;
    if (contains(name, "group_token") || contains(name, "position_embeddings")) {
      p.normal_(0.0, kStd).clamp_(-2 * kStd, 2 * kStd);
    } else if (p.dim() >= 2) {
      p.normal_(0.0, kStd);
    } else if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      p.zero_();
    } else {
      p.fill_(1.0);  // LayerNorm / BatchNorm scales
    }
  }
}

bool excluded_from_weight_decay(const std::string& name, const torch::Tensor& parameter) {
  return parameter.dim() <= 1 || contains(name, "embedding") || contains(name, "group_token");
}

Trainer::Trainer(GroupViTModel model, TrainOptions options) : model_(std::move(model)), options_(options) {
  options_.validate();
  model_->train();
  const auto& device = model_->logit_scale.device();
  multi_label_logit_scale_ =
      torch::full({}, std::log(1.0 / 0.07), torch::TensorOptions().dtype(torch::kFloat).device(device))
          .set_requires_grad(true);
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& item : model_->named_parameters()) {
    (excluded_from_weight_decay(item.key(), item.value()) ? no_decay : decay).push_back(item.value());
  }
  no_decay.push_back(multi_label_logit_scale_);
  auto base = torch::optim::AdamWOptions(options_.lr)
                  .betas({options_.beta1, options_.beta2})
                  .eps(options_.eps)
                  .weight_decay(options_.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(base));
  auto no_decay_options = std::make_unique<torch::optim::AdamWOptions>(base);
  no_decay_options->weight_decay(0.0);
  groups.emplace_back(no_decay, std::move(no_decay_options));
  optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups), base);
}

StepResult Trainer::step(const TrainBatch& batch) {
  StepResult r;
  r.lr = learning_rate_at(options_, step_);
  for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(r.lr);
  optimizer_->zero_grad();
  auto losses = training_losses(*model_, multi_label_logit_scale_, batch, options_.phrases_per_image,
                                options_.multi_label_weight);
  losses.total.backward();
  std::vector<torch::Tensor> params;
  for (const auto& group : optimizer_->param_groups())
    for (const auto& p : group.params()) params.push_back(p);
  // Norm before clipping, for the log; max_norm = inf only measures.
  const double max_norm = options_.grad_clip > 0 ? options_.grad_clip : std::numeric_limits<double>::infinity();
  r.grad_norm = torch::nn::utils::clip_grad_norm_(params, max_norm);
  optimizer_->step();
  ++step_;
  r.loss = losses.total.item<double>();
  r.contrastive_loss = losses.contrastive.item<double>();
  r.multi_label_loss = losses.multi_label.item<double>();
  r.logit_scale = model_->logit_scale.exp().item<double>();
  return r;
}

void Trainer::save_checkpoint(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  model_->save(archive);
  torch::serialize::OutputArchive opt;
  optimizer_->save(opt);
  archive.write("optimizer", opt);
  archive.write("multi_label_logit_scale", multi_label_logit_scale_.detach());
  archive.write("step", torch::tensor(step_, torch::kLong));
  const auto options_text = options_.to_json_string();
  archive.write("options", torch::from_blob(const_cast<char*>(options_text.data()),
                                            {static_cast<int64_t>(options_text.size())}, torch::kUInt8)
                               .clone());
  // The Gumbel noise comes from the default generator of the model's device.
  auto generator = at::globalContext().defaultGenerator(model_->logit_scale.device());
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write("generator_state", generator.get_state());
  }
  // Streamed into an AtomicFile: two trainers saving into one directory never share a temporary,
  // and the checkpoint's SHA-256 goes into the directory's checksums.sha256 (verified on resume).
  std::vector<AtomicFile> files;
  files.emplace_back(path);
  auto& file = files.back();
  archive.save_to([&file](const void* data, size_t size) {
    file.write(data, size);
    return size;
  });
  commit_with_checksums(files);
}

void Trainer::load_checkpoint(const std::string& path) {
  // The archive's own checks miss damaged tensor data (it loads and trains on garbage).
  verify_checksum(parent_directory(path), file_name(path), /*required=*/true);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, model_->logit_scale.device());
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot read checkpoint " + path + ": " + e.what_without_backtrace());
  }
  torch::Tensor options_bytes;
  archive.read("options", options_bytes);
  options_bytes = options_bytes.to(torch::kCPU).contiguous();
  auto saved = TrainOptions::from_json_string(std::string(
      reinterpret_cast<const char*>(options_bytes.data_ptr<uint8_t>()), static_cast<size_t>(options_bytes.numel())));
  saved.steps = options_.steps;
  if (saved.to_json_string() != options_.to_json_string())
    throw std::runtime_error("checkpoint " + path + " was trained with other options: " + saved.to_json_string() +
                             "; now: " + options_.to_json_string() + " (only the number of steps may change)");
  torch::NoGradGuard no_grad;
  model_->load(archive);
  model_->train();
  torch::serialize::InputArchive opt;
  archive.read("optimizer", opt);
  optimizer_->load(opt);
  torch::Tensor scale, step, state;
  archive.read("multi_label_logit_scale", scale);
  multi_label_logit_scale_.copy_(scale);
  archive.read("step", step);
  step_ = step.item<int64_t>();
  archive.read("generator_state", state);
  auto generator = at::globalContext().defaultGenerator(model_->logit_scale.device());
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state.to(torch::kCPU));
}

}  // namespace groupvit
