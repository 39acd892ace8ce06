// Internal header (not installed): used by the tokenizer only.
// The Unicode view of the CLIP tokenizer's reference: UTF-8 decoding, character classes for the
// pre-tokenizer, lowercasing and NFC exactly as the Hugging Face fast tokenizer sees them.
//
// utf8proc supplies the Unicode data, but the reference was built from other tables: its regex
// engine (Oniguruma) knows Unicode 16 letters and numbers, Rust's char::to_lowercase Unicode 17, and
// its NFC (crate unicode-normalization-alignments) only Unicode 9. The few places where those
// disagree with utf8proc 2.8 (Unicode 15) are patched here so that ids match the reference exactly;
// test_tokenizer.cpp checks every code point against tables dumped from the reference.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace groupvit::unicode {

// Strict UTF-8 decoding. Throws TokenizerError naming the byte offset, the bytes and the fault
// (stray continuation byte, truncated sequence, overlong form, UTF-16 surrogate, beyond U+10FFFF).
std::u32string decode_utf8(std::string_view text);
// Like Rust's String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD.
std::string decode_utf8_lossy(std::string_view bytes);
void append_utf8(char32_t cp, std::string& out);

// Classes of the pre-tokenizer pattern: \s (White_Space), \p{L}, \p{N}, everything else.
enum class CharClass : uint8_t { Space, Letter, Number, Other };
CharClass char_class(char32_t cp);

// Full lowercase mapping (U+0130 becomes two code points), as Rust's char::to_lowercase.
void append_lowercase(char32_t cp, std::u32string& out);

// Canonical combining class as the reference's normaliser knows it (marks newer than Unicode 9 are 0).
uint8_t combining_class(char32_t cp);
// Canonical composition (NFC) with the reference's combining classes and compositions.
std::u32string nfc(std::u32string_view text);

}  // namespace groupvit::unicode
