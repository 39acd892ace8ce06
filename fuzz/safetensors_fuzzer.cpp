// Fuzzes the safetensors header parser: any bytes must give a header or a FormatError.
#include "groupvit/safetensors.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto header = groupvit::parse_safetensors_header(data, size, size, "fuzz.safetensors");
    for (const auto& e : header.tensors) {  // every accepted range lies inside the input
      if (header.data_offset + e.end > size) __builtin_trap();
    }
  } catch (const groupvit::FormatError&) {
  }
  return 0;
}
