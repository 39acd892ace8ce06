// The safetensors container format: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw data. This parser checks
// every field against the file size before anything trusts it, and needs no LibTorch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace groupvit {

class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as in the file: "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // in data order
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // where the data section starts in the file
};

// Size in bytes of one element of a safetensors dtype; 0 when the dtype is unknown.
size_t safetensors_dtype_size(const std::string& dtype);

// Parses and validates a header. `data`/`size` hold at least the first bytes of the file;
// `file_size` is the whole file's size. Rejects: a length field beyond the file or above
// 100 MB, malformed JSON, unknown dtypes, negative or overflowing shapes, offsets outside the
// data section, byte ranges that disagree with dtype*shape and overlapping tensors. `source` names the file in error
// messages.
SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, uint64_t file_size,
                                           const std::string& source);

}  // namespace groupvit
