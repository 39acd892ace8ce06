// TextRenderer (apps/text_renderer.h) on labels the Hershey legend turned into "???": Latin-1, CJK, Arabic
// and emoji must each get a real glyph (not .notdef, not U+FFFD), Arabic must join and run right to
// left, emoji must come in colour, and broken input must neither crash nor lose the text around it.
// Needs the fonts of TextRenderer::kFontPackages (scripts/setup.sh installs them).
#include <catch2/catch.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "text_renderer.h"

namespace {

using groupvit_cli::TextRenderer;

constexpr int kPx = 48;  // large enough that two different glyphs never round to the same bitmap
constexpr int kPad = 8;

// No Catch2 assertion here: the thread test calls it from several threads.
const TextRenderer& renderer() { return TextRenderer::shared(); }

void require_fonts() {
  INFO("fallback_reason: " << renderer().fallback_reason());
  REQUIRE(renderer().has_fonts());
}

// White text on black, with a margin so that overhanging ink is not clipped away.
cv::Mat render(const std::string& text, int px = kPx) {
  const cv::Size box = renderer().measure(text, px);
  cv::Mat image(box.height + 2 * kPad, box.width + 2 * kPad, CV_8UC3, cv::Scalar(0, 0, 0));
  renderer().draw(image, text, cv::Point(kPad, kPad), px, cv::Scalar(255, 255, 255));
  return image;
}

// The grey ink cropped to its bounding box: the glyph's bitmap, independent of where it was drawn.
cv::Mat ink(const cv::Mat& image) {
  cv::Mat grey;
  cv::cvtColor(image, grey, cv::COLOR_BGR2GRAY);
  std::vector<cv::Point> points;
  cv::findNonZero(grey, points);
  if (points.empty()) return cv::Mat();
  return grey(cv::boundingRect(points)).clone();
}

bool same_bitmap(const cv::Mat& a, const cv::Mat& b) {
  if (a.size() != b.size()) return false;
  return a.empty() || cv::norm(a, b, cv::NORM_L1) / static_cast<double>(a.total()) < 4.0;
}

// The label's characters, for valid UTF-8.
std::vector<std::string> characters(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const auto lead = static_cast<unsigned char>(s[i]);
    const size_t n = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

const std::vector<std::string> kLabels = {"café crème", "Ærøskøbing", "猫", "東京タワー", "قطة", "🐱 cat"};
const char* const kNotdef = "\u0378";  // unassigned: no font has it, so it draws the first font's .notdef
const char* const kReplacement = "\uFFFD";

}  // namespace

TEST_CASE("every label's characters get real glyphs, none of them .notdef or U+FFFD", "[text_render]") {
  require_fonts();
  const cv::Mat notdef = ink(render(kNotdef));
  const cv::Mat replacement = ink(render(kReplacement));
  REQUIRE_FALSE(notdef.empty());
  REQUIRE_FALSE(same_bitmap(notdef, replacement));
  CHECK_FALSE(renderer().covers(kNotdef));
  CHECK_FALSE(renderer().covers("cat \U0010FFFD"));  // plane 16 private use: in no font either

  std::vector<std::pair<std::string, cv::Mat>> seen;
  for (const std::string& label : kLabels) {
    INFO("label " << label);
    CHECK(renderer().covers(label));
    const cv::Mat whole = ink(render(label));
    CHECK(cv::countNonZero(whole) > 50);
    for (const std::string& c : characters(label)) {
      if (c == " ") continue;
      INFO("character " << c);
      const cv::Mat glyph = ink(render(c));
      REQUIRE_FALSE(glyph.empty());
      CHECK_FALSE(same_bitmap(glyph, notdef));
      CHECK_FALSE(same_bitmap(glyph, replacement));
      for (const auto& [other, bitmap] : seen)
        if (other != c) CHECK_FALSE(same_bitmap(glyph, bitmap));  // 猫 vs 東 vs 京 ...: not one shared box
      seen.emplace_back(c, glyph);
    }
  }
}

TEST_CASE("Arabic joins and runs right to left; mixed labels follow the bidi algorithm", "[text_render]") {
  require_fonts();
  // ZWNJ forbids joining: the same letters isolated must look different from the joined word.
  CHECK_FALSE(same_bitmap(ink(render("قطة")), ink(render("ق\u200Cط\u200Cة"))));
  // Right to left: Hebrew (no joining) drawn as is equals its letters reversed under a left-to-right override.
  CHECK(same_bitmap(ink(render("אב")), ink(render("\u202Dבא"))));
  CHECK_FALSE(same_bitmap(ink(render("אב")), ink(render("\u202Dאב"))));
  CHECK(same_bitmap(ink(render("ق\u200Cط")), ink(render("\u202Dط\u200Cق"))));
  // In both paragraph directions "cat" ends up on the left: "cat قطة" (LTR) and "قطة cat" (RTL, UAX #9).
  const cv::Mat cat = render("cat");
  const cv::Rect left(0, 0, renderer().measure("cat", kPx).width + kPad, cat.rows);
  for (const std::string label : {"cat قطة", "قطة cat"}) {
    INFO("label " << label);
    const cv::Mat image = render(label);
    CHECK(cv::norm(image(left), cat(left), cv::NORM_L1) == 0);
    CHECK(cv::countNonZero(ink(image)) > cv::countNonZero(ink(cat)));
  }
}

TEST_CASE("emoji are drawn in colour at the text size", "[text_render]") {
  require_fonts();
  const cv::Mat image = render("🐱 cat");
  int coloured = 0;
  for (int y = 0; y < image.rows; ++y)
    for (int x = 0; x < image.cols; ++x) {
      const cv::Vec3b p = image.at<cv::Vec3b>(y, x);
      coloured += std::max({p[0], p[1], p[2]}) - std::min({p[0], p[1], p[2]}) > 60;
    }
  CHECK(coloured > 200);  // white text on black has none
  const cv::Mat emoji = ink(render("🐱"));
  CHECK(emoji.rows <= kPx + 2);
  CHECK(emoji.rows >= kPx / 2);
}

TEST_CASE("invalid UTF-8 draws U+FFFD per bad sequence and keeps the rest", "[text_render]") {
  require_fonts();
  const std::string bad[] = {"\xff",         "caf\xc3",      "\xc3\x28", "\xed\xa0\x80",         "\xf4\x90\x80\x80",
                             "\xe0\x80\xaf", "\xf0\x9f\x90", "ok\x80ok", std::string("a\0b", 3), "\xc0\xaf"};
  for (const std::string& s : bad) {
    CHECK(renderer().measure(s, kPx).width > 0);
    CHECK_FALSE(ink(render(s)).empty());
  }
  CHECK(same_bitmap(ink(render("\xff")), ink(render(kReplacement))));
  CHECK(same_bitmap(ink(render("caf\xc3"
                               "é")),
                    ink(render("caf\uFFFDé"))));  // é after the cut is kept
  CHECK(renderer().measure("\xe0\x80\xaf", kPx) == renderer().measure("\uFFFD\uFFFD\uFFFD", kPx));
  CHECK(renderer().measure("\xf0\x9f\x90", kPx) == renderer().measure(kReplacement, kPx));  // cut-off emoji: one
  CHECK(renderer().covers("ok\x80ok"));
}

TEST_CASE("empty text, odd sizes and positions draw nothing or clip", "[text_render]") {
  require_fonts();
  CHECK(renderer().measure("", kPx) == cv::Size(0, kPx));
  CHECK(renderer().covers(""));
  cv::Mat image(20, 30, CV_8UC3, cv::Scalar(0, 0, 0));
  renderer().draw(image, "", cv::Point(0, 0), kPx, cv::Scalar(255, 255, 255));
  CHECK(cv::countNonZero(image.reshape(1)) == 0);
  for (int px : {0, -3}) {
    CHECK(renderer().measure("cat", px) == cv::Size(0, 0));
    renderer().draw(image, "cat", cv::Point(0, 0), px, cv::Scalar(255, 255, 255));
  }
  CHECK(cv::countNonZero(image.reshape(1)) == 0);
  for (const cv::Point at : {cv::Point(-25, -30), cv::Point(25, 15), cv::Point(-1000, 5), cv::Point(5, 1000)})
    renderer().draw(image, "猫 🐱 قطة café", at, kPx, cv::Scalar(255, 255, 255));
  cv::Mat one(1, 1, CV_8UC3, cv::Scalar(0, 0, 0));
  renderer().draw(one, "🐱猫", cv::Point(0, 0), 200, cv::Scalar(0, 255, 0));
  cv::Mat grey(10, 10, CV_8UC1);
  CHECK_THROWS_AS(renderer().draw(grey, "x", cv::Point(0, 0), 8, cv::Scalar(255)), std::invalid_argument);
}

TEST_CASE("several writer threads draw the same pixels as one", "[text_render]") {
  require_fonts();
  const std::string label = "猫 café قطة 🐱 東京タワー";
  const cv::Mat expected = render(label, 30);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < mismatches.size(); ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 15; ++k) {
        const int px = k % 2 ? 30 : 17;  // alternating sizes: each call sets its own size on the shared faces
        const cv::Mat got = render(label, px);
        if (px == 30 && cv::norm(got, expected, cv::NORM_L1) != 0) ++mismatches[t];
      }
    });
  for (auto& thread : threads) thread.join();
  for (int m : mismatches) CHECK(m == 0);
}
