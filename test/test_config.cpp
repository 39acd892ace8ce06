// GroupViTConfig: Hugging Face defaults, legacy keys, and clear errors for bad values.
#include <catch2/catch.hpp>

#include "groupvit/formats/config.h"

using groupvit::ConfigError;
using groupvit::GroupViTConfig;

TEST_CASE("an empty config takes the Hugging Face defaults", "[config]") {
  auto c = GroupViTConfig::from_json_string("{}");
  CHECK(c.text_config.vocab_size == 49408);
  CHECK(c.text_config.hidden_size == 256);
  CHECK(c.text_config.num_hidden_layers == 12);
  CHECK(c.text_config.hidden_act == "quick_gelu");
  CHECK(c.text_config.eos_token_id == 49407);
  CHECK(c.vision_config.hidden_size == 384);
  CHECK(c.vision_config.depths == std::vector<int64_t>{6, 3, 3});
  CHECK(c.vision_config.num_group_tokens == std::vector<int64_t>{64, 8, 0});
  CHECK(c.vision_config.num_output_groups == std::vector<int64_t>{64, 8, 8});
  CHECK(c.vision_config.assign_mlp_ratio == std::vector<double>{0.5, 4.0});
  CHECK(c.vision_config.hidden_act == "gelu");
  CHECK(c.vision_config.num_patches() == 196);
  CHECK(c.projection_dim == 256);
  CHECK(c.projection_intermediate_dim == 4096);
  CHECK(c.logit_scale_init_value == Approx(2.6592));
}

TEST_CASE("values are read from nested configs; legacy *_config_dict keys win", "[config]") {
  auto c = GroupViTConfig::from_json_string(R"({
    "projection_dim": 128,
    "text_config": {"hidden_size": 64, "num_attention_heads": 2, "eos_token_id": 2, "unknown_key": [1, 2]},
    "text_config_dict": {"hidden_size": 96, "num_attention_heads": 3},
    "vision_config": {"image_size": [224, 320], "patch_size": 16, "assign_mlp_ratio": 2,
                      "depths": [2, 2], "num_group_tokens": [8, 0], "num_output_groups": [4, 4]},
    "architectures": ["GroupViTModel"], "torch_dtype": "float32"
  })");
  CHECK(c.projection_dim == 128);
  CHECK(c.text_config.hidden_size == 96);
  CHECK(c.text_config.num_attention_heads == 3);
  CHECK(c.text_config.eos_token_id == 2);
  CHECK(c.vision_config.image_height == 224);
  CHECK(c.vision_config.image_width == 320);
  CHECK(c.vision_config.grid_width() == 20);
  CHECK(c.vision_config.assign_mlp_ratio == std::vector<double>{2.0, 2.0});
}

TEST_CASE("to_json_string round-trips", "[config]") {
  auto c = GroupViTConfig::from_json_string(R"({"vision_config": {"image_size": [64, 96], "patch_size": 8},
                                                "text_config": {"vocab_size": 1000, "eos_token_id": 999}})");
  auto d = GroupViTConfig::from_json_string(c.to_json_string());
  CHECK(d.to_json_string() == c.to_json_string());
  CHECK(d.vision_config.image_width == 96);
  CHECK(d.text_config.eos_token_id == 999);
}

TEST_CASE("wrong types and impossible values give errors naming the key", "[config]") {
  struct Case {
    const char* json;
    const char* message;
  };
  const Case cases[] = {
      {"not json", "not valid JSON"},
      {"[1, 2]", "JSON object"},
      {R"({"text_config": {"hidden_size": "wide"}})", "text_config.hidden_size: expected an integer"},
      {R"({"text_config": {"hidden_size": 2.5}})", "text_config.hidden_size: expected an integer"},
      {R"({"text_config": 3})", "text_config: expected an object"},
      {R"({"text_config": {"hidden_size": 100, "num_attention_heads": 3}})", "not divisible by num_attention_heads"},
      {R"({"vision_config": {"hidden_size": 100}})", "not divisible by num_attention_heads"},
      {R"({"vision_config": {"depths": [6, 3]}})", "different lengths"},
      {R"({"vision_config": {"depths": [6, "3", 3]}})", "vision_config.depths: expected a list of integers"},
      {R"({"vision_config": {"image_size": 225}})", "not a multiple of patch_size"},
      {R"({"vision_config": {"image_size": [224]}})", "vision_config.image_size"},
      {R"({"vision_config": {"hidden_act": "mish"}})", "unsupported activation"},
      {R"({"vision_config": {"num_group_tokens": [0, 0, 0]}})", "at least one stage needs group tokens"},
      {R"({"vision_config": {"num_output_groups": [0, 8, 8]}})", "must be positive"},
      {R"({"vision_config": {"patch_size": 0}})", "patch_size = 0 is out of range"},
      {R"({"vision_config": {"assign_mlp_ratio": [0.5]}})", "two ratios"},
      {R"({"text_config": {"eos_token_id": [49407, 2]}})", "list of ids is not supported"},
      {R"({"text_config": {"vocab_size": -5}})", "vocab_size = -5 is out of range"},
      {R"({"text_config": {"num_hidden_layers": 99999999999}})", "out of range"},
      {R"({"projection_dim": 0})", "projection_dim"},
      {R"({"output_segmentation": "yes"})", "expected true or false"},
      {R"({"logit_scale_init_value": null})", "expected a number"},
  };
  for (const auto& c : cases) {
    INFO(c.json);
    CHECK_THROWS_AS(GroupViTConfig::from_json_string(c.json, "model/config.json"), ConfigError);
    CHECK_THROWS_WITH(GroupViTConfig::from_json_string(c.json, "model/config.json"),
                      Catch::Contains("model/config.json") && Catch::Contains(c.message));
  }
}

TEST_CASE("numbers beyond double range are a ConfigError, not an escaping json exception", "[config]") {
  // Found by fuzz_config (issue 7): nlohmann throws out_of_range, not parse_error, for 1e400.
  for (const char* text :
       {R"({"projection_dim": 1e400})", "15643e1111111", R"({"text_config": {"hidden_size": -1e999}})"}) {
    INFO(text);
    CHECK_THROWS_AS(GroupViTConfig::from_json_string(text, "model/config.json"), ConfigError);
    CHECK_THROWS_WITH(GroupViTConfig::from_json_string(text, "model/config.json"),
                      Catch::Contains("model/config.json") && Catch::Contains("number overflow"));
  }
}

TEST_CASE("a missing config file names its path", "[config]") {
  CHECK_THROWS_WITH(GroupViTConfig::from_file("/nonexistent/config.json"),
                    Catch::Contains("/nonexistent/config.json") && Catch::Contains("cannot open"));
}
