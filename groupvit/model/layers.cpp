// Attention, MLPs and the encoder layer shared by the text and vision towers.
#include "groupvit/model/layers.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>

namespace groupvit {

namespace {

int64_t rows_of(const torch::Tensor& x) { return x.numel() / x.size(-1); }  // the GEMM's M

constexpr int64_t kMeasured = -2;  // no GROUPVIT_ONEDNN_MIN_ROWS: each shape measured on first use

int64_t onednn_min_rows() {  // -1: never; kMeasured: measured
  static const int64_t rows = [] {
    const char* env = std::getenv("GROUPVIT_ONEDNN_MIN_ROWS");
    if (env == nullptr || *env == '\0') return kMeasured;
    if (std::string(env) == "off") return int64_t{-1};
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    return (*end == '\0' && v >= 0) ? static_cast<int64_t>(v) : kMeasured;
  }();
  return rows;
}

const c10::OperatorHandle* onednn_linear_op() {
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findOp(c10::OperatorName("mkldnn::_linear_pointwise", ""));
  return op ? &*op : nullptr;
}

bool onednn_can_run(const LinearImpl& layer, const torch::Tensor& x) {
  // float32, and bf16 where this CPU's oneDNN runs it (avx512_core_bf16 / AMX kernels, or emulated
  // on AVX-512; where it is slower than MKL's, the measurement below keeps MKL's).
  const auto dtype = x.scalar_type();
  if (layer.is_int8() || x.dim() < 2 || !x.device().is_cpu() || (dtype != torch::kFloat && dtype != torch::kBFloat16) ||
      layer.weight.scalar_type() != dtype || x.size(-1) == 0 || x.numel() == 0)
    return false;
  if (dtype == torch::kBFloat16 && !onednn_runs_bf16()) return false;
  // The op has no derivative: training and anything else that records a graph stays on at::linear.
  if (torch::GradMode::is_enabled() && (x.requires_grad() || layer.weight.requires_grad())) return false;
  return onednn_linear_op() != nullptr;
}

// mkldnn::_linear_pointwise(Tensor X, Tensor W, Tensor? B, str attr, Scalar?[] scalars, str? algorithm),
// called boxed so that a change in its C++ signature cannot break the build.
torch::Tensor onednn_linear(const LinearImpl& layer, const torch::Tensor& x, const std::string& attr,
                            const std::string& algorithm) {
  torch::jit::Stack stack;
  stack.emplace_back(x);
  stack.emplace_back(layer.onednn_weight(rows_of(x)));
  stack.emplace_back(layer.bias.defined() ? c10::IValue(layer.bias) : c10::IValue());
  stack.emplace_back(attr);
  stack.emplace_back(c10::List<std::optional<c10::Scalar>>());
  stack.emplace_back(algorithm);
  onednn_linear_op()->callBoxed(&stack);
  return stack.back().toTensor();
}

}  // namespace

// Whether this LibTorch's oneDNN runs bf16 inner products on this CPU at all: it refuses them
// (c10::Error "bf16 path needs the cpu support avx_ne_convert or avx512bw, avx512vl and avx512dq")
// on AVX2-only CPUs such as the older EPYCs here. Asked once, by running the oneDNN path on a tiny
// layer, so that the answer is the library's own and not a guess from the CPU flags.
bool onednn_runs_bf16() {
  static const bool runs = [] {
    if (onednn_linear_op() == nullptr) return false;
    try {
      torch::NoGradGuard no_grad;
      LinearImpl tiny(16, 16);
      tiny.reset_parameters();
      tiny.to(torch::kBFloat16);
      return onednn_linear(tiny, torch::ones({4, 16}, torch::kBFloat16), "none", "").defined();
    } catch (const c10::Error&) {
      return false;
    }
  }();
  return runs;
}

namespace {

// The measured choice between MKL's GEMM (at::linear) and oneDNN's inner product, per layer shape,
// rows (rounded up to a power of two; every count from kMeasureRows on is one class), thread count
// and fused GELU; bf16 only (use_onednn keeps float32 on MKL). Which is faster depends on the CPU (its
// vector units, caches, AMX), the shape and the threads (docs/design-notes.md), so no fixed threshold
// holds across machines.
constexpr int64_t kMeasureRows = 1024;  // larger inputs: measured on their first kMeasureRows rows

// The measured choices of one kind (linear's, attention's), made once per key in this process.
template <class Choice>
struct ChoiceTable {
  std::mutex mutex;
  std::map<typename Choice::Key, Choice> by_key;
  std::vector<Choice> list() {
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<Choice> out;
    for (const auto& [key, c] : by_key) out.push_back(c);
    return out;
  }
};
ChoiceTable<LinearKernelChoice>& kernel_choices() {
  static ChoiceTable<LinearKernelChoice> c;
  return c;
}

double fastest_of_two(const std::function<void()>& run) {
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 2; ++i) {  // the first run also pays for creating oneDNN's primitive, the second not
    const auto t0 = std::chrono::steady_clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

bool measured_onednn(const LinearImpl& layer, const torch::Tensor& x, const std::string& gelu_algorithm,
                     const std::string& act) {
  const int64_t rows = rows_of(x);
  int64_t bucket = 1;
  while (bucket < std::min(rows, kMeasureRows)) bucket <<= 1;
  const LinearKernelChoice::Key key{
      layer.in_features,        layer.out_features,      bucket,
      torch::get_num_threads(), !gelu_algorithm.empty(), x.scalar_type() == torch::kBFloat16};
  auto& choices = kernel_choices();
  // Held while measuring: two threads timing at once would each see the other's load.
  std::lock_guard<std::mutex> lock(choices.mutex);
  if (auto it = choices.by_key.find(key); it != choices.by_key.end()) return it->second.onednn;
  const auto sample = x.reshape({rows, x.size(-1)}).narrow(0, 0, std::min(rows, kMeasureRows)).contiguous();
  LinearKernelChoice c;
  c.key = key;
  c.mkl_s = fastest_of_two([&] {
    auto y = at::linear(sample, layer.weight, layer.bias);
    if (!act.empty()) y = activation(act, y);
  });
  c.onednn_s =
      fastest_of_two([&] { onednn_linear(layer, sample, gelu_algorithm.empty() ? "none" : "gelu", gelu_algorithm); });
  c.onednn = c.onednn_s < c.mkl_s;
  if (!c.onednn) layer.drop_onednn_weight();
  choices.by_key[key] = c;
  return c.onednn;
}

// gelu_algorithm: "" (no activation fused), "none" (erf GELU) or "tanh"; act: the activation the
// MKL side applies after its GEMM, for a fair comparison.
bool use_onednn(const LinearImpl& layer, const torch::Tensor& x, const std::string& gelu_algorithm = "",
                const std::string& act = "") {
  const int64_t min_rows = onednn_min_rows();
  if (min_rows == -1 || !onednn_can_run(layer, x)) return false;
  if (min_rows != kMeasured) return rows_of(x) >= min_rows;
  // float32: MKL's GEMM (nn.Linear's own), never a timing. A per-process timing picks either kernel
  // for the same shape where the two are close (on the 2-core AVX2 EPYC they are, and they flipped
  // between processes), and the two round differently: float32 users expect the same rows from the
  // same inputs in every run (cli.embed, the server against the CLI, a resumed batch job).
  if (x.scalar_type() == torch::kFloat) return false;
  return measured_onednn(layer, x, gelu_algorithm, act);
}

c10::OperatorHandle quantized_op(const char* name) {
  const auto op = c10::Dispatcher::singleton().findOp(c10::OperatorName(name, ""));
  if (!op) throw std::runtime_error(std::string("this LibTorch has no ") + name + " (no quantized engine)");
  return *op;
}

// The engine the packed weights are made for, chosen once from what this LibTorch and CPU offer:
// FBGEMM (AVX2 and AVX-512 kernels, VNNI where present), else oneDNN. Prepacked weights belong to
// the engine that packed them, so it is set before the first prepack and then left alone.
void select_quantized_engine() {
  static const bool done = [] {
    const auto& engines = at::globalContext().supportedQEngines();
    for (const auto engine : {at::QEngine::FBGEMM, at::QEngine::ONEDNN}) {
      if (std::find(engines.begin(), engines.end(), engine) != engines.end()) {
        at::globalContext().setQEngine(engine);
        return true;
      }
    }
    throw std::runtime_error("this LibTorch has neither the FBGEMM nor the oneDNN quantized engine");
  }();
  (void)done;
}

// PerChannelMinMaxObserver(qint8, per_channel_symmetric) on the weight's rows, as the reference's
// quantize_dynamic computes it: scale = max(|min|, |max|) / 127.5 (float32, at least float32's eps),
// zero point 0; then quantize_per_channel with the scales as double.
torch::Tensor quantize_weight_per_channel(const torch::Tensor& weight) {
  const auto w = weight.detach().to(torch::kFloat).contiguous();
  const auto min_neg = std::get<0>(w.min(1)).clamp_max(0);
  const auto max_pos = std::get<0>(w.max(1)).clamp_min(0);
  auto scale = torch::max(-min_neg, max_pos) / ((127.0f - -128.0f) / 2.0f);
  scale = scale.clamp_min(std::numeric_limits<float>::epsilon());
  const auto zero_points = torch::zeros({w.size(0)}, torch::kLong);
  return torch::quantize_per_channel(w, scale.to(torch::kDouble), zero_points, 0, torch::kQInt8);
}

torch::Tensor run_linear(const LinearImpl& layer, const torch::Tensor& x) {
  if (layer.is_int8()) {
    // quantized::linear_dynamic(Tensor X, LinearPackedParamsBase W_prepack, bool reduce_range), with
    // reduce_range as the reference's DynamicQuantizedLinear passes it (7-bit activations, which keep
    // FBGEMM's 16-bit intermediate sums from saturating).
    static const c10::OperatorHandle op = quantized_op("quantized::linear_dynamic");
    torch::jit::Stack stack{x.to(torch::kFloat).contiguous(), layer.int8_weight(), true};
    op.callBoxed(&stack);
    return stack.back().toTensor().to(x.scalar_type());
  }
  if (use_onednn(layer, x)) return onednn_linear(layer, x, "none", "");
  return at::linear(x, layer.weight, layer.bias);
}

// --- attention products: LibTorch's fused kernel or the reference's matrix multiplies --------------

// softmax(q kᵀ / sqrt(d) + mask) v as the reference's eager attention writes it: two batched matrix
// multiplies (MKL or oneDNN, bf16 included) around a softmax.
torch::Tensor attention_matmuls(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                const std::optional<torch::Tensor>& mask) {
  auto w = at::matmul(q * (1.0 / std::sqrt(static_cast<double>(q.size(-1)))), k.transpose(-2, -1));
  if (mask) w = w + *mask;
  return at::matmul(at::softmax(w, -1), v);
}

torch::Tensor attention_fused(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const std::optional<torch::Tensor>& mask) {
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, false);
}

enum class AttentionKernel { kMeasured, kFused, kMatmuls };

AttentionKernel attention_kernel_forced() {  // GROUPVIT_ATTENTION=fused|matmuls, for tests forcing one path
  static const AttentionKernel k = [] {
    const char* env = std::getenv("GROUPVIT_ATTENTION");
    const std::string v = env == nullptr ? "" : env;
    return v == "fused"     ? AttentionKernel::kFused
           : v == "matmuls" ? AttentionKernel::kMatmuls
                            : AttentionKernel::kMeasured;
  }();
  return k;
}

ChoiceTable<AttentionKernelChoice>& attention_choices() {
  static ChoiceTable<AttentionKernelChoice> c;
  return c;
}

// Which is faster depends on the CPU and the shapes: on the 2-core AVX-512 EPYC (Zen 4) the fused
// kernel took 1.2-2.4x the matrix multiplies' time in bf16. So each bf16/fp16 shape is timed on its
// first call (the faster of two runs each, on the call's own inputs).
bool attention_use_matmuls(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const std::optional<torch::Tensor>& mask) {
  const AttentionKernelChoice::Key key{q.size(0) * q.size(1),
                                       q.size(2),
                                       k.size(2),
                                       q.size(3),
                                       torch::get_num_threads(),
                                       static_cast<int>(q.scalar_type()),
                                       mask.has_value()};
  auto& choices = attention_choices();
  std::lock_guard<std::mutex> lock(choices.mutex);
  if (auto it = choices.by_key.find(key); it != choices.by_key.end()) return it->second.matmuls;
  AttentionKernelChoice c;
  c.key = key;
  c.fused_s = fastest_of_two([&] { attention_fused(q, k, v, mask); });
  c.matmuls_s = fastest_of_two([&] { attention_matmuls(q, k, v, mask); });
  c.matmuls = c.matmuls_s < c.fused_s;
  choices.by_key[key] = c;
  return c.matmuls;
}

}  // namespace

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const std::optional<torch::Tensor>& mask) {
  switch (attention_kernel_forced()) {
    case AttentionKernel::kFused:
      return attention_fused(q, k, v, mask);
    case AttentionKernel::kMatmuls:
      return attention_matmuls(q, k, v, mask);
    case AttentionKernel::kMeasured:
      break;
  }
  // On the GPU and while recording a graph: the fused kernel (flash / memory-efficient, with a derivative).
  const bool grad = torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  // float32 too: the fused kernel, always. A per-process timing could pick either kernel for the same
  // shape, and float32 users expect the same rows from the same batches in every run (batch.embed_batch);
  // the matrix multiplies' gain there was small (cross-attention only).
  if (!q.device().is_cpu() || grad || q.scalar_type() == torch::kFloat) return attention_fused(q, k, v, mask);
  return attention_use_matmuls(q, k, v, mask) ? attention_matmuls(q, k, v, mask) : attention_fused(q, k, v, mask);
}

std::vector<AttentionKernelChoice> attention_kernel_choices() { return attention_choices().list(); }

namespace {
thread_local bool skip_parameter_init = false;
}  // namespace

SkipParameterInit::SkipParameterInit() : previous_(skip_parameter_init) { skip_parameter_init = true; }
SkipParameterInit::~SkipParameterInit() { skip_parameter_init = previous_; }
bool SkipParameterInit::active() { return skip_parameter_init; }

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features)
    : in_features(in_features), out_features(out_features) {
  reset();
}

void LinearImpl::reset() {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  bias = register_parameter("bias", torch::empty({out_features}));
  int8_weight_ = c10::IValue();
  if (!SkipParameterInit::active()) reset_parameters();
}

void LinearImpl::reset_parameters() {  // nn.Linear.reset_parameters
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  const double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0;
  bias.uniform_(-bound, bound);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) { return run_linear(*this, x); }

namespace {
std::mutex onednn_weight_mutex;  // forwards on several threads may reach a layer's first oneDNN call together
}  // namespace

torch::Tensor LinearImpl::onednn_weight(int64_t rows) const {
  std::lock_guard<std::mutex> lock(onednn_weight_mutex);
  if (!onednn_weight_.defined() || onednn_source_._unsafe_get_target() != weight.unsafeGetTensorImpl() ||
      onednn_data_ != weight.data_ptr() || onednn_version_ != static_cast<int64_t>(weight._version())) {
    static const std::optional<c10::OperatorHandle> reorder =
        c10::Dispatcher::singleton().findOp(c10::OperatorName("mkldnn::_reorder_linear_weight", ""));
    if (!reorder) return weight;  // oneDNN's inner product takes the plain weight too, reordering it per call
    torch::NoGradGuard no_grad;
    torch::jit::Stack stack{weight.detach().contiguous(), c10::IValue(rows)};
    reorder->callBoxed(&stack);
    onednn_weight_ = stack.back().toTensor();
    onednn_source_ = c10::weak_intrusive_ptr<c10::TensorImpl>(weight.getIntrusivePtr());
    onednn_data_ = weight.data_ptr();
    onednn_version_ = static_cast<int64_t>(weight._version());
  }
  return onednn_weight_;
}

void LinearImpl::drop_onednn_weight() const {
  std::lock_guard<std::mutex> lock(onednn_weight_mutex);
  onednn_weight_ = torch::Tensor();
  onednn_source_ = c10::weak_intrusive_ptr<c10::TensorImpl>(c10::intrusive_ptr<c10::TensorImpl>());
  onednn_data_ = nullptr;
  onednn_version_ = -1;
}

void LinearImpl::quantize_int8() {
  if (is_int8()) return;
  if (!weight.device().is_cpu()) throw std::runtime_error("int8 Linear layers run on the CPU only");
  select_quantized_engine();
  torch::jit::Stack stack{quantize_weight_per_channel(weight), bias.detach().to(torch::kFloat).contiguous()};
  static const c10::OperatorHandle prepack = quantized_op("quantized::linear_prepack");
  prepack.callBoxed(&stack);
  int8_weight_ = stack.back();
  // The prepacked copy is all the forward uses: the float weight's memory goes (its shape with it).
  torch::NoGradGuard no_grad;
  weight.set_data(torch::empty({0}, weight.options()));
  drop_onednn_weight();
}

torch::Tensor linear(const Linear& layer, const torch::Tensor& x) { return run_linear(*layer, x); }

torch::Tensor linear_activation(const Linear& layer, const torch::Tensor& x, const std::string& act) {
  if (act == "gelu" || act == "gelu_new" || act == "gelu_pytorch_tanh") {
    const std::string algorithm = act == "gelu" ? "none" : "tanh";
    if (use_onednn(*layer, x, algorithm, act)) return onednn_linear(*layer, x, "gelu", algorithm);
  }
  return activation(act, linear(layer, x));
}

std::vector<LinearKernelChoice> linear_kernel_choices() { return kernel_choices().list(); }

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
  k_proj = register_module("k_proj", Linear(embed_dim, embed_dim));
  v_proj = register_module("v_proj", Linear(embed_dim, embed_dim));
  q_proj = register_module("q_proj", Linear(embed_dim, embed_dim));
  out_proj = register_module("out_proj", Linear(embed_dim, embed_dim));
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
  auto out =
      is_training() ? at::scaled_dot_product_attention(q, k, v, mask, dropout_, false) : attention(q, k, v, mask);
  out = out.transpose(1, 2).reshape({batch, tgt_len, embed_dim_});
  return linear(out_proj, out);
}

GroupViTMLPImpl::GroupViTMLPImpl(int64_t hidden_size, int64_t intermediate_size, int64_t output_size, std::string act)
    : act_(std::move(act)) {
  fc1 = register_module("fc1", Linear(hidden_size, intermediate_size));
  fc2 = register_module("fc2", Linear(intermediate_size, output_size));
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
