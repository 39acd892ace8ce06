// Fuzzes the safetensors header parser: any bytes must give a header or a FormatError.
#include <cstddef>
#include <cstdint>

#include "groupvit/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto header = groupvit::parse_safetensors_header(data, size, size, "fuzz.safetensors");
    // Every accepted range lies inside the input, and no two non-empty ranges share a byte
    // (tensors come sorted by begin).
    uint64_t reached = 0;
    for (const auto& e : header.tensors) {
      if (header.data_offset + e.end > size) __builtin_trap();
      if (e.end == e.begin) continue;
      if (e.begin < reached) __builtin_trap();
      reached = e.end;
    }
  } catch (const groupvit::FormatError&) {
  }
  return 0;
}
