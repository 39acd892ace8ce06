// Building blocks shared by both towers: multi-head attention, the MLP and its token-axis
// variant (mixer MLP), and the pre-LayerNorm transformer encoder layer. Submodules are
// registered under the Hugging Face names so that named_parameters() are checkpoint keys.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <optional>
#include <string>
#include <tuple>
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

// While one of these lives on a thread, the Linear layers and embedding tables constructed there
// are allocated without their random initialisation, which load_model is about to overwrite:
// LibTorch's init (a serial RNG over every weight) was most of the load time. Without it, layers
// are initialised as nn.Linear and nn.Embedding are.
class SkipParameterInit {
 public:
  SkipParameterInit();
  ~SkipParameterInit();
  SkipParameterInit(const SkipParameterInit&) = delete;
  SkipParameterInit& operator=(const SkipParameterInit&) = delete;
  static bool active();

 private:
  bool previous_;
};

// nn.Linear's parameters, "weight" [out, in] and "bias" [out], as torch::nn::Linear has them, and
// its initialisation (reset_parameters, skipped under SkipParameterInit).
//
// quantize_int8() turns the layer into Python's dynamically quantized Linear
// (torch.ao.quantization.quantize_dynamic with per_channel_dynamic_qconfig): per-output-channel
// symmetric int8 weights prepacked once for LibTorch's quantized engine, activations quantized per
// call; the float weight is released, so no float32 copy stays behind the int8 one.
class LinearImpl : public torch::nn::Cloneable<LinearImpl> {
 public:
  LinearImpl(int64_t in_features, int64_t out_features);
  void reset() override;
  void reset_parameters();
  torch::Tensor forward(const torch::Tensor& x);

  // CPU, float32 weights only; throws std::runtime_error when LibTorch has no quantized engine.
  void quantize_int8();
  bool is_int8() const { return !int8_weight_.isNone(); }
  const c10::IValue& int8_weight() const { return int8_weight_; }  // LinearPackedParamsBase

  // `weight` reordered once into oneDNN's blocked layout for inputs of about `rows` rows
  // (mkldnn::_reorder_linear_weight), for the oneDNN path of linear(); made on first use and again
  // when `weight` changed (another tensor, new data, or written in place).
  torch::Tensor onednn_weight(int64_t rows) const;
  // Frees that copy (where MKL was measured faster, it would only hold memory).
  void drop_onednn_weight() const;

  int64_t in_features, out_features;
  torch::Tensor weight, bias;

 private:
  c10::IValue int8_weight_;
  mutable torch::Tensor onednn_weight_;
  // What it was made from. The weak reference keeps that TensorImpl's address from being reused by
  // another tensor; the data pointer catches set_data (Module::to), the version in-place writes.
  mutable c10::weak_intrusive_ptr<c10::TensorImpl> onednn_source_{c10::intrusive_ptr<c10::TensorImpl>()};
  mutable const void* onednn_data_ = nullptr;
  mutable int64_t onednn_version_ = -1;
};
TORCH_MODULE(Linear);

// A Linear layer applied like Python's nn.Linear (at::linear: MKL's GEMM with the bias fused), or,
// on the CPU in bf16 without autograd, on oneDNN's inner product where this CPU's oneDNN runs bf16 and
// is faster: measured on first use of each shape, row count class and thread count
// (linear_kernel_choices). float32 stays on MKL's GEMM, so that its runs repeat bit for bit.
// GROUPVIT_ONEDNN_MIN_ROWS=N instead takes oneDNN for inputs of N rows or more ("off": never), for
// tests that force one path. A quantized layer runs quantized::linear_dynamic (float32 in and out).
torch::Tensor linear(const Linear& layer, const torch::Tensor& x);

// Whether this process's oneDNN runs bf16 inner products on this CPU (asked once, by running them on
// a tiny layer); where it does not (AVX2-only CPUs), bf16 linear() stays on MKL's GEMM.
bool onednn_runs_bf16();

// One measured choice of linear(): both kernels timed (the faster of two runs each) on the input's
// first rows (at most 1024).
struct LinearKernelChoice {
  struct Key {
    int64_t in_features, out_features, rows, threads;  // rows: the class, a power of two up to 1024
    bool fused_gelu;
    bool bf16;  // else float32
    bool operator<(const Key& o) const {
      return std::tie(in_features, out_features, rows, threads, fused_gelu, bf16) <
             std::tie(o.in_features, o.out_features, o.rows, o.threads, o.fused_gelu, o.bf16);
    }
  } key;
  double mkl_s = 0, onednn_s = 0;
  bool onednn = false;
};
// The choices made so far in this process (for the benchmark's report).
std::vector<LinearKernelChoice> linear_kernel_choices();

// softmax(q kᵀ / sqrt(head_dim) + mask) v for q [B, heads, T, d], k and v [B, heads, S, d], mask
// additive and broadcastable to [B, heads, T, S]. On the CPU without autograd: LibTorch's fused
// kernel (scaled_dot_product_attention) or the reference's two matrix multiplies around a softmax,
// in bf16/fp16 whichever was measured faster on the first call of each shape, dtype and thread count
// (float32: the fused kernel, so that runs repeat bit for bit);
// GROUPVIT_ATTENTION=fused|matmuls forces one (tests). Elsewhere: the fused kernel.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const std::optional<torch::Tensor>& mask);

// One measured choice of attention().
struct AttentionKernelChoice {
  struct Key {
    int64_t batch_heads, queries, keys, head_dim, threads;
    int dtype;  // c10::ScalarType
    bool masked;
    bool operator<(const Key& o) const {
      return std::tie(batch_heads, queries, keys, head_dim, threads, dtype, masked) <
             std::tie(o.batch_heads, o.queries, o.keys, o.head_dim, o.threads, o.dtype, o.masked);
    }
  } key;
  double fused_s = 0, matmuls_s = 0;
  bool matmuls = false;
};
std::vector<AttentionKernelChoice> attention_kernel_choices();

// activation(act, linear(layer, x)); on the oneDNN path above, GELU (erf or tanh form) is fused
// into the matrix multiply's epilogue.
torch::Tensor linear_activation(const Linear& layer, const torch::Tensor& x, const std::string& act);

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

  Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};

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

  Linear fc1{nullptr}, fc2{nullptr};

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
