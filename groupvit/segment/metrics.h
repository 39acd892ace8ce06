// Semantic segmentation scores from a confusion matrix, as mmseg reports them: IoU per class, mean
// IoU over the classes that occur (nanmean), per-class and mean accuracy, pixel accuracy and, with
// class 0 as background, foreground accuracy. Label maps are one byte per pixel. No LibTorch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace groupvit {

// The label of "not annotated" in VOC-style label PNGs: such pixels are not scored.
constexpr int kIgnoreLabel = 255;

class SegmentationMetrics {
 public:
  // Classes 0 .. num_classes - 1; throws std::invalid_argument unless 1 <= num_classes <= 256.
  explicit SegmentationMetrics(int64_t num_classes);

  // Adds one image: the ground truth and the prediction, one class index per pixel in the same
  // order. Pixels whose truth is `ignore_index` are skipped (whatever their prediction). Throws
  // std::out_of_range, and adds nothing, when a scored pixel's truth or prediction is not a class;
  // the vector form throws std::invalid_argument when the two sizes differ.
  void add(const uint8_t* truth, const uint8_t* prediction, size_t pixels, int ignore_index = kIgnoreLabel);
  void add(const std::vector<uint8_t>& truth, const std::vector<uint8_t>& prediction, int ignore_index = kIgnoreLabel);

  int64_t num_classes() const { return n_; }
  // Scored pixels with ground truth `truth` predicted as `predicted` (the confusion matrix).
  int64_t count(int64_t truth, int64_t predicted) const;
  // Scored pixels whose ground truth is class k.
  int64_t pixels(int64_t k) const;

  // |truth ∩ prediction| / |truth ∪ prediction| of class k; none for a class that is neither in the
  // ground truth nor predicted (mmseg's NaN). A class predicted but absent from the truth scores 0.
  std::optional<double> iou(int64_t k) const;
  // Correct pixels / ground-truth pixels of class k; none for a class absent from the truth.
  std::optional<double> accuracy(int64_t k) const;

  // Means over the classes that have a value (0 when none has).
  double mean_iou() const;
  double mean_accuracy() const;
  // Correct / scored pixels (0 when none was scored).
  double pixel_accuracy() const;
  // Pixel accuracy over the pixels whose truth is a class other than 0 (background).
  double foreground_accuracy() const;

 private:
  int64_t predicted(int64_t k) const;  // column sum
  int64_t n_;
  std::vector<int64_t> confusion_;  // [truth * n + predicted]
};

}  // namespace groupvit
