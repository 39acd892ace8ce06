// The safetensors header parser: valid files parse; every malformed header is rejected with a
// message, before any offset is trusted.
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "groupvit/formats/safetensors.h"

namespace {

std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes, uint64_t length_field = UINT64_MAX) {
  const uint64_t len = length_field == UINT64_MAX ? header.size() : length_field;
  std::vector<uint8_t> file(8);
  for (int i = 0; i < 8; ++i) file[i] = static_cast<uint8_t>(len >> (8 * i));
  file.insert(file.end(), header.begin(), header.end());
  file.resize(file.size() + data_bytes, 0);
  return file;
}

groupvit::SafetensorsHeader parse(const std::vector<uint8_t>& f) {
  return groupvit::parse_safetensors_header(f.data(), f.size(), f.size(), "test.safetensors");
}

}  // namespace

TEST_CASE("a valid header parses with dtypes, shapes and offsets", "[safetensors]") {
  auto f = make_file(R"({"__metadata__": {"format": "pt"},
                         "b": {"dtype": "F16", "shape": [3], "data_offsets": [24, 30]},
                         "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                         "empty": {"dtype": "BF16", "shape": [0, 4], "data_offsets": [30, 30]}})",
                     30);
  auto h = parse(f);
  REQUIRE(h.tensors.size() == 3);
  CHECK(h.tensors[0].name == "a");  // sorted by offset
  CHECK(h.tensors[0].shape == std::vector<int64_t>{2, 3});
  CHECK(h.tensors[1].name == "b");
  CHECK(h.tensors[1].dtype == "F16");
  CHECK(h.metadata.at("format") == "pt");
  CHECK(h.data_offset == f.size() - 30);
}

TEST_CASE("malformed headers are rejected with a reason", "[safetensors]") {
  struct Case {
    std::vector<uint8_t> file;
    const char* message;
  };
  const std::string ok = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  const Case cases[] = {
      {{1, 2, 3}, "shorter than the 8-byte header length"},
      {make_file(ok, 8, uint64_t{1} << 40), "exceeds 100 MB"},
      {make_file(ok, 8, 5000), "runs past the end of the file"},
      {make_file("{\"a\": {", 8), "malformed JSON"},
      {make_file("[1]", 8), "not a JSON object"},
      {make_file(R"({"a": 5})", 8), "is not an object"},
      {make_file(R"({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}})", 8), "unknown dtype"},
      {make_file(R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", 8), "no dtype"},
      {make_file(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8), "not a non-negative"},
      {make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4), "truncated"},
      {make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8), "begin after end"},
      {make_file(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 12), "need 12"},
      {make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8), "data_offsets"},
      {make_file(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 8]}})", 8),
       "overflows"},
      {make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                 12),
       "overlap"},
      // An empty tensor sorted between two overlapping ones once hid the overlap (found for issue 7).
      {make_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                     "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                 16),
       "overlap"},
      {make_file(R"({"__metadata__": {"x": 1}})", 0), "__metadata__.x"},
  };
  for (const auto& c : cases) {
    INFO(c.message);
    CHECK_THROWS_AS(parse(c.file), groupvit::FormatError);
    CHECK_THROWS_WITH(parse(c.file), Catch::Contains("test.safetensors") && Catch::Contains(c.message));
  }
}
