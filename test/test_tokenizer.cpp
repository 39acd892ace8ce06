// The CLIP tokenizer against transformers' fast CLIPTokenizer: ids of a corpus of a few thousand
// strings for every vocabulary loader, padded batches, every code point's Unicode treatment, and the
// failure modes (invalid UTF-8, huge inputs, concurrent use). Fixtures: scripts/make_tokenizer_fixtures.py.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "groupvit/preprocess/tokenizer_torch.h"
#include "groupvit/text/tokenizer.h"
#include "groupvit/text/tokenizer_unicode.h"
#include "test_support.h"

namespace {

using groupvit::ClipTokenizer;
using groupvit::Encoding;
using groupvit::Padding;
using groupvit::TokenizerError;
using Ids = std::vector<int64_t>;
using nlohmann::json;

std::string tokenizer_fixtures() { return groupvit::test::fixtures_dir() + "/tokenizer"; }

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open fixture " + path + ": run scripts/make_tokenizer_fixtures.py");
  return json::parse(in);
}

struct CorpusEntry {
  std::string text;
  Ids ids, ids_trunc77;
  std::string decoded;
};

const std::vector<CorpusEntry>& corpus() {
  static const std::vector<CorpusEntry> entries = [] {
    std::vector<CorpusEntry> out;
    std::ifstream in(tokenizer_fixtures() + "/corpus.jsonl");
    if (!in) throw std::runtime_error("cannot open corpus.jsonl in " + tokenizer_fixtures());
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line);
      out.push_back({j["text"], j["ids"], j["ids_trunc77"], j["decoded"]});
    }
    return out;
  }();
  return entries;
}

const CorpusEntry& corpus_entry(const std::string& text) {
  for (const auto& entry : corpus())
    if (entry.text == text) return entry;
  throw std::runtime_error("corpus has no entry for the requested text");
}

// The three ways a user can get the vocabulary, each compared on the whole corpus.
struct NamedTokenizer {
  std::string name;
  ClipTokenizer tokenizer;
};

std::vector<NamedTokenizer> all_loaders() {
  const std::string dir = tokenizer_fixtures();
  return {
      {"vocab.json + merges.txt", ClipTokenizer::from_directory(dir + "/hf")},
      {"tokenizer.json", ClipTokenizer::from_tokenizer_json(dir + "/hf/tokenizer.json")},
      {"bpe_simple_vocab_16e6.txt.gz", ClipTokenizer::from_bpe_gz(read_json(dir + "/paths.json")["bpe_gz"])},
  };
}

const ClipTokenizer& hf_tokenizer() {
  static const ClipTokenizer tokenizer = ClipTokenizer::from_directory(tokenizer_fixtures() + "/hf");
  return tokenizer;
}

std::string show(const Ids& ids) {
  std::ostringstream out;
  for (size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
  return out.str();
}

// JSON-style quoting that also shows invalid UTF-8 (as \xNN) instead of throwing.
std::string escaped(const std::string& text) { return json(text).dump(-1, ' ', false, json::error_handler_t::replace); }

std::string hex_bytes(const std::string& bytes) {
  std::ostringstream out;
  for (unsigned char b : bytes) out << "\\x" << std::hex << (b < 16 ? "0" : "") << int{b};
  return out.str();
}

std::u32string cps(const json& list) {
  std::u32string out;
  for (const auto& cp : list) out.push_back(cp.get<char32_t>());
  return out;
}

std::string hex(char32_t cp) {
  std::ostringstream out;
  out << "U+" << std::hex << std::uppercase << static_cast<uint32_t>(cp);
  return out.str();
}

}  // namespace

TEST_CASE("tokenizer: known sample and special ids", "[tokenizer]") {
  for (const auto& [name, tokenizer] : all_loaders()) {
    INFO(name);
    CHECK(tokenizer.encode("a photo of a cat") == Ids{49406, 320, 1125, 539, 320, 2368, 49407});
    CHECK(tokenizer.bos_id() == 49406);
    CHECK(tokenizer.eos_id() == 49407);
    CHECK(tokenizer.pad_id() == 49407);
    CHECK(tokenizer.vocab_size() == 49408);
    CHECK(tokenizer.context_length() == 77);
    CHECK(tokenizer.decode(tokenizer.encode("a photo of a cat"), true) == "a photo of a cat");
  }
}

TEST_CASE("tokenizer: ids match the reference on the whole corpus", "[tokenizer]") {
  const auto& entries = corpus();
  REQUIRE(entries.size() >= 2000);
  for (const auto& [name, tokenizer] : all_loaders()) {
    size_t mismatches = 0, decode_mismatches = 0;
    std::ostringstream report;
    for (const auto& entry : entries) {
      const Ids ids = tokenizer.encode(entry.text);
      const Encoding truncated = tokenizer.encode(entry.text, 77);
      if (ids != entry.ids || truncated.input_ids != entry.ids_trunc77 ||
          truncated.truncated != (entry.ids.size() > 77)) {
        if (++mismatches <= 5)
          report << "  text " << escaped(entry.text) << "\n    expected " << show(entry.ids) << "\n    got      "
                 << show(ids) << "\n    expected[:77] " << show(entry.ids_trunc77) << "\n    got[:77]      "
                 << show(truncated.input_ids) << "\n";
      }
      const std::string decoded = tokenizer.decode(ids, true);
      if (decoded != entry.decoded && ++decode_mismatches <= 5)
        report << "  decode of " << escaped(entry.text) << ": expected " << escaped(entry.decoded) << ", got "
               << escaped(decoded) << "\n";
    }
    // Printed on success too: the corpus size is part of what this test claims.
    WARN(name << ": " << entries.size() << " corpus strings, " << mismatches << " id mismatches, " << decode_mismatches
              << " decode mismatches\n"
              << report.str());
    CHECK(mismatches == 0);
    CHECK(decode_mismatches == 0);
  }
}

TEST_CASE("tokenizer: padded batches and attention masks match the reference", "[tokenizer]") {
  const json batches = read_json(tokenizer_fixtures() + "/batches.json");
  REQUIRE(!batches.empty());
  for (const auto& batch : batches) {
    const std::vector<std::string> texts = batch["texts"];
    const Padding padding = batch["padding"] == "max_length" ? Padding::MaxLength : Padding::Longest;
    const int64_t max_length = batch["max_length"];
    const std::vector<Ids> expected_ids = batch["input_ids"];
    const std::vector<Ids> expected_mask = batch["attention_mask"];
    INFO("padding " << batch["padding"] << ", max_length " << max_length << ", texts " << json(texts).dump());

    const std::vector<Encoding> encoded = hf_tokenizer().encode_batch(texts, padding, max_length);
    REQUIRE(encoded.size() == texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      CHECK(encoded[i].input_ids == expected_ids[i]);
      CHECK(encoded[i].attention_mask == expected_mask[i]);
    }

    const auto tensors = groupvit::tokenize_to_tensors(hf_tokenizer(), texts, padding, max_length);
    const auto rows = static_cast<int64_t>(texts.size());
    const auto length = static_cast<int64_t>(expected_ids.front().size());
    REQUIRE(tensors.input_ids.sizes() == torch::IntArrayRef{rows, length});
    REQUIRE(tensors.attention_mask.sizes() == torch::IntArrayRef{rows, length});
    CHECK(tensors.input_ids.scalar_type() == torch::kLong);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < length; ++c) {
        CHECK(tensors.input_ids[r][c].item<int64_t>() == expected_ids[r][c]);
        CHECK(tensors.attention_mask[r][c].item<int64_t>() == expected_mask[r][c]);
      }
    }
  }
  CHECK_THROWS_AS(groupvit::tokenize_to_tensors(hf_tokenizer(), {"a", "a photo"}, Padding::None), TokenizerError);
}

TEST_CASE("tokenizer: truncation keeps EOS last and reports it", "[tokenizer]") {
  const ClipTokenizer& tokenizer = hf_tokenizer();
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += "word ";
  const Ids full = tokenizer.encode(long_text);
  REQUIRE(full.size() > 77);

  ClipTokenizer warned = tokenizer;
  std::vector<size_t> warnings;
  warned.set_truncation_warning([&](const std::string&, size_t length) { warnings.push_back(length); });
  const Encoding encoding = warned.encode(long_text, 77);
  CHECK(encoding.truncated);
  CHECK(encoding.input_ids.size() == 77);
  CHECK(encoding.input_ids.front() == tokenizer.bos_id());
  CHECK(encoding.input_ids.back() == tokenizer.eos_id());
  CHECK(Ids(encoding.input_ids.begin(), encoding.input_ids.end() - 1) == Ids(full.begin(), full.begin() + 76));
  CHECK(encoding.attention_mask == Ids(77, 1));
  CHECK(warnings == std::vector<size_t>{full.size()});

  const Encoding short_one = warned.encode("a photo of a cat", 77);
  CHECK_FALSE(short_one.truncated);
  CHECK(warnings.size() == 1);
  CHECK(warned.encode(long_text, 2).input_ids == Ids{tokenizer.bos_id(), tokenizer.eos_id()});
  CHECK_THROWS_AS(tokenizer.encode("a", 1), TokenizerError);
}

TEST_CASE("tokenizer: invalid UTF-8 is refused with the byte offset", "[tokenizer]") {
  struct Case {
    std::string bytes;
    size_t offset;
    std::string fault;
  };
  const std::vector<Case> cases = {
      {"ab\x80", 2, "continuation byte"},
      {"a\xE2\x82", 1, "truncated"},
      {"\xE2\x82z", 0, "truncated"},
      {"ok \xF0\x9F\x98", 3, "truncated"},
      {"\xC0\xAF", 0, "overlong"},
      {"\xC1\xBF", 0, "overlong"},
      {"\xE0\x80\xAF", 0, "overlong"},
      {"xy\xF0\x82\x82\xAC", 2, "overlong"},
      {"\xED\xA0\x80", 0, "surrogate"},
      {"a\xED\xBF\xBF", 1, "surrogate"},
      {"\xF4\x90\x80\x80", 0, "beyond U+10FFFF"},
      {"\xF5\x80\x80\x80", 0, "beyond U+10FFFF"},
      {"cat \xFF", 4, "never occurs"},
  };
  for (const auto& c : cases) {
    INFO("input " << hex_bytes(c.bytes));
    try {
      (void)hf_tokenizer().encode(c.bytes);
      FAIL("no TokenizerError");
    } catch (const TokenizerError& e) {
      const std::string message = e.what();
      INFO(message);
      CHECK(message.find("byte offset " + std::to_string(c.offset) + " ") != std::string::npos);
      CHECK(message.find(c.fault) != std::string::npos);
    }
  }
  CHECK_THROWS_AS(hf_tokenizer().encode_batch({"fine", "\xFF"}), TokenizerError);
}

TEST_CASE("tokenizer: NUL bytes are ordinary characters", "[tokenizer]") {
  const std::string with_nul("a\0b", 3);
  CHECK(hf_tokenizer().encode(with_nul) == corpus_entry(with_nul).ids);
  CHECK(hf_tokenizer().encode(std::string(1, '\0')) == corpus_entry(std::string(1, '\0')).ids);
  CHECK(hf_tokenizer().encode(with_nul) != hf_tokenizer().encode("a"));
}

TEST_CASE("tokenizer: megabyte inputs are fast and do not crash", "[tokenizer]") {
  const ClipTokenizer tokenizer = ClipTokenizer::from_directory(tokenizer_fixtures() + "/hf");
  std::string prose, one_word, symbols;
  const std::vector<std::string> words = {"a ", "photo ", "of ", "the ", "猫", "🐱 ", "don't ", "Ünïcödé ", "42 "};
  for (size_t i = 0; prose.size() < (1 << 20); ++i) prose += words[(i * 7919) % words.size()];
  while (one_word.size() < (1 << 20)) one_word += "abcdefghijklmnopqrstuvwxyz";  // one 1 MB "word"
  while (symbols.size() < (1 << 20)) symbols += "!?#<|";                         // one 1 MB punctuation run
  for (const std::string* text : {&prose, &one_word, &symbols}) {
    const auto start = std::chrono::steady_clock::now();
    const Ids ids = tokenizer.encode(*text);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    INFO(text->size() << " bytes -> " << ids.size() << " ids in " << seconds << " s");
    CHECK(ids.size() > 1000);
    CHECK(ids.front() == tokenizer.bos_id());
    CHECK(ids.back() == tokenizer.eos_id());
    CHECK(seconds < 10.0);
    CHECK(tokenizer.encode(*text, 77).input_ids.size() == 77);
  }
}

TEST_CASE("tokenizer: concurrent encoding gives the single-threaded ids", "[tokenizer]") {
  const auto& entries = corpus();
  // A fresh tokenizer, so that the threads race on filling the merge cache.
  const ClipTokenizer tokenizer = ClipTokenizer::from_directory(tokenizer_fixtures() + "/hf");
  std::vector<std::vector<Ids>> results(4, std::vector<Ids>(entries.size()));
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      const size_t n = entries.size();
      for (size_t k = 0; k < n; ++k) {  // each thread in its own order: rotated, odd ones backwards
        const size_t i = (t % 2 ? n - 1 - k : k + t * n / 4) % n;
        results[t][i] = tokenizer.encode(entries[i].text);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (size_t t = 0; t < results.size(); ++t) {
    size_t mismatches = 0;
    for (size_t i = 0; i < entries.size(); ++i) mismatches += results[t][i] != entries[i].ids;
    INFO("thread " << t);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("tokenizer: every code point is classified, lowercased and composed like the reference", "[tokenizer]") {
  using groupvit::unicode::CharClass;
  const json tables = read_json(tokenizer_fixtures() + "/unicode.json");
  constexpr char32_t kMax = 0x10FFFF;
  auto is_surrogate = [](char32_t cp) { return cp >= 0xD800 && cp <= 0xDFFF; };

  std::vector<CharClass> expected_class(kMax + 1, CharClass::Other);
  for (const auto& [key, cls] : {std::pair{"letters", CharClass::Letter}, std::pair{"numbers", CharClass::Number},
                                 std::pair{"spaces", CharClass::Space}})
    for (const auto& range : tables[key])
      for (char32_t cp = range[0].get<char32_t>(); cp <= range[1].get<char32_t>(); ++cp) expected_class[cp] = cls;
  size_t class_mismatches = 0;
  for (char32_t cp = 0; cp <= kMax; ++cp) {
    if (is_surrogate(cp) || groupvit::unicode::char_class(cp) == expected_class[cp]) continue;
    if (++class_mismatches <= 10) WARN("class of " << hex(cp) << " differs from the reference");
  }
  CHECK(class_mismatches == 0);

  std::vector<std::u32string> expected_lower(kMax + 1);
  for (const auto& entry : tables["lowercase"]) expected_lower[entry[0].get<char32_t>()] = cps(entry[1]);
  size_t lower_mismatches = 0;
  for (char32_t cp = 0; cp <= kMax; ++cp) {
    if (is_surrogate(cp)) continue;
    std::u32string lowered;
    groupvit::unicode::append_lowercase(cp, lowered);
    const std::u32string expected = expected_lower[cp].empty() ? std::u32string(1, cp) : expected_lower[cp];
    if (lowered != expected && ++lower_mismatches <= 10) WARN("lowercase of " << hex(cp) << " differs");
  }
  CHECK(lower_mismatches == 0);

  // NFC of c inside each probe context; the fixture lists only the contexts the reference changes.
  size_t nfc_mismatches = 0;
  for (const auto& probe : tables["nfc_probes"]) {
    const std::u32string prefix = groupvit::unicode::decode_utf8(probe["prefix"].get<std::string>());
    const std::u32string suffix = groupvit::unicode::decode_utf8(probe["suffix"].get<std::string>());
    std::vector<std::u32string> changed(kMax + 1);
    std::vector<bool> is_changed(kMax + 1, false);
    for (const auto& entry : probe["changed"]) {
      changed[entry[0].get<char32_t>()] = cps(entry[1]);
      is_changed[entry[0].get<char32_t>()] = true;
    }
    for (char32_t cp = 0; cp <= kMax; ++cp) {
      if (is_surrogate(cp) || cp == U'\n') continue;
      const std::u32string input = prefix + cp + suffix;
      const std::u32string expected = is_changed[cp] ? changed[cp] : input;
      if (groupvit::unicode::nfc(input) != expected && ++nfc_mismatches <= 10)
        WARN("NFC of " << hex(cp) << " between " << json(probe["prefix"]).dump() << " and "
                       << json(probe["suffix"]).dump() << " differs");
    }
  }
  for (const auto& entry : tables["nfc_of_nfd"]) {
    if (groupvit::unicode::nfc(cps(entry[1])) != cps(entry[2]) && ++nfc_mismatches <= 10)
      WARN("NFC of the decomposition of " << hex(entry[0].get<char32_t>()) << " differs");
  }
  CHECK(nfc_mismatches == 0);
}

TEST_CASE("tokenizer: loader and decoder errors are actionable", "[tokenizer]") {
  try {
    (void)ClipTokenizer::from_directory("/nonexistent/tokenizer");
    FAIL("no TokenizerError");
  } catch (const TokenizerError& e) {
    CHECK(std::string(e.what()).find("/nonexistent/tokenizer") != std::string::npos);
    CHECK(std::string(e.what()).find("vocab.json") != std::string::npos);
  }
  CHECK_THROWS_AS(ClipTokenizer::from_bpe_gz(tokenizer_fixtures() + "/missing.txt.gz"), TokenizerError);
  // A merges file that is not one: the vocabulary itself as merges.
  CHECK_THROWS_AS(ClipTokenizer::from_vocab_merges(tokenizer_fixtures() + "/hf/vocab.json",
                                                   tokenizer_fixtures() + "/hf/vocab.json"),
                  TokenizerError);
  CHECK_THROWS_AS(hf_tokenizer().decode({49408}), TokenizerError);
  CHECK_THROWS_AS(hf_tokenizer().decode({-1}), TokenizerError);
}
