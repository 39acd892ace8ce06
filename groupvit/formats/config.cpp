// Reads and validates GroupViTConfig from Hugging Face config.json files.
#include "groupvit/formats/config.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "groupvit/formats/atomic_file.h"
#include "groupvit/formats/json_number.h"

namespace groupvit {
namespace {

using json = nlohmann::json;

// Reads keys of one JSON object, naming "source: section.key" in every error.
class Reader {
 public:
  Reader(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  void get(const char* key, int64_t& out) const {
    const json* v = find(key);
    if (!v) return;
    const auto value = json_integer(*v);
    if (!value) fail(key, "expected an integer, got " + describe(*v));
    out = *value;
  }
  void get(const char* key, double& out) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_number()) fail(key, "expected a number, got " + describe(*v));
    out = v->get<double>();
    if (!std::isfinite(out)) fail(key, "expected a finite number");
  }
  void get(const char* key, bool& out) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_boolean()) fail(key, "expected true or false, got " + describe(*v));
    out = v->get<bool>();
  }
  void get(const char* key, std::string& out) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_string()) fail(key, "expected a string, got " + describe(*v));
    out = v->get<std::string>();
  }
  void get(const char* key, std::vector<int64_t>& out) const {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_array()) fail(key, "expected a list of integers, got " + describe(*v));
    std::vector<int64_t> values;
    for (const auto& item : *v) {
      if (!item.is_number_integer()) fail(key, "expected a list of integers, found " + describe(item));
      values.push_back(item.get<int64_t>());
    }
    out = std::move(values);
  }
  void get(const char* key, std::vector<double>& out) const {
    const json* v = find(key);
    if (!v) return;
    std::vector<double> values;
    if (v->is_number()) {  // the reference accepts one ratio for both MLPs
      values = {v->get<double>(), v->get<double>()};
    } else if (v->is_array()) {
      for (const auto& item : *v) {
        if (!item.is_number()) fail(key, "expected a list of numbers, found " + describe(item));
        values.push_back(item.get<double>());
      }
    } else {
      fail(key, "expected a number or a list of numbers, got " + describe(*v));
    }
    out = std::move(values);
  }
  // A token id that the reference allows to be null (meaning "none"): kept as -1.
  void get_token_id(const char* key, int64_t& out) const {
    const json* v = find(key);
    if (!v) return;
    if (v->is_null()) {
      out = -1;
    } else if (v->is_array()) {
      fail(key, "a list of ids is not supported; give one integer id");
    } else {
      get(key, out);
    }
  }
  void get_image_size(const char* key, int64_t& height, int64_t& width) const {
    const json* v = find(key);
    if (!v) return;
    if (v->is_number_integer()) {
      height = width = v->get<int64_t>();
    } else if (v->is_array() && v->size() == 2 && (*v)[0].is_number_integer() && (*v)[1].is_number_integer()) {
      height = (*v)[0].get<int64_t>();
      width = (*v)[1].get<int64_t>();
    } else {
      fail(key, "expected an integer or [height, width], got " + describe(*v));
    }
  }

  const json* find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }
  [[noreturn]] void fail(const char* key, const std::string& what) const {
    throw ConfigError(where_ + "." + key + ": " + what);
  }

 private:
  static std::string describe(const json& v) {
    std::string text = v.dump();
    if (text.size() > 40) text = text.substr(0, 37) + "...";
    return std::string(v.type_name()) + " " + text;
  }
  const json& obj_;
  std::string where_;
};

void read_text(const json& obj, const std::string& where, GroupViTTextConfig& c) {
  Reader r(obj, where);
  r.get("vocab_size", c.vocab_size);
  r.get("hidden_size", c.hidden_size);
  r.get("intermediate_size", c.intermediate_size);
  r.get("num_hidden_layers", c.num_hidden_layers);
  r.get("num_attention_heads", c.num_attention_heads);
  r.get("max_position_embeddings", c.max_position_embeddings);
  r.get("hidden_act", c.hidden_act);
  r.get("layer_norm_eps", c.layer_norm_eps);
  r.get("dropout", c.dropout);
  r.get("attention_dropout", c.attention_dropout);
  r.get_token_id("pad_token_id", c.pad_token_id);
  r.get_token_id("bos_token_id", c.bos_token_id);
  r.get_token_id("eos_token_id", c.eos_token_id);
}

void read_vision(const json& obj, const std::string& where, GroupViTVisionConfig& c) {
  Reader r(obj, where);
  r.get("hidden_size", c.hidden_size);
  r.get("intermediate_size", c.intermediate_size);
  r.get("num_hidden_layers", c.num_hidden_layers);
  r.get("depths", c.depths);
  r.get("num_group_tokens", c.num_group_tokens);
  r.get("num_output_groups", c.num_output_groups);
  r.get("num_attention_heads", c.num_attention_heads);
  r.get_image_size("image_size", c.image_height, c.image_width);
  r.get("patch_size", c.patch_size);
  r.get("num_channels", c.num_channels);
  r.get("hidden_act", c.hidden_act);
  r.get("layer_norm_eps", c.layer_norm_eps);
  r.get("dropout", c.dropout);
  r.get("attention_dropout", c.attention_dropout);
  r.get("assign_eps", c.assign_eps);
  r.get("assign_mlp_ratio", c.assign_mlp_ratio);
}

const json& object_at(const json& root, const char* key, const std::string& source) {
  const json& v = root.at(key);
  if (!v.is_object()) throw ConfigError(source + ": " + key + ": expected an object, got " + v.type_name());
  return v;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

}  // namespace

bool is_supported_activation(const std::string& name) {
  return name == "gelu" || name == "quick_gelu" || name == "relu" || name == "gelu_new" ||
         name == "gelu_pytorch_tanh" || name == "silu" || name == "swish";
}

GroupViTConfig GroupViTConfig::from_json_string(const std::string& text, const std::string& source) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers beyond double (1e400)
    throw ConfigError(source + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw ConfigError(source + ": expected a JSON object at the top level");

  GroupViTConfig c;
  Reader r(root, source);
  r.get("projection_dim", c.projection_dim);
  r.get("projection_intermediate_dim", c.projection_intermediate_dim);
  r.get("logit_scale_init_value", c.logit_scale_init_value);
  r.get("output_segmentation", c.output_segmentation);
  // Like the reference: text_config first, then the legacy *_config_dict keys override it.
  for (const char* key : {"text_config", "text_config_dict"}) {
    if (root.contains(key) && !root.at(key).is_null())
      read_text(object_at(root, key, source), source + ": " + key, c.text_config);
  }
  for (const char* key : {"vision_config", "vision_config_dict"}) {
    if (root.contains(key) && !root.at(key).is_null())
      read_vision(object_at(root, key, source), source + ": " + key, c.vision_config);
  }
  c.validate(source);
  return c;
}

GroupViTConfig GroupViTConfig::from_file(const std::string& path) {
  const auto text = read_file(path);
  if (!text) throw ConfigError(path + ": cannot open the config file");
  return from_json_string(*text, path);
}

void GroupViTConfig::validate(const std::string& source) const {
  const std::string t = source + ": text_config.";
  const std::string v = source + ": vision_config.";
  const auto& tc = text_config;
  const auto& vc = vision_config;
  constexpr int64_t kMaxDim = int64_t{1} << 20;  // far beyond any real model; rejects overflow bait
  auto in_range = [&](int64_t value, int64_t lo, const std::string& name) {
    require(value >= lo && value <= kMaxDim,
            name + " = " + std::to_string(value) + " is out of range [" + std::to_string(lo) + ", 2^20]");
  };

  in_range(tc.vocab_size, 1, t + "vocab_size");
  in_range(tc.hidden_size, 1, t + "hidden_size");
  in_range(tc.intermediate_size, 1, t + "intermediate_size");
  in_range(tc.num_hidden_layers, 0, t + "num_hidden_layers");
  in_range(tc.num_attention_heads, 1, t + "num_attention_heads");
  in_range(tc.max_position_embeddings, 1, t + "max_position_embeddings");
  require(tc.hidden_size % tc.num_attention_heads == 0, t + "hidden_size (" + std::to_string(tc.hidden_size) +
                                                            ") is not divisible by num_attention_heads (" +
                                                            std::to_string(tc.num_attention_heads) + ")");
  require(is_supported_activation(tc.hidden_act), t + "hidden_act: unsupported activation '" + tc.hidden_act + "'");
  require(tc.layer_norm_eps > 0, t + "layer_norm_eps must be positive");
  require(tc.eos_token_id >= 0 && tc.eos_token_id < tc.vocab_size,
          t + "eos_token_id = " + std::to_string(tc.eos_token_id) + " is not a token id of the vocabulary");

  in_range(vc.hidden_size, 1, v + "hidden_size");
  in_range(vc.intermediate_size, 1, v + "intermediate_size");
  in_range(vc.num_attention_heads, 1, v + "num_attention_heads");
  in_range(vc.patch_size, 1, v + "patch_size");
  in_range(vc.num_channels, 1, v + "num_channels");
  in_range(vc.image_height, 1, v + "image_size");
  in_range(vc.image_width, 1, v + "image_size");
  require(vc.hidden_size % vc.num_attention_heads == 0, v + "hidden_size (" + std::to_string(vc.hidden_size) +
                                                            ") is not divisible by num_attention_heads (" +
                                                            std::to_string(vc.num_attention_heads) + ")");
  require(vc.image_height % vc.patch_size == 0 && vc.image_width % vc.patch_size == 0,
          v + "image_size (" + std::to_string(vc.image_height) + "x" + std::to_string(vc.image_width) +
              ") is not a multiple of patch_size (" + std::to_string(vc.patch_size) + ")");
  require(is_supported_activation(vc.hidden_act), v + "hidden_act: unsupported activation '" + vc.hidden_act + "'");
  require(vc.layer_norm_eps > 0, v + "layer_norm_eps must be positive");
  require(std::isfinite(vc.assign_eps), v + "assign_eps must be finite");
  require(!vc.depths.empty(), v + "depths must name at least one stage");
  require(vc.depths.size() == vc.num_group_tokens.size() && vc.depths.size() == vc.num_output_groups.size(),
          v + "depths, num_group_tokens and num_output_groups have different lengths (" +
              std::to_string(vc.depths.size()) + ", " + std::to_string(vc.num_group_tokens.size()) + ", " +
              std::to_string(vc.num_output_groups.size()) + ")");
  require(vc.assign_mlp_ratio.size() == 2, v + "assign_mlp_ratio must hold two ratios (tokens, channels)");
  for (double ratio : vc.assign_mlp_ratio)
    require(ratio > 0 && ratio * static_cast<double>(vc.hidden_size) >= 1.0 && ratio <= 1024,
            v + "assign_mlp_ratio values must give a hidden size of at least 1");
  for (size_t i = 0; i < vc.depths.size(); ++i) {
    const std::string stage = "[" + std::to_string(i) + "]";
    in_range(vc.depths[i], 0, v + "depths" + stage);
    in_range(vc.num_group_tokens[i], 0, v + "num_group_tokens" + stage);
    in_range(vc.num_output_groups[i], 0, v + "num_output_groups" + stage);
    if (vc.num_group_tokens[i] > 0)
      require(vc.num_output_groups[i] > 0,
              v + "num_output_groups" + stage + " must be positive for a stage with group tokens");
  }
  // The image tokens a stage receives are the previous stage's output groups; the last
  // stage with group tokens fixes how many tokens leave the encoder.
  bool any_group = false;
  for (int64_t g : vc.num_group_tokens) any_group |= g > 0;
  require(any_group, v + "num_group_tokens: at least one stage needs group tokens");

  in_range(projection_dim, 1, source + ": projection_dim");
  in_range(projection_intermediate_dim, 1, source + ": projection_intermediate_dim");
  require(std::isfinite(logit_scale_init_value), source + ": logit_scale_init_value must be finite");
}

std::string GroupViTConfig::to_json_string() const {
  const auto& tc = text_config;
  const auto& vc = vision_config;
  json text = {{"vocab_size", tc.vocab_size},
               {"hidden_size", tc.hidden_size},
               {"intermediate_size", tc.intermediate_size},
               {"num_hidden_layers", tc.num_hidden_layers},
               {"num_attention_heads", tc.num_attention_heads},
               {"max_position_embeddings", tc.max_position_embeddings},
               {"hidden_act", tc.hidden_act},
               {"layer_norm_eps", tc.layer_norm_eps},
               {"dropout", tc.dropout},
               {"attention_dropout", tc.attention_dropout},
               {"pad_token_id", tc.pad_token_id},
               {"bos_token_id", tc.bos_token_id},
               {"eos_token_id", tc.eos_token_id},
               {"model_type", "groupvit_text_model"}};
  json image_size =
      vc.image_height == vc.image_width ? json(vc.image_height) : json::array({vc.image_height, vc.image_width});
  json vision = {{"hidden_size", vc.hidden_size},
                 {"intermediate_size", vc.intermediate_size},
                 {"num_hidden_layers", vc.num_hidden_layers},
                 {"depths", vc.depths},
                 {"num_group_tokens", vc.num_group_tokens},
                 {"num_output_groups", vc.num_output_groups},
                 {"num_attention_heads", vc.num_attention_heads},
                 {"image_size", image_size},
                 {"patch_size", vc.patch_size},
                 {"num_channels", vc.num_channels},
                 {"hidden_act", vc.hidden_act},
                 {"layer_norm_eps", vc.layer_norm_eps},
                 {"dropout", vc.dropout},
                 {"attention_dropout", vc.attention_dropout},
                 {"assign_eps", vc.assign_eps},
                 {"assign_mlp_ratio", vc.assign_mlp_ratio},
                 {"model_type", "groupvit_vision_model"}};
  json root = {{"architectures", {"GroupViTModel"}},
               {"model_type", "groupvit"},
               {"text_config", text},
               {"vision_config", vision},
               {"projection_dim", projection_dim},
               {"projection_intermediate_dim", projection_intermediate_dim},
               {"logit_scale_init_value", logit_scale_init_value},
               {"output_segmentation", output_segmentation}};
  return root.dump(2);
}

}  // namespace groupvit
