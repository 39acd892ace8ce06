// The CLIP text front end: byte-level BPE that turns UTF-8 prompts into the token ids the
// GroupViT text encoder expects. No LibTorch here (see tokenizer_torch.h for tensors).
//
// Behaviour follows the Hugging Face fast CLIPTokenizer (transformers 5 / tokenizers 0.23):
//   1. the exact strings "<|startoftext|>" and "<|endoftext|>" in the raw text become their ids;
//   2. every other stretch is NFC-normalised and lowercased;
//   3. it is split into words ('s 't 're 've 'm 'll 'd, runs of letters, single digits, runs of
//      other non-space characters; whitespace separates and is dropped);
//   4. each word's UTF-8 bytes go through the GPT-2 byte->unicode table, "</w>" marks the last
//      symbol, and merges are applied lowest rank first;
//   5. BOS is prepended and EOS appended.
// The test suite checks this id-for-id against the reference on a corpus of a few thousand strings.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace groupvit {

// Anything the tokenizer refuses: unreadable or inconsistent vocabulary files, invalid UTF-8
// input (the message names the byte offset and the offending bytes), bad lengths, unknown ids.
class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws TokenizerError (byte offset, bytes and fault in the message) unless `text` is valid
// UTF-8: the check encoding makes, for callers that want to refuse a text (a label, say) before
// they load a model.
void check_utf8(const std::string& text);

// Ids and mask of one text. attention_mask is 1 for real tokens and 0 for padding.
struct Encoding {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> attention_mask;
  bool truncated = false;  // true when tokens were dropped to fit max_length
};

enum class Padding {
  None,       // every Encoding keeps its own length
  Longest,    // pad to the longest text of the batch (transformers: padding=True)
  MaxLength,  // pad to max_length (transformers: padding="max_length")
};

// Copies share the (immutable) vocabulary and the internal merge cache; every const member is safe
// to call from several threads at once.
class ClipTokenizer {
 public:
  static constexpr int64_t kContextLength = 77;  // CLIP's text positions, BOS and EOS included

  // Called with the text and its untruncated token count whenever encoding drops tokens.
  using TruncationWarning = std::function<void(const std::string& text, size_t full_length)>;

  // A Hugging Face snapshot folder: vocab.json + merges.txt, else tokenizer.json (all that
  // transformers 5 saves), with the pad token from tokenizer_config.json when present; otherwise a
  // folder holding bpe_simple_vocab_16e6.txt.gz.
  static ClipTokenizer from_directory(const std::string& dir);
  // vocab.json (token -> id) and merges.txt (optional "#version" header, one "left right" merge a line).
  // pad_token defaults to the reference's "<|endoftext|>".
  static ClipTokenizer from_vocab_merges(const std::string& vocab_json_path, const std::string& merges_txt_path,
                                         const std::string& pad_token = "<|endoftext|>");
  // The BPE model inside a Hugging Face tokenizer.json (model.vocab and model.merges).
  static ClipTokenizer from_tokenizer_json(const std::string& tokenizer_json_path,
                                           const std::string& pad_token = "<|endoftext|>");
  // OpenAI / open_clip bpe_simple_vocab_16e6.txt.gz: a header line, then merges; the first 48894
  // are used and the vocabulary is rebuilt from them exactly as OpenAI's CLIP does.
  static ClipTokenizer from_bpe_gz(const std::string& path);

  // Ids with BOS/EOS, never truncated. Throws TokenizerError on invalid UTF-8 (byte offset in the message).
  std::vector<int64_t> encode(const std::string& utf8_text) const;
  // Ids truncated to max_length (>= 2) with EOS kept last; no padding.
  Encoding encode(const std::string& utf8_text, int64_t max_length) const;
  // Truncates each text to max_length, then pads on the right with pad_id().
  std::vector<Encoding> encode_batch(const std::vector<std::string>& texts, Padding padding = Padding::Longest,
                                     int64_t max_length = kContextLength) const;

  // Text of the ids like the reference's decode: "</w>" becomes a space, ends are stripped.
  // Throws TokenizerError for ids outside the vocabulary.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  int64_t bos_id() const;
  int64_t eos_id() const;
  int64_t pad_id() const;
  int64_t vocab_size() const;
  int64_t context_length() const { return kContextLength; }

  // Optional notice on truncation (Encoding::truncated is set either way). Set it before sharing the
  // tokenizer across threads; the callback itself must be thread-safe if encoding runs concurrently.
  void set_truncation_warning(TruncationWarning callback) { on_truncation_ = std::move(callback); }

 private:
  struct Model;  // vocabulary, merges and cache (tokenizer.cpp)
  explicit ClipTokenizer(std::shared_ptr<const Model> model) : model_(std::move(model)) {}
  std::shared_ptr<const Model> model_;
  TruncationWarning on_truncation_;
};

}  // namespace groupvit
