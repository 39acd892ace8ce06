// Parity on CUDA against the same transformers fixtures as the CPU suite.
//   fp32: the CPU tolerances (TF32 disabled so that matmuls and convolutions are true fp32).
//   fp16 / bf16: image and text embeddings by cosine similarity with the reference, and the
//   share of image tokens whose hard assignment agrees with the reference's.
#include <ATen/Context.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "../test_support.h"
#include "groupvit/model/model.h"
#include "groupvit/model/weights.h"

namespace {

namespace fs = std::filesystem;

struct Fixture {
  std::string model_dir;
  std::map<std::string, torch::Tensor> ref;
};

Fixture load_fixture(const std::string& name) {
  const auto dir = fs::path(groupvit::test::fixtures_dir()) / "parity" / name;
  nlohmann::json info;
  std::ifstream(dir / "info.json") >> info;
  return {(dir / info.at("model_dir").get<std::string>()).lexically_normal().string(),
          groupvit::test::load_tensor_dict((dir / "ref.pt").string())};
}

double min_cosine(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.to(torch::kCPU, torch::kDouble), y = b.to(torch::kDouble);
  return torch::cosine_similarity(x, y, 1).min().item<double>();
}

double assignment_agreement(const std::vector<torch::Tensor>& ours, const std::map<std::string, torch::Tensor>& ref) {
  double agree = 0, total = 0;
  for (size_t s = 0; s < ours.size(); ++s) {
    auto r = ref.at("vision.attentions." + std::to_string(s)).argmax(1);
    auto o = ours[s].to(torch::kCPU).argmax(1);
    agree += (o == r).sum().item<double>();
    total += static_cast<double>(r.numel());
  }
  return agree / total;
}

void run(const std::string& name, torch::Dtype dtype, double min_cos, double min_agree, double fp32_tol) {
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  auto f = load_fixture(name);
  groupvit::LoadOptions lo;
  lo.device = torch::Device(torch::kCUDA, 0);
  lo.dtype = dtype;
  auto model = groupvit::load_model(f.model_dir, lo);
  torch::NoGradGuard no_grad;
  groupvit::GroupViTForwardOptions o;
  o.output_attentions = true;
  o.output_segmentation = true;
  auto ids = f.ref.at("input.input_ids").to(lo.device);
  auto mask = f.ref.at("input.attention_mask").to(lo.device);
  auto pixels = f.ref.at("input.pixel_values").to(lo.device, dtype);
  auto out = model->forward(ids, pixels, mask, o);
  const double cos_img = min_cosine(out.image_embeds, f.ref.at("image_embeds"));
  const double cos_txt = min_cosine(out.text_embeds, f.ref.at("text_embeds"));
  const double agree = assignment_agreement(out.vision_model_output.attentions, f.ref);
  std::cout << "[cuda] " << name << " " << c10::toString(dtype) << ": image cos " << cos_img << ", text cos " << cos_txt
            << ", assignment agreement " << agree << "\n";
  CHECK(cos_img >= min_cos);
  CHECK(cos_txt >= min_cos);
  CHECK(agree >= min_agree);
  if (fp32_tol > 0) {
    for (const char* key : {"image_embeds", "text_embeds", "logits_per_image", "segmentation_logits"}) {
      const torch::Tensor& ours = key == std::string("image_embeds")       ? out.image_embeds
                                  : key == std::string("text_embeds")      ? out.text_embeds
                                  : key == std::string("logits_per_image") ? out.logits_per_image
                                                                           : out.segmentation_logits;
      auto r = f.ref.at(key).to(torch::kDouble);
      const double err = (ours.to(torch::kCPU, torch::kDouble) - r).abs().max().item<double>() /
                         std::max(r.abs().max().item<double>(), 1e-30);
      std::cout << "[cuda] " << name << " fp32 " << key << " rel.err " << err << "\n";
      INFO(name << " " << key);
      CHECK(err <= fp32_tol);
    }
  }
}

}  // namespace

TEST_CASE("CUDA fp32 matches transformers tightly", "[cuda]") {
  for (const char* name : {"full", "full_nonsquare", "small", "two_stage"})
    run(name, torch::kFloat, 0.99999, 1.0, 1e-4);
}

TEST_CASE("CUDA fp16 keeps embeddings and assignments", "[cuda]") {
  for (const char* name : {"full", "small"}) run(name, torch::kHalf, 0.999, 0.98, 0);
}

TEST_CASE("CUDA bf16 keeps embeddings and assignments", "[cuda]") {
  for (const char* name : {"full", "small"}) run(name, torch::kBFloat16, 0.99, 0.95, 0);
}
