// segment --format coco / labelstudio / cvat: what annotation tools import. Each image's regions
// (label, score, area, bbox, COCO RLE) go into its results.jsonl line as it is written; the
// run-level files are made from results.jsonl when the run (or shard) ends, so that --resume,
// shards and a stopped run give files that list exactly the images recorded as done.
//
//   coco         OUTPUT/coco[.shard-I-of-N].json: a COCO dataset (images, categories, annotations with
//                compressed RLE, area, bbox, iscrowd 0 and score), loadable by pycocotools' COCO();
//                its annotation list is also a valid results list for COCO.loadRes
//   labelstudio  OUTPUT/labelstudio[.shard-I-of-N].json: Label Studio tasks with one prediction each,
//                a brushlabels result per label, and OUTPUT/labelstudio-config.xml, the labeling
//                config those results name (BrushLabels "tag" on Image "image")
//   cvat         OUTPUT/cvat/: CVAT's "Segmentation mask 1.1" layout: labelmap.txt,
//                SegmentationClass/NAME.png, SegmentationObject/NAME.png (one instance a label) and
//                ImageSets/Segmentation/default.txt (a shard: default.shard-I-of-N.txt)
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace groupvit_cli {

using Palette = std::vector<std::array<uint8_t, 3>>;

// The "regions" of a results line: one entry per label present (not background), in label order:
// {"label", "id" (the label map's value), "score", "area", "bbox" [x, y, w, h], and with_rle:
// "rle" {"size": [h, w], "counts"}}. scores[value]: the region's score (see the README).
nlohmann::json label_regions(const std::vector<uint8_t>& label_map, int64_t height, int64_t width,
                             const std::vector<std::string>& names, const std::vector<float>& scores, bool with_rle);

// CVAT's mask name of an input key: the key less its extension (CVAT pairs masks and images by name).
std::string cvat_name(const std::string& key);
// The per-image masks of the cvat layout; returns {class mask path, object mask path}.
std::vector<std::pair<std::string, std::string>> cvat_masks(const std::string& cvat_dir, const std::string& key,
                                                            const std::vector<uint8_t>& label_map, int64_t height,
                                                            int64_t width, const Palette& palette);
std::string cvat_labelmap(const std::vector<std::string>& names, const Palette& palette);
std::string label_studio_config(const std::vector<std::string>& names, const Palette& palette);

// What the run-level files are made from.
struct ExportInputs {
  std::string results_path;        // this run's (or shard's) results.jsonl
  std::vector<std::string> names;  // label value k names names[k]; names[0] is background
  std::string model;               // the model given to segment (model_version of the predictions)
  std::string image_url_prefix;    // Label Studio: a task's image is this + the input's key
};
// Each returns the number of results lines it could not use (written by a run without the
// format's data, or unreadable), which the caller reports.
int64_t write_coco(const ExportInputs& in, const std::string& path);
int64_t write_label_studio(const ExportInputs& in, const std::string& path);
int64_t write_cvat_list(const ExportInputs& in, const std::string& path);

}  // namespace groupvit_cli
