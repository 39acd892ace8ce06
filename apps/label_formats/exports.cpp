// The annotation-tool formats of segment --format (see exports.h).
#include "label_formats/exports.h"

#include <fstream>
#include <functional>

#include "groupvit/formats/atomic_file.h"
#include "groupvit/formats/png_writer.h"
#include "label_formats/brush_rle.h"
#include "label_formats/coco_rle.h"

namespace groupvit_cli {

using json = nlohmann::json;

namespace {

// Each complete, parseable line of a results.jsonl; returns the number of lines that were not.
int64_t for_each_result(const std::string& path, const std::function<void(const json&)>& visit) {
  std::ifstream in(path);
  std::string line;
  int64_t bad = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      ++bad;
      continue;
    }
    visit(j);
  }
  return bad;
}

bool has_rles(const json& line) {
  if (!line.contains("regions") || !line.contains("key")) return false;
  for (const auto& r : line["regions"])
    if (!r.contains("rle")) return false;
  return true;
}

// The label map a line's regions describe (row-major; 0 where no region is).
std::vector<uint8_t> label_map_of(const json& line, int64_t height, int64_t width) {
  std::vector<uint8_t> map(static_cast<size_t>(height * width), 0);
  for (const auto& r : line["regions"]) {
    const auto runs = coco_runs_from_string(r["rle"]["counts"].get<std::string>());
    const auto value = r["id"].get<uint8_t>();
    int64_t pos = 0;  // column-major position
    for (size_t i = 0; i < runs.size(); ++i) {
      if (i % 2 == 1)
        for (int64_t p = pos; p < pos + runs[i] && p < height * width; ++p)
          map[static_cast<size_t>((p % height) * width + p / height)] = value;
      pos += runs[i];
    }
  }
  return map;
}

std::string hex_colour(const std::array<uint8_t, 3>& c) {
  static const char* digits = "0123456789abcdef";
  std::string s = "#";
  for (uint8_t v : c) s += std::string{digits[v >> 4], digits[v & 15]};
  return s;
}

std::string xml_attribute(const std::string& text) {
  std::string out;
  for (char ch : text) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

}  // namespace

json label_regions(const std::vector<uint8_t>& label_map, int64_t height, int64_t width,
                   const std::vector<std::string>& names, const std::vector<float>& scores, bool with_rle) {
  const auto extents = region_extents(label_map, height, width, names.size());
  json regions = json::array();
  for (size_t l = 1; l < names.size(); ++l) {
    if (!extents[l].area) continue;
    json r = {{"label", names[l]},
              {"id", l},
              {"score", l < scores.size() ? scores[l] : 0.0f},
              {"area", extents[l].area},
              {"bbox", extents[l].bbox}};
    if (with_rle)
      r["rle"] = {{"size", {height, width}},
                  {"counts", coco_counts_string(coco_runs(label_map, height, width, static_cast<uint8_t>(l)))}};
    regions.push_back(std::move(r));
  }
  return regions;
}

std::string cvat_name(const std::string& key) {
  const auto slash = key.rfind('/');
  const auto dot = key.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == slash + 1) return key;
  return key.substr(0, dot);
}

std::vector<std::pair<std::string, std::string>> cvat_masks(const std::string& cvat_dir, const std::string& key,
                                                            const std::vector<uint8_t>& label_map, int64_t height,
                                                            int64_t width, const Palette& palette) {
  // One instance per label present, numbered in label order (CVAT makes a shape of each).
  std::vector<uint8_t> instance_of(256, 0);
  for (uint8_t l : label_map) instance_of[l] = 1;
  uint8_t next = 0;
  for (size_t l = 1; l < instance_of.size(); ++l) instance_of[l] = instance_of[l] ? ++next : 0;
  instance_of[0] = 0;
  std::vector<uint8_t> objects(label_map.size());
  for (size_t i = 0; i < label_map.size(); ++i) objects[i] = instance_of[label_map[i]];
  const std::string name = cvat_name(key) + ".png";
  const auto class_png = groupvit::encode_paletted_png(label_map, height, width, palette);
  const auto object_png = groupvit::encode_paletted_png(objects, height, width, palette);
  return {{cvat_dir + "/SegmentationClass/" + name, std::string(class_png.begin(), class_png.end())},
          {cvat_dir + "/SegmentationObject/" + name, std::string(object_png.begin(), object_png.end())}};
}

std::string cvat_labelmap(const std::vector<std::string>& names, const Palette& palette) {
  std::string out = "# label:color_rgb:parts:actions\n";
  for (size_t l = 0; l < names.size(); ++l)
    out += names[l] + ":" + std::to_string(palette[l][0]) + "," + std::to_string(palette[l][1]) + "," +
           std::to_string(palette[l][2]) + "::\n";
  return out;
}

std::string label_studio_config(const std::vector<std::string>& names, const Palette& palette) {
  std::string out =
      "<View>\n  <Image name=\"image\" value=\"$image\" zoom=\"true\"/>\n"
      "  <BrushLabels name=\"tag\" toName=\"image\">\n";
  for (size_t l = 1; l < names.size(); ++l)
    out += "    <Label value=\"" + xml_attribute(names[l]) + "\" background=\"" + hex_colour(palette[l]) + "\"/>\n";
  return out + "  </BrushLabels>\n</View>\n";
}

int64_t write_coco(const ExportInputs& in, const std::string& path) {
  groupvit::AtomicFile file(path);
  int64_t unusable = 0, image_id = 0, annotation_id = 0;
  file.write("{\"info\": " + json{{"description", "groupvit segment"}, {"model", in.model}}.dump() +
             ",\n\"images\": [");
  // Two passes over results.jsonl: the images, then their annotations, so that memory stays flat.
  unusable += for_each_result(in.results_path, [&](const json& line) {
    if (!has_rles(line)) {
      ++unusable;
      return;
    }
    const json image = {{"id", ++image_id},
                        {"file_name", line["key"]},
                        {"width", line["width"]},
                        {"height", line["height"]},
                        {"groupvit_input", line.value("input", "")}};
    file.write((image_id > 1 ? ",\n" : "\n") + image.dump());
  });
  json categories = json::array();
  for (size_t l = 1; l < in.names.size(); ++l)
    categories.push_back({{"id", l}, {"name", in.names[l]}, {"supercategory", "object"}});
  file.write("],\n\"categories\": " + categories.dump() + ",\n\"annotations\": [");
  image_id = 0;
  for_each_result(in.results_path, [&](const json& line) {
    if (!has_rles(line)) return;
    ++image_id;
    for (const auto& r : line["regions"]) {
      const json a = {
          {"id", ++annotation_id}, {"image_id", image_id}, {"category_id", r["id"]}, {"segmentation", r["rle"]},
          {"area", r["area"]},     {"bbox", r["bbox"]},    {"iscrowd", 0},           {"score", r["score"]}};
      file.write((annotation_id > 1 ? ",\n" : "\n") + a.dump());
    }
  });
  file.write("]}\n");
  file.commit();
  return unusable;
}

int64_t write_label_studio(const ExportInputs& in, const std::string& path) {
  groupvit::AtomicFile file(path);
  int64_t unusable = 0, tasks = 0;
  file.write("[");
  unusable += for_each_result(in.results_path, [&](const json& line) {
    if (!has_rles(line)) {
      ++unusable;
      return;
    }
    const int64_t h = line["height"], w = line["width"];
    const auto map = label_map_of(line, h, w);
    json results = json::array();
    double weighted = 0, area = 0;
    for (const auto& r : line["regions"]) {
      const auto rle = brush_rle(map, r["id"].get<uint8_t>());
      results.push_back({{"id", "g" + std::to_string(tasks + 1) + "-" + std::to_string(r["id"].get<int>())},
                         {"type", "brushlabels"},
                         {"from_name", "tag"},
                         {"to_name", "image"},
                         {"original_width", w},
                         {"original_height", h},
                         {"image_rotation", 0},
                         {"score", r["score"]},
                         {"value", {{"format", "rle"}, {"rle", rle}, {"brushlabels", {r["label"]}}}}});
      weighted += r["score"].get<double>() * r["area"].get<double>();
      area += r["area"].get<double>();
    }
    const json task = {{"data", {{"image", in.image_url_prefix + line["key"].get<std::string>()}}},
                       {"predictions",
                        {{{"model_version", "groupvit " + in.model},
                          {"score", area > 0 ? weighted / area : 0.0},
                          {"result", results}}}}};
    file.write((tasks++ ? ",\n" : "\n") + task.dump());
  });
  file.write("]\n");
  file.commit();
  return unusable;
}

int64_t write_cvat_list(const ExportInputs& in, const std::string& path) {
  std::string list;
  int64_t unusable = 0;
  unusable += for_each_result(in.results_path, [&](const json& line) {
    if (!line.contains("outputs") || !line["outputs"].contains("cvat")) {
      ++unusable;
      return;
    }
    list += cvat_name(line["key"].get<std::string>()) + "\n";
  });
  groupvit::write_file_atomic(path, list);
  return unusable;
}

}  // namespace groupvit_cli
