// The paper's zero-shot segmentation benchmarks as `eval --dataset` presets: where each dataset keeps
// its images, label maps and split under its root, its class list (datasets/*.txt, compiled in) and
// NVlabs' background threshold (segmentation/configs/_base_/datasets/*.py of NVlabs/GroupViT; all
// three use slide inference with 448 windows every 224 and img_scale (2048, 448), this CLI's defaults).
#pragma once

#include <string>
#include <vector>

namespace groupvit_cli {

struct DatasetPreset {
  std::string name;          // --dataset NAME
  std::string title;         // for the report
  std::string images;        // relative to --root
  std::string labels;        // relative to --root
  std::string label_suffix;  // a label map's file name is STEM + this
  std::string list;          // the split's stems relative to --root; empty: every label map
  std::string classes_file;  // the list's file in the repository (datasets/...)
  double bg_thresh = 0.95;
  std::vector<std::string> classes;  // line k = label k; "background" first
};

const std::vector<DatasetPreset>& dataset_presets();
// Throws UsageError naming the presets for an unknown name.
const DatasetPreset& dataset_preset(const std::string& name);
// One line a preset: what it sets (for --help).
std::string dataset_presets_help();

}  // namespace groupvit_cli
