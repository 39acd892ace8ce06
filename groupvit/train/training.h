// Training GroupViT from captions, as the paper does: the image-caption contrastive loss plus
// the multi-label contrastive loss over phrases taken from each caption (NVlabs'
// MultiLabelContrastive), hard Gumbel-softmax assignment (the vision tower in train mode),
// AdamW with linear warm-up and cosine decay, and gradient clipping. The trainer works on
// tensors; reading captions and decoding images is the caller's job (apps/cmd_train.cpp).
#pragma once

#include <torch/optim/adamw.h>

#include <cstdint>
#include <memory>
#include <string>

#include "groupvit/model/model.h"

namespace groupvit {

struct TrainOptions {
  int64_t steps = 1000;
  int64_t batch_size = 64;
  double lr = 1e-3;            // peak learning rate, reached after the warm-up
  double min_lr = 1e-5;        // where the cosine decay ends
  int64_t warmup_steps = 100;  // linear from 0
  double weight_decay = 0.05;  // AdamW; not applied to biases, norms, embeddings, group tokens
  double beta1 = 0.9;
  double beta2 = 0.98;
  double eps = 1e-8;
  double grad_clip = 5.0;         // max global L2 norm; 0 disables clipping
  int64_t phrases_per_image = 3;  // K texts per image for the multi-label loss; 0 disables it
  double multi_label_weight = 1.0;
  uint64_t seed = 0;

  // Throws std::invalid_argument naming the option when a value cannot work.
  void validate() const;
  std::string to_json_string() const;
  static TrainOptions from_json_string(const std::string& text);
};

// Learning rate at `step` (0-based): linear warm-up to options.lr, then cosine decay to min_lr
// at options.steps.
double learning_rate_at(const TrainOptions& options, int64_t step);

// Contrastive loss between each image and its K phrases (NVlabs, one process): image_embeds
// [B, C] and phrase_embeds [B, K, C], both normalised here; `scale` is the multiplier applied
// to the cosine similarities (already exp'd and clamped). Each image's target is spread
// evenly over its own K phrases; each phrase's target is its image.
torch::Tensor multi_label_contrastive_loss(const torch::Tensor& image_embeds, const torch::Tensor& phrase_embeds,
                                           const torch::Tensor& scale);

// One training batch. Texts are tokenized and padded to a common length; each image's caption
// is followed by its K phrases, so every text goes through the text tower (and the projection's
// BatchNorm) in one batch, as NVlabs encodes them.
struct TrainBatch {
  torch::Tensor pixel_values;    // [B, 3, H, W]
  torch::Tensor input_ids;       // [B * (1 + K), L]: image b's caption at b*(1+K), then its phrases
  torch::Tensor attention_mask;  // [B * (1 + K), L]
};

struct StepResult {
  double loss = 0;
  double contrastive_loss = 0;
  double multi_label_loss = 0;
  double lr = 0;
  double grad_norm = 0;  // before clipping
  double logit_scale = 0;
};

// Losses of one batch for a model in train mode: total, image-caption part, multi-label part.
// Exposed for the gradient-parity test; the trainer's step calls it.
struct TrainLosses {
  torch::Tensor total, contrastive, multi_label;
};
TrainLosses training_losses(GroupViTModelImpl& model, const torch::Tensor& multi_label_logit_scale,
                            const TrainBatch& batch, int64_t phrases_per_image, double multi_label_weight);

class Trainer {
 public:
  // Puts the model in train mode and builds the optimizer over its parameters and the
  // multi-label logit scale (NVlabs keeps that one separate from the model's).
  Trainer(GroupViTModel model, TrainOptions options);

  // One optimisation step at the current step's learning rate; advances step().
  StepResult step(const TrainBatch& batch);

  int64_t step_count() const { return step_; }
  const TrainOptions& options() const { return options_; }
  GroupViTModel model() const { return model_; }
  const torch::Tensor& multi_label_logit_scale() const { return multi_label_logit_scale_; }

  // Everything needed to continue exactly: weights, optimizer moments, step, the options and the
  // random generator state (Gumbel noise). Written atomically and recorded in the directory's
  // checksums.sha256 (groupvit/formats/checksums.h).
  void save_checkpoint(const std::string& path) const;
  // Throws ChecksumError when the file does not match its recorded SHA-256 (or none is recorded),
  // std::runtime_error naming the file when it is unreadable or its options differ from this
  // trainer's (other than `steps`, which may be extended).
  void load_checkpoint(const std::string& path);

 private:
  GroupViTModel model_;
  TrainOptions options_;
  torch::Tensor multi_label_logit_scale_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  int64_t step_ = 0;
};

// Fresh weights for training from scratch, drawn from the default generator: matrices and
// embeddings N(0, 0.02), biases 0, norm scales 1 (Hugging Face's scheme), and group tokens and
// patch position embeddings N(0, 0.02) clipped at 2 sigma as NVlabs draws them: the reference
// leaves those at zero, which makes every group token identical and grouping impossible.
void initialize_for_training(GroupViTModelImpl& model);

// Parameters that AdamW does not decay: biases, norm weights and other 1-D tensors,
// embeddings (token, position, patch-position) and the learned group tokens.
bool excluded_from_weight_decay(const std::string& name, const torch::Tensor& parameter);

}  // namespace groupvit
