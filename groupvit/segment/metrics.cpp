// Segmentation scores from a confusion matrix (see metrics.h).
#include "groupvit/segment/metrics.h"

#include <stdexcept>
#include <string>

namespace groupvit {

namespace {

double ratio(int64_t part, int64_t whole) {
  return whole ? static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

// The mean of the values that are there, in class order (0 when none is).
template <typename PerClass>
double mean_of_present(int64_t n, PerClass value) {
  double sum = 0;
  int64_t count = 0;
  for (int64_t k = 0; k < n; ++k) {
    if (const auto v = value(k)) {
      sum += *v;
      ++count;
    }
  }
  return count ? sum / static_cast<double>(count) : 0.0;
}

}  // namespace

SegmentationMetrics::SegmentationMetrics(int64_t num_classes) : n_(num_classes) {
  if (num_classes < 1 || num_classes > 256)
    throw std::invalid_argument("segmentation metrics: " + std::to_string(num_classes) +
                                " classes (one byte per pixel holds 1 to 256)");
  confusion_.assign(static_cast<size_t>(n_ * n_), 0);
}

void SegmentationMetrics::add(const uint8_t* truth, const uint8_t* prediction, size_t pixels, int ignore_index) {
  // Checked before anything is counted, so that an image with a bad label leaves the scores as they were.
  for (size_t i = 0; i < pixels; ++i) {
    if (truth[i] == ignore_index) continue;
    if (truth[i] >= n_)
      throw std::out_of_range("label " + std::to_string(truth[i]) + " but the class list has " + std::to_string(n_) +
                              " classes");
    if (prediction[i] >= n_)
      throw std::out_of_range("predicted label " + std::to_string(prediction[i]) + " outside the class list");
  }
  for (size_t i = 0; i < pixels; ++i)
    if (truth[i] != ignore_index) ++confusion_[static_cast<size_t>(truth[i] * n_ + prediction[i])];
}

void SegmentationMetrics::add(const std::vector<uint8_t>& truth, const std::vector<uint8_t>& prediction,
                              int ignore_index) {
  if (truth.size() != prediction.size())
    throw std::invalid_argument("segmentation metrics: " + std::to_string(truth.size()) + " ground-truth pixels but " +
                                std::to_string(prediction.size()) + " predicted");
  add(truth.data(), prediction.data(), truth.size(), ignore_index);
}

int64_t SegmentationMetrics::count(int64_t truth, int64_t predicted) const {
  if (truth < 0 || truth >= n_ || predicted < 0 || predicted >= n_)
    throw std::out_of_range("segmentation metrics: no class pair (" + std::to_string(truth) + ", " +
                            std::to_string(predicted) + ")");
  return confusion_[static_cast<size_t>(truth * n_ + predicted)];
}

int64_t SegmentationMetrics::pixels(int64_t k) const {
  int64_t row = 0;
  for (int64_t j = 0; j < n_; ++j) row += count(k, j);
  return row;
}

int64_t SegmentationMetrics::predicted(int64_t k) const {
  int64_t column = 0;
  for (int64_t j = 0; j < n_; ++j) column += count(j, k);
  return column;
}

std::optional<double> SegmentationMetrics::iou(int64_t k) const {
  const int64_t tp = count(k, k);
  const int64_t uni = pixels(k) + predicted(k) - tp;
  if (uni == 0) return std::nullopt;
  return static_cast<double>(tp) / static_cast<double>(uni);
}

std::optional<double> SegmentationMetrics::accuracy(int64_t k) const {
  const int64_t row = pixels(k);
  if (row == 0) return std::nullopt;
  return static_cast<double>(count(k, k)) / static_cast<double>(row);
}

double SegmentationMetrics::mean_iou() const {
  return mean_of_present(n_, [this](int64_t k) { return iou(k); });
}

double SegmentationMetrics::mean_accuracy() const {
  return mean_of_present(n_, [this](int64_t k) { return accuracy(k); });
}

double SegmentationMetrics::pixel_accuracy() const {
  int64_t total = 0, correct = 0;
  for (int64_t k = 0; k < n_; ++k) {
    total += pixels(k);
    correct += count(k, k);
  }
  return ratio(correct, total);
}

double SegmentationMetrics::foreground_accuracy() const {
  int64_t total = 0, correct = 0;
  for (int64_t k = 1; k < n_; ++k) {
    total += pixels(k);
    correct += count(k, k);
  }
  return ratio(correct, total);
}

}  // namespace groupvit
