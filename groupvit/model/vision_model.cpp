// The vision tower and its grouping blocks (see vision_model.h).
#include "groupvit/model/vision_model.h"

#include <torch/torch.h>

#include <limits>
#include <stdexcept>

namespace groupvit {

namespace F = torch::nn::functional;

torch::Tensor hard_softmax(const torch::Tensor& logits, int64_t dim) {
  auto y_soft = logits.softmax(dim);
  auto index = std::get<1>(y_soft.max(dim, /*keepdim=*/true));
  auto y_hard = torch::zeros_like(logits).scatter_(dim, index, 1.0);
  return y_hard - y_soft.detach() + y_soft;
}

torch::Tensor gumbel_softmax_hard(const torch::Tensor& logits, int64_t dim) {
  // Gumbel(0, 1) noise as torch.distributions.Gumbel samples it: -log(-log(u)) with u
  // uniform in [tiny, 1 - eps), which keeps both logarithms finite.
  double tiny = std::numeric_limits<float>::min(), eps = std::numeric_limits<float>::epsilon();
  if (logits.scalar_type() == torch::kHalf) tiny = 6.103515625e-05, eps = 0.0009765625;
  if (logits.scalar_type() == torch::kBFloat16) eps = 0.0078125;  // bf16 shares float's tiny
  if (logits.scalar_type() == torch::kDouble)
    tiny = std::numeric_limits<double>::min(), eps = std::numeric_limits<double>::epsilon();
  auto u = torch::empty_like(logits).uniform_(tiny, 1.0 - eps);
  auto gumbels = logits - torch::log(-torch::log(u));
  return hard_softmax(gumbels, dim);
}

GroupViTPatchEmbeddingsImpl::GroupViTPatchEmbeddingsImpl(int64_t num_channels, int64_t embed_dim, int64_t patch_size) {
  projection = register_module(
      "projection",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(num_channels, embed_dim, patch_size).stride(patch_size)));
}

torch::Tensor GroupViTPatchEmbeddingsImpl::forward(const torch::Tensor& pixel_values) {
  return projection(pixel_values).flatten(2).transpose(1, 2);
}

GroupViTVisionEmbeddingsImpl::GroupViTVisionEmbeddingsImpl(const GroupViTVisionConfig& c) : config_(c) {
  patch_embeddings =
      register_module("patch_embeddings", GroupViTPatchEmbeddings(c.num_channels, c.hidden_size, c.patch_size));
  position_embeddings = register_parameter("position_embeddings", torch::zeros({1, c.num_patches(), c.hidden_size}));
  layernorm = register_module("layernorm", make_layer_norm(c.hidden_size, c.layer_norm_eps));
}

torch::Tensor GroupViTVisionEmbeddingsImpl::interpolate_pos_encoding(int64_t grid_height, int64_t grid_width) {
  if (grid_height == config_.grid_height() && grid_width == config_.grid_width()) return position_embeddings;
  const auto dim = position_embeddings.size(-1);
  auto grid = position_embeddings.reshape({1, config_.grid_height(), config_.grid_width(), dim}).permute({0, 3, 1, 2});
  grid = F::interpolate(grid, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{grid_height, grid_width})
                                  .mode(torch::kBicubic)
                                  .align_corners(false));
  return grid.permute({0, 2, 3, 1}).reshape({1, -1, dim});
}

torch::Tensor GroupViTVisionEmbeddingsImpl::forward(const torch::Tensor& pixel_values) {
  if (!pixel_values.defined() || pixel_values.dim() != 4 || pixel_values.size(1) != config_.num_channels)
    throw std::invalid_argument("pixel_values must be a [batch, " + std::to_string(config_.num_channels) +
                                ", height, width] tensor");
  const auto height = pixel_values.size(2), width = pixel_values.size(3);
  const auto p = config_.patch_size;
  if (height < p || width < p || height % p != 0 || width % p != 0)
    throw std::invalid_argument("image size " + std::to_string(height) + "x" + std::to_string(width) +
                                " is not a positive multiple of the patch size " + std::to_string(p));
  auto x = layernorm(patch_embeddings(pixel_values));
  x = x + interpolate_pos_encoding(height / p, width / p);
  return F::dropout(x, F::DropoutFuncOptions().p(config_.dropout).training(is_training()));
}

GroupViTCrossAttentionLayerImpl::GroupViTCrossAttentionLayerImpl(const GroupViTVisionConfig& c) {
  attn = register_module("attn", GroupViTAttention(c.hidden_size, c.num_attention_heads, c.attention_dropout));
  norm2 = register_module("norm2", make_layer_norm(c.hidden_size, c.layer_norm_eps));
  mlp = register_module("mlp", GroupViTMLP(c.hidden_size, c.intermediate_size, c.hidden_size, c.hidden_act));
  norm_post = register_module("norm_post", make_layer_norm(c.hidden_size, c.layer_norm_eps));
}

torch::Tensor GroupViTCrossAttentionLayerImpl::forward(const torch::Tensor& query, const torch::Tensor& key) {
  auto x = query + attn(query, key);  // no pre-norm: the token-assign block normalised both inputs
  x = x + mlp(norm2(x));
  return norm_post(x);
}

GroupViTAssignAttentionImpl::GroupViTAssignAttentionImpl(const GroupViTVisionConfig& c)
    : scale_(1.0 / std::sqrt(static_cast<double>(c.hidden_size))), assign_eps_(c.assign_eps) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, c.hidden_size));
  k_proj = register_module("k_proj", Linear(c.hidden_size, c.hidden_size));
  v_proj = register_module("v_proj", Linear(c.hidden_size, c.hidden_size));
  proj = register_module("proj", Linear(c.hidden_size, c.hidden_size));
}

std::pair<torch::Tensor, torch::Tensor> GroupViTAssignAttentionImpl::forward(const torch::Tensor& query,
                                                                             const torch::Tensor& key) {
  auto q = linear(q_proj, query);
  auto k = linear(k_proj, key);
  auto v = linear(v_proj, key);
  // The hard assignment is an argmax over groups, and fp16/bf16 logits turn near-ties into flips
  // (docs/design-notes.md). So the logits, the assignment and its normalisation are float32 in
  // every dtype; the results return in the model's.
  const auto dtype = q.scalar_type();
  const bool reduced = dtype == torch::kHalf || dtype == torch::kBFloat16;
  const auto qf = reduced ? q.to(torch::kFloat) : q;
  const auto kf = reduced ? k.to(torch::kFloat) : k;
  // [B, groups, tokens]; normalised over the *group* axis: each image token picks one group.
  auto raw_attn = torch::matmul(qf, kf.transpose(-2, -1)) * scale_;
  auto attn = is_training() ? gumbel_softmax_hard(raw_attn, -2) : hard_softmax(raw_attn, -2);
  auto soft_attn = raw_attn.softmax(-2).to(dtype);
  attn = (attn / (attn.sum(-1, /*keepdim=*/true) + assign_eps_)).to(dtype);
  return {linear(proj, torch::matmul(attn, v)), soft_attn};
}

GroupViTTokenAssignImpl::GroupViTTokenAssignImpl(const GroupViTVisionConfig& c, int64_t num_group_token,
                                                 int64_t num_output_group) {
  const double d = static_cast<double>(c.hidden_size);
  // Python's int() truncation, as the reference sizes these MLPs.
  const auto tokens_dim = static_cast<int64_t>(c.assign_mlp_ratio[0] * d);
  const auto channels_dim = static_cast<int64_t>(c.assign_mlp_ratio[1] * d);
  norm_tokens = register_module("norm_tokens", make_layer_norm(c.hidden_size, c.layer_norm_eps));
  mlp_inter =
      register_module("mlp_inter", GroupViTMixerMLP(num_group_token, tokens_dim, num_output_group, c.hidden_act));
  norm_post_tokens = register_module("norm_post_tokens", make_layer_norm(c.hidden_size, c.layer_norm_eps));
  norm_x = register_module("norm_x", make_layer_norm(c.hidden_size, c.layer_norm_eps));
  pre_assign_attn = register_module("pre_assign_attn", GroupViTCrossAttentionLayer(c));
  assign = register_module("assign", GroupViTAssignAttention(c));
  norm_new_x = register_module("norm_new_x", make_layer_norm(c.hidden_size, c.layer_norm_eps));
  mlp_channels = register_module("mlp_channels", GroupViTMLP(c.hidden_size, channels_dim, c.hidden_size, c.hidden_act));
}

std::pair<torch::Tensor, torch::Tensor> GroupViTTokenAssignImpl::forward(const torch::Tensor& image_tokens_in,
                                                                         const torch::Tensor& group_tokens_in) {
  auto group_tokens = norm_tokens(group_tokens_in);
  auto image_tokens = norm_x(image_tokens_in);
  auto projected = norm_post_tokens(mlp_inter(group_tokens));  // [B, G_out, C]
  projected = pre_assign_attn(projected, image_tokens);
  auto [new_tokens, attention] = assign(projected, image_tokens);
  new_tokens = new_tokens + projected;
  new_tokens = new_tokens + mlp_channels(norm_new_x(new_tokens));
  return {new_tokens, attention};
}

GroupViTStageImpl::GroupViTStageImpl(const GroupViTVisionConfig& c, int64_t depth, int64_t num_prev_group_token,
                                     int64_t num_group_token, int64_t num_output_group)
    : num_group_token_(num_group_token) {
  if (num_group_token > 0)
    group_token = register_parameter("group_token", torch::zeros({1, num_group_token, c.hidden_size}));
  const EncoderLayerOptions o{c.hidden_size, c.intermediate_size, c.num_attention_heads,
                              c.hidden_act,  c.layer_norm_eps,    c.attention_dropout};
  for (int64_t i = 0; i < depth; ++i) layers->push_back(GroupViTEncoderLayer(o));
  register_module("layers", layers);
  if (num_group_token > 0)
    downsample = register_module("downsample", GroupViTTokenAssign(c, num_group_token, num_output_group));
  if (num_prev_group_token > 0 && num_group_token > 0) {
    group_projector = register_module("group_projector",
                                      torch::nn::Sequential(make_layer_norm(c.hidden_size, c.layer_norm_eps),
                                                            GroupViTMixerMLP(num_prev_group_token, c.hidden_size / 2,
                                                                             num_group_token, c.hidden_act)));
  }
}

StageOutput GroupViTStageImpl::forward(const torch::Tensor& hidden_states, const torch::Tensor& prev_group_token) {
  StageOutput out;
  torch::Tensor x = hidden_states;
  if (group_token.defined()) {
    auto groups = group_token.expand({hidden_states.size(0), -1, -1});
    if (!group_projector.is_empty()) {
      if (!prev_group_token.defined())
        throw std::logic_error("stage with a group projector needs the previous stage's group tokens");
      groups = groups + group_projector->forward(prev_group_token);
    }
    x = torch::cat({x, groups}, 1);
  }
  for (const auto& layer : *layers) x = layer->as<GroupViTEncoderLayer>()->forward(x);
  if (group_token.defined()) {
    const auto n = x.size(1) - num_group_token_;
    out.group_tokens = x.narrow(1, n, num_group_token_);
    x = x.narrow(1, 0, n);
  }
  if (!downsample.is_empty()) {
    auto [tokens, attention] = downsample(x, out.group_tokens);
    x = tokens;
    out.attention = attention;
  }
  out.hidden_states = x;
  return out;
}

GroupViTVisionEncoderImpl::GroupViTVisionEncoderImpl(const GroupViTVisionConfig& c) {
  for (size_t i = 0; i < c.depths.size(); ++i) {
    const int64_t prev = i > 0 ? c.num_output_groups[i - 1] : 0;
    stages->push_back(GroupViTStage(c, c.depths[i], prev, c.num_group_tokens[i], c.num_output_groups[i]));
  }
  register_module("stages", stages);
}

GroupViTEncoderOutput GroupViTVisionEncoderImpl::forward(const torch::Tensor& hidden_states, bool output_hidden_states,
                                                         bool output_attentions) {
  GroupViTEncoderOutput out;
  auto hidden = hidden_states;
  torch::Tensor group_tokens;
  for (const auto& stage_module : *stages) {
    if (output_hidden_states) out.hidden_states.push_back(hidden);
    auto stage = stage_module->as<GroupViTStage>()->forward(hidden, group_tokens);
    hidden = stage.hidden_states;
    group_tokens = stage.group_tokens;
    if (output_attentions && stage.attention.defined()) out.attentions.push_back(stage.attention);
  }
  if (output_hidden_states) out.hidden_states.push_back(hidden);
  out.last_hidden_state = hidden;
  return out;
}

GroupViTVisionTransformerImpl::GroupViTVisionTransformerImpl(const GroupViTVisionConfig& c) : config_(c) {
  embeddings = register_module("embeddings", GroupViTVisionEmbeddings(c));
  encoder = register_module("encoder", GroupViTVisionEncoder(c));
  layernorm = register_module("layernorm", make_layer_norm(c.hidden_size, c.layer_norm_eps));
}

VisionModelOutput GroupViTVisionTransformerImpl::forward(const torch::Tensor& pixel_values, bool output_hidden_states,
                                                         bool output_attentions) {
  auto encoded = encoder(embeddings(pixel_values), output_hidden_states, output_attentions);
  VisionModelOutput out;
  out.hidden_states = std::move(encoded.hidden_states);
  out.attentions = std::move(encoded.attentions);
  out.last_hidden_state = layernorm(encoded.last_hidden_state);
  out.pooler_output = out.last_hidden_state.mean(1);
  return out;
}

}  // namespace groupvit
