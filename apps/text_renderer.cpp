// Unicode text in images with FreeType, HarfBuzz, fontconfig and FriBidi (see text_renderer.h for why
// and for the font chain). One call: UTF-8 -> code points -> a font per character -> bidi levels and
// visual order -> runs of one level, font and script -> HarfBuzz glyphs and positions -> FreeType
// bitmaps blended into the image.
#include "text_renderer.h"

#include <fontconfig/fontconfig.h>
#include <ft2build.h>
#include FT_FREETYPE_H
#include <fribidi.h>
#include <hb.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <opencv2/imgproc.hpp>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace groupvit_cli {

namespace {

constexpr uint32_t kReplacementCharacter = 0xFFFD;
// A legend line is short; this only bounds the work (and keeps FriBidi's int indices safe) for a
// pathological label.
constexpr size_t kMaxCodePoints = 1 << 16;

// Ill-formed input becomes U+FFFD per maximal subpart (Unicode 3.9, WHATWG): a byte that cannot
// continue the sequence is not swallowed but starts the next one, so "caf\xC3" + "é" keeps the "é".
std::vector<uint32_t> decode_utf8(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size() && out.size() < kMaxCodePoints) {
    const auto lead = static_cast<unsigned char>(s[i++]);
    if (lead < 0x80) {
      out.push_back(lead);
      continue;
    }
    int follow = 0;
    uint32_t cp = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the first continuation byte's range excludes overlongs,
    if (lead >= 0xC2 && lead <= 0xDF) {  // surrogates and code points past U+10FFFF
      follow = 1, cp = lead & 0x1Fu;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      follow = 2, cp = lead & 0x0Fu, lo = lead == 0xE0 ? 0xA0 : 0x80, hi = lead == 0xED ? 0x9F : 0xBF;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      follow = 3, cp = lead & 0x07u, lo = lead == 0xF0 ? 0x90 : 0x80, hi = lead == 0xF4 ? 0x8F : 0xBF;
    } else {
      out.push_back(kReplacementCharacter);
      continue;
    }
    bool complete = true;
    for (int k = 0; k < follow; ++k, lo = 0x80, hi = 0xBF) {
      const auto b = i < s.size() ? static_cast<unsigned char>(s[i]) : 0;
      if (i >= s.size() || b < lo || b > hi) {
        complete = false;
        break;
      }
      cp = (cp << 6) | (b & 0x3Fu);
      ++i;
    }
    out.push_back(complete ? cp : kReplacementCharacter);
  }
  return out;
}

// Characters that should come from the colour emoji font when it has them: the pictograph planes, and
// anything asking for emoji presentation with VS16 (U+FE0F: "❤️", keycaps "1️⃣").
bool wants_emoji(const std::vector<uint32_t>& text, size_t i) {
  return (text[i] >= 0x1F000 && text[i] <= 0x1FAFF) || (i + 1 < text.size() && text[i + 1] == 0xFE0F);
}

bool is_variation_selector(uint32_t c) { return (c >= 0xFE00 && c <= 0xFE0F) || (c >= 0xE0100 && c <= 0xE01EF); }

// One font of the chain. Opened on first need: fontconfig's sorted list holds dozens of fonts (all the
// CJK faces in one .ttc), and most labels need one or two of them.
struct Face {
  std::string file;
  int index = 0;                 // face in a collection (.ttc); the upper 16 bits are a named instance
  FcCharSet* charset = nullptr;  // fontconfig's coverage, to skip a font without opening it; null: ask it
  bool tried = false, usable = false;
  FT_Face ft = nullptr;     // rasterising
  hb_font_t* hb = nullptr;  // shaping, independent of FreeType's per-call size
  bool strike = false;      // fixed-size colour bitmaps (CBDT/sbix), scaled to the text size
  double strike_ppem = 0;
  FT_F26Dot6 size26 = -1;  // the size last set on ft: set only when it changes
};

struct PlacedGlyph {
  int face;
  hb_codepoint_t id;
  hb_position_t x26, y26;  // pen position from the left edge and the baseline, 26.6 pixels
};

struct Layout {
  std::vector<PlacedGlyph> glyphs;
  hb_position_t width26 = 0;
  bool complete = true;  // every character got a real glyph
};

struct Run {
  size_t start, length;
  int level, face;
  hb_script_t script;
  size_t visual;  // where its first character (in visual order) lands
};

long round26(hb_position_t v) { return std::lround(v / 64.0); }

// Display levels (UAX #9 up to L1) and each character's visual position, from FriBidi. The paragraph
// direction is the label's first strong character's (P2/P3), as a reader would take it.
void resolve_bidi(const std::vector<uint32_t>& text, std::vector<FriBidiLevel>& levels,
                  std::vector<size_t>& visual_of) {
  const auto n = static_cast<FriBidiStrIndex>(text.size());
  std::vector<FriBidiCharType> types(text.size());
  std::vector<FriBidiBracketType> brackets(text.size());
  std::vector<FriBidiStrIndex> map(text.size());
  std::iota(map.begin(), map.end(), 0);
  levels.assign(text.size(), 0);
  fribidi_get_bidi_types(text.data(), n, types.data());
  fribidi_get_bracket_types(text.data(), n, types.data(), brackets.data());
  FriBidiParType base = FRIBIDI_PAR_ON;
  if (fribidi_get_par_embedding_levels_ex(types.data(), brackets.data(), n, &base, levels.data()) == 0 ||
      fribidi_reorder_line(0, types.data(), n, 0, base, levels.data(), nullptr, map.data()) == 0) {
    levels.assign(text.size(), 0);  // FriBidi only fails on allocation: left to right is still legible
    std::iota(map.begin(), map.end(), 0);
  }
  visual_of.resize(text.size());
  for (size_t v = 0; v < map.size(); ++v) visual_of[static_cast<size_t>(map[v])] = v;
}

// Common and inherited characters (spaces, digits, punctuation, marks) take their neighbour's script so
// that they do not split a run (and HarfBuzz shapes marks with their base).
std::vector<hb_script_t> resolve_scripts(const std::vector<uint32_t>& text) {
  hb_unicode_funcs_t* unicode = hb_unicode_funcs_get_default();
  std::vector<hb_script_t> scripts(text.size(), HB_SCRIPT_INVALID);
  hb_script_t last = HB_SCRIPT_INVALID;
  for (size_t i = 0; i < text.size(); ++i) {
    const hb_script_t s = hb_unicode_script(unicode, text[i]);
    if (s != HB_SCRIPT_COMMON && s != HB_SCRIPT_INHERITED && s != HB_SCRIPT_UNKNOWN) last = s;
    scripts[i] = last;
  }
  const auto first = std::find_if(scripts.begin(), scripts.end(), [](hb_script_t s) { return s != HB_SCRIPT_INVALID; });
  const hb_script_t lead = first == scripts.end() ? HB_SCRIPT_COMMON : *first;
  std::replace(scripts.begin(), first, HB_SCRIPT_INVALID, lead);
  return scripts;
}

void blend_coverage(cv::Mat& bgr, const FT_Bitmap& bm, int x0, int y0, const cv::Vec3b& colour) {
  const int rows = static_cast<int>(bm.rows), width = static_cast<int>(bm.width);
  for (int r = std::max(0, -y0); r < rows && y0 + r < bgr.rows; ++r) {
    const unsigned char* row = bm.pitch >= 0 ? bm.buffer + r * bm.pitch : bm.buffer + (rows - 1 - r) * -bm.pitch;
    auto* dst = bgr.ptr<cv::Vec3b>(y0 + r);
    for (int c = std::max(0, -x0); c < width && x0 + c < bgr.cols; ++c) {
      const int a = bm.pixel_mode == FT_PIXEL_MODE_MONO ? ((row[c >> 3] >> (7 - (c & 7))) & 1) * 255 : row[c];
      if (a == 0) continue;
      cv::Vec3b& d = dst[x0 + c];
      for (int k = 0; k < 3; ++k) d[k] = static_cast<uchar>((d[k] * (255 - a) + colour[k] * a + 127) / 255);
    }
  }
}

// FreeType's BGRA is premultiplied, so it is scaled and composited as it is (a straight-alpha resize
// would darken the emoji's anti-aliased edge).
void blend_bgra(cv::Mat& bgr, const FT_GlyphSlot slot, int x, int y, double scale) {
  const FT_Bitmap& bm = slot->bitmap;
  if (bm.rows == 0 || bm.width == 0 || bm.pitch <= 0) return;
  cv::Mat src(static_cast<int>(bm.rows), static_cast<int>(bm.width), CV_8UC4, bm.buffer, static_cast<size_t>(bm.pitch));
  cv::Mat scaled = src;
  if (std::abs(scale - 1.0) > 1e-6) {
    const cv::Size to(std::max(1, static_cast<int>(std::lround(src.cols * scale))),
                      std::max(1, static_cast<int>(std::lround(src.rows * scale))));
    cv::resize(src, scaled, to, 0, 0, cv::INTER_AREA);
  }
  const int x0 = x + static_cast<int>(std::lround(slot->bitmap_left * scale));
  const int y0 = y - static_cast<int>(std::lround(slot->bitmap_top * scale));
  for (int r = std::max(0, -y0); r < scaled.rows && y0 + r < bgr.rows; ++r) {
    const auto* s = scaled.ptr<cv::Vec4b>(r);
    auto* dst = bgr.ptr<cv::Vec3b>(y0 + r);
    for (int c = std::max(0, -x0); c < scaled.cols && x0 + c < bgr.cols; ++c) {
      const int a = s[c][3];
      if (a == 0) continue;
      cv::Vec3b& d = dst[x0 + c];
      for (int k = 0; k < 3; ++k) d[k] = cv::saturate_cast<uchar>(s[c][k] + (d[k] * (255 - a) + 127) / 255);
    }
  }
}

}  // namespace

struct TextRenderer::State {
  FT_Library library = nullptr;
  FcConfig* config = nullptr;
  hb_buffer_t* buffer = nullptr;
  std::vector<Face> faces;  // the chain, in order
  int emoji = -1;           // the colour emoji face, -1 without one
  int primary = -1;         // its ascent + descent make the line height; -1: no usable font at all
  double line_per_em = 1.2, ascent_per_line = 0.8;
  std::string reason;
  std::unordered_map<uint64_t, int> face_for;  // (code point, wants emoji) -> face, -1 for none

  ~State() {
    for (Face& f : faces) {
      if (f.hb) hb_font_destroy(f.hb);
      if (f.ft) FT_Done_Face(f.ft);
      if (f.charset) FcCharSetDestroy(f.charset);
    }
    if (buffer) hb_buffer_destroy(buffer);
    if (library) FT_Done_FreeType(library);
    if (config) FcConfigDestroy(config);
  }

  bool open(Face& f) {
    if (f.tried) return f.usable;
    f.tried = true;
    if (FT_New_Face(library, f.file.c_str(), f.index, &f.ft) != 0) {
      f.ft = nullptr;
      return false;
    }
    // Bitmap-only fonts come in a few sizes; only colour ones (emoji) are worth scaling, monochrome
    // ones (PCF, old EBDT) are left out.
    bool ok = FT_IS_SCALABLE(f.ft);
    if (!ok && FT_HAS_COLOR(f.ft) && f.ft->num_fixed_sizes > 0) {
      int best = 0;
      for (int i = 1; i < f.ft->num_fixed_sizes; ++i)
        if (f.ft->available_sizes[i].y_ppem > f.ft->available_sizes[best].y_ppem) best = i;
      ok = FT_Select_Size(f.ft, best) == 0;  // the largest strike: scaling down keeps it sharp
      f.strike = true;
      f.strike_ppem = f.ft->available_sizes[best].y_ppem / 64.0;
    }
    if (ok) {
      hb_blob_t* blob = hb_blob_create_from_file_or_fail(f.file.c_str());
      hb_face_t* face = blob ? hb_face_create(blob, static_cast<unsigned>(f.index) & 0xFFFFu) : nullptr;
      ok = face && hb_face_get_glyph_count(face) > 0;  // 0: not an OpenType font (Type 1, PCF), no shaping
      if (ok) f.hb = hb_font_create(face);
      if (face) hb_face_destroy(face);
      if (blob) hb_blob_destroy(blob);
    }
    if (!ok) {
      FT_Done_Face(f.ft);
      f.ft = nullptr;
    }
    return f.usable = ok;
  }

  bool has_glyph(int i, uint32_t c) {
    Face& f = faces[static_cast<size_t>(i)];
    if (f.charset && !FcCharSetHasChar(f.charset, c)) return false;
    hb_codepoint_t glyph = 0;
    return open(f) && hb_font_get_nominal_glyph(f.hb, c, &glyph) && glyph != 0;
  }

  int find_face(uint32_t c, bool emoji_wanted) {
    const uint64_t key = (uint64_t{c} << 1) | (emoji_wanted ? 1u : 0u);
    if (const auto it = face_for.find(key); it != face_for.end()) return it->second;
    int found = emoji_wanted && emoji >= 0 && has_glyph(emoji, c) ? emoji : -1;
    for (int i = 0; found < 0 && i < static_cast<int>(faces.size()); ++i)
      if (has_glyph(i, c)) found = i;
    face_for.emplace(key, found);
    return found;
  }

  void add_face(const std::string& file, int index, FcCharSet* charset) {
    for (const Face& f : faces)
      if (f.file == file && f.index == index) return;
    Face f;
    f.file = file;
    f.index = index;
    f.charset = charset ? FcCharSetCopy(charset) : nullptr;
    faces.push_back(std::move(f));
  }

  // Fontconfig's fallback list for sans-serif (trimmed to the fonts that add coverage) and its colour
  // emoji font, both with the user's configuration applied.
  void add_fontconfig_fonts() {
    config = FcInitLoadConfigAndFonts();
    if (!config) return;
    const auto pattern_for = [this](const char* name) {
      FcPattern* p = FcNameParse(reinterpret_cast<const FcChar8*>(name));
      FcConfigSubstitute(config, p, FcMatchPattern);
      FcDefaultSubstitute(p);
      return p;
    };
    const auto add = [this](FcPattern* font) {
      FcChar8* file = nullptr;
      int index = 0;
      FcCharSet* charset = nullptr;
      if (FcPatternGetString(font, FC_FILE, 0, &file) != FcResultMatch) return -1;
      FcPatternGetInteger(font, FC_INDEX, 0, &index);
      FcPatternGetCharSet(font, FC_CHARSET, 0, &charset);
      add_face(reinterpret_cast<const char*>(file), index, charset);
      const std::string name = reinterpret_cast<const char*>(file);
      for (size_t i = 0; i < faces.size(); ++i)
        if (faces[i].file == name && faces[i].index == index) return static_cast<int>(i);
      return -1;
    };
    FcResult result = FcResultNoMatch;
    FcPattern* sans = pattern_for("sans-serif");
    if (FcFontSet* set = FcFontSort(config, sans, FcTrue, nullptr, &result)) {
      for (int i = 0; i < set->nfont; ++i) add(set->fonts[i]);
      FcFontSetDestroy(set);
    }
    FcPatternDestroy(sans);
    FcPattern* emoji_pattern = pattern_for("emoji");
    if (FcPattern* match = FcFontMatch(config, emoji_pattern, &result)) {
      FcBool colour = FcFalse;
      // Without a colour font fontconfig still answers (with the default font): that is no emoji font.
      if (FcPatternGetBool(match, FC_COLOR, 0, &colour) == FcResultMatch && colour) emoji = add(match);
      FcPatternDestroy(match);
    }
    FcPatternDestroy(emoji_pattern);
  }

  void load() {
    if (FT_Init_FreeType(&library) != 0) {
      library = nullptr;
      reason = "FreeType could not be initialised: legend names are drawn in ASCII (Hershey)";
      return;
    }
    buffer = hb_buffer_create();
    std::string env_problem;
    if (const char* env = std::getenv("GROUPVIT_FONT"); env && *env) {
      add_face(env, 0, nullptr);
      if (!open(faces.back())) {
        env_problem = std::string("GROUPVIT_FONT=") + env + " is not a font FreeType and HarfBuzz can use";
        faces.pop_back();
      }
    }
    add_fontconfig_fonts();
    // The line height comes from the first text font; from a colour bitmap font only when nothing else opens.
    for (int pass = 0; pass < 2 && primary < 0; ++pass)
      for (int i = 0; i < static_cast<int>(faces.size()) && primary < 0; ++i)
        if (open(faces[static_cast<size_t>(i)]) && (pass == 1 || !faces[static_cast<size_t>(i)].strike)) primary = i;
    if (primary < 0) {
      reason = std::string(env_problem.empty() ? "" : env_problem + "; ") + "no usable font " +
               (config ? "found by fontconfig" : "(fontconfig could not load its configuration)") +
               ": legend names are drawn in ASCII (Hershey); install the Debian packages " + kFontPackages;
      return;
    }
    if (!env_problem.empty()) reason = env_problem + "; using fontconfig's fonts";
    hb_font_extents_t extents{};
    hb_font_t* font = faces[static_cast<size_t>(primary)].hb;
    const double upem = hb_face_get_upem(hb_font_get_face(font));
    if (hb_font_get_h_extents(font, &extents) && extents.ascender - extents.descender > 0 && upem > 0) {
      line_per_em = (extents.ascender - extents.descender) / upem;
      ascent_per_line = extents.ascender / static_cast<double>(extents.ascender - extents.descender);
    }
  }

  // A font for each character. Marks, format characters and variation selectors stay with their base
  // (HarfBuzz positions marks and builds emoji ZWJ sequences only within one font's run); a space or
  // punctuation keeps the previous font where it has the glyph, so it does not split a CJK or Arabic run
  // (but not the emoji font's: its wide space would sit between words).
  std::vector<int> choose_faces(const std::vector<uint32_t>& text, bool& complete) {
    hb_unicode_funcs_t* unicode = hb_unicode_funcs_get_default();
    std::vector<int> chosen(text.size(), primary);
    for (size_t i = 0; i < text.size(); ++i) {
      const uint32_t c = text[i];
      const auto category = hb_unicode_general_category(unicode, c);
      const bool invisible = category == HB_UNICODE_GENERAL_CATEGORY_FORMAT || is_variation_selector(c);
      const bool attaches = invisible || category == HB_UNICODE_GENERAL_CATEGORY_NON_SPACING_MARK ||
                            category == HB_UNICODE_GENERAL_CATEGORY_SPACING_MARK ||
                            category == HB_UNICODE_GENERAL_CATEGORY_ENCLOSING_MARK;
      const bool emoji_wanted = wants_emoji(text, i);
      if (i > 0 && attaches) {
        chosen[i] = chosen[i - 1];
        continue;
      }
      const hb_script_t script = hb_unicode_script(unicode, c);
      const bool neutral = script == HB_SCRIPT_COMMON || script == HB_SCRIPT_INHERITED;
      if (i > 0 && neutral && !emoji_wanted && chosen[i - 1] != emoji && has_glyph(chosen[i - 1], c)) {
        chosen[i] = chosen[i - 1];
        continue;
      }
      const int face = find_face(c, emoji_wanted);
      if (face >= 0) {
        chosen[i] = face;
      } else if (!invisible) {
        complete = false;  // drawn as the first font's .notdef box, as any text engine does
      }
    }
    return chosen;
  }

  Layout layout(const std::vector<uint32_t>& text, double em_px) {
    Layout out;
    if (text.empty()) return out;
    const std::vector<int> face = choose_faces(text, out.complete);
    const std::vector<hb_script_t> script = resolve_scripts(text);
    std::vector<FriBidiLevel> level;
    std::vector<size_t> visual_of;
    resolve_bidi(text, level, visual_of);
    std::vector<Run> runs;
    for (size_t i = 0; i < text.size(); ++i) {
      if (runs.empty() || runs.back().level != level[i] || runs.back().face != face[i] ||
          runs.back().script != script[i])
        runs.push_back(Run{i, 0, level[i], face[i], script[i], visual_of[i]});
      ++runs.back().length;
      runs.back().visual = std::min(runs.back().visual, visual_of[i]);
    }
    // A run is one level, so FriBidi keeps it contiguous on screen: its leftmost character orders it.
    std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.visual < b.visual; });
    const auto em26 = static_cast<int>(std::lround(em_px * 64));
    for (const Run& run : runs) {
      hb_font_t* font = faces[static_cast<size_t>(run.face)].hb;
      hb_buffer_clear_contents(buffer);
      // The whole label as context: Arabic letters join across a run boundary (a font or script change).
      hb_buffer_add_utf32(buffer, text.data(), static_cast<int>(text.size()), static_cast<unsigned>(run.start),
                          static_cast<int>(run.length));
      hb_buffer_set_direction(buffer, run.level % 2 ? HB_DIRECTION_RTL : HB_DIRECTION_LTR);
      hb_buffer_set_script(buffer, run.script);
      hb_buffer_set_language(buffer, hb_language_get_default());
      hb_font_set_scale(font, em26, em26);
      hb_shape(font, buffer, nullptr, 0);
      unsigned count = 0;
      const hb_glyph_info_t* info = hb_buffer_get_glyph_infos(buffer, &count);
      const hb_glyph_position_t* pos = hb_buffer_get_glyph_positions(buffer, &count);
      for (unsigned k = 0; k < count; ++k) {  // RTL output is already left to right on screen
        out.glyphs.push_back(PlacedGlyph{run.face, info[k].codepoint, out.width26 + pos[k].x_offset, pos[k].y_offset});
        if (info[k].codepoint == 0) out.complete = false;
        out.width26 += pos[k].x_advance;
      }
    }
    return out;
  }

  void rasterise(cv::Mat& bgr, const Layout& layout, cv::Point baseline, double em_px, const cv::Vec3b& colour) {
    const auto em26 = static_cast<FT_F26Dot6>(std::lround(em_px * 64));
    for (const PlacedGlyph& g : layout.glyphs) {
      Face& f = faces[static_cast<size_t>(g.face)];
      if (!f.strike && f.size26 != em26) {
        if (FT_Set_Char_Size(f.ft, 0, em26, 0, 0) != 0) continue;
        f.size26 = em26;
      }
      // Light hinting: vertical only, so HarfBuzz's unhinted advances still match the outlines. Embedded
      // bitmaps of text fonts (monochrome, a few sizes) would not match the anti-aliased rest.
      const FT_Int32 flags = FT_HAS_COLOR(f.ft) ? FT_LOAD_COLOR : (FT_LOAD_NO_BITMAP | FT_LOAD_TARGET_LIGHT);
      if (FT_Load_Glyph(f.ft, g.id, flags) != 0) continue;
      const FT_GlyphSlot slot = f.ft->glyph;
      if (slot->format != FT_GLYPH_FORMAT_BITMAP && FT_Render_Glyph(slot, FT_RENDER_MODE_NORMAL) != 0) continue;
      const int x = baseline.x + static_cast<int>(round26(g.x26));
      const int y = baseline.y - static_cast<int>(round26(g.y26));
      if (slot->bitmap.pixel_mode == FT_PIXEL_MODE_BGRA)
        blend_bgra(bgr, slot, x, y, f.strike ? em_px / f.strike_ppem : 1.0);
      else if (slot->bitmap.pixel_mode == FT_PIXEL_MODE_GRAY || slot->bitmap.pixel_mode == FT_PIXEL_MODE_MONO)
        blend_coverage(bgr, slot->bitmap, x + slot->bitmap_left, y - slot->bitmap_top, colour);
    }
  }
};

TextRenderer::TextRenderer() : state_(std::make_unique<State>()) { state_->load(); }

TextRenderer::~TextRenderer() = default;

TextRenderer& TextRenderer::shared() {
  static TextRenderer* renderer = new TextRenderer();
  return *renderer;
}

bool TextRenderer::has_fonts() const { return state_->primary >= 0; }

std::string TextRenderer::fallback_reason() const { return state_->reason; }

cv::Size TextRenderer::measure(const std::string& utf8, int pixel_height) const {
  if (!has_fonts() || pixel_height < 1) return {0, 0};
  const std::vector<uint32_t> text = decode_utf8(utf8);
  std::lock_guard<std::mutex> lock(mutex_);
  const Layout layout = state_->layout(text, pixel_height / state_->line_per_em);
  return {static_cast<int>((layout.width26 + 63) / 64), pixel_height};
}

void TextRenderer::draw(cv::Mat& bgr, const std::string& utf8, cv::Point top_left, int pixel_height,
                        cv::Scalar bgr_colour) const {
  if (bgr.type() != CV_8UC3) throw std::invalid_argument("TextRenderer::draw needs a CV_8UC3 image");
  if (!has_fonts() || pixel_height < 1 || bgr.empty()) return;
  const std::vector<uint32_t> text = decode_utf8(utf8);
  const cv::Vec3b colour(cv::saturate_cast<uchar>(bgr_colour[0]), cv::saturate_cast<uchar>(bgr_colour[1]),
                         cv::saturate_cast<uchar>(bgr_colour[2]));
  std::lock_guard<std::mutex> lock(mutex_);
  const double em_px = pixel_height / state_->line_per_em;
  const Layout layout = state_->layout(text, em_px);
  const int ascent = static_cast<int>(std::lround(pixel_height * state_->ascent_per_line));
  state_->rasterise(bgr, layout, cv::Point(top_left.x, top_left.y + ascent), em_px, colour);
}

bool TextRenderer::covers(const std::string& utf8) const {
  if (!has_fonts()) return false;
  const std::vector<uint32_t> text = decode_utf8(utf8);
  std::lock_guard<std::mutex> lock(mutex_);
  return state_->layout(text, 16).complete;
}

}  // namespace groupvit_cli
