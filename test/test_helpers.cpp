// The helpers that each exist once for the whole project (README "Layout"): filling prompt
// templates, L2 normalisation, chaining assignment maps, reading integers from JSON, reading files.
// Each is used by several callers that once had their own copies; these cases pin the one behaviour.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <limits>

#include "groupvit/formats/atomic_file.h"
#include "groupvit/formats/json_number.h"
#include "groupvit/model/model.h"
#include "groupvit/model/segmentation.h"
#include "groupvit/text/prompt_templates.h"
#include "test_support.h"

namespace {

using groupvit::test::TempDir;

TEST_CASE("fill_template replaces the first {} and appends to a template without one", "[helpers]") {
  CHECK(groupvit::fill_template("a photo of a {}.", "cat") == "a photo of a cat.");
  CHECK(groupvit::fill_template("{}", "red square") == "red square");
  CHECK(groupvit::fill_template("{} and {}", "x") == "x and {}");
  // segment/eval --templates FILE and train --phrase-template agree on this case now.
  CHECK(groupvit::fill_template("a photo of", "cat") == "a photo of cat");
  CHECK(groupvit::fill_template("", "cat") == " cat");
}

TEST_CASE("fill_templates is class-major and refuses an empty template list", "[helpers]") {
  const auto texts = groupvit::fill_templates({"cat", "dog"}, {"a {}.", "the {}"});
  CHECK(texts == std::vector<std::string>{"a cat.", "the cat", "a dog.", "the dog"});
  CHECK(groupvit::fill_templates({}, {"a {}."}).empty());
  CHECK_THROWS_AS(groupvit::fill_templates({"cat"}, {}), std::invalid_argument);
}

TEST_CASE("l2_normalize is x / ||x|| bit for bit, and keeps a zero vector zero", "[helpers]") {
  torch::manual_seed(3);
  const auto x = torch::randn({5, 7, 16});
  // The reference's own formula (transformers: x / x.norm(p=2, dim=-1, keepdim=True)).
  CHECK(torch::equal(groupvit::l2_normalize(x), x / x.norm(2, -1, true)));
  const auto unit_norms = groupvit::l2_normalize(x).norm(2, -1);
  CHECK(torch::allclose(unit_norms, torch::ones_like(unit_norms), 0, 1e-6));
  const auto zero = torch::zeros({2, 4});
  CHECK(torch::equal(groupvit::l2_normalize(zero), zero));  // F.normalize's eps, not NaN
  for (auto dtype : {torch::kHalf, torch::kBFloat16}) {
    const auto y = x.to(dtype);
    CHECK(torch::equal(groupvit::l2_normalize(y), y / y.norm(2, -1, true)));
  }
}

TEST_CASE("chain_attentions multiplies the stages' maps in turn", "[helpers]") {
  torch::manual_seed(4);
  const auto a1 = torch::rand({2, 6, 12}).softmax(1);  // [B, G1, N]
  const auto a2 = torch::rand({2, 3, 6}).softmax(1);   // [B, G2, G1]
  const auto chained = groupvit::chain_attentions({a1, a2});
  REQUIRE(chained.size() == 2);
  CHECK(torch::equal(chained[0], a1));
  // Stage 2's groups over the tokens: sum over stage-1 groups g of a2[b, k, g] * a1[b, g, n].
  CHECK(torch::allclose(chained[1], torch::einsum("bkg,bgn->bkn", {a2, a1}), 1e-6, 1e-7));
  CHECK(chained[1].sizes() == torch::IntArrayRef({2, 3, 12}));
  // Soft assignments sum to one over the groups at every stage.
  CHECK(torch::allclose(chained[1].sum(1), torch::ones({2, 12}), 1e-6, 1e-6));
  CHECK_THROWS_AS(groupvit::chain_attentions({}), std::invalid_argument);
  // grouping_from_attentions resizes the last of them.
  const auto grouping = groupvit::grouping_from_attentions({a1, a2}, 3, 4);
  CHECK(grouping.sizes() == torch::IntArrayRef({2, 3, 3, 4}));
  CHECK(torch::allclose(grouping, chained[1].reshape({2, 3, 3, 4}), 1e-6, 1e-7));
}

TEST_CASE("json_integer takes integers and whole floats below 2^53, nothing else", "[helpers]") {
  using nlohmann::json;
  CHECK(groupvit::json_integer(json::parse("224")) == 224);
  CHECK(groupvit::json_integer(json::parse("-3")) == -3);
  CHECK(groupvit::json_integer(json::parse("224.0")) == 224);
  CHECK(groupvit::json_integer(json::parse("9007199254740991.0")) == 9007199254740991);
  CHECK_FALSE(groupvit::json_integer(json::parse("9007199254740992.0")));
  CHECK_FALSE(groupvit::json_integer(json::parse("2.5")));
  CHECK_FALSE(groupvit::json_integer(json::parse("1e300")));
  CHECK_FALSE(groupvit::json_integer(json::parse("\"224\"")));
  CHECK_FALSE(groupvit::json_integer(json::parse("null")));
  CHECK_FALSE(groupvit::json_integer(json::parse("[224]")));
}

TEST_CASE("read_file returns the bytes, or nothing for a missing file", "[helpers]") {
  TempDir dir;
  const auto path = (dir.path / "bytes.bin").string();
  const std::string bytes("a\0b\nc", 5);
  std::ofstream(path, std::ios::binary) << bytes;
  CHECK(groupvit::read_file(path) == bytes);
  CHECK_FALSE(groupvit::read_file((dir.path / "missing").string()));
  CHECK_FALSE(groupvit::read_file(dir.path.string()));  // a directory cannot be read as a file
}

}  // namespace
