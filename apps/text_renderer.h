// Unicode text in images (the overlay legend): draws any UTF-8 string into a BGR cv::Mat.
//
// OpenCV's Hershey fonts are ASCII-only ("猫 café" comes out as "??? caf??"), so label names go through
// FreeType (rasterising), HarfBuzz (shaping: Arabic joining, combining marks, emoji sequences) and
// fontconfig (finding the installed fonts at run time). Each character takes the first font of this
// chain that has a real glyph for it, so one label can mix Latin, CJK, Arabic and emoji:
//   1. $GROUPVIT_FONT, when set: the path of a .ttf, .otf or .ttc (its first face), ahead of everything;
//   2. fontconfig's list for "sans-serif" (FcFontSort), in fontconfig's order.
// Emoji-presentation characters (U+1F000..U+1FAFF, or any followed by U+FE0F) try fontconfig's colour
// "emoji" font first, so that a text font's monochrome pictograph does not win over the colour one.
// Colour emoji (Noto Color Emoji: CBDT bitmaps in one 109 px strike) are loaded at that strike and
// scaled down to the text size.
//
// Right-to-left: FriBidi resolves the embedding levels (UAX #9) of the whole label and its visual order;
// the label is cut into runs of one level, font and script, HarfBuzz shapes each in its own direction
// (with the whole label as context, so Arabic still joins across a font change), and the runs are placed
// left to right in FriBidi's visual order.
//
// Without any usable font has_fonts() is false and the caller keeps Hershey (ASCII); fallback_reason()
// then says what is missing and which Debian packages bring it. Invalid UTF-8 never throws: each
// ill-formed sequence becomes one U+FFFD (the "maximal subpart" rule of Unicode and WHATWG).
#pragma once

#include <memory>
#include <mutex>
#include <opencv2/core.hpp>
#include <string>

namespace groupvit_cli {

class TextRenderer {
 public:
  // The fonts the legend wants: Latin/Greek/Cyrillic/Arabic/Hebrew, CJK, colour emoji.
  static constexpr const char* kFontPackages = "fonts-dejavu-core fonts-noto-cjk fonts-noto-color-emoji";

  // One renderer for the process, made on first use. Never destroyed: writer threads may still draw
  // while static destructors run at exit.
  static TextRenderer& shared();

  // False when neither GROUPVIT_FONT nor fontconfig gave a font that FreeType and HarfBuzz can use.
  bool has_fonts() const;
  // Empty when all is well; otherwise one line for a warning: no font at all (and the packages to
  // install), or a GROUPVIT_FONT that could not be used (the fontconfig fonts are used instead).
  std::string fallback_reason() const;

  // pixel_height is the line height: the first font's ascent + descent fill it, and text of other fonts
  // is drawn at the same em size on the same baseline. The result's height is pixel_height, its width
  // the advance width; {0, 0} when has_fonts() is false or pixel_height < 1.
  cv::Size measure(const std::string& utf8, int pixel_height) const;
  // Anti-aliased, alpha-blended into bgr (CV_8UC3, else std::invalid_argument), clipped to the image;
  // top_left is the top left corner of measure()'s box. Colour glyphs (emoji) keep their own colours.
  void draw(cv::Mat& bgr, const std::string& utf8, cv::Point top_left, int pixel_height, cv::Scalar bgr_colour) const;
  // Whether every character of utf8 got a real glyph (not .notdef, glyph 0) in some font of the chain.
  bool covers(const std::string& utf8) const;

  TextRenderer(const TextRenderer&) = delete;
  TextRenderer& operator=(const TextRenderer&) = delete;

 private:
  TextRenderer();
  ~TextRenderer();
  struct State;
  // FreeType faces and HarfBuzz fonts are not thread-safe (sizes are set on them per call), so every
  // call holds this; a legend is a few short lines, and the lock costs nothing against encoding the image.
  mutable std::mutex mutex_;
  std::unique_ptr<State> state_;  // hides FreeType, HarfBuzz, fontconfig and FriBidi from includers
};

}  // namespace groupvit_cli
