// CLIP byte-level BPE: vocabulary loading (Hugging Face vocab.json + merges.txt, or OpenAI's
// bpe_simple_vocab_16e6.txt.gz), the pre-tokenizer, the merge loop with its cache, and ids/padding.
#include "groupvit/text/tokenizer.h"

#include <zlib.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <shared_mutex>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "groupvit/formats/checksums.h"
#include "groupvit/text/tokenizer_unicode.h"

namespace groupvit {
namespace {

namespace fs = std::filesystem;
using unicode::CharClass;

constexpr std::string_view kBosToken = "<|startoftext|>";
constexpr std::string_view kEosToken = "<|endoftext|>";
constexpr std::string_view kEndOfWord = "</w>";
// OpenAI's CLIP keeps merges 1..48894 of its file: 49152 tokens - 256 bytes - 2 specials + 1.
constexpr size_t kOpenAiMergeCount = 49152 - 256 - 2;
// Words are cached up to this length; longer ones are rare and would only bloat the cache.
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 16;

// GPT-2's reversible byte -> printable code point table: bytes that are printable Latin-1 keep their
// value, the others are moved to U+0100 and up, in byte order.
std::array<char32_t, 256> bytes_to_unicode() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

// OpenAI's vocabulary order: the printable bytes first, then the remapped ones.
std::vector<std::string> byte_tokens_in_openai_order() {
  const auto table = bytes_to_unicode();
  std::vector<std::string> printable, remapped;
  for (int b = 0; b < 256; ++b) {
    std::string token;
    unicode::append_utf8(table[b], token);
    (table[b] == static_cast<char32_t>(b) ? printable : remapped).push_back(std::move(token));
  }
  printable.insert(printable.end(), remapped.begin(), remapped.end());
  return printable;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TokenizerError("cannot open tokenizer file " + path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string read_gzip_file(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) throw TokenizerError("cannot open tokenizer file " + path);
  std::string out;
  char chunk[1 << 16];
  int n = 0;
  while ((n = gzread(file, chunk, sizeof chunk)) > 0) out.append(chunk, static_cast<size_t>(n));
  int err = Z_OK;
  const std::string message = n < 0 ? gzerror(file, &err) : "";
  gzclose(file);
  if (n < 0) throw TokenizerError("cannot decompress " + path + ": " + message);
  return out;
}

nlohmann::json parse_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw TokenizerError("cannot parse " + path + ": " + e.what());
  }
}

// {token: id} as in vocab.json and tokenizer.json's model.vocab.
std::unordered_map<std::string, int32_t> parse_vocab(const nlohmann::json& json, const std::string& where) {
  if (!json.is_object()) throw TokenizerError(where + ": expected an object {token: id}");
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(json.size());
  for (const auto& [token, id] : json.items()) {
    if (!id.is_number_integer()) throw TokenizerError(where + ": id of token \"" + token + "\" is not an integer");
    vocab[token] = id.get<int32_t>();
  }
  return vocab;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

using MergeList = std::vector<std::pair<std::string, std::string>>;

// "left right" -> pair; merges files separate the halves with exactly one space.
std::pair<std::string, std::string> parse_merge(std::string_view line, const std::string& where) {
  const size_t space = line.find(' ');
  if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
      line.find(' ', space + 1) != std::string_view::npos)
    throw TokenizerError(where + ": expected a merge \"left right\", got \"" + std::string(line) + "\"");
  return {std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
}

// The pad token of a Hugging Face tokenizer_config.json: a string, or {"content": ...} in older files.
std::string pad_token_from_config(const std::string& path) {
  const nlohmann::json config = parse_json_file(path);
  const auto pad = config.find("pad_token");
  if (pad == config.end() || pad->is_null()) return std::string(kEosToken);
  if (pad->is_string()) return pad->get<std::string>();
  if (pad->is_object() && pad->contains("content") && (*pad)["content"].is_string())
    return (*pad)["content"].get<std::string>();
  throw TokenizerError(path + ": pad_token must be a string or an object with \"content\"");
}

}  // namespace

// Everything the tokenizer knows, immutable after construction except for the merge cache.
struct ClipTokenizer::Model {
  std::unordered_map<std::string, int32_t> token_to_id;
  std::vector<std::string> id_to_token;  // empty string marks an id the vocabulary does not use
  // (left id, right id) -> (rank, merged id); rank = line number among the merges.
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  std::array<int32_t, 256> byte_id{};          // byte as a word-inner symbol
  std::array<int32_t, 256> byte_id_eow{};      // byte as the last symbol of a word ("</w>" appended)
  std::array<int16_t, 512> unicode_to_byte{};  // inverse of the byte table, for decoding
  int32_t bos = 0, eos = 0, pad = 0;

  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  Model(std::unordered_map<std::string, int32_t> vocab, const MergeList& merge_list, const std::string& pad_token,
        const std::string& source);

  int32_t lookup(const std::string& token, const std::string& source) const {
    const auto it = token_to_id.find(token);
    if (it == token_to_id.end())
      throw TokenizerError(source + ": token \"" + token + "\" is missing from the vocabulary");
    return it->second;
  }

  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  void append_word_ids(const std::string& word, std::vector<int64_t>& ids) const;
  std::vector<int32_t> merge_word(const std::string& word) const;
  void append_segment_ids(std::u32string_view text, std::vector<int64_t>& ids) const;
};

ClipTokenizer::Model::Model(std::unordered_map<std::string, int32_t> vocab, const MergeList& merge_list,
                            const std::string& pad_token, const std::string& source)
    : token_to_id(std::move(vocab)) {
  int32_t max_id = -1;
  for (const auto& [token, id] : token_to_id) {
    if (id < 0) throw TokenizerError(source + ": negative id for token \"" + token + "\"");
    max_id = std::max(max_id, id);
  }
  // Ids index a table; a stray huge id in a damaged file must not turn into a huge allocation.
  if (static_cast<size_t>(max_id) >= 4 * token_to_id.size() + 1024)
    throw TokenizerError(source + ": id " + std::to_string(max_id) + " is far beyond the " +
                         std::to_string(token_to_id.size()) + " tokens of the vocabulary; the file looks damaged");
  id_to_token.resize(static_cast<size_t>(max_id) + 1);
  for (const auto& [token, id] : token_to_id) id_to_token[static_cast<size_t>(id)] = token;

  const auto table = bytes_to_unicode();
  unicode_to_byte.fill(-1);
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    unicode::append_utf8(table[b], symbol);
    byte_id[b] = lookup(symbol, source);
    byte_id_eow[b] = lookup(symbol + std::string(kEndOfWord), source);
    unicode_to_byte[table[b]] = static_cast<int16_t>(b);
  }

  merges.reserve(merge_list.size());
  for (size_t rank = 0; rank < merge_list.size(); ++rank) {
    const auto& [left, right] = merge_list[rank];
    const uint64_t key = pair_key(lookup(left, source), lookup(right, source));
    // A repeated pair keeps its last rank, as both references (a Rust HashMap built in order,
    // OpenAI's dict) do.
    merges.insert_or_assign(key, std::make_pair(static_cast<int32_t>(rank), lookup(left + right, source)));
  }

  bos = lookup(std::string(kBosToken), source);
  eos = lookup(std::string(kEosToken), source);
  pad = lookup(pad_token, source);
}

// BPE on one word: start from its bytes (the last one carrying "</w>") and repeatedly apply the
// lowest-ranked merge, leftmost first. A heap over candidate pairs with a linked list of symbols
// keeps this O(n log n), so even a megabyte-long "word" is quick.
std::vector<int32_t> ClipTokenizer::Model::merge_word(const std::string& word) const {
  const size_t n = word.size();
  std::vector<int32_t> symbol(n);
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    const auto b = static_cast<unsigned char>(word[i]);
    symbol[i] = i + 1 == n ? byte_id_eow[b] : byte_id[b];
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 == n ? -1 : static_cast<int32_t>(i) + 1;
  }

  using Candidate = std::pair<int32_t, int32_t>;  // (rank, position of the left symbol)
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_candidate = [&](int32_t left) {
    if (left < 0 || next[left] < 0) return;
    const auto it = merges.find(pair_key(symbol[left], symbol[next[left]]));
    if (it != merges.end()) queue.emplace(it->second.first, left);
  };
  for (size_t i = 0; i + 1 < n; ++i) push_candidate(static_cast<int32_t>(i));

  std::vector<bool> alive(n, true);
  while (!queue.empty()) {
    const auto [rank, left] = queue.top();
    queue.pop();
    if (!alive[left] || next[left] < 0) continue;
    const int32_t right = next[left];
    const auto it = merges.find(pair_key(symbol[left], symbol[right]));
    if (it == merges.end() || it->second.first != rank) continue;  // stale: a neighbour changed
    symbol[left] = it->second.second;
    alive[right] = false;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    push_candidate(prev[left]);
    push_candidate(left);
  }

  std::vector<int32_t> ids;
  for (int32_t i = 0; i >= 0; i = next[i]) ids.push_back(symbol[i]);
  return ids;
}

void ClipTokenizer::Model::append_word_ids(const std::string& word, std::vector<int64_t>& ids) const {
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::shared_lock lock(cache_mutex);
    if (const auto it = cache.find(word); it != cache.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> merged = merge_word(word);
  ids.insert(ids.end(), merged.begin(), merged.end());
  if (cacheable) {
    std::unique_lock lock(cache_mutex);
    if (cache.size() < kMaxCacheEntries) cache.emplace(word, std::move(merged));
  }
}

// Normalises one stretch of text between special tokens and splits it the way the reference's
// pattern  <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// does (alternatives tried in order at each start; whitespace is dropped).
void ClipTokenizer::Model::append_segment_ids(std::u32string_view raw, std::vector<int64_t>& ids) const {
  const std::u32string composed = unicode::nfc(raw);
  std::u32string text;
  text.reserve(composed.size());
  for (char32_t cp : composed) unicode::append_lowercase(cp, text);

  std::vector<CharClass> classes(text.size());
  for (size_t i = 0; i < text.size(); ++i) classes[i] = unicode::char_class(text[i]);

  std::string word;
  auto emit = [&](size_t begin, size_t end) {
    word.clear();
    for (size_t i = begin; i < end; ++i) unicode::append_utf8(text[i], word);
    append_word_ids(word, ids);
  };
  auto starts_with = [&](size_t pos, std::string_view ascii) {
    if (text.size() - pos < ascii.size()) return false;
    for (size_t i = 0; i < ascii.size(); ++i)
      if (text[pos + i] != static_cast<char32_t>(ascii[i])) return false;
    return true;
  };

  for (size_t pos = 0; pos < text.size();) {
    const CharClass cls = classes[pos];
    if (cls == CharClass::Space) {
      ++pos;
      continue;
    }
    // A special token that only matched after lowercasing ("<|EndOfText|>") is one piece of the
    // pattern, which the byte-level stage then splits again into "<|", the name, "|>".
    if (text[pos] == U'<') {
      bool matched = false;
      for (std::string_view special : {kBosToken, kEosToken}) {
        if (!starts_with(pos, special)) continue;
        emit(pos, pos + 2);
        emit(pos + 2, pos + special.size() - 2);
        emit(pos + special.size() - 2, pos + special.size());
        pos += special.size();
        matched = true;
        break;
      }
      if (matched) continue;
    }
    if (text[pos] == U'\'') {
      size_t len = 0;
      for (std::string_view contraction : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
        if (starts_with(pos, contraction)) {
          len = contraction.size();
          break;
        }
      }
      if (len > 0) {
        emit(pos, pos + len);
        pos += len;
        continue;
      }
    }
    size_t end = pos + 1;
    if (cls != CharClass::Number) {  // letters and "other" come in runs, digits one at a time
      while (end < text.size() && classes[end] == cls) ++end;
    }
    emit(pos, end);
    pos = end;
  }
}

ClipTokenizer ClipTokenizer::from_vocab_merges(const std::string& vocab_json_path, const std::string& merges_txt_path,
                                               const std::string& pad_token) {
  auto vocab = parse_vocab(parse_json_file(vocab_json_path), vocab_json_path);
  const std::string merges_text = read_text_file(merges_txt_path);
  MergeList merges;
  const auto lines = split_lines(merges_text);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty() || (i == 0 && lines[i].rfind("#version", 0) == 0)) continue;
    merges.push_back(parse_merge(lines[i], merges_txt_path + " line " + std::to_string(i + 1)));
  }
  return ClipTokenizer(std::make_shared<const Model>(std::move(vocab), merges, pad_token, vocab_json_path));
}

ClipTokenizer ClipTokenizer::from_tokenizer_json(const std::string& tokenizer_json_path, const std::string& pad_token) {
  const nlohmann::json json = parse_json_file(tokenizer_json_path);
  const auto model = json.find("model");
  if (model == json.end() || !model->is_object() || model->value("type", "") != "BPE" ||
      model->value("end_of_word_suffix", "") != kEndOfWord)
    throw TokenizerError(tokenizer_json_path +
                         ": not a CLIP tokenizer (expected a BPE model with end_of_word_suffix \"</w>\")");
  auto vocab = parse_vocab(model->value("vocab", nlohmann::json()), tokenizer_json_path + " model.vocab");
  MergeList merges;
  const std::string where = tokenizer_json_path + " model.merges";
  for (const auto& merge : model->value("merges", nlohmann::json::array())) {
    // tokenizers >= 0.20 writes ["left", "right"]; older files "left right".
    if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string())
      merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    else if (merge.is_string())
      merges.push_back(parse_merge(merge.get<std::string>(), where));
    else
      throw TokenizerError(where + ": expected [\"left\", \"right\"] or \"left right\", got " + merge.dump());
  }
  return ClipTokenizer(std::make_shared<const Model>(std::move(vocab), merges, pad_token, tokenizer_json_path));
}

ClipTokenizer ClipTokenizer::from_bpe_gz(const std::string& path) {
  const std::string text = read_gzip_file(path);
  const auto lines = split_lines(text);
  if (lines.size() < kOpenAiMergeCount + 1)
    throw TokenizerError(path + ": expected a header line and at least " + std::to_string(kOpenAiMergeCount) +
                         " merges, found " + std::to_string(lines.size()) + " lines");
  MergeList merges;
  merges.reserve(kOpenAiMergeCount);
  for (size_t i = 1; i <= kOpenAiMergeCount; ++i)
    merges.push_back(parse_merge(lines[i], path + " line " + std::to_string(i + 1)));

  // The vocabulary is implied: bytes, bytes + "</w>", every merge result, then the two specials.
  // Like OpenAI's dict(zip(vocab, range(...))), a repeated token keeps its last id.
  std::vector<std::string> tokens = byte_tokens_in_openai_order();
  const size_t byte_count = tokens.size();
  for (size_t i = 0; i < byte_count; ++i) tokens.push_back(tokens[i] + std::string(kEndOfWord));
  for (const auto& [left, right] : merges) tokens.push_back(left + right);
  tokens.emplace_back(kBosToken);
  tokens.emplace_back(kEosToken);
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = static_cast<int32_t>(id);
  return ClipTokenizer(std::make_shared<const Model>(std::move(vocab), merges, std::string(kEosToken), path));
}

ClipTokenizer ClipTokenizer::from_directory(const std::string& dir) {
  const fs::path root(dir);
  // Each file is checked against the directory's checksums.sha256 (if it lists it) before it is read.
  auto checked = [&](const char* name) {
    verify_checksum(dir, name);
    return (root / name).string();
  };
  auto pad = [&] {
    return fs::exists(root / "tokenizer_config.json") ? pad_token_from_config(checked("tokenizer_config.json"))
                                                      : std::string(kEosToken);
  };
  if (fs::exists(root / "vocab.json") && fs::exists(root / "merges.txt"))
    return from_vocab_merges(checked("vocab.json"), checked("merges.txt"), pad());
  if (fs::exists(root / "tokenizer.json")) return from_tokenizer_json(checked("tokenizer.json"), pad());
  if (fs::exists(root / "bpe_simple_vocab_16e6.txt.gz")) return from_bpe_gz(checked("bpe_simple_vocab_16e6.txt.gz"));
  throw TokenizerError("no tokenizer in " + dir +
                       ": expected vocab.json + merges.txt or tokenizer.json (Hugging Face snapshot), or "
                       "bpe_simple_vocab_16e6.txt.gz (OpenAI)");
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& utf8_text) const {
  const std::u32string text = unicode::decode_utf8(utf8_text);
  std::vector<int64_t> ids{model_->bos};
  ids.reserve(utf8_text.size() / 3 + 2);
  // The exact special-token strings are matched in the raw text before any normalisation.
  size_t start = 0;
  for (size_t pos = text.find(U"<|"); pos != std::u32string::npos; pos = text.find(U"<|", pos)) {
    const std::u32string_view rest = std::u32string_view(text).substr(pos);
    bool matched = false;
    for (const auto& [token, id] : {std::pair{kBosToken, model_->bos}, std::pair{kEosToken, model_->eos}}) {
      if (rest.size() < token.size() || !std::equal(token.begin(), token.end(), rest.begin())) continue;
      model_->append_segment_ids(std::u32string_view(text).substr(start, pos - start), ids);
      ids.push_back(id);
      pos += token.size();
      start = pos;
      matched = true;
      break;
    }
    if (!matched) pos += 2;
  }
  model_->append_segment_ids(std::u32string_view(text).substr(start), ids);
  ids.push_back(model_->eos);
  return ids;
}

Encoding ClipTokenizer::encode(const std::string& utf8_text, int64_t max_length) const {
  if (max_length < 2)
    throw TokenizerError("max_length must be at least 2 (room for BOS and EOS), got " + std::to_string(max_length));
  Encoding encoding;
  encoding.input_ids = encode(utf8_text);
  const size_t full_length = encoding.input_ids.size();
  if (full_length > static_cast<size_t>(max_length)) {
    encoding.input_ids.resize(static_cast<size_t>(max_length));
    encoding.input_ids.back() = model_->eos;
    encoding.truncated = true;
    if (on_truncation_) on_truncation_(utf8_text, full_length);
  }
  encoding.attention_mask.assign(encoding.input_ids.size(), 1);
  return encoding;
}

std::vector<Encoding> ClipTokenizer::encode_batch(const std::vector<std::string>& texts, Padding padding,
                                                  int64_t max_length) const {
  std::vector<Encoding> batch;
  batch.reserve(texts.size());
  size_t longest = 0;
  for (const auto& text : texts) {
    batch.push_back(encode(text, max_length));
    longest = std::max(longest, batch.back().input_ids.size());
  }
  if (padding == Padding::None) return batch;
  const size_t target = padding == Padding::MaxLength ? static_cast<size_t>(max_length) : longest;
  for (auto& encoding : batch) {
    encoding.input_ids.resize(target, model_->pad);
    encoding.attention_mask.resize(target, 0);
  }
  return batch;
}

std::string ClipTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size() || model_->id_to_token[static_cast<size_t>(id)].empty())
      throw TokenizerError("cannot decode id " + std::to_string(id) + ": not in the vocabulary of " +
                           std::to_string(vocab_size()) + " tokens");
    if (skip_special_tokens && (id == model_->bos || id == model_->eos || id == model_->pad)) continue;
    // Byte-level tokens map back to bytes; a token with other characters is kept as written.
    const std::string& token = model_->id_to_token[static_cast<size_t>(id)];
    const std::u32string chars = unicode::decode_utf8(token);
    std::string token_bytes;
    bool byte_level = true;
    for (char32_t c : chars) {
      if (c >= model_->unicode_to_byte.size() || model_->unicode_to_byte[c] < 0) {
        byte_level = false;
        break;
      }
      token_bytes.push_back(static_cast<char>(model_->unicode_to_byte[c]));
    }
    bytes += byte_level ? token_bytes : token;
  }
  std::string text = unicode::decode_utf8_lossy(bytes);
  // The reference replaces "</w>" after decoding, then strips like Python's str.strip().
  std::string spaced;
  for (size_t pos = 0;;) {
    const size_t hit = text.find(kEndOfWord, pos);
    spaced.append(text, pos, hit == std::string::npos ? std::string::npos : hit - pos);
    if (hit == std::string::npos) break;
    spaced.push_back(' ');
    pos = hit + kEndOfWord.size();
  }
  const std::u32string chars = unicode::decode_utf8(spaced);
  auto python_space = [](char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
  };
  size_t begin = 0, end = chars.size();
  while (begin < end && python_space(chars[begin])) ++begin;
  while (end > begin && python_space(chars[end - 1])) --end;
  std::string out;
  for (size_t i = begin; i < end; ++i) unicode::append_utf8(chars[i], out);
  return out;
}

int64_t ClipTokenizer::bos_id() const { return model_->bos; }
int64_t ClipTokenizer::eos_id() const { return model_->eos; }
int64_t ClipTokenizer::pad_id() const { return model_->pad; }
int64_t ClipTokenizer::vocab_size() const { return static_cast<int64_t>(model_->id_to_token.size()); }

void check_utf8(const std::string& text) { unicode::decode_utf8(text); }

}  // namespace groupvit
