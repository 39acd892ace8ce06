// groupvit embed: projected image and text features exactly as Hugging Face's
// get_image_features / get_text_features return them (L2-normalised with --normalize), written
// as JSON or .npy by the output file's extension.
#include <torch/torch.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "groupvit/image/image_io.h"
#include "groupvit/model/model.h"
#include "groupvit/preprocess/tokenizer_torch.h"
#include "inputs.h"
#include "outputs.h"

namespace groupvit_cli {

namespace {

using json = nlohmann::json;

std::string extension_of(const std::string& path) {
  const auto dot = path.rfind('.');
  const auto slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  return path.substr(dot);
}

json rows(const torch::Tensor& t) {
  json out = json::array();
  auto c = t.contiguous();
  const float* p = c.data_ptr<float>();
  for (int64_t i = 0; i < c.size(0); ++i) out.push_back(std::vector<float>(p + i * c.size(1), p + (i + 1) * c.size(1)));
  return out;
}

std::string npy_of(const torch::Tensor& t) {
  auto c = t.contiguous();
  std::vector<float> v(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return npy_bytes(v, {c.size(0), c.size(1)});
}

}  // namespace

int run_embed(const Common& c, const std::vector<std::string>& image_specs, const std::vector<std::string>& texts,
              const std::string& output, bool normalize, int batch_size) {
  const std::string ext = extension_of(output);
  if (ext != ".json" && ext != ".npy") throw UsageError("--output must end in .json or .npy (got '" + output + "')");
  if (image_specs.empty() && texts.empty()) throw UsageError("give at least one --image or --text");
  if (batch_size < 1) throw UsageError("--batch-size must be at least 1");
  std::vector<std::string> images;
  if (!image_specs.empty())
    for_each_input(image_specs, default_image_extensions(), [&](const InputItem& item) {
      images.push_back(item.path);
      return true;
    });
  if (!image_specs.empty() && images.empty()) throw UsageError("--image: no image files found");

  torch::Device device = torch::kCPU;
  auto model = load_for(c, &device);
  const auto dtype = parse_dtype(c.dtype);
  torch::NoGradGuard no_grad;
  auto finish = [&](torch::Tensor f) {
    f = f.to(torch::kCPU, torch::kFloat);
    return normalize ? groupvit::l2_normalize(f) : f;
  };

  torch::Tensor image_embeds, text_embeds;
  if (!images.empty()) {
    const auto preprocess = preprocessor_for(c.model_dir);
    std::vector<torch::Tensor> parts;
    for (size_t start = 0; start < images.size(); start += static_cast<size_t>(batch_size)) {
      std::vector<groupvit::RgbImage> decoded;
      for (size_t i = start; i < std::min(images.size(), start + static_cast<size_t>(batch_size)); ++i)
        decoded.push_back(groupvit::decode_image_file(images[i]));
      auto pixels = groupvit::preprocess_batch(decoded, preprocess);
      parts.push_back(finish(model->get_image_features(pixels.to(device, dtype))));
    }
    image_embeds = torch::cat(parts);
  }
  if (!texts.empty()) {
    auto tokenizer = groupvit::ClipTokenizer::from_directory(c.model_dir);
    auto tokens = groupvit::tokenize_to_tensors(tokenizer, texts, groupvit::Padding::Longest,
                                                groupvit::context_length(model->config()));
    text_embeds = finish(model->get_text_features(tokens.input_ids.to(device), tokens.attention_mask.to(device)));
  }

  json summary = {{"output", json::array()}, {"normalized", normalize}};
  if (ext == ".json") {
    json j = {{"normalized", normalize}};
    if (image_embeds.defined()) {
      j["images"] = images;
      j["image_embeds"] = rows(image_embeds);
    }
    if (text_embeds.defined()) {
      j["texts"] = texts;
      j["text_embeds"] = rows(text_embeds);
    }
    write_file_atomic(output, j.dump() + "\n");
    summary["output"].push_back(output);
  } else {
    // One array per .npy file: with both kinds, NAME.npy becomes NAME.image.npy and NAME.text.npy,
    // which belong together: both are written before either replaces an older one.
    const bool both = image_embeds.defined() && text_embeds.defined();
    const std::string stem = output.substr(0, output.size() - 4);
    std::vector<std::pair<std::string, std::string>> files;
    if (image_embeds.defined()) files.emplace_back(both ? stem + ".image.npy" : output, npy_of(image_embeds));
    if (text_embeds.defined()) files.emplace_back(both ? stem + ".text.npy" : output, npy_of(text_embeds));
    write_files_atomic(files);
    for (const auto& file : files) summary["output"].push_back(file.first);
  }
  if (image_embeds.defined()) summary["image_embeds_shape"] = image_embeds.sizes().vec();
  if (text_embeds.defined()) summary["text_embeds_shape"] = text_embeds.sizes().vec();
  if (c.json_output) {
    std::cout << summary.dump() << "\n";
  } else {
    for (const auto& p : summary["output"]) std::cout << "wrote " << p.get<std::string>() << "\n";
    if (image_embeds.defined())
      std::cout << "  " << image_embeds.size(0) << " image embeddings of " << image_embeds.size(1) << "\n";
    if (text_embeds.defined())
      std::cout << "  " << text_embeds.size(0) << " text embeddings of " << text_embeds.size(1) << "\n";
  }
  return kExitOk;
}

}  // namespace groupvit_cli
