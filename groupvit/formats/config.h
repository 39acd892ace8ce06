// GroupViTConfig: the hyper-parameters of a GroupViT model, read from a Hugging Face
// config.json. Free of LibTorch so that the parser can be fuzzed on its own.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace groupvit {

// Thrown for any config that cannot describe a working model; the message names the file and key.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct GroupViTTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 256;
  int64_t intermediate_size = 1024;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 4;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  double dropout = 0.0;
  double attention_dropout = 0.0;
  int64_t pad_token_id = 1;
  int64_t bos_token_id = 49406;
  // The hub checkpoints carry the legacy value 2, which selects argmax(input_ids) pooling.
  int64_t eos_token_id = 49407;
};

struct GroupViTVisionConfig {
  int64_t hidden_size = 384;
  int64_t intermediate_size = 1536;
  int64_t num_hidden_layers = 12;
  std::vector<int64_t> depths = {6, 3, 3};
  std::vector<int64_t> num_group_tokens = {64, 8, 0};
  std::vector<int64_t> num_output_groups = {64, 8, 8};
  int64_t num_attention_heads = 6;
  int64_t image_height = 224;  // config "image_size": an int or [height, width]
  int64_t image_width = 224;
  int64_t patch_size = 16;
  int64_t num_channels = 3;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-5;
  double dropout = 0.0;
  double attention_dropout = 0.0;
  double assign_eps = 1.0;
  std::vector<double> assign_mlp_ratio = {0.5, 4.0};

  int64_t grid_height() const { return image_height / patch_size; }
  int64_t grid_width() const { return image_width / patch_size; }
  int64_t num_patches() const { return grid_height() * grid_width(); }
};

struct GroupViTConfig {
  GroupViTTextConfig text_config;
  GroupViTVisionConfig vision_config;
  int64_t projection_dim = 256;
  int64_t projection_intermediate_dim = 4096;
  double logit_scale_init_value = 2.6592;
  bool output_segmentation = false;

  // Parses a config.json text; `source` names it in error messages. Missing keys take the
  // Hugging Face defaults; wrong types and impossible values throw ConfigError.
  static GroupViTConfig from_json_string(const std::string& text, const std::string& source = "config.json");
  static GroupViTConfig from_file(const std::string& path);

  // Throws ConfigError when the values cannot build a model (e.g. width not divisible by heads).
  void validate(const std::string& source = "config") const;

  // A config.json that from_json_string reads back to an equal config.
  std::string to_json_string() const;
};

// Activations the reference's ACT2FN offers for these models.
bool is_supported_activation(const std::string& name);

}  // namespace groupvit
