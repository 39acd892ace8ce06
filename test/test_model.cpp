// The model's behaviour beyond parity: any image size, training mode (Gumbel assignment,
// batch-statistics BatchNorm, backward), dtypes, input validation and loader errors.
#include <ATen/record_function.h>
#include <ftw.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "groupvit/model/layers.h"
#include "groupvit/model/model.h"
#include "groupvit/model/vision_model.h"
#include "groupvit/model/weights.h"
#include "groupvit/runtime/allocator.h"
#include "groupvit/runtime/cuda_graph.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using groupvit::test::TempDir;

groupvit::GroupViTConfig tiny_config() {
  return groupvit::GroupViTConfig::from_json_string(R"({
    "text_config": {"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "max_position_embeddings": 12, "bos_token_id": 98,
                    "eos_token_id": 99},
    "vision_config": {"hidden_size": 24, "intermediate_size": 48, "depths": [1, 1, 1],
                      "num_group_tokens": [8, 4, 0], "num_output_groups": [8, 4, 4], "num_attention_heads": 2,
                      "image_size": 32, "patch_size": 8},
    "projection_dim": 16, "projection_intermediate_dim": 32})");
}

torch::Tensor tiny_ids(int64_t n) {
  auto ids = torch::randint(1, 90, {n, 10}, torch::kLong);
  ids.select(1, 0).fill_(98);
  ids.select(1, 9).fill_(99);
  return ids;
}

void write_archive(const fs::path& file, const std::map<std::string, torch::Tensor>& tensors) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [k, v] : tensors) dict.insert(k, v);
  auto bytes = torch::pickle_save(dict);
  std::ofstream(file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::map<std::string, torch::Tensor> state_of(groupvit::GroupViTModel& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m->named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : m->named_buffers()) out[b.key()] = b.value().clone();
  return out;
}

}  // namespace

TEST_CASE("any image size that is a multiple of the patch size works", "[model]") {
  torch::manual_seed(0);
  groupvit::GroupViTModel model(tiny_config());
  model->eval();
  torch::NoGradGuard no_grad;
  groupvit::GroupViTForwardOptions o;
  o.output_segmentation = true;
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{32, 32}, {16, 48}, {64, 24}, {8, 8}, {40, 56}}) {
    INFO(h << "x" << w);
    auto out = model->forward(tiny_ids(3), torch::randn({2, 3, h, w}), {}, o);
    CHECK(out.logits_per_image.sizes() == torch::IntArrayRef{2, 3});
    CHECK(out.segmentation_logits.sizes() == torch::IntArrayRef{2, 3, h, w});
    CHECK(out.vision_model_output.attentions.at(0).size(2) == (h / 8) * (w / 8));
    CHECK(torch::isfinite(out.segmentation_logits).all().item<bool>());
  }
  CHECK_THROWS_WITH(model->get_image_features(torch::randn({1, 3, 30, 32})),
                    Catch::Contains("not a positive multiple of the patch size 8"));
  CHECK_THROWS_WITH(model->get_image_features(torch::randn({1, 4, 32, 32})), Catch::Contains("pixel_values"));
  CHECK_THROWS_WITH(model->get_text_features(torch::full({1, 4}, 100, torch::kLong)),
                    Catch::Contains("outside the vocabulary"));
  CHECK_THROWS_WITH(model->get_text_features(torch::ones({1, 13}, torch::kLong)),
                    Catch::Contains("longer than the model's 12 positions"));
}

TEST_CASE("training mode: hard Gumbel assignment, batch-stat BatchNorm, backward", "[model]") {
  torch::manual_seed(1);
  groupvit::GroupViTModel model(tiny_config());
  model->train();
  auto running_before = model->visual_projection[1]->as<torch::nn::BatchNorm1d>()->running_mean.clone();
  groupvit::GroupViTForwardOptions o;
  o.return_loss = true;
  o.output_attentions = true;
  auto ids = tiny_ids(4);
  auto pixels = torch::randn({4, 3, 32, 32});

  torch::manual_seed(7);
  auto out = model->forward(ids, pixels, {}, o);
  out.loss.backward();
  CHECK(std::isfinite(out.loss.item<double>()));
  size_t with_grad = 0, total = 0;
  for (const auto& p : model->named_parameters()) {
    ++total;
    if (p.value().grad().defined() && p.value().grad().abs().sum().item<double>() > 0) ++with_grad;
    if (p.value().grad().defined()) CHECK(torch::isfinite(p.value().grad()).all().item<bool>());
  }
  CHECK(with_grad > total * 9 / 10);
  // BatchNorm in training mode moved its running statistics.
  auto running_after = model->visual_projection[1]->as<torch::nn::BatchNorm1d>()->running_mean;
  CHECK_FALSE(torch::equal(running_before, running_after));

  // The Gumbel noise comes from LibTorch's generator: a reseed reproduces the step, and a
  // different seed changes the sampled assignment.
  torch::Tensor first_loss = out.loss.detach();
  model->zero_grad();
  torch::manual_seed(7);
  auto again = model->forward(ids, pixels, {}, o);
  torch::manual_seed(8);
  auto other = model->forward(ids, pixels, {}, o);
  model->eval();
  auto eval1 = model->forward(ids, pixels, {}, o);
  auto eval2 = model->forward(ids, pixels, {}, o);
  CHECK(torch::equal(eval1.logits_per_image, eval2.logits_per_image));  // eval is deterministic
  (void)again;
  (void)other;
}

TEST_CASE("hard assignments are one-hot over groups in both modes", "[model]") {
  torch::manual_seed(2);
  auto logits = torch::randn({2, 5, 7});
  for (const auto& y : {groupvit::hard_softmax(logits, -2), groupvit::gumbel_softmax_hard(logits, -2)}) {
    auto ones = (y - 1.0).abs() < 1e-6;
    auto zeros = y.abs() < 1e-6;
    CHECK((ones | zeros).all().item<bool>());
    CHECK(torch::allclose(y.sum(-2), torch::ones({2, 7}), 1e-6, 1e-6));
  }
  // Eval picks the argmax of the logits.
  CHECK(torch::equal(groupvit::hard_softmax(logits, -2).argmax(-2), logits.argmax(-2)));
}

TEST_CASE("half and bfloat16 run on the CPU and stay close to fp32", "[model]") {
  torch::manual_seed(3);
  groupvit::GroupViTModel model(tiny_config());
  model->eval();
  torch::NoGradGuard no_grad;
  auto ids = tiny_ids(2);
  auto pixels = torch::randn({2, 3, 32, 32});
  auto ref = model->forward(ids, pixels).image_embeds;
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    model->to(dtype);
    auto out = model->forward(ids, pixels.to(dtype));
    CHECK(out.image_embeds.scalar_type() == dtype);
    auto cos = torch::cosine_similarity(out.image_embeds.to(torch::kFloat), ref, 1).min().item<double>();
    INFO(c10::toString(dtype) << " cosine " << cos);
    CHECK(cos > 0.98);
    model->to(torch::kFloat);
  }
}

// In fp16/bf16 the assignment logits are computed in float32 from the reduced-precision q and k, so
// near-ties between groups resolve as in float32. The expected output is rebuilt from the module's own
// projections; the case is large enough that reduced-precision logits would flip some tokens (checked).
TEST_CASE("reduced-precision hard assignment takes the argmax of float32 logits", "[model]") {
  torch::manual_seed(5);
  const auto config = tiny_config().vision_config;
  torch::NoGradGuard no_grad;
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    groupvit::GroupViTAssignAttention assign(config);
    assign->eval();
    assign->to(dtype);
    const int64_t c = config.hidden_size;
    auto query = torch::randn({2, 16, c}).to(dtype), key = torch::randn({2, 2000, c}).to(dtype);
    auto [out, soft] = assign(query, key);
    CHECK(out.scalar_type() == dtype);
    CHECK(soft.scalar_type() == dtype);

    using groupvit::linear;
    auto q = linear(assign->q_proj, query), k = linear(assign->k_proj, key), v = linear(assign->v_proj, key);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c));
    auto logits32 = torch::matmul(q.to(torch::kFloat), k.to(torch::kFloat).transpose(-2, -1)) * scale;
    auto hard = torch::zeros_like(logits32).scatter_(-2, logits32.argmax(-2, true), 1.0);
    hard = hard / (hard.sum(-1, true) + config.assign_eps);
    auto expected = linear(assign->proj, torch::matmul(hard.to(dtype), v));
    INFO(c10::toString(dtype));
    CHECK(torch::equal(out, expected));
    // The same logits in the reduced dtype pick other groups for some tokens: what the test guards.
    auto logits16 = torch::matmul(q, k.transpose(-2, -1)) * scale;
    CHECK((logits16.argmax(-2) != logits32.argmax(-2)).any().item<bool>());
  }
}

TEST_CASE("the loader names missing, unexpected and mis-shaped tensors", "[model]") {
  TempDir tmp;
  const auto config = tiny_config();
  std::ofstream(tmp.path / "config.json") << config.to_json_string();
  torch::manual_seed(4);
  groupvit::GroupViTModel model(config);
  auto state = state_of(model);

  SECTION("a complete archive loads and round-trips") {
    write_archive(tmp.path / groupvit::kArchiveFile, state);
    auto loaded = groupvit::load_model(tmp.path.string());
    for (const auto& p : loaded->named_parameters()) CHECK(torch::equal(p.value(), state.at(p.key())));
    CHECK_FALSE(loaded->is_training());
  }
  SECTION("missing tensor") {
    state.erase("vision_model.encoder.stages.1.group_token");
    write_archive(tmp.path / groupvit::kArchiveFile, state);
    CHECK_THROWS_WITH(groupvit::load_model(tmp.path.string()), Catch::Contains("missing (1)") &&
                                                                   Catch::Contains("stages.1.group_token") &&
                                                                   Catch::Contains(groupvit::kArchiveFile));
  }
  SECTION("wrong shape") {
    state["logit_scale"] = torch::zeros({2});
    write_archive(tmp.path / groupvit::kArchiveFile, state);
    CHECK_THROWS_WITH(groupvit::load_model(tmp.path.string()),
                      Catch::Contains("wrong shape") && Catch::Contains("logit_scale"));
  }
  SECTION("unexpected tensor; the legacy position_ids buffer is tolerated") {
    state["text_model.embeddings.position_ids"] = torch::arange(12).unsqueeze(0);
    state["vision_model.extra.weight"] = torch::zeros({1});
    write_archive(tmp.path / groupvit::kArchiveFile, state);
    CHECK_THROWS_WITH(groupvit::load_model(tmp.path.string()),
                      Catch::Contains("unexpected (1)") && Catch::Contains("vision_model.extra.weight"));
  }
  SECTION("corrupt, empty and absent files") {
    std::ofstream(tmp.path / groupvit::kArchiveFile, std::ios::binary) << "PK\x03\x04 definitely not a zip";
    CHECK_THROWS_AS(groupvit::load_model(tmp.path.string()), groupvit::WeightsError);
    CHECK_THROWS_WITH(groupvit::load_model(tmp.path.string()), Catch::Contains("not a readable torch.save archive"));
    std::ofstream(tmp.path / groupvit::kArchiveFile, std::ios::binary | std::ios::trunc);
    CHECK_THROWS_WITH(groupvit::load_model(tmp.path.string()), Catch::Contains("empty"));
    fs::remove(tmp.path / groupvit::kArchiveFile);
    CHECK_THROWS_WITH(groupvit::load_model(tmp.path.string()), Catch::Contains("no weights found"));
    std::ofstream(tmp.path / groupvit::kSafetensorsFile, std::ios::binary) << "\x10\x00\x00\x00\x00\x00\x00\x00{";
    CHECK_THROWS_WITH(groupvit::load_model(tmp.path.string()), Catch::Contains("not a valid safetensors file"));
    CHECK_THROWS_WITH(groupvit::load_model((tmp.path / "nope").string()), Catch::Contains("no such directory"));
    fs::remove(tmp.path / "config.json");
    CHECK_THROWS_WITH(groupvit::load_model(tmp.path.string()), Catch::Contains("no config.json"));
  }
}

namespace {
long minor_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}
}  // namespace

#if defined(__SANITIZE_ADDRESS__)  // g++
#define GROUPVIT_TEST_ASAN 1
#elif defined(__has_feature)  // clang
#if __has_feature(address_sanitizer)
#define GROUPVIT_TEST_ASAN 1
#endif
#endif

TEST_CASE("keep_freed_memory_for_reuse serves the next large activation from freed memory", "[model]") {
  const bool applied = groupvit::keep_freed_memory_for_reuse();
#if defined(GROUPVIT_TEST_ASAN)
  CHECK_FALSE(applied);  // ASan's allocator takes no malloc options; the function says so
#else
  REQUIRE(applied);
  auto touch = [](int64_t floats) { return torch::ones({floats}).sum().item<double>(); };
  REQUIRE(touch(16 << 20) == static_cast<double>(16 << 20));  // 64 MiB, then freed
  const long before = minor_page_faults();
  // A slightly smaller block fits the freed one (with room for LibTorch's 64-byte alignment).
  // Mapped afresh, as glibc does by default above its 32 MiB mmap ceiling, its 15360 pages
  // would all fault in again.
  REQUIRE(touch(15 << 20) == static_cast<double>(15 << 20));
  CHECK(minor_page_faults() - before < 1000);
#endif
}

TEST_CASE("CudaGraphCache runs CPU inputs eagerly, every call", "[model]") {
  int calls = 0;
  groupvit::CudaGraphCache graphs([&](const torch::Tensor& x) -> std::vector<torch::Tensor> {
    ++calls;
    return {x * 2, x.sum()};
  });
  for (int i = 0; i < 3; ++i) {
    auto x = torch::full({2, 3}, static_cast<float>(i));
    auto out = graphs(x);
    REQUIRE(out.size() == 2);
    CHECK(torch::equal(out[0], x * 2));
    CHECK(out[1].item<float>() == 6.0f * static_cast<float>(i));
  }
  CHECK(calls == 3);
  CHECK(graphs.graphs() == 0);
  CHECK(graphs.replays() == 0);
  CHECK(graphs.fallback_reason().empty());
}

namespace {
// Names of the operators `fn` dispatches on this thread.
std::vector<std::string> operators_called(const std::function<void()>& fn) {
  static thread_local std::vector<std::string>* sink = nullptr;
  std::vector<std::string> names;
  sink = &names;
  const auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback([](const at::RecordFunction& f) -> std::unique_ptr<at::ObserverContext> {
        if (sink) sink->emplace_back(f.name());
        return nullptr;
      }));
  fn();
  at::removeCallback(handle);
  sink = nullptr;
  return names;
}

bool called(const std::vector<std::string>& names, const std::string& op) {
  return std::find(names.begin(), names.end(), op) != names.end();
}
}  // namespace

// float32 (no GROUPVIT_ONEDNN_MIN_ROWS in this suite's environment) runs MKL's GEMM, as nn.Linear
// does: bit for bit at::linear, with no timing that could pick another kernel in another process.
TEST_CASE("linear: float32 CPU inputs run at::linear bit for bit, with nothing measured", "[model]") {
  torch::manual_seed(3);
  groupvit::Linear fc(384, 1536);
  fc->reset_parameters();
  const auto big = torch::randn({3, 400, 384});
  const auto small = torch::randn({1, 260, 384});
  const auto transposed = torch::randn({3, 384, 400}).transpose(1, 2);  // the mixer MLP's strided input
  torch::NoGradGuard no_grad;
  for (const auto& x : {big, transposed, small}) {
    const auto want = at::linear(x, fc->weight, fc->bias);
    for (int call = 0; call < 2; ++call) {
      CHECK(torch::equal(groupvit::linear(fc, x), want));
      CHECK(torch::equal(groupvit::linear_activation(fc, x, "gelu"), torch::gelu(want)));
      CHECK(torch::equal(groupvit::linear_activation(fc, x, "gelu_pytorch_tanh"), torch::gelu(want, "tanh")));
    }
    const auto names = operators_called([&] {
      groupvit::linear(fc, x);
      groupvit::linear_activation(fc, x, "gelu");
    });
    CHECK_FALSE(called(names, "mkldnn::_linear_pointwise"));
  }
  for (const auto& c : groupvit::linear_kernel_choices()) CHECK(c.key.bf16);  // no float32 shape was timed
}

// bf16: where this CPU's oneDNN runs bf16, the first call of a shape times both kernels and later
// calls run the faster one; where it does not (AVX2-only CPUs), MKL's bf16 GEMM runs, untimed.
TEST_CASE("linear: bf16 CPU inputs run the kernel measured faster where oneDNN runs bf16, equal to at::linear",
          "[model]") {
  torch::manual_seed(5);
  groupvit::Linear fc(256, 512);
  fc->reset_parameters();
  fc->to(torch::kBFloat16);
  const auto x = torch::randn({2, 300, 256}).to(torch::kBFloat16);
  torch::NoGradGuard no_grad;
  const auto want = at::linear(x, fc->weight, fc->bias).to(torch::kFloat);
  const double scale = want.abs().max().item<double>();
  for (int call = 0; call < 2; ++call) {
    const auto got = groupvit::linear(fc, x);
    CHECK(got.scalar_type() == torch::kBFloat16);
    // Both round to bf16 (8 bits of mantissa), in different orders of summation.
    CHECK((got.to(torch::kFloat) - want).abs().max().item<double>() <= 2e-2 * scale);
  }
  const auto choices = groupvit::linear_kernel_choices();
  const groupvit::LinearKernelChoice* c = nullptr;
  for (const auto& k : choices)
    if (k.key.in_features == 256 && k.key.out_features == 512 && k.key.rows == 1024 && k.key.bf16) c = &k;
  const auto names = operators_called([&] { groupvit::linear(fc, x); });
  INFO("oneDNN runs bf16 on this CPU: " << groupvit::onednn_runs_bf16());
  if (!groupvit::onednn_runs_bf16()) {
    CHECK(c == nullptr);
    CHECK_FALSE(called(names, "mkldnn::_linear_pointwise"));
    CHECK(torch::equal(groupvit::linear(fc, x).to(torch::kFloat), want));
    return;
  }
  REQUIRE(c != nullptr);
  CHECK(c->mkl_s > 0);
  CHECK(c->onednn_s > 0);
  CHECK(c->onednn == (c->onednn_s < c->mkl_s));
  CHECK(called(names, "mkldnn::_linear_pointwise") == c->onednn);
}

// attention(): the fused kernel or the two matrix multiplies, measured per shape; both are the
// reference's softmax(q kᵀ / sqrt(d) + mask) v.
TEST_CASE("attention: each CPU shape runs the kernel measured faster on first use, equal to the reference maths",
          "[model]") {
  torch::manual_seed(6);
  torch::NoGradGuard no_grad;
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    const auto q = torch::randn({2, 260, 6, 64}).transpose(1, 2).to(dtype);  // as the heads' views are
    const auto k = torch::randn({2, 6, 72, 64}).to(dtype), v = torch::randn({2, 6, 72, 64}).to(dtype);
    auto mask = torch::zeros({2, 1, 1, 72});
    mask.index_put_({0, torch::indexing::Slice(), torch::indexing::Slice(), torch::indexing::Slice(60)}, -1e9);
    for (const bool masked : {false, true}) {
      const std::optional<torch::Tensor> m = masked ? std::optional<torch::Tensor>(mask.to(dtype)) : std::nullopt;
      const auto qf = q.to(torch::kDouble), kf = k.to(torch::kDouble), vf = v.to(torch::kDouble);
      auto w = torch::matmul(qf, kf.transpose(-2, -1)) / 8.0;
      if (masked) w = w + mask.to(torch::kDouble);
      const auto want = torch::matmul(torch::softmax(w, -1), vf);
      const double tol = dtype == torch::kFloat ? 1e-5 : 5e-2;
      for (int call = 0; call < 2; ++call) {
        const auto got = groupvit::attention(q, k, v, m);
        CHECK(got.scalar_type() == dtype);
        CHECK((got.to(torch::kDouble) - want).abs().max().item<double>() <= tol);
      }
      if (dtype == torch::kFloat) continue;  // float32 always runs the fused kernel: nothing measured
      const auto choices = groupvit::attention_kernel_choices();
      const groupvit::AttentionKernelChoice* c = nullptr;
      for (const auto& a : choices)
        if (a.key.batch_heads == 12 && a.key.queries == 260 && a.key.keys == 72 && a.key.masked == masked &&
            a.key.dtype == static_cast<int>(dtype))
          c = &a;
      REQUIRE(c != nullptr);
      CHECK(c->fused_s > 0);
      CHECK(c->matmuls_s > 0);
      CHECK(c->matmuls == (c->matmuls_s < c->fused_s));
      const auto names = operators_called([&] { groupvit::attention(q, k, v, m); });
      CHECK(called(names, "aten::scaled_dot_product_attention") != c->matmuls);
    }
  }
}

TEST_CASE("Linear's oneDNN copy of its weight is made once and again after the weight changes", "[model]") {
  torch::manual_seed(4);
  groupvit::Linear fc(384, 1536);
  fc->reset_parameters();
  torch::NoGradGuard no_grad;
  const auto first = fc->onednn_weight(300);
  CHECK(first.is_mkldnn());
  CHECK(torch::equal(first.to_dense(), fc->weight));
  CHECK(fc->onednn_weight(300).is_same(first));  // kept, not reordered per call
  fc->weight.add_(1.0);                          // written in place
  const auto second = fc->onednn_weight(300);
  CHECK_FALSE(second.is_same(first));
  CHECK(torch::equal(second.to_dense(), fc->weight));
  fc->weight.set_data(torch::randn({1536, 384}));  // as Module::to does
  CHECK(torch::equal(fc->onednn_weight(300).to_dense(), fc->weight));
  auto copy = std::dynamic_pointer_cast<groupvit::LinearImpl>(fc->clone());
  copy->weight.mul_(2.0);  // a clone's weight is its own
  CHECK(torch::equal(copy->onednn_weight(300).to_dense(), copy->weight));
  CHECK(torch::equal(fc->onednn_weight(300).to_dense(), fc->weight));
}

TEST_CASE("CPU inference runs a large image batch in parts of about 2048 token rows, with the same features",
          "[model]") {
  torch::manual_seed(5);
  groupvit::GroupViTModel model(tiny_config());
  model->eval();
  // 4x4 patches and 8 group tokens: 24 rows an image, 86 images a part; 200 images are three parts.
  const auto pixels = torch::randn({200, 3, 32, 32});
  const auto whole = model->get_image_features(pixels).detach();  // gradients on: one forward of all 200
  torch::NoGradGuard no_grad;
  std::vector<std::string> names;
  torch::Tensor parts;
  names = operators_called([&] { parts = model->get_image_features(pixels); });
  CHECK(std::count(names.begin(), names.end(), "aten::cat") >= 1);
  REQUIRE(parts.sizes() == whole.sizes());
  CHECK((parts - whole).abs().max().item<double>() <= 1e-5 * whole.abs().max().item<double>());
}

TEST_CASE("linear keeps autograd: with gradients it never takes the oneDNN op", "[model]") {
  groupvit::Linear fc(384, 64);
  fc->reset_parameters();
  const auto x = torch::randn({3, 400, 384}, torch::requires_grad());
  std::vector<std::string> names;
  names = operators_called([&] { groupvit::linear_activation(fc, x, "gelu").sum().backward(); });
  CHECK_FALSE(called(names, "mkldnn::_linear_pointwise"));
  REQUIRE(x.grad().defined());
  REQUIRE(fc->weight.grad().defined());
  CHECK(x.grad().abs().sum().item<double>() > 0);
}
