// groupvit serve's model side: one model, the requests' work run through the dynamic batcher, and
// the answers as JSON. Segmentation runs segment's own model step (segment_job.h) on a job cached
// per (labels, mode, templates, threshold), so the label maps are the command's; similarity and
// embed batch their images across requests as the commands compute them.
#pragma once

#include <torch/torch.h>

#include <list>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_common.h"
#include "groupvit/groupvit.h"
#include "segment_job.h"
#include "serve/batcher.h"

namespace groupvit_cli {

// A request the server refuses: the HTTP status and the message of {"error": ...}.
struct HttpError : std::runtime_error {
  HttpError(int status, const std::string& what) : std::runtime_error(what), status(status) {}
  int status;
};

struct ServeLimits {
  size_t max_body_bytes = 20u << 20;
  int64_t max_pixels = 40000000;
  size_t max_labels = 64;
  size_t max_texts = 256;
  size_t max_images = 16;
};

struct SegmentParams {
  std::string image;  // the file's bytes
  std::vector<std::string> labels;
  std::string mode = "nvlabs", templates = "simple";
  double bg_thresh = 0.95;
  bool masks = false, groups = false, overlay = true;
};

struct ImagesParams {
  std::vector<std::string> images;  // the files' bytes
  std::vector<std::string> texts;
  bool normalize = false;
};

class ModelService {
 public:
  ModelService(const Common& c, const ServeLimits& limits, size_t max_batch, int max_wait_ms, size_t max_queue);
  ~ModelService();
  nlohmann::json model_info() const;
  nlohmann::json segment(const SegmentParams& p);
  nlohmann::json similarity(const ImagesParams& p);
  nlohmann::json embed(const ImagesParams& p);
  void stop();  // finishes the queued work

 private:
  struct SegmentConfig;
  std::shared_ptr<SegmentConfig> config_for(const SegmentParams& p);
  Prepared decode(const std::string& bytes, const groupvit::ImagePreprocessConfig& prep, const std::string& what) const;
  torch::Tensor text_features(const std::vector<std::string>& texts);  // unnormalised, float32 CPU
  void run_batch(std::vector<DynamicBatcher::Item*>& batch);

  const Common common_;
  const ServeLimits limits_;
  const size_t max_batch_;
  const int max_wait_ms_;
  groupvit::GroupViT model_;
  mutable std::mutex cache_mu_;
  std::list<std::shared_ptr<SegmentConfig>> configs_;  // most recently used first, at most kMaxConfigs
  std::unique_ptr<DynamicBatcher> batcher_;
};

}  // namespace groupvit_cli
