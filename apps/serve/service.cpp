// groupvit serve's model side (see service.h).
#include "serve/service.h"

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>

#include "groupvit/formats/png_writer.h"
#include "groupvit/image/image_io.h"
#include "groupvit/text/prompt_templates.h"
#include "label_formats/exports.h"
#include "outputs.h"

namespace groupvit_cli {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxConfigs = 64;  // label sets whose embeddings are kept
// The image-level scores of /v1/segment: logits_per_image over the labels in this template.
constexpr const char* kScoreTemplate = "a photo of a {}.";

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::string base64(const std::vector<uint8_t>& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(std::max(0, n)));
  return out;
}

std::vector<float> row_of(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kFloat).contiguous();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

json rows_of(const torch::Tensor& t) {
  json rows = json::array();
  for (int64_t i = 0; i < t.size(0); ++i) rows.push_back(row_of(t[i]));
  return rows;
}

// One /v1/segment request on its way through the batcher.
struct SegmentItem : DynamicBatcher::Item {
  std::shared_ptr<void> config;  // keeps the job alive while queued (the cache may drop it)
  SegmentJob* job = nullptr;
  torch::Tensor score_texts;  // normalised "a photo of a {label}." embeddings
  Prepared prepared;
  torch::Tensor clip_pixels;  // the model's own preprocessing, for the image-level scores
  std::unique_ptr<SegmentResult> result;
  torch::Tensor scores;  // [labels] image-level softmax
  double model_ms = 0;
};

// The images of one /v1/similarity or /v1/embed request.
struct ImagesItem : DynamicBatcher::Item {
  std::vector<Prepared> images;
  torch::Tensor features;  // [images, projection_dim] get_image_features, unnormalised, on the model's device
  double model_ms = 0;
};

}  // namespace

// What a label set and its options compute once (segment's request and job on the shared model).
struct ModelService::SegmentConfig {
  std::string key;
  SegmentOptions options;
  SegmentRequest request;
  std::unique_ptr<SegmentJob> job;
  torch::Tensor score_texts;
};

ModelService::ModelService(const Common& c, const ServeLimits& limits, size_t max_batch, int max_wait_ms,
                           size_t max_queue)
    : common_(c),
      limits_(limits),
      max_batch_(max_batch),
      max_wait_ms_(max_wait_ms),
      model_(groupvit::GroupViT::load(c.model_dir, model_placement(c).load_options())) {
  if (model_.uses_default_preprocessing()) note_default_preprocessing(c.model_dir);
  batcher_ = std::make_unique<DynamicBatcher>(max_batch, std::chrono::milliseconds(max_wait_ms), max_queue,
                                              [this](std::vector<DynamicBatcher::Item*>& b) { run_batch(b); });
}

ModelService::~ModelService() { stop(); }

void ModelService::stop() {
  if (batcher_) batcher_->stop();
}

json ModelService::model_info() const {
  const auto& config = model_.model()->config();
  const auto& vc = config.vision_config;
  const int64_t stages = static_cast<int64_t>(vc.depths.size()) -
                         static_cast<int64_t>(std::count(vc.num_group_tokens.begin(), vc.num_group_tokens.end(), 0));
  return {{"model", common_.model_description.empty() ? common_.model_dir : common_.model_description},
          {"device", model_.device().str()},
          {"dtype", common_.dtype},
          {"image_size", {vc.image_height, vc.image_width}},
          {"patch_size", vc.patch_size},
          {"projection_dim", config.projection_dim},
          {"grouping_stages", stages},
          {"max_batch_size", max_batch_},
          {"max_wait_ms", max_wait_ms_},
          {"limits",
           {{"max_body_bytes", limits_.max_body_bytes},
            {"max_pixels", limits_.max_pixels},
            {"max_labels", limits_.max_labels},
            {"max_texts", limits_.max_texts},
            {"max_images", limits_.max_images}}}};
}

Prepared ModelService::decode(const std::string& bytes, const groupvit::ImagePreprocessConfig& prep,
                              const std::string& what) const {
  if (bytes.empty()) throw HttpError(400, what + " is empty");
  const auto info = groupvit::probe_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (info.format == groupvit::ImageFormat::kUnknown)
    throw HttpError(400, what + " is not an image this server reads (JPEG, PNG, BMP, TIFF or WebP)");
  // From the header, before any pixel is decoded.
  if (info.width * info.height > limits_.max_pixels)
    throw HttpError(413, what + " has " + std::to_string(info.width) + "x" + std::to_string(info.height) +
                             " pixels, over the server's limit of " + std::to_string(limits_.max_pixels));
  InputItem item;
  item.path = what;
  item.key = what;
  item.data = bytes;
  auto p = prepare(std::move(item), prep);
  if (!p.error.empty()) throw HttpError(400, what + ": " + p.error);
  return p;
}

torch::Tensor ModelService::text_features(const std::vector<std::string>& texts) {
  torch::NoGradGuard no_grad;
  adapt_threads();
  const auto tokens = model_.tokenize(texts);
  return model_.model()->get_text_features(tokens.input_ids, tokens.attention_mask).to(torch::kCPU, torch::kFloat);
}

std::shared_ptr<ModelService::SegmentConfig> ModelService::config_for(const SegmentParams& p) {
  if (p.labels.empty()) throw HttpError(400, "labels: give at least one class name");
  if (p.labels.size() > limits_.max_labels)
    throw HttpError(400, "labels: " + std::to_string(p.labels.size()) + " given, the server takes at most " +
                             std::to_string(limits_.max_labels));
  if (p.mode != "nvlabs" && p.mode != "hf") throw HttpError(400, "mode: '" + p.mode + "' is neither nvlabs nor hf");
  if (p.templates != "simple" && p.templates != "subset" && p.templates != "full")
    throw HttpError(400, "templates: '" + p.templates + "' is none of simple, subset, full");
  if (!(p.bg_thresh >= 0 && p.bg_thresh <= 1)) throw HttpError(400, "bg_thresh: must be between 0 and 1");
  std::string joined;
  for (const auto& l : p.labels) {
    if (l.find(',') != std::string::npos) throw HttpError(400, "labels: '" + l + "' holds a comma");
    joined += (joined.empty() ? "" : ",") + l;
  }
  const std::string key =
      p.mode + "|" + p.templates + "|" + std::to_string(p.bg_thresh) + "|" + (p.groups ? "g" : "") + "|" + joined;
  std::lock_guard<std::mutex> lock(cache_mu_);
  for (auto it = configs_.begin(); it != configs_.end(); ++it)
    if ((*it)->key == key) {
      configs_.splice(configs_.begin(), configs_, it);
      return configs_.front();
    }
  auto config = std::make_shared<SegmentConfig>();
  config->key = key;
  config->options.mode = p.mode;
  config->options.labels = joined;
  config->options.templates = p.templates;
  config->options.bg_thresh = p.bg_thresh;
  config->options.save_groups = p.groups;
  try {
    config->request = segment_request(config->options);
  } catch (const UsageError& e) {
    throw HttpError(400, std::string("labels: ") + e.what());
  }
  config->job = std::make_unique<SegmentJob>(model_.model(), model_.device(), model_.dtype(), common_.model_dir,
                                             config->options, config->request);
  std::vector<std::string> texts;
  for (const auto& l : config->request.labels) texts.push_back(groupvit::fill_template(kScoreTemplate, l));
  config->score_texts = model_.encode_texts(texts);
  configs_.push_front(config);
  if (configs_.size() > kMaxConfigs) configs_.pop_back();
  return config;
}

void ModelService::run_batch(std::vector<DynamicBatcher::Item*>& batch) {
  torch::NoGradGuard no_grad;
  adapt_threads();
  const auto t0 = Clock::now();
  if (auto* first = dynamic_cast<SegmentItem*>(batch.front())) {
    std::vector<Prepared> prepared;
    std::vector<torch::Tensor> clip;
    for (auto* item : batch) {
      auto& s = static_cast<SegmentItem&>(*item);
      prepared.push_back(std::move(s.prepared));
      clip.push_back(s.clip_pixels);
    }
    auto results = first->job->run(prepared);
    const auto images = model_.encode_images(torch::stack(clip).to(model_.device(), model_.dtype()));
    for (size_t i = 0; i < batch.size(); ++i) {
      auto& s = static_cast<SegmentItem&>(*batch[i]);
      s.prepared = std::move(prepared[i]);
      s.result.reset(static_cast<SegmentResult*>(results[i].release()));
      s.scores = model_.similarity(images.slice(0, static_cast<int64_t>(i), static_cast<int64_t>(i) + 1), s.score_texts)
                     .to(torch::kFloat)
                     .softmax(1)[0]
                     .to(torch::kCPU);
      s.model_ms = ms_since(t0);
    }
    return;
  }
  std::vector<torch::Tensor> pixels;
  for (auto* item : batch)
    for (const auto& p : static_cast<ImagesItem&>(*item).images) pixels.push_back(p.pixels);
  const auto features = model_.model()->get_image_features(torch::stack(pixels).to(model_.device(), model_.dtype()));
  int64_t row = 0;
  for (auto* item : batch) {
    auto& it = static_cast<ImagesItem&>(*item);
    const auto n = static_cast<int64_t>(it.images.size());
    it.features = features.slice(0, row, row + n);
    row += n;
    it.model_ms = ms_since(t0);
  }
}

json ModelService::segment(const SegmentParams& p) {
  const auto t0 = Clock::now();
  auto config = config_for(p);
  SegmentItem item;
  item.key = config->key;
  item.config = config;
  item.job = config->job.get();
  item.score_texts = config->score_texts;
  item.prepared = decode(p.image, config->job->preprocessing(), "image");
  item.clip_pixels = groupvit::preprocess(item.prepared.original, model_.preprocessor());
  const double decode_ms = ms_since(t0);
  try {
    batcher_->run(item);
  } catch (const Unavailable&) {
    throw;
  } catch (const std::exception& e) {
    throw HttpError(500, std::string("the model failed: ") + e.what());
  }
  if (!item.result || !item.result->error.empty())
    throw HttpError(500, "the model failed: " + (item.result ? item.result->error : std::string("no result")));
  const auto t1 = Clock::now();
  const auto& r = *item.result;
  const auto& names = config->request.names;
  const int64_t h = item.prepared.original.height, w = item.prepared.original.width;
  const auto palette = groupvit::label_palette();
  const Palette colours(palette.begin(), palette.begin() + static_cast<std::ptrdiff_t>(names.size()));
  json palette_json = json::array();
  for (const auto& c : colours) palette_json.push_back({c[0], c[1], c[2]});
  json scores = json::object();
  for (size_t i = 0; i < config->request.labels.size(); ++i)
    scores[config->request.labels[i]] = item.scores[static_cast<int64_t>(i)].item<double>();
  json answer = {{"width", w},
                 {"height", h},
                 {"mode", p.mode},
                 {"labels", names},
                 {"palette", palette_json},
                 {"label_map", base64(groupvit::encode_paletted_png(r.labels, h, w, colours))},
                 {"pixel_share", pixel_share(r.labels, names, h * w)},
                 {"regions", label_regions(r.labels, h, w, names, r.scores, false)},
                 {"scores", scores}};
  if (p.overlay) answer["overlay"] = base64(overlay_image(item.prepared.original, r.labels, names, palette, ".png"));
  if (p.groups) {
    answer["groups"] = json::array();
    for (const auto& g : r.groups) answer["groups"].push_back(base64(groupvit::encode_paletted_png(g, h, w, palette)));
  }
  if (p.masks) {
    answer["masks"] = json::object();
    const Palette black_white = {{0, 0, 0}, {255, 255, 255}};
    for (size_t l = 1; l < names.size(); ++l) {
      std::vector<uint8_t> mask(r.labels.size());
      bool any = false;
      for (size_t i = 0; i < mask.size(); ++i) any |= (mask[i] = r.labels[i] == l ? 1 : 0) != 0;
      if (any) answer["masks"][names[l]] = base64(groupvit::encode_paletted_png(mask, h, w, black_white));
    }
  }
  answer["timings_ms"] = {
      {"decode", decode_ms}, {"queue", item.queue_ms}, {"model", item.model_ms}, {"encode", ms_since(t1)}};
  return answer;
}

namespace {

void check_texts(const std::vector<std::string>& texts, size_t most) {
  if (texts.size() > most)
    throw HttpError(
        400, "texts: " + std::to_string(texts.size()) + " given, the server takes at most " + std::to_string(most));
  for (size_t i = 0; i < texts.size(); ++i) {
    try {
      groupvit::check_utf8(texts[i]);
    } catch (const std::exception& e) {
      throw HttpError(400, "text " + std::to_string(i + 1) + ": " + e.what());
    }
  }
}

}  // namespace

json ModelService::similarity(const ImagesParams& p) {
  if (p.images.empty() || p.texts.empty()) throw HttpError(400, "give at least one image and one text");
  if (p.images.size() > limits_.max_images)
    throw HttpError(400, "images: the server takes at most " + std::to_string(limits_.max_images));
  check_texts(p.texts, limits_.max_texts);
  ImagesItem item;
  item.key = "images";
  for (size_t i = 0; i < p.images.size(); ++i)
    item.images.push_back(decode(p.images[i], model_.preprocessor(), "image " + std::to_string(i + 1)));
  const auto texts = model_.encode_texts(p.texts);
  batcher_->run(item);
  torch::NoGradGuard no_grad;
  const auto logits = model_.similarity(groupvit::l2_normalize(item.features), texts).to(torch::kCPU, torch::kFloat);
  return {{"texts", p.texts}, {"logits_per_image", rows_of(logits)}, {"probs", rows_of(logits.softmax(1))}};
}

json ModelService::embed(const ImagesParams& p) {
  if (p.images.empty() && p.texts.empty()) throw HttpError(400, "give at least one image or text");
  if (p.images.size() > limits_.max_images)
    throw HttpError(400, "images: the server takes at most " + std::to_string(limits_.max_images));
  check_texts(p.texts, limits_.max_texts);
  json answer = {{"normalized", p.normalize}};
  auto finish = [&](torch::Tensor f) {
    f = f.to(torch::kCPU, torch::kFloat);
    return rows_of(p.normalize ? groupvit::l2_normalize(f) : f);
  };
  if (!p.images.empty()) {
    ImagesItem item;
    item.key = "images";
    for (size_t i = 0; i < p.images.size(); ++i)
      item.images.push_back(decode(p.images[i], model_.preprocessor(), "image " + std::to_string(i + 1)));
    batcher_->run(item);
    answer["image_embeds"] = finish(item.features);
  }
  if (!p.texts.empty()) answer["text_embeds"] = finish(text_features(p.texts));
  return answer;
}

}  // namespace groupvit_cli
