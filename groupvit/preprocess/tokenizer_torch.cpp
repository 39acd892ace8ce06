// Encodings -> int64 tensors for the text encoder.
#include "groupvit/preprocess/tokenizer_torch.h"

#include <ATen/ops/empty.h>

#include <algorithm>

namespace groupvit {

TokenizedBatch to_tensors(const std::vector<Encoding>& batch) {
  const auto rows = static_cast<int64_t>(batch.size());
  const auto length = batch.empty() ? int64_t{0} : static_cast<int64_t>(batch.front().input_ids.size());
  TokenizedBatch out{at::empty({rows, length}, at::kLong), at::empty({rows, length}, at::kLong)};
  for (int64_t row = 0; row < rows; ++row) {
    const Encoding& encoding = batch[static_cast<size_t>(row)];
    if (static_cast<int64_t>(encoding.input_ids.size()) != length ||
        encoding.attention_mask.size() != encoding.input_ids.size())
      throw TokenizerError("cannot stack encodings of different lengths (row 0 has " + std::to_string(length) +
                           " tokens, row " + std::to_string(row) + " has " + std::to_string(encoding.input_ids.size()) +
                           "): encode with Padding::Longest or MaxLength");
    std::copy(encoding.input_ids.begin(), encoding.input_ids.end(), out.input_ids.data_ptr<int64_t>() + row * length);
    std::copy(encoding.attention_mask.begin(), encoding.attention_mask.end(),
              out.attention_mask.data_ptr<int64_t>() + row * length);
  }
  return out;
}

TokenizedBatch tokenize_to_tensors(const ClipTokenizer& tokenizer, const std::vector<std::string>& texts,
                                   Padding padding, int64_t max_length) {
  return to_tensors(tokenizer.encode_batch(texts, padding, max_length));
}

}  // namespace groupvit
