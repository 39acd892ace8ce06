// Token ids as the tensors the text encoder takes: the only LibTorch part of the text front end
// (the tokenizer itself is in tokenizer.h, free of LibTorch).
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "groupvit/formats/config.h"
#include "groupvit/text/tokenizer.h"

namespace groupvit {

// input_ids and attention_mask, both int64 [N, L] on the CPU.
struct TokenizedBatch {
  at::Tensor input_ids;
  at::Tensor attention_mask;
};

// Stacks encodings of equal length (pad them with encode_batch first); throws TokenizerError otherwise.
TokenizedBatch to_tensors(const std::vector<Encoding>& batch);

// encode_batch followed by to_tensors. Padding::None is accepted only when all lengths agree.
TokenizedBatch tokenize_to_tensors(const ClipTokenizer& tokenizer, const std::vector<std::string>& texts,
                                   Padding padding = Padding::Longest,
                                   int64_t max_length = ClipTokenizer::kContextLength);

// Token positions a model's text tower takes: CLIP's 77, or fewer for a model with fewer position
// embeddings (small trained models); longer texts are truncated to this.
inline int64_t context_length(const GroupViTConfig& config) {
  return std::min<int64_t>(ClipTokenizer::kContextLength, config.text_config.max_position_embeddings);
}

}  // namespace groupvit
