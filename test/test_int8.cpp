// Dynamic int8 (LoadOptions::int8_linear, the CLI's --dtype int8) against the reference's own
// dynamic quantization, and against float32.
//
// scripts/make_int8_fixtures.py quantizes each parity fixture's Hugging Face checkpoint with
// torch.ao.quantization.quantize_dynamic (per-channel symmetric int8 weights, FBGEMM, every
// nn.Linear but the assign q_proj / k_proj) and records its features and soft assignments on the
// case's inputs. The converted directory is loaded here as a user's would be.
//
// Tolerances, measured as in test_parity.cpp (max|ours - ref| / max|ref|):
//   features and soft assignments vs the quantized reference: kInt8Tol, or twice what the reference
//     moves from itself when its input changes by 1e-7 (meta.nudged_feature_err), whichever is larger.
//     Activations are quantized per call with scales taken from each activation's range, so a float32
//     rounding difference upstream (ours and transformers' float32 ops agree to ~1e-6) re-rounds them;
//     where the model's assignments are near-tied, as in the seeded full-size fixture, that flips hard
//     assignments and the features follow (measured there: the reference against itself, 13% of stage-0
//     tokens and 9.8% of the features' scale). Measured here: 0 on the small and two-stage cases.
//   hard assignments: agreement with the reference at least 1 - 2 x (1 - its self-agreement under the
//     same nudge), and at least 0.98 where it agrees with itself fully; soft ones compared only then.
//   embeddings vs float32 (ref.pt): cosine >= kMinCosine per row, the int8 target of issue #20.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "groupvit/model/model.h"
#include "groupvit/model/weights.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using groupvit::test::fixtures_dir;
using groupvit::test::scaled_error;

constexpr double kInt8Tol = 2e-2;
constexpr double kMinCosine = 0.995;

struct Int8Case {
  std::string model_dir;
  std::map<std::string, torch::Tensor> fp32, int8;
};

Int8Case load_int8_case(const std::string& name) {
  const auto dir = fs::path(fixtures_dir()) / "parity" / name;
  nlohmann::json info;
  std::ifstream in(dir / "info.json");
  REQUIRE(in.good());
  in >> info;
  Int8Case c;
  c.model_dir = (dir / info.at("model_dir").get<std::string>()).lexically_normal().string();
  c.fp32 = groupvit::test::load_tensor_dict((dir / "ref.pt").string());
  c.int8 = groupvit::test::load_tensor_dict((dir / "int8_ref.pt").string());
  return c;
}

groupvit::GroupViTModel load_int8(const std::string& dir) {
  groupvit::LoadOptions o;
  o.int8_linear = true;
  return groupvit::load_model(dir, o);
}

void report(const std::string& name, const std::string& what, double value, const std::string& bound) {
  std::cout << "[int8] " << std::left << std::setw(12) << name << std::setw(52) << what << std::setprecision(6) << value
            << "  (" << bound << ")\n";
}

double min_cosine(const torch::Tensor& a, const torch::Tensor& b) {
  return torch::nn::functional::cosine_similarity(a, b, torch::nn::functional::CosineSimilarityFuncOptions().dim(1))
      .min()
      .item<double>();
}

void run_int8(const std::string& name) {
  auto c = load_int8_case(name);
  auto model = load_int8(c.model_dir);
  torch::NoGradGuard no_grad;
  const auto& ids = c.fp32.at("input.input_ids");
  const auto& mask = c.fp32.at("input.attention_mask");
  const auto& pixels = c.fp32.at("input.pixel_values");

  const double nudged_err = c.int8.at("meta.nudged_feature_err").item<double>();
  const auto nudged_agreement = c.int8.at("meta.nudged_agreement");
  const double feature_tol = std::max(kInt8Tol, 2 * nudged_err);
  const auto image = model->get_image_features(pixels);
  const auto text = model->get_text_features(ids, mask);
  for (const auto& [what, ours, ref] : {std::tuple{"image_features", image, c.int8.at("image_features")},
                                        std::tuple{"text_features", text, c.int8.at("text_features")}}) {
    INFO(name << ": " << what);
    REQUIRE(ours.sizes() == ref.sizes());
    const double err = scaled_error(ours, ref);
    report(name, std::string(what) + " vs quantize_dynamic, rel.err", err, "tol " + std::to_string(feature_tol));
    CHECK(err <= feature_tol);
  }
  const double image_cos = min_cosine(image, c.fp32.at("image_features"));
  const double text_cos = min_cosine(text, c.fp32.at("text_features"));
  report(name, "image_features vs float32, min cosine", image_cos, ">= " + std::to_string(kMinCosine));
  report(name, "text_features vs float32, min cosine", text_cos, ">= " + std::to_string(kMinCosine));
  CHECK(image_cos >= kMinCosine);
  CHECK(text_cos >= kMinCosine);

  groupvit::GroupViTForwardOptions o;
  o.output_attentions = true;
  const auto out = model->forward(ids, pixels, mask, o);
  const auto& stages = out.vision_model_output.attentions;
  REQUIRE(!stages.empty());
  for (size_t s = 0; s < stages.size(); ++s) {
    const auto key = "vision.attentions." + std::to_string(s);
    const auto& ref = c.int8.at(key);
    INFO(name << ": " << key);
    REQUIRE(stages[s].sizes() == ref.sizes());
    const double self_agreement = nudged_agreement[static_cast<int64_t>(s)].item<double>();
    if (self_agreement == 1.0) CHECK(scaled_error(stages[s], ref) <= kInt8Tol);
    const auto ours_arg = stages[s].argmax(1);
    const double vs_int8 = (ours_arg == ref.argmax(1)).to(torch::kDouble).mean().item<double>();
    const double vs_fp32 = (ours_arg == c.fp32.at(key).argmax(1)).to(torch::kDouble).mean().item<double>();
    const double min_agreement = std::min(0.98, 1 - 2 * (1 - self_agreement));
    report(name, key + " hard assignment = quantize_dynamic's", vs_int8,
           ">= " + std::to_string(min_agreement) + "; the reference nudged: " + std::to_string(self_agreement));
    report(name, key + " hard assignment = float32's", vs_fp32, "share of tokens");
    CHECK(vs_int8 >= min_agreement);
  }
}

}  // namespace

TEST_CASE("int8: full-size model matches the reference's quantize_dynamic and stays close to float32", "[int8]") {
  run_int8("full");
}
TEST_CASE("int8: small config matches the reference's quantize_dynamic", "[int8]") { run_int8("small"); }
TEST_CASE("int8: two-stage config matches the reference's quantize_dynamic", "[int8]") { run_int8("two_stage"); }

TEST_CASE("int8: every Linear but the assignment logits' is quantized, with no float weight left", "[int8]") {
  auto c = load_int8_case("small");
  auto model = load_int8(c.model_dir);
  size_t quantized = 0, kept = 0;
  for (const auto& item : model->named_modules()) {
    const auto* layer = dynamic_cast<const groupvit::LinearImpl*>(item.value().get());
    if (layer == nullptr) continue;
    const bool assign_logits =
        item.key().find("assign.q_proj") != std::string::npos || item.key().find("assign.k_proj") != std::string::npos;
    INFO(item.key());
    CHECK(layer->is_int8() == !assign_logits);
    CHECK(layer->weight.numel() == (assign_logits ? layer->in_features * layer->out_features : 0));
    (assign_logits ? kept : quantized) += 1;
  }
  CHECK(static_cast<int64_t>(quantized) == c.int8.at("meta.quantized_layers").item<int64_t>());
  CHECK(kept > 0);
}

TEST_CASE("int8: refused off the CPU or with half-precision activations", "[int8]") {
  auto c = load_int8_case("small");
  groupvit::LoadOptions o;
  o.int8_linear = true;
  o.dtype = torch::kBFloat16;
  CHECK_THROWS_WITH(groupvit::load_model(c.model_dir, o), Catch::Contains("CPU and float32"));
}
