// eval's dataset presets (see datasets.h).
#include "datasets.h"

#include "cli_common.h"
#include "dataset_classes.h"  // generated from datasets/*.txt by apps/CMakeLists.txt
#include "batch/source.h"     // UsageError

#include <sstream>

namespace groupvit_cli {
namespace {

std::vector<std::string> lines_of(const char* text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!trim(line).empty()) lines.push_back(trim(line));
  }
  return lines;
}

}  // namespace

const std::vector<DatasetPreset>& dataset_presets() {
  // Layouts as distributed (VOC, and Context after mmseg's convert script) or as NVlabs' converter
  // writes COCO-Object (convert_dataset/convert_coco_object.py: STEM_instanceTrainIds.png).
  static const std::vector<DatasetPreset> presets = {
      {"voc", "PASCAL VOC 2012 val", "JPEGImages", "SegmentationClass", ".png", "ImageSets/Segmentation/val.txt",
       "datasets/voc.txt", 0.95, lines_of(kClasses_voc)},
      {"context", "PASCAL Context val (59 classes)", "JPEGImages", "SegmentationClassContext", ".png",
       "ImageSets/SegmentationContext/val.txt", "datasets/context.txt", 0.35, lines_of(kClasses_context)},
      {"coco-object", "COCO-Object val2017", "images/val2017", "annotations/val2017", "_instanceTrainIds.png", "",
       "datasets/coco-object.txt", 0.95, lines_of(kClasses_coco_object)},
  };
  return presets;
}

const DatasetPreset& dataset_preset(const std::string& name) {
  for (const auto& p : dataset_presets()) {
    if (p.name == name) return p;
  }
  throw UsageError("unknown --dataset " + name + " (voc, context or coco-object)");
}

std::string dataset_presets_help() {
  std::ostringstream out;
  for (const auto& p : dataset_presets()) {
    out << "\n  " << p.name << ": " << p.title << ": ROOT/" << p.images << ", ROOT/" << p.labels << "/STEM"
        << p.label_suffix << ", " << (p.list.empty() ? "every label map" : "stems of ROOT/" + p.list) << ", "
        << p.classes.size() << " classes (" << p.classes_file << "), --bg-thresh " << p.bg_thresh;
  }
  return out.str();
}

}  // namespace groupvit_cli

#include "batch/source.h"  // UsageError