// groupvit segment's model step (batch/batch_run.h): the request a set of options makes (labels,
// templates, the NVlabs head, formats), checked before any work, and the job that segments batches
// of prepared images and writes their files. groupvit serve runs the same job on a shared model, so
// that its label maps are the command's.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "batch/batch_run.h"
#include "cli_common.h"
#include "groupvit/formats/png_writer.h"
#include "groupvit/groupvit.h"
#include "groupvit/runtime/cuda_graph.h"
#include "groupvit/segment/nvlabs_segmentation.h"

namespace groupvit_cli {

// --- the request: everything that can be wrong with it fails here, before any work ---------

struct SegmentRequest {
  std::vector<std::string> labels, templates;
  std::vector<std::string> names;  // value k of a label map names names[k]: "background", then the labels
  groupvit::NvlabsSegmentationOptions head;
  bool nvlabs = true;      // --mode nvlabs, else hf
  bool background = true;  // nvlabs with a background channel; without one the classes start at 1
  bool png = false, coco = false, labelstudio = false, cvat = false;  // --format
  bool rles() const { return coco || labelstudio; }                   // the results lines carry each region's RLE
};

// The options' request (labels, templates, head, formats); UsageError naming what is wrong.
SegmentRequest segment_request(const SegmentOptions& o);
// segment_request, and the model directory, device and dtype checked (the command's, before loading).
SegmentRequest check_request(const Common& c, const SegmentOptions& o);

// --- the model step and the writer --------------------------------------------------------------

// One image's results as plain host buffers: tensor work stays on the model's thread (the
// device's stream, LibTorch's thread pool).
struct SegmentResult : ImageResult {
  std::vector<uint8_t> labels;               // [height * width] class index per pixel
  std::vector<float> scores;                 // [label value] the region's score (label_region_scores)
  torch::Tensor logits;                      // --save-logits: [channels, h, w] float32, CPU
  std::vector<std::vector<uint8_t>> groups;  // --save-groups: a group map per stage
};

// The model and what a run computes from it once: the label embeddings, the mode's
// preprocessing, and (hf) the forward of one batch, replayed as CUDA graphs with --cuda-graphs.
// Neither copied nor moved: the graphs call back into it.
class SegmentJob : public BatchJob {
 public:
  SegmentJob(const Common& c, const SegmentOptions& o, const SegmentRequest& r, const OutputDir* out);
  // On a model already loaded (groupvit serve: one model, a job per label set); writes nothing.
  SegmentJob(groupvit::GroupViTModel model, torch::Device device, torch::Dtype dtype, const std::string& model_dir,
             const SegmentOptions& o, const SegmentRequest& r);
  SegmentJob(const SegmentJob&) = delete;
  SegmentJob& operator=(const SegmentJob&) = delete;

  const groupvit::ImagePreprocessConfig& preprocessing() const override { return prep_; }
  // One model call for the whole batch (nvlabs: all windows of all images together).
  ImageResults run(std::vector<Prepared>& batch) override;
  void write(Prepared& p, ImageResult& result, RunLog& log) override;
  // The run-level files of --format coco, labelstudio and cvat, from results.jsonl.
  void finish(RunLog& log) override;
  bool on_cuda() const override { return device_.is_cuda(); }
  void add_to_summary(nlohmann::json& summary) const override {
    if (!exports_.empty()) summary["exports"] = exports_;
    if (graphs_)
      summary["cuda_graphs"] = {{"captured_shapes", graphs_->graphs()},
                                {"replayed_batches", graphs_->replays()},
                                {"fallback_reason", graphs_->fallback_reason()}};
  }

 private:
  void init(const std::string& model_dir);  // the label embeddings, preprocessing and CUDA graphs
  std::vector<torch::Tensor> hf_forward(const torch::Tensor& pixels);
  // [channels, H, W] scores at each image's original size (and what --save-logits writes).
  std::vector<torch::Tensor> scores(const std::vector<Prepared>& batch, std::vector<torch::Tensor>& saved);
  // The image's files; returns the "outputs" of its results line.
  nlohmann::json write_files(const Prepared& p, const SegmentResult& r) const;
  // --format cvat names a mask by the key less its extension: two keys of one name would overwrite
  // each other's masks, so the second is refused (within this run).
  void claim_cvat_name(const std::string& key) const;

  const SegmentOptions& o_;
  const SegmentRequest& r_;
  torch::Device device_ = torch::kCPU;
  torch::Dtype dtype_ = torch::kFloat;
  int64_t stages_ = 0;  // grouping stages: the group maps of --save-groups
  groupvit::ImagePreprocessConfig prep_;
  std::unique_ptr<groupvit::CudaGraphCache> graphs_;
  groupvit::GroupViTModel model_{nullptr};
  torch::Tensor class_embeds_;        // float32, on the device (the NVlabs head)
  torch::Tensor class_embeds_model_;  // in the model's dtype: what the hf forward and its CUDA graphs read
  const std::vector<std::array<uint8_t, 3>> palette_ = groupvit::label_palette();
  const OutputDir* out_ = nullptr;
  std::string model_name_;
  nlohmann::json exports_ = nlohmann::json::object();
  mutable std::mutex cvat_mu_;
  mutable std::map<std::string, std::string> cvat_names_;  // mask name -> key
};

// {label: fraction of the image's pixels} for the labels present.
nlohmann::json pixel_share(const std::vector<uint8_t>& label_map, const std::vector<std::string>& names,
                           int64_t pixels);

}  // namespace groupvit_cli
