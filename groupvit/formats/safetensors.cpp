// Validating parser for safetensors headers (see safetensors.h).
#include "groupvit/formats/safetensors.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

namespace groupvit {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own reference limit

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw FormatError(source + ": not a valid safetensors file: " + what);
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
  return 0;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, uint64_t file_size,
                                           const std::string& source) {
  if (size < 8 || file_size < 8) fail(source, "the file is shorter than the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kMaxHeaderBytes) fail(source, "header length " + std::to_string(header_len) + " exceeds 100 MB");
  if (header_len > file_size - 8)
    fail(source, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                     std::to_string(file_size) + " bytes)");
  if (header_len > size - 8) fail(source, "header not fully read");

  const char* text = reinterpret_cast<const char*>(data + 8);
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text, text + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail(source, std::string("malformed JSON header: ") + e.what());
  }
  if (!root.is_object()) fail(source, "the header is not a JSON object");

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  const uint64_t data_size = file_size - header.data_offset;

  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(source, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail(source, "__metadata__." + m.key() + " is not a string");
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) fail(source, where + " is not an object");
    auto dtype = v.find("dtype");
    auto shape = v.find("shape");
    auto offsets = v.find("data_offsets");
    if (dtype == v.end() || !dtype->is_string()) fail(source, where + " has no dtype string");
    if (shape == v.end() || !shape->is_array()) fail(source, where + " has no shape list");
    if (offsets == v.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned())
      fail(source, where + " needs data_offsets [begin, end] of non-negative integers");

    SafetensorsEntry e;
    e.name = name;
    e.dtype = dtype->get<std::string>();
    const size_t elem = safetensors_dtype_size(e.dtype);
    if (elem == 0) fail(source, where + " has unknown dtype '" + e.dtype + "'");
    uint64_t numel = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) fail(source, where + " has a shape entry that is not a non-negative integer");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / elem / dim)
        fail(source, where + " has a shape whose size overflows");
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    e.begin = (*offsets)[0].get<uint64_t>();
    e.end = (*offsets)[1].get<uint64_t>();
    if (e.begin > e.end) fail(source, where + " has data_offsets with begin after end");
    if (e.end > data_size)
      fail(source, where + " ends at byte " + std::to_string(e.end) + " of a data section of " +
                       std::to_string(data_size) + " bytes (truncated file?)");
    if (e.end - e.begin != numel * elem)
      fail(source, where + " holds " + std::to_string(e.end - e.begin) + " bytes but dtype and shape need " +
                       std::to_string(numel * elem));
    header.tensors.push_back(std::move(e));
  }

  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.begin < b.begin; });
  // Compared with the non-empty tensor reaching furthest so far, not just the previous one: an
  // empty tensor in between (or a short one inside a long one) must not hide an overlap.
  const SafetensorsEntry* furthest = nullptr;
  for (const auto& cur : header.tensors) {
    if (cur.end == cur.begin) continue;
    if (furthest && cur.begin < furthest->end)
      fail(source, "tensors '" + furthest->name + "' and '" + cur.name + "' overlap");
    if (!furthest || cur.end > furthest->end) furthest = &cur;
  }
  return header;
}

}  // namespace groupvit
