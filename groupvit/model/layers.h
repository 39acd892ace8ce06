// Building blocks shared by both towers: multi-head attention, the MLP and its token-axis
// variant (mixer MLP), and the pre-LayerNorm transformer encoder layer. Submodules are
// registered under the Hugging Face names so that named_parameters() are checkpoint keys.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

namespace groupvit {

// What both towers' encoders return (the reference's BaseModelOutput of GroupViTTextEncoder and
// GroupViTVisionEncoder): the last hidden state before the tower's final LayerNorm, and on request
// every hidden state (the input, then each layer's or stage's output) and the vision stages' soft
// assignments [B, groups, tokens].
struct GroupViTEncoderOutput {
  torch::Tensor last_hidden_state;
  std::vector<torch::Tensor> hidden_states;
  std::vector<torch::Tensor> attentions;
};

// A Linear layer applied like Python's nn.Linear (at::linear, which fuses the bias into the GEMM),
// and on the CPU in float32 without autograd, inputs of at least GROUPVIT_ONEDNN_MIN_ROWS rows (1024;
// "off" disables it) on oneDNN's inner product, faster at batched shapes (docs/design-notes.md).
torch::Tensor linear(const torch::nn::Linear& layer, const torch::Tensor& x);

// activation(act, linear(layer, x)); on the oneDNN path above, GELU (erf or tanh form) is fused
// into the matrix multiply's epilogue.
torch::Tensor linear_activation(const torch::nn::Linear& layer, const torch::Tensor& x, const std::string& act);

// The activations of the reference's ACT2FN that configs may name.
torch::Tensor activation(const std::string& name, const torch::Tensor& x);

// Multi-headed scaled dot-product attention (GroupViTAttention). Self-attention when
// `encoder_hidden_states` is undefined, cross-attention otherwise.
class GroupViTAttentionImpl : public torch::nn::Module {
 public:
  GroupViTAttentionImpl(int64_t embed_dim, int64_t num_heads, double attention_dropout);

  // hidden_states [B, T, C]; encoder_hidden_states [B, S, C] or undefined; attention_mask an
  // additive float mask broadcastable to [B, heads, T, S] or undefined.
  torch::Tensor forward(const torch::Tensor& hidden_states, const torch::Tensor& encoder_hidden_states = {},
                        const torch::Tensor& attention_mask = {});

  torch::nn::Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};

 private:
  int64_t embed_dim_, num_heads_, head_dim_;
  double dropout_;
};
TORCH_MODULE(GroupViTAttention);

// fc1 -> activation -> fc2 over the last axis (GroupViTMLP).
class GroupViTMLPImpl : public torch::nn::Module {
 public:
  GroupViTMLPImpl(int64_t hidden_size, int64_t intermediate_size, int64_t output_size, std::string act);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  std::string act_;
};
TORCH_MODULE(GroupViTMLP);

// The same MLP applied across the token axis: [B, N, C] -> [B, N_out, C] (GroupViTMixerMLP).
class GroupViTMixerMLPImpl : public GroupViTMLPImpl {
 public:
  using GroupViTMLPImpl::GroupViTMLPImpl;
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(GroupViTMixerMLP);

struct EncoderLayerOptions {
  int64_t hidden_size;
  int64_t intermediate_size;
  int64_t num_heads;
  std::string act;
  double layer_norm_eps;
  double attention_dropout;
};

// Pre-LayerNorm transformer layer: x + attn(ln1(x)), then x + mlp(ln2(x)) (GroupViTEncoderLayer).
class GroupViTEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit GroupViTEncoderLayerImpl(const EncoderLayerOptions& o);
  torch::Tensor forward(const torch::Tensor& hidden_states, const torch::Tensor& attention_mask = {});

  GroupViTAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr};
  GroupViTMLP mlp{nullptr};
  torch::nn::LayerNorm layer_norm2{nullptr};
};
TORCH_MODULE(GroupViTEncoderLayer);

torch::nn::LayerNorm make_layer_norm(int64_t size, double eps);

}  // namespace groupvit
