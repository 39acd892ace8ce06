// UTF-8 codec, pre-tokenizer classes, lowercasing and NFC as the CLIP reference tokenizer sees them.
// utf8proc 2.8 (Unicode 15) supplies the data; the small tables below patch the places where the
// reference's own Unicode tables differ (found by comparing every code point, see tokenizer_unicode.h).
#include "groupvit/text/tokenizer_unicode.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdio>
#include <iterator>

#include "groupvit/text/tokenizer.h"

namespace groupvit::unicode {
namespace {

struct Range {
  char32_t first, last;
};

template <size_t N>
bool in_ranges(const Range (&ranges)[N], char32_t cp) {
  auto it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                             [](char32_t c, const Range& r) { return c < r.first; });
  return it != std::begin(ranges) && cp <= std::prev(it)->last;
}

// Letters and numbers assigned after Unicode 15 that the reference's regex (Oniguruma, Unicode 16)
// already classifies. Used only where utf8proc reports "unassigned", so a newer utf8proc agrees.
constexpr Range kNewerLetters[] = {
    {0x1C89, 0x1C8A},   {0xA7CB, 0xA7CD},   {0xA7DA, 0xA7DC},   {0x105C0, 0x105F3}, {0x10D4A, 0x10D65},
    {0x10D6F, 0x10D85}, {0x10EC2, 0x10EC4}, {0x11380, 0x11389}, {0x1138B, 0x1138B}, {0x1138E, 0x1138E},
    {0x11390, 0x113B5}, {0x113B7, 0x113B7}, {0x113D1, 0x113D1}, {0x113D3, 0x113D3}, {0x11BC0, 0x11BE0},
    {0x13460, 0x143FA}, {0x16100, 0x1611D}, {0x16D40, 0x16D6C}, {0x18CFF, 0x18CFF}, {0x1E5D0, 0x1E5ED},
    {0x1E5F0, 0x1E5F0}, {0x2EBF0, 0x2EE5D},
};
constexpr Range kNewerNumbers[] = {
    {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x16130, 0x16139},
    {0x16D70, 0x16D79}, {0x1CCF0, 0x1CCF9}, {0x1E5F1, 0x1E5FA},
};

// Lowercase mappings of capitals assigned after Unicode 15 (Rust's std is at Unicode 17).
char32_t newer_lowercase(char32_t cp) {
  if (cp >= 0x10D50 && cp <= 0x10D65) return cp + 0x20;  // Garay
  if (cp >= 0x16EA0 && cp <= 0x16EB8) return cp + 0x1B;  // Beria Erfe
  switch (cp) {
    case 0x1C89:
      return 0x1C8A;
    case 0xA7CB:
      return 0x0264;
    case 0xA7CC:
      return 0xA7CD;
    case 0xA7CE:
      return 0xA7CF;
    case 0xA7D2:
      return 0xA7D3;
    case 0xA7D4:
      return 0xA7D5;
    case 0xA7DA:
      return 0xA7DB;
    case 0xA7DC:
      return 0x019B;
    default:
      return cp;
  }
}

// Combining marks added after Unicode 9: the reference's normaliser treats them as starters
// (class 0), so it neither reorders them nor lets them block a composition.
constexpr Range kMarksNewerThanUnicode9[] = {
    {0x07FD, 0x07FD},   {0x0898, 0x089F},   {0x08CA, 0x08D3},   {0x09FE, 0x09FE},   {0x0C3C, 0x0C3C},
    {0x0D3B, 0x0D3C},   {0x0EBA, 0x0EBA},   {0x1715, 0x1715},   {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C},   {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34}, {0x11A47, 0x11A47},
    {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97}, {0x11F41, 0x11F42},
    {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF},
    {0x1E4EC, 0x1E4EF},
};

// The only canonical decomposition added between Unicode 9 and 15 (DIVES AKURU VOWEL SIGN O,
// Unicode 13): unknown to the reference, so it is neither decomposed nor composed.
constexpr char32_t kCompositeNewerThanUnicode9 = 0x11938;

// One UTF-8 sequence at p[0..n): its length when valid (cp set), or 0 with `fault` and `bad_len`
// (the maximal invalid subpart, as Unicode's "best practice" for U+FFFD substitution counts it).
size_t next_utf8(const unsigned char* p, size_t n, char32_t& cp, const char*& fault, size_t& bad_len) {
  const unsigned char b0 = p[0];
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    bad_len = 1;
    fault = b0 <= 0xBF   ? "continuation byte without a lead byte"
            : b0 <= 0xC1 ? "overlong encoding"
            : b0 <= 0xF7 ? "code point beyond U+10FFFF"
                         : "byte that never occurs in UTF-8";
    return 0;
  }
  for (size_t i = 1; i < len; ++i) {
    const bool in_range = i < n && p[i] >= (i == 1 ? lo : 0x80) && p[i] <= (i == 1 ? hi : 0xBF);
    if (!in_range) {
      bad_len = i;
      if (i == 1 && n > 1 && p[1] >= 0x80 && p[1] <= 0xBF) {
        fault = b0 == 0xE0 || b0 == 0xF0 ? "overlong encoding"
                : b0 == 0xED             ? "UTF-16 surrogate"
                                         : "code point beyond U+10FFFF";
      } else {
        fault = "truncated sequence";
      }
      return 0;
    }
  }
  cp = len == 2 ? b0 & 0x1F : len == 3 ? b0 & 0x0F : b0 & 0x07;
  for (size_t i = 1; i < len; ++i) cp = (cp << 6) | (p[i] & 0x3F);
  return len;
}

bool is_white_space(char32_t cp, utf8proc_category_t category) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || category == UTF8PROC_CATEGORY_ZS ||
         category == UTF8PROC_CATEGORY_ZL || category == UTF8PROC_CATEGORY_ZP;
}

void append_canonical_decomposition(char32_t cp, std::u32string& out) {
  if (cp == kCompositeNewerThanUnicode9) {
    out.push_back(cp);
    return;
  }
  utf8proc_int32_t buffer[8];  // canonical decompositions are at most 4 code points long
  int unused_boundclass = 0;
  const utf8proc_ssize_t n =
      utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), buffer, 8, UTF8PROC_DECOMPOSE, &unused_boundclass);
  if (n <= 0 || n > 8) {
    out.push_back(cp);
    return;
  }
  for (utf8proc_ssize_t i = 0; i < n; ++i) out.push_back(static_cast<char32_t>(buffer[i]));
}

// The primary composite of (starter, next), or 0. utf8proc has no pair lookup, so this asks it to
// compose the two-element sequence.
char32_t compose_pair(char32_t starter, char32_t next) {
  utf8proc_int32_t pair[2] = {static_cast<utf8proc_int32_t>(starter), static_cast<utf8proc_int32_t>(next)};
  if (utf8proc_normalize_utf32(pair, 2, static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE | UTF8PROC_STABLE)) != 1)
    return 0;
  const auto composite = static_cast<char32_t>(pair[0]);
  return composite == kCompositeNewerThanUnicode9 ? 0 : composite;
}

}  // namespace

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t pos = 0; pos < text.size();) {
    char32_t cp = 0;
    const char* fault = nullptr;
    size_t bad_len = 0;
    const size_t len = next_utf8(bytes + pos, text.size() - pos, cp, fault, bad_len);
    if (len == 0) {
      std::string shown;
      for (size_t i = pos; i < std::min(text.size(), pos + 4); ++i) {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%02x", bytes[i]);
        shown += (i > pos ? " " : "") + std::string(hex);
      }
      throw TokenizerError("invalid UTF-8 at byte offset " + std::to_string(pos) + " (bytes " + shown + "): " + fault +
                           "; the tokenizer accepts only valid UTF-8 text");
    }
    out.push_back(cp);
    pos += len;
  }
  return out;
}

std::string decode_utf8_lossy(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t pos = 0; pos < text.size();) {
    char32_t cp = 0;
    const char* fault = nullptr;
    size_t bad_len = 0;
    const size_t len = next_utf8(bytes + pos, text.size() - pos, cp, fault, bad_len);
    if (len == 0) {
      append_utf8(0xFFFD, out);
      pos += bad_len;
    } else {
      out.append(text.substr(pos, len));
      pos += len;
    }
  }
  return out;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

CharClass char_class(char32_t cp) {
  if (cp < 0x80) {  // fast path for ASCII, which is most of every prompt
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::Letter;
    if (cp >= '0' && cp <= '9') return CharClass::Number;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::Space;
    return CharClass::Other;
  }
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  if (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO) return CharClass::Letter;
  if (category >= UTF8PROC_CATEGORY_ND && category <= UTF8PROC_CATEGORY_NO) return CharClass::Number;
  if (is_white_space(cp, category)) return CharClass::Space;
  if (category == UTF8PROC_CATEGORY_CN) {
    if (in_ranges(kNewerLetters, cp)) return CharClass::Letter;
    if (in_ranges(kNewerNumbers, cp)) return CharClass::Number;
  }
  return CharClass::Other;
}

void append_lowercase(char32_t cp, std::u32string& out) {
  if (cp < 0x80) {
    out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  if (cp == 0x0130) {  // the one unconditional multi-code-point lowercase mapping (SpecialCasing.txt)
    out.push_back(U'i');
    out.push_back(0x0307);
    return;
  }
  const auto c = static_cast<utf8proc_int32_t>(cp);
  if (utf8proc_category(c) == UTF8PROC_CATEGORY_CN) {
    out.push_back(newer_lowercase(cp));
    return;
  }
  out.push_back(static_cast<char32_t>(utf8proc_tolower(c)));
}

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300 || in_ranges(kMarksNewerThanUnicode9, cp)) return 0;
  return static_cast<uint8_t>(utf8proc_get_property(static_cast<utf8proc_int32_t>(cp))->combining_class);
}

std::u32string nfc(std::u32string_view text) {
  // Below U+0300 every character is a starter that is already composed and never the second
  // half of a composition, so such text (all of ASCII and Latin-1) is its own NFC.
  if (std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0x300; })) return std::u32string(text);

  std::u32string decomposed;
  decomposed.reserve(text.size() + 8);
  for (char32_t cp : text) append_canonical_decomposition(cp, decomposed);

  // Canonical ordering: stable sort of each run of non-starters by combining class.
  std::u32string classes(decomposed.size(), 0);
  for (size_t i = 0; i < decomposed.size(); ++i) classes[i] = combining_class(decomposed[i]);
  for (size_t i = 0; i < decomposed.size();) {
    if (classes[i] == 0) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < decomposed.size() && classes[end] != 0) ++end;
    for (size_t j = i + 1; j < end; ++j) {  // insertion sort: runs are a handful of marks
      for (size_t k = j; k > i && classes[k - 1] > classes[k]; --k) {
        std::swap(classes[k - 1], classes[k]);
        std::swap(decomposed[k - 1], decomposed[k]);
      }
    }
    i = end;
  }

  // Canonical composition: a character joins the last starter unless a character in between
  // has class 0 or a class not below its own (it is "blocked").
  std::u32string out;
  out.reserve(decomposed.size());
  size_t starter = std::u32string::npos;
  char32_t last_class = 0;
  for (size_t i = 0; i < decomposed.size(); ++i) {
    const char32_t cp = decomposed[i];
    const char32_t cls = classes[i];
    if (starter != std::u32string::npos) {
      const bool adjacent = starter + 1 == out.size();
      if (adjacent || (last_class != 0 && last_class < cls)) {
        if (const char32_t composite = compose_pair(out[starter], cp)) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (cls == 0) starter = out.size();
    out.push_back(cp);
    last_class = cls;
  }
  return out;
}

}  // namespace groupvit::unicode
