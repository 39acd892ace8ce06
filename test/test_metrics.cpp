// Segmentation scores (groupvit/segment/metrics.h): IoU, accuracies and their means from the
// confusion matrix, checked on label maps small enough to count by hand, and against numpy
// (scripts/make_metrics_fixtures.py) on random ones.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "groupvit/segment/metrics.h"
#include "test_support.h"

namespace {

using Labels = std::vector<uint8_t>;

// Every number the metrics report, for comparing two of them.
void check_same_scores(const groupvit::SegmentationMetrics& a, const groupvit::SegmentationMetrics& b) {
  REQUIRE(a.num_classes() == b.num_classes());
  for (int64_t t = 0; t < a.num_classes(); ++t) {
    for (int64_t p = 0; p < a.num_classes(); ++p) CHECK(a.count(t, p) == b.count(t, p));
    CHECK(a.iou(t) == b.iou(t));
    CHECK(a.accuracy(t) == b.accuracy(t));
  }
  CHECK(a.mean_iou() == b.mean_iou());
  CHECK(a.mean_accuracy() == b.mean_accuracy());
  CHECK(a.pixel_accuracy() == b.pixel_accuracy());
  CHECK(a.foreground_accuracy() == b.foreground_accuracy());
}

}  // namespace

TEST_CASE("a hand-counted 2x2 example", "[metrics]") {
  // truth {0, 0, 1, 1}, prediction {0, 1, 1, 1}: confusion (truth row, predicted column)
  //   (0,0) = 1, (0,1) = 1, (1,0) = 0, (1,1) = 2.
  // class 0: tp 1, truth 2, predicted 1, union 2 + 1 - 1 = 2 -> IoU 1/2, accuracy 1/2
  // class 1: tp 2, truth 2, predicted 3, union 2 + 3 - 2 = 3 -> IoU 2/3, accuracy 2/2
  // pixel accuracy 3/4; foreground (class 1 only) 2/2; means (1/2 + 2/3) / 2 = 7/12 and 3/4.
  groupvit::SegmentationMetrics m(2);
  m.add(Labels{0, 0, 1, 1}, Labels{0, 1, 1, 1});
  CHECK(m.count(0, 0) == 1);
  CHECK(m.count(0, 1) == 1);
  CHECK(m.count(1, 0) == 0);
  CHECK(m.count(1, 1) == 2);
  CHECK(m.pixels(0) == 2);
  CHECK(m.pixels(1) == 2);
  REQUIRE(m.iou(0));
  REQUIRE(m.iou(1));
  CHECK(*m.iou(0) == Approx(1.0 / 2.0));
  CHECK(*m.iou(1) == Approx(2.0 / 3.0));
  CHECK(*m.accuracy(0) == Approx(1.0 / 2.0));
  CHECK(*m.accuracy(1) == Approx(1.0));
  CHECK(m.mean_iou() == Approx(7.0 / 12.0));
  CHECK(m.mean_accuracy() == Approx(3.0 / 4.0));
  CHECK(m.pixel_accuracy() == Approx(3.0 / 4.0));
  CHECK(m.foreground_accuracy() == Approx(1.0));
}

TEST_CASE("a perfect prediction scores 1 for every class present", "[metrics]") {
  groupvit::SegmentationMetrics m(4);
  const Labels truth = {0, 1, 1, 3, 3, 3, 0, 1};  // class 2 nowhere
  m.add(truth, truth);
  for (int64_t k : {0, 1, 3}) {
    REQUIRE(m.iou(k));
    CHECK(*m.iou(k) == 1.0);
    CHECK(*m.accuracy(k) == 1.0);
  }
  CHECK_FALSE(m.iou(2));
  CHECK(m.mean_iou() == 1.0);
  CHECK(m.mean_accuracy() == 1.0);
  CHECK(m.pixel_accuracy() == 1.0);
  CHECK(m.foreground_accuracy() == 1.0);
}

TEST_CASE("a class absent everywhere has no IoU and is left out of the means", "[metrics]") {
  // The 2x2 example with a third class that neither the truth nor the prediction contains: the
  // means stay those of the two classes, not (1/2 + 2/3 + 0) / 3.
  groupvit::SegmentationMetrics m(3);
  m.add(Labels{0, 0, 1, 1}, Labels{0, 1, 1, 1});
  CHECK_FALSE(m.iou(2).has_value());
  CHECK_FALSE(m.accuracy(2).has_value());
  CHECK(m.pixels(2) == 0);
  CHECK(m.mean_iou() == Approx(7.0 / 12.0));
  CHECK(m.mean_accuracy() == Approx(3.0 / 4.0));
}

TEST_CASE("a class predicted but absent from the truth scores IoU 0 and counts in the mean", "[metrics]") {
  // truth {0, 0}, prediction {0, 1}: class 0 tp 1, union 2 -> 1/2; class 1 tp 0, union 0 + 1 - 0
  // = 1 -> 0, so the mean IoU is (1/2 + 0) / 2. Class 1 has no ground truth, hence no accuracy.
  groupvit::SegmentationMetrics m(2);
  m.add(Labels{0, 0}, Labels{0, 1});
  REQUIRE(m.iou(1));
  CHECK(*m.iou(1) == 0.0);
  CHECK_FALSE(m.accuracy(1));
  CHECK(m.mean_iou() == Approx(1.0 / 4.0));
  CHECK(m.mean_accuracy() == Approx(1.0 / 2.0));
  CHECK(m.foreground_accuracy() == 0.0);  // no foreground pixels in the truth
}

TEST_CASE("ignored pixels change nothing, whatever their prediction", "[metrics]") {
  groupvit::SegmentationMetrics plain(3), with_ignored(3);
  plain.add(Labels{0, 2, 1, 1}, Labels{0, 1, 1, 2});
  // The same pixels with ignored ones between them, predicted as classes and as a non-class.
  with_ignored.add(Labels{255, 0, 2, 255, 1, 1, 255}, Labels{2, 0, 1, 0, 1, 2, 200});
  check_same_scores(plain, with_ignored);
  CHECK(with_ignored.pixel_accuracy() == Approx(2.0 / 4.0));

  // Another ignore index: 255 is then a label like any other (and here not a class).
  groupvit::SegmentationMetrics other(3);
  other.add(Labels{0, 0, 1}, Labels{0, 1, 1}, /*ignore_index=*/0);
  CHECK(other.pixels(0) == 0);
  CHECK(other.pixels(1) == 1);
  CHECK_THROWS_AS(other.add(Labels{255}, Labels{0}, 0), std::out_of_range);
}

TEST_CASE("two images accumulate like one image of both", "[metrics]") {
  const Labels truth_a = {0, 1, 2, 2, 255}, prediction_a = {0, 2, 2, 1, 0};
  const Labels truth_b = {1, 1, 0}, prediction_b = {1, 0, 0};
  groupvit::SegmentationMetrics two(3), one(3);
  two.add(truth_a, prediction_a);
  two.add(truth_b, prediction_b);
  Labels truth = truth_a, prediction = prediction_a;
  truth.insert(truth.end(), truth_b.begin(), truth_b.end());
  prediction.insert(prediction.end(), prediction_b.begin(), prediction_b.end());
  one.add(truth, prediction);
  check_same_scores(two, one);
  // The pointer form scores the same pixels as the vector form.
  groupvit::SegmentationMetrics raw(3);
  raw.add(truth.data(), prediction.data(), truth.size());
  check_same_scores(raw, one);
}

TEST_CASE("sizes that differ and labels that are no class throw and add nothing", "[metrics]") {
  groupvit::SegmentationMetrics m(2);
  CHECK_THROWS_AS(m.add(Labels{0, 1, 1}, Labels{0, 1}), std::invalid_argument);
  CHECK_THROWS_AS(m.add(Labels{0}, Labels{}), std::invalid_argument);
  // A bad label after good pixels: none of them is counted.
  CHECK_THROWS_WITH(m.add(Labels{0, 1, 2}, Labels{0, 1, 1}),
                    Catch::Contains("label 2") && Catch::Contains("2 classes"));
  CHECK_THROWS_WITH(m.add(Labels{0, 1}, Labels{0, 7}), Catch::Contains("predicted label 7"));
  CHECK_THROWS_AS(m.add(Labels{0, 1}, Labels{0, 255}), std::out_of_range);  // 255 predicted is not ignored
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t p = 0; p < 2; ++p) CHECK(m.count(t, p) == 0);
  CHECK(m.mean_iou() == 0.0);
  CHECK(m.pixel_accuracy() == 0.0);
  CHECK_THROWS_AS(m.count(2, 0), std::out_of_range);
  CHECK_THROWS_AS(groupvit::SegmentationMetrics(0), std::invalid_argument);
  CHECK_THROWS_AS(groupvit::SegmentationMetrics(257), std::invalid_argument);
  CHECK_NOTHROW(groupvit::SegmentationMetrics(256));
}

TEST_CASE("scores equal numpy with mmseg's rules on random label maps", "[metrics_ref]") {
  // scripts/make_metrics_fixtures.py: ignored corners, a class only predicted, one in neither.
  std::ifstream in(groupvit::test::fixtures_dir() + "/metrics/metrics.json");
  REQUIRE(in);
  const auto fixture = nlohmann::json::parse(in);
  for (const auto& c : fixture["cases"]) {
    const int64_t n = c["classes"];
    INFO(n << " classes");
    groupvit::SegmentationMetrics scores(n);
    for (const auto& image : c["images"]) {
      scores.add(image["truth"].get<Labels>(), image["prediction"].get<Labels>());
    }
    const auto& ref = c["reference"];
    for (int64_t k = 0; k < n; ++k) {
      INFO("class " << k);
      const auto& iou = ref["iou"][static_cast<size_t>(k)];
      const auto& accuracy = ref["accuracy"][static_cast<size_t>(k)];
      REQUIRE(scores.iou(k).has_value() == !iou.is_null());
      if (!iou.is_null()) CHECK(std::abs(*scores.iou(k) - iou.get<double>()) < 1e-12);
      REQUIRE(scores.accuracy(k).has_value() == !accuracy.is_null());
      if (!accuracy.is_null()) CHECK(std::abs(*scores.accuracy(k) - accuracy.get<double>()) < 1e-12);
    }
    CHECK(scores.iou(n - 2) == 0.0);             // predicted, never true
    CHECK_FALSE(scores.iou(n - 1).has_value());  // neither: left out of the mean
    CHECK(std::abs(scores.mean_iou() - ref["mean_iou"].get<double>()) < 1e-12);
    CHECK(std::abs(scores.mean_accuracy() - ref["mean_accuracy"].get<double>()) < 1e-12);
    CHECK(std::abs(scores.pixel_accuracy() - ref["pixel_accuracy"].get<double>()) < 1e-12);
    CHECK(std::abs(scores.foreground_accuracy() - ref["foreground_accuracy"].get<double>()) < 1e-12);
  }
}
