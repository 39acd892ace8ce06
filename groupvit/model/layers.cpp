// Attention, MLPs and the encoder layer shared by the text and vision towers.
#include "groupvit/model/layers.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <cstdlib>
#include <optional>
#include <stdexcept>

namespace groupvit {

namespace {

int64_t onednn_min_rows() {  // -1: never
  static const int64_t rows = [] {
    const char* env = std::getenv("GROUPVIT_ONEDNN_MIN_ROWS");
    if (env == nullptr || *env == '\0') return int64_t{1024};
    if (std::string(env) == "off") return int64_t{-1};
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    return (*end == '\0' && v >= 0) ? static_cast<int64_t>(v) : int64_t{1024};
  }();
  return rows;
}

const c10::OperatorHandle* onednn_linear_op() {
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findOp(c10::OperatorName("mkldnn::_linear_pointwise", ""));
  return op ? &*op : nullptr;
}

bool use_onednn(const torch::nn::Linear& layer, const torch::Tensor& x) {
  const int64_t min_rows = onednn_min_rows();
  if (min_rows < 0 || x.dim() < 2 || !x.device().is_cpu() || x.scalar_type() != torch::kFloat ||
      layer->weight.scalar_type() != torch::kFloat || x.size(-1) == 0)
    return false;
  // The op has no derivative: training and anything else that records a graph stays on at::linear.
  if (torch::GradMode::is_enabled() && (x.requires_grad() || layer->weight.requires_grad())) return false;
  return x.numel() / x.size(-1) >= min_rows && onednn_linear_op() != nullptr;
}

// mkldnn::_linear_pointwise(Tensor X, Tensor W, Tensor? B, str attr, Scalar?[] scalars, str? algorithm),
// called boxed so that a change in its C++ signature cannot break the build.
torch::Tensor onednn_linear(const torch::nn::Linear& layer, const torch::Tensor& x, const std::string& attr,
                            const std::string& algorithm) {
  torch::jit::Stack stack;
  stack.emplace_back(x);
  stack.emplace_back(layer->weight);
  stack.emplace_back(layer->bias.defined() ? c10::IValue(layer->bias) : c10::IValue());
  stack.emplace_back(attr);
  stack.emplace_back(c10::List<std::optional<c10::Scalar>>());
  stack.emplace_back(algorithm);
  onednn_linear_op()->callBoxed(&stack);
  return stack.back().toTensor();
}

}  // namespace

torch::Tensor linear(const torch::nn::Linear& layer, const torch::Tensor& x) {
  if (use_onednn(layer, x)) return onednn_linear(layer, x, "none", "");
  return at::linear(x, layer->weight, layer->bias);
}

torch::Tensor linear_activation(const torch::nn::Linear& layer, const torch::Tensor& x, const std::string& act) {
  if ((act == "gelu" || act == "gelu_new" || act == "gelu_pytorch_tanh") && use_onednn(layer, x))
    return onednn_linear(layer, x, "gelu", act == "gelu" ? "none" : "tanh");
  return activation(act, linear(layer, x));
}

torch::Tensor activation(const std::string& name, const torch::Tensor& x) {
  if (name == "gelu") return torch::gelu(x);  // exact erf form
  if (name == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  if (name == "relu") return torch::relu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (name == "silu" || name == "swish") return torch::silu(x);
  throw std::invalid_argument("unsupported activation '" + name + "'");
}

torch::nn::LayerNorm make_layer_norm(int64_t size, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({size}).eps(eps));
}

GroupViTAttentionImpl::GroupViTAttentionImpl(int64_t embed_dim, int64_t num_heads, double attention_dropout)
    : embed_dim_(embed_dim), num_heads_(num_heads), head_dim_(embed_dim / num_heads), dropout_(attention_dropout) {
  if (head_dim_ * num_heads_ != embed_dim_)
    throw std::invalid_argument("embed_dim " + std::to_string(embed_dim) + " is not divisible by num_heads " +
                                std::to_string(num_heads));
  // Registration order follows the reference so that parameter lists line up.
  k_proj = register_module("k_proj", torch::nn::Linear(embed_dim, embed_dim));
  v_proj = register_module("v_proj", torch::nn::Linear(embed_dim, embed_dim));
  q_proj = register_module("q_proj", torch::nn::Linear(embed_dim, embed_dim));
  out_proj = register_module("out_proj", torch::nn::Linear(embed_dim, embed_dim));
}

torch::Tensor GroupViTAttentionImpl::forward(const torch::Tensor& hidden_states,
                                             const torch::Tensor& encoder_hidden_states,
                                             const torch::Tensor& attention_mask) {
  const auto batch = hidden_states.size(0);
  const auto tgt_len = hidden_states.size(1);
  const torch::Tensor& kv_input = encoder_hidden_states.defined() ? encoder_hidden_states : hidden_states;
  auto heads = [&](const torch::Tensor& t) {  // [B, L, C] -> [B, heads, L, head_dim]
    return t.view({batch, -1, num_heads_, head_dim_}).transpose(1, 2);
  };
  auto q = heads(linear(q_proj, hidden_states));
  auto k = heads(linear(k_proj, kv_input));
  auto v = heads(linear(v_proj, kv_input));
  // Same maths as the reference (q * head_dim^-0.5, softmax over keys), through the fused
  // kernel; an additive float mask keeps the reference's behaviour on masked rows.
  std::optional<torch::Tensor> mask;
  if (attention_mask.defined()) mask = attention_mask.to(q.scalar_type());
  auto out = at::scaled_dot_product_attention(q, k, v, mask, is_training() ? dropout_ : 0.0, false);
  out = out.transpose(1, 2).reshape({batch, tgt_len, embed_dim_});
  return linear(out_proj, out);
}

GroupViTMLPImpl::GroupViTMLPImpl(int64_t hidden_size, int64_t intermediate_size, int64_t output_size, std::string act)
    : act_(std::move(act)) {
  fc1 = register_module("fc1", torch::nn::Linear(hidden_size, intermediate_size));
  fc2 = register_module("fc2", torch::nn::Linear(intermediate_size, output_size));
}

torch::Tensor GroupViTMLPImpl::forward(const torch::Tensor& x) { return linear(fc2, linear_activation(fc1, x, act_)); }

torch::Tensor GroupViTMixerMLPImpl::forward(const torch::Tensor& x) {
  return GroupViTMLPImpl::forward(x.transpose(1, 2)).transpose(1, 2);
}

GroupViTEncoderLayerImpl::GroupViTEncoderLayerImpl(const EncoderLayerOptions& o) {
  self_attn = register_module("self_attn", GroupViTAttention(o.hidden_size, o.num_heads, o.attention_dropout));
  layer_norm1 = register_module("layer_norm1", make_layer_norm(o.hidden_size, o.layer_norm_eps));
  mlp = register_module("mlp", GroupViTMLP(o.hidden_size, o.intermediate_size, o.hidden_size, o.act));
  layer_norm2 = register_module("layer_norm2", make_layer_norm(o.hidden_size, o.layer_norm_eps));
}

torch::Tensor GroupViTEncoderLayerImpl::forward(const torch::Tensor& hidden_states,
                                                const torch::Tensor& attention_mask) {
  auto x = hidden_states + self_attn(layer_norm1(hidden_states), torch::Tensor(), attention_mask);
  return x + mlp(layer_norm2(x));
}

}  // namespace groupvit
