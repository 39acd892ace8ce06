// Parity of the C++ model with Hugging Face transformers, stage by stage.
//
// scripts/make_parity_fixtures.py builds seeded checkpoints with transformers, saves them as a
// user's download would be, converts them with scripts/convert_hf.py and records reference
// outputs. Here the converted directory goes through groupvit::load_model, exactly as a user's
// would, and every output is compared with a stated tolerance.
//
// Tolerances (fp32, CPU). Errors are measured relative to the reference tensor's largest
// magnitude (max|ours - ref| / max|ref|), so one number fits tensors of any scale:
//   hidden states, pooled outputs, features, embeddings, logits, loss:  1e-4
//   soft assignment maps (probabilities):                              1e-4
//   segmentation logits (products of two logit scales):                1e-4
//   gradients of the contrastive loss:                                  1e-3, each tensor's
//       scale floored at 1e-2 of the model's largest gradient (see run_gradients)
// The hard assignment is checked separately: any token whose argmax group differs from the
// reference's is reported with its stage, image, token and the reference's top-1/top-2 margin.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "groupvit/model/model.h"
#include "groupvit/model/weights.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using groupvit::test::fixtures_dir;
using groupvit::test::scaled_error;

constexpr double kFeatureTol = 1e-4;
constexpr double kGradTol = 1e-3;

struct ParityCase {
  std::string name;
  fs::path dir;
  nlohmann::json info;
  std::map<std::string, torch::Tensor> ref;
  std::string model_dir;  // the converted model directory (info.json holds it relative to dir)
};

ParityCase load_case(const std::string& name) {
  ParityCase c;
  c.name = name;
  c.dir = fs::path(fixtures_dir()) / "parity" / name;
  std::ifstream in(c.dir / "info.json");
  REQUIRE(in.good());
  in >> c.info;
  c.ref = groupvit::test::load_tensor_dict((c.dir / "ref.pt").string());
  c.model_dir = (c.dir / c.info.at("model_dir").get<std::string>()).lexically_normal().string();
  return c;
}

// Relative error against the reference's scale; prints one line per comparison so that the
// test log is the parity report.
void check(const std::string& config, const std::string& what, const torch::Tensor& ours, const torch::Tensor& ref,
           double tol) {
  INFO(config << ": " << what);
  REQUIRE(ours.defined());
  REQUIRE(ours.sizes() == ref.sizes());
  REQUIRE(torch::isfinite(ours).all().item<bool>());
  const double err = scaled_error(ours, ref);
  std::cout << "[parity] " << std::left << std::setw(16) << config << std::setw(44) << what << " rel.err "
            << std::scientific << std::setprecision(2) << err << "  (tol " << tol << ")" << std::defaultfloat << "\n";
  CHECK(err <= tol);
}

// Compares the hard assignment (argmax over groups) with the reference's and reports every
// flipped token with the reference's margin between its two best groups.
void check_assignments(const ParityCase& c, const std::vector<torch::Tensor>& ours) {
  for (size_t s = 0; s < ours.size(); ++s) {
    const auto& ref = c.ref.at("vision.attentions." + std::to_string(s));
    auto ours_arg = ours[s].argmax(1);
    auto ref_arg = ref.argmax(1);
    auto flipped = (ours_arg != ref_arg).nonzero();
    std::ostringstream report;
    for (int64_t i = 0; i < flipped.size(0); ++i) {
      const auto b = flipped[i][0].item<int64_t>(), t = flipped[i][1].item<int64_t>();
      auto top2 = std::get<0>(ref.index({b, torch::indexing::Slice(), t}).topk(2));
      report << "\n  stage " << s << " image " << b << " token " << t << ": ours group "
             << ours_arg[b][t].item<int64_t>() << ", reference group " << ref_arg[b][t].item<int64_t>()
             << ", reference margin " << (top2[0] - top2[1]).item<double>();
    }
    INFO(c.name << ": hard assignment flips" << report.str());
    CHECK(flipped.size(0) == 0);
  }
}

void run_parity(const std::string& name) {
  auto c = load_case(name);
  auto model = groupvit::load_model(c.model_dir);
  torch::NoGradGuard no_grad;
  const auto& ids = c.ref.at("input.input_ids");
  const auto& mask = c.ref.at("input.attention_mask");
  const auto& pixels = c.ref.at("input.pixel_values");

  groupvit::GroupViTForwardOptions o;
  o.output_hidden_states = true;
  o.output_attentions = true;
  o.output_segmentation = true;
  o.return_loss = c.ref.count("loss") > 0;
  auto out = model->forward(ids, pixels, mask, o);

  // The assignment first: a flip would explain every later difference.
  REQUIRE(out.vision_model_output.attentions.size() ==
          static_cast<size_t>(c.ref.count("vision.attentions.0") + c.ref.count("vision.attentions.1") +
                              c.ref.count("vision.attentions.2")));
  check_assignments(c, out.vision_model_output.attentions);

  const auto& text = out.text_model_output;
  const auto& vision = out.vision_model_output;
  for (size_t i = 0; i < text.hidden_states.size(); ++i)
    check(name, "text.hidden_states." + std::to_string(i), text.hidden_states[i],
          c.ref.at("text.hidden_states." + std::to_string(i)), kFeatureTol);
  REQUIRE(c.ref.count("text.hidden_states." + std::to_string(text.hidden_states.size())) == 0);
  check(name, "text.last_hidden_state", text.last_hidden_state, c.ref.at("text.last_hidden_state"), kFeatureTol);
  check(name, "text.pooler_output", text.pooler_output, c.ref.at("text.pooler_output"), kFeatureTol);
  for (size_t i = 0; i < vision.hidden_states.size(); ++i)
    check(name, "vision.hidden_states." + std::to_string(i), vision.hidden_states[i],
          c.ref.at("vision.hidden_states." + std::to_string(i)), kFeatureTol);
  REQUIRE(c.ref.count("vision.hidden_states." + std::to_string(vision.hidden_states.size())) == 0);
  for (size_t i = 0; i < vision.attentions.size(); ++i)
    check(name, "vision.attentions." + std::to_string(i), vision.attentions[i],
          c.ref.at("vision.attentions." + std::to_string(i)), kFeatureTol);
  check(name, "vision.last_hidden_state", vision.last_hidden_state, c.ref.at("vision.last_hidden_state"), kFeatureTol);
  check(name, "vision.pooler_output", vision.pooler_output, c.ref.at("vision.pooler_output"), kFeatureTol);

  check(name, "text_features (get_text_features)", model->get_text_features(ids, mask), c.ref.at("text_features"),
        kFeatureTol);
  check(name, "image_features (get_image_features)", model->get_image_features(pixels), c.ref.at("image_features"),
        kFeatureTol);
  check(name, "text_embeds", out.text_embeds, c.ref.at("text_embeds"), kFeatureTol);
  check(name, "image_embeds", out.image_embeds, c.ref.at("image_embeds"), kFeatureTol);
  check(name, "logits_per_text", out.logits_per_text, c.ref.at("logits_per_text"), kFeatureTol);
  check(name, "logits_per_image", out.logits_per_image, c.ref.at("logits_per_image"), kFeatureTol);
  check(name, "segmentation_logits", out.segmentation_logits, c.ref.at("segmentation_logits"), kFeatureTol);
  if (o.return_loss) check(name, "loss", out.loss, c.ref.at("loss"), kFeatureTol);

  // Training mode: BatchNorm normalises with the batch's statistics.
  model->train();
  check(name, "train-mode text_features (batch-stat BN)", model->get_text_features(ids, mask),
        c.ref.at("train.text_features"), kFeatureTol);
  model->eval();
}

void run_gradients(const std::string& name) {
  auto c = load_case(name);
  REQUIRE(c.ref.count("loss") == 1);
  auto model = groupvit::load_model(c.model_dir);
  groupvit::GroupViTForwardOptions o;
  o.return_loss = true;
  auto out =
      model->forward(c.ref.at("input.input_ids"), c.ref.at("input.pixel_values"), c.ref.at("input.attention_mask"), o);
  out.loss.backward();
  // Some gradients are zero in exact arithmetic (a key bias under softmax, a bias that a
  // LayerNorm removes) and hold only rounding noise in both implementations (seen: up to
  // 7e-7 absolute against a largest gradient of 0.16). Each tensor's scale is therefore
  // floored at 1e-2 of the model's largest gradient: an absolute floor of 1e-5 of it, far
  // below what any real defect produces, so that noise is not compared with noise.
  double largest = 0;
  for (const auto& [key, g] : c.ref)
    if (key.rfind("grad.", 0) == 0) largest = std::max(largest, g.abs().max().item<double>());
  const double floor = 1e-2 * largest;
  size_t compared = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& p : model->named_parameters()) {
    auto it = c.ref.find("grad." + p.key());
    if (it == c.ref.end()) {
      INFO(name << ": the reference has no gradient for " << p.key());
      CHECK((!p.value().grad().defined() || p.value().grad().abs().max().item<double>() == 0.0));
      continue;
    }
    INFO(name << ": gradient of " << p.key());
    REQUIRE(p.value().grad().defined());
    const double err = scaled_error(p.value().grad(), it->second, floor);
    CHECK(err <= kGradTol);
    if (err > worst) worst = err, worst_name = p.key();
    ++compared;
  }
  std::cout << "[parity] " << std::left << std::setw(16) << name << "gradients of " << compared
            << " parameters, worst rel.err " << std::scientific << std::setprecision(2) << worst << " (" << worst_name
            << ", tol " << kGradTol << ")" << std::defaultfloat << "\n";
  CHECK(compared > 0);
}

}  // namespace

TEST_CASE("full-size default config matches transformers", "[parity]") { run_parity("full"); }
TEST_CASE("full-size config at 224x320 matches the reference modules with interpolation", "[parity]") {
  run_parity("full_nonsquare");
}
TEST_CASE("small config matches transformers", "[parity]") { run_parity("small"); }
TEST_CASE("small config at 48x80 matches the reference modules with interpolation", "[parity]") {
  run_parity("small_nonsquare");
}
TEST_CASE("two-stage config matches transformers", "[parity]") { run_parity("two_stage"); }

TEST_CASE("gradients of the contrastive loss match transformers", "[parity]") {
  for (const char* name : {"small", "two_stage", "full"}) {
    SECTION(name) { run_gradients(name); }
  }
}

TEST_CASE("module tree names equal the checkpoint's state-dict keys", "[parity]") {
  for (const char* name : {"full", "small", "two_stage"}) {
    auto c = load_case(name);
    const std::string& model_dir = c.model_dir;
    auto archive = groupvit::read_weights_file((fs::path(model_dir) / groupvit::kArchiveFile).string());
    groupvit::GroupViTModel model(groupvit::GroupViTConfig::from_file((fs::path(model_dir) / "config.json").string()));
    std::set<std::string> ours, theirs;
    for (const auto& p : model->named_parameters()) ours.insert(p.key());
    for (const auto& b : model->named_buffers()) ours.insert(b.key());
    for (const auto& [key, tensor] : archive) theirs.insert(key);
    INFO(name);
    CHECK(ours == theirs);
  }
}

TEST_CASE("a Hugging Face directory loads directly and equals the converted one", "[parity]") {
  // full and two_stage were saved as model.safetensors, small as pytorch_model.bin, which
  // only the converter reads.
  auto small = load_case("small");
  REQUIRE_THROWS_WITH(groupvit::load_model((small.dir / "hf").string()),
                      Catch::Contains("pytorch_model.bin") && Catch::Contains("convert_hf.py"));
  for (const char* name : {"two_stage", "full"}) {
    auto c = load_case(name);
    auto converted = groupvit::load_model(c.model_dir);
    auto direct = groupvit::load_model((c.dir / "hf").string());
    auto a = converted->named_parameters();
    auto b = direct->named_parameters();
    REQUIRE(a.size() == b.size());
    for (const auto& p : a) {
      INFO(name << ": " << p.key());
      CHECK(torch::equal(p.value(), b[p.key()]));
    }
    for (const auto& buf : converted->named_buffers()) {
      INFO(name << ": " << buf.key());
      CHECK(torch::equal(buf.value(), direct->named_buffers()[buf.key()]));
    }
    // The converter's torch.save archive holds the same tensors as its model.safetensors.
    groupvit::GroupViTModel from_archive(converted->config());
    groupvit::load_state_dict(*from_archive,
                              groupvit::read_weights_file((fs::path(c.model_dir) / groupvit::kArchiveFile).string()),
                              "archive");
    for (const auto& p : from_archive->named_parameters()) {
      INFO(name << ": archive " << p.key());
      CHECK(torch::equal(p.value(), a[p.key()]));
    }
  }
}

TEST_CASE("fp16 and bf16 storage from the converter load as the rounded fp32 weights", "[parity]") {
  auto c = load_case("small");
  auto reference = groupvit::load_model(c.model_dir);
  for (auto [suffix, dtype] :
       {std::pair<const char*, torch::Dtype>{"fp16", torch::kHalf}, {"bf16", torch::kBFloat16}}) {
    const auto dir = c.dir / (std::string("model_") + suffix);
    for (const auto& [key, t] : groupvit::read_weights_file((dir / groupvit::kArchiveFile).string())) {
      INFO(suffix << " archive " << key);
      if (t.is_floating_point()) CHECK(t.scalar_type() == dtype);
    }
    auto stored = groupvit::load_model(dir.string());
    auto expected = reference->named_parameters();
    for (const auto& p : stored->named_parameters()) {
      INFO(suffix << ": " << p.key());
      CHECK(torch::equal(p.value(), expected[p.key()].to(dtype).to(torch::kFloat)));
    }
  }
}
