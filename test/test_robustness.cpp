// Bad input for the loaders (issue 7): broken weights files (safetensors and torch.save archives),
// configs, model directories with a file missing or unreadable, tokenizer files, and every input
// the fuzzers ever kept (corpus and regressions) replayed through the fuzz entry points. Each case
// must end in one exception that names the file and the problem; a crash fails the suite.
#include "groupvit/formats/checksums.h"
#include "groupvit/formats/config.h"
#include "groupvit/formats/safetensors.h"
#include "groupvit/model/model.h"
#include "groupvit/model/weights.h"
#include "groupvit/text/tokenizer.h"
#include "test_support.h"
#ifdef GROUPVIT_HAVE_OPENCV
#include "groupvit/image/image_io.h"
#endif

#include <torch/torch.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

// The fuzz targets, compiled into this executable under other names (see test/CMakeLists.txt).
extern "C" int fuzz_safetensors_one_input(const uint8_t* data, size_t size);
extern "C" int fuzz_config_one_input(const uint8_t* data, size_t size);
extern "C" int fuzz_tokenizer_one_input(const uint8_t* data, size_t size);
extern "C" int fuzz_tokenizer_initialize(int* argc, char*** argv);
#ifdef GROUPVIT_HAVE_OPENCV
extern "C" int fuzz_image_one_input(const uint8_t* data, size_t size);
#endif

namespace {

namespace fs = std::filesystem;
using groupvit::test::TempDir;
using json = nlohmann::json;

groupvit::GroupViTConfig tiny_config() {
  return groupvit::GroupViTConfig::from_json_string(R"({
    "text_config": {"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                    "num_attention_heads": 2, "max_position_embeddings": 12, "bos_token_id": 98,
                    "eos_token_id": 99},
    "vision_config": {"hidden_size": 24, "intermediate_size": 48, "depths": [1, 1], "num_group_tokens": [8, 0],
                      "num_output_groups": [8, 8], "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
    "projection_dim": 16, "projection_intermediate_dim": 32})");
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

std::string length_prefixed(const std::string& header, uint64_t length) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((length >> (8 * i)) & 0xff);
  return out + header;
}

// A safetensors file of `tensors` (F32, or I64 for integer ones) whose header can be edited before
// it is written.
struct SafetensorsBuilder {
  json header = json::object();
  std::string data;
  explicit SafetensorsBuilder(const std::map<std::string, torch::Tensor>& tensors) {
    for (const auto& [name, t] : tensors) {
      const bool is_float = t.is_floating_point();
      auto c = t.to(is_float ? torch::kFloat : torch::kLong).contiguous();
      const auto begin = data.size();
      data.append(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel() * c.element_size()));
      header[name] = {
          {"dtype", is_float ? "F32" : "I64"}, {"shape", c.sizes().vec()}, {"data_offsets", {begin, data.size()}}};
    }
  }
  std::string bytes() const {
    const auto text = header.dump();
    return length_prefixed(text, text.size()) + data;
  }
};

std::map<std::string, torch::Tensor> state_of(groupvit::GroupViTModel& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m->named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : m->named_buffers()) out[b.key()] = b.value().clone();
  return out;
}

std::string archive_bytes(const c10::IValue& value) {
  auto bytes = torch::pickle_save(value);
  return std::string(bytes.begin(), bytes.end());
}

c10::Dict<std::string, torch::Tensor> as_dict(const std::map<std::string, torch::Tensor>& tensors) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [k, v] : tensors) dict.insert(k, v);
  return dict;
}

std::vector<fs::path> files_under(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// A model directory holding tiny_config()'s config.json, seeded weights as `state`, and their
// model.safetensors bytes (written); returns those bytes.
std::string write_tiny_model_dir(const fs::path& dir, std::map<std::string, torch::Tensor>* state_out = nullptr) {
  const auto config = tiny_config();
  write_bytes(dir / "config.json", config.to_json_string());
  torch::manual_seed(7);
  groupvit::GroupViTModel model(config);
  const auto state = state_of(model);
  const std::string valid = SafetensorsBuilder(state).bytes();
  write_bytes(dir / groupvit::kSafetensorsFile, valid);
  if (state_out) *state_out = state;
  return valid;
}

}  // namespace

TEST_CASE("broken model.safetensors files give one error naming the file and the problem", "[robust]") {
  TempDir tmp;
  std::map<std::string, torch::Tensor> state;
  const std::string valid = write_tiny_model_dir(tmp.path, &state);
  const auto file = tmp.path / groupvit::kSafetensorsFile;
  const std::string dir = tmp.path.string();
  const SafetensorsBuilder good(state);

  // The valid file loads, so each failure below is caused by its one change.
  REQUIRE_NOTHROW(groupvit::load_model(dir));

  auto edited = [&](const std::function<void(json&)>& edit) {
    SafetensorsBuilder b = good;
    edit(b.header);
    return b.bytes();
  };
  const std::string first = state.begin()->first;  // a float tensor
  const std::string second = std::next(state.begin())->first;
  struct Case {
    std::string name;
    std::string bytes;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty file", "", "shorter than 8 bytes"},
      {"3 bytes", "\x01\x02\x03", "shorter than 8 bytes"},
      {"random bytes", random_bytes(4096, 1), "not a valid safetensors file"},
      {"length field 2^64-1", length_prefixed("{}", ~uint64_t{0}), "exceeds 100 MB"},
      {"length field past the end", length_prefixed("{}", 50u << 20), "runs past the end of the file"},
      {"truncated to 60%", valid.substr(0, valid.size() * 6 / 10), "truncated file?"},
      {"truncated inside the header", valid.substr(0, 40), "runs past the end of the file"},
      {"malformed JSON", length_prefixed("{\"a\": {\"dtype\": ", 16), "malformed JSON header"},
      {"JSON array", length_prefixed("[1, 2]", 6), "not a JSON object"},
      {"offsets outside the file", edited([&](json& h) { h[first]["data_offsets"][1] = good.data.size() + 4; }),
       "ends at byte"},
      {"overlapping tensors",  // the second tensor moved 4 bytes back, into the first (same length)
       edited([&](json& h) {
         const uint64_t b = h[second]["data_offsets"][0], e = h[second]["data_offsets"][1];
         h[second]["data_offsets"] = {b - 4, e - 4};
       }),
       "overlap"},
      {"unknown dtype", edited([&](json& h) { h[first]["dtype"] = "F128"; }), "unknown dtype 'F128'"},
      {"integer dtype for a float parameter", edited([&](json& h) { h[first]["dtype"] = "I32"; }),
       "wrong shape or dtype"},
      {"dtype LibTorch lacks",  // U16 with twice the elements: the byte count still matches
       edited([&](json& h) {
         h[first]["dtype"] = "U16";
         h[first]["shape"] = json::array({state.begin()->second.numel() * 2});
       }),
       "dtype U16 is not supported"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    write_bytes(file, c.bytes);
    CHECK_THROWS_AS(groupvit::load_model(dir), groupvit::WeightsError);
    CHECK_THROWS_WITH(groupvit::load_model(dir), Catch::Contains(file.string()) && Catch::Contains(c.message));
    // groupvit info reads the same file through read_weights_file: same refusal, except for the
    // model-fit checks, which that function does not make.
    if (c.message != "wrong shape or dtype") {
      CHECK_THROWS_WITH(groupvit::read_weights_file(file.string()),
                        Catch::Contains(file.string()) && Catch::Contains(c.message));
    }
  }

  // Wrong shape: the same bytes under another shape of the same size.
  auto reshaped = state;
  const std::string matrix = "text_model.embeddings.token_embedding.weight";  // [100, 32]
  reshaped[matrix] = reshaped[matrix].reshape({32, 100});
  write_bytes(file, SafetensorsBuilder(reshaped).bytes());
  CHECK_THROWS_WITH(groupvit::load_model(dir),
                    Catch::Contains(file.string()) && Catch::Contains("wrong shape") && Catch::Contains(matrix));
  // A directory where the file should be.
  fs::remove(file);
  fs::create_directory(file);
  CHECK_THROWS_WITH(groupvit::load_model(dir), Catch::Contains(file.string()) && Catch::Contains("not a regular file"));
}

TEST_CASE("a model.safetensors that does not match checksums.sha256 is refused as such", "[robust]") {
  // The hash runs beside the reading (load_model): its mismatch is the error, whether the damaged file
  // still parses (flipped data bytes) or not (truncated), and a good file still loads.
  TempDir tmp;
  const std::string valid = write_tiny_model_dir(tmp.path);
  const auto file = tmp.path / groupvit::kSafetensorsFile;
  const std::string dir = tmp.path.string();
  write_bytes(tmp.path / groupvit::kChecksumFile,
              groupvit::sha256_of_file(file.string()) + "  " + groupvit::kSafetensorsFile + "\n");
  REQUIRE_NOTHROW(groupvit::load_model(dir));
  std::string flipped = valid;
  for (size_t i = 0; i < 64; ++i)
    flipped[flipped.size() - 200 + i] = static_cast<char>(~flipped[flipped.size() - 200 + i]);
  for (const auto& bytes : {flipped, valid.substr(0, valid.size() * 6 / 10)}) {
    write_bytes(file, bytes);
    CHECK_THROWS_AS(groupvit::load_model(dir), groupvit::ChecksumError);
    CHECK_THROWS_WITH(groupvit::load_model(dir), Catch::Contains(file.string()) && Catch::Contains("do not match"));
  }
}

TEST_CASE("broken torch.save archives give one error naming the file and the problem", "[robust]") {
  TempDir tmp;
  const auto config = tiny_config();
  write_bytes(tmp.path / "config.json", config.to_json_string());
  torch::manual_seed(8);
  groupvit::GroupViTModel model(config);
  auto state = state_of(model);
  const auto file = tmp.path / groupvit::kArchiveFile;
  const std::string dir = tmp.path.string();
  const std::string valid = archive_bytes(as_dict(state));
  write_bytes(file, valid);
  REQUIRE_NOTHROW(groupvit::load_model(dir));

  auto with_int = state;
  with_int["logit_scale"] = state.at("logit_scale").to(torch::kInt);
  c10::List<torch::Tensor> list;
  list.push_back(torch::zeros({1}));
  c10::Dict<std::string, double> mixed;
  mixed.insert("logit_scale", 3.0);
  struct Case {
    std::string name;
    std::string bytes;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty file", "", "empty"},
      {"random bytes", random_bytes(4096, 2), "not a readable torch.save archive"},
      {"zip magic, then junk", "PK\x03\x04" + random_bytes(1000, 3), "not a readable torch.save archive"},
      {"truncated to half", valid.substr(0, valid.size() / 2), "not a readable torch.save archive"},
      {"truncated to 90%", valid.substr(0, valid.size() * 9 / 10), "not a readable torch.save archive"},
      {"a list, not a dict", archive_bytes(list), "expected a dict of tensors"},
      {"a value that is not a tensor", archive_bytes(mixed), "is not a tensor"},
      {"integer tensor for a float parameter", archive_bytes(as_dict(with_int)), "wrong shape or dtype"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    write_bytes(file, c.bytes);
    CHECK_THROWS_AS(groupvit::load_model(dir), groupvit::WeightsError);
    CHECK_THROWS_WITH(groupvit::load_model(dir), Catch::Contains(file.string()) && Catch::Contains(c.message));
  }
}

TEST_CASE("a config.json with wrong types or impossible values names the file and key", "[robust]") {
  TempDir tmp;
  const auto config = tiny_config();
  torch::manual_seed(9);
  groupvit::GroupViTModel model(config);
  write_bytes(tmp.path / groupvit::kSafetensorsFile, SafetensorsBuilder(state_of(model)).bytes());
  const auto file = tmp.path / "config.json";
  const std::string dir = tmp.path.string();
  auto base = json::parse(config.to_json_string());
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = base;
    edit(j);
    return j.dump();
  };
  struct Case {
    std::string name;
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty file", "", "not valid JSON"},
      {"random bytes", random_bytes(300, 4), "not valid JSON"},
      {"truncated", base.dump().substr(0, 100), "not valid JSON"},
      {"not an object", "[1, 2, 3]", "JSON object"},
      {"string for an integer", with([](json& j) { j["text_config"]["hidden_size"] = "32"; }), "hidden_size"},
      {"fraction for an integer", with([](json& j) { j["vision_config"]["patch_size"] = 7.5; }), "patch_size"},
      {"object for a list", with([](json& j) { j["vision_config"]["depths"] = json::object(); }), "depths"},
      {"negative size", with([](json& j) { j["text_config"]["intermediate_size"] = -64; }), "intermediate_size"},
      {"zero heads", with([](json& j) { j["vision_config"]["num_attention_heads"] = 0; }), "num_attention_heads"},
      {"width not divisible by heads", with([](json& j) { j["text_config"]["num_attention_heads"] = 5; }),
       "not divisible"},
      {"image not a multiple of the patch", with([](json& j) { j["vision_config"]["patch_size"] = 5; }),
       "not a multiple of patch_size"},
      {"stage lists of different lengths", with([](json& j) {
         j["vision_config"]["depths"] = {1, 1, 1};
       }),
       "different lengths"},
      {"eos outside the vocabulary", with([](json& j) { j["text_config"]["eos_token_id"] = 100; }), "eos_token_id"},
      {"huge integer", with([](json& j) { j["projection_dim"] = 1e300; }), "projection_dim"},
      {"section of the wrong type", with([](json& j) { j["vision_config"] = 3; }), "vision_config"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    write_bytes(file, c.text);
    CHECK_THROWS_AS(groupvit::load_model(dir), groupvit::ConfigError);
    CHECK_THROWS_WITH(groupvit::load_model(dir), Catch::Contains(file.string()) && Catch::Contains(c.message));
  }

  // Valid but enormous sizes (each within the per-key limit of 2^20) with the tiny weights: refused
  // from the file size before the model is built. Allocating it would take terabytes; under
  // AddressSanitizer such a request aborts the process, so this case also proves the order.
  write_bytes(file, with([](json& j) {
                j["text_config"]["vocab_size"] = 1 << 20;
                j["text_config"]["hidden_size"] = 1 << 20;
                j["text_config"]["num_attention_heads"] = 1;
              }));
  CHECK_THROWS_AS(groupvit::load_model(dir), groupvit::WeightsError);
  CHECK_THROWS_WITH(groupvit::load_model(dir), Catch::Contains((tmp.path / groupvit::kSafetensorsFile).string()) &&
                                                   Catch::Contains("parameters") &&
                                                   Catch::Contains("do not belong together"));

  // config.json that is a directory.
  fs::remove(file);
  fs::create_directory(file);
  CHECK_THROWS_WITH(groupvit::load_model(dir), Catch::Contains(file.string()));
}

TEST_CASE("a model directory missing a file names what is missing", "[robust]") {
  TempDir tmp;
  const std::string dir = tmp.path.string();
  CHECK_THROWS_WITH(groupvit::load_model(dir), Catch::Contains(dir) && Catch::Contains("no config.json"));
  write_bytes(tmp.path / "config.json", tiny_config().to_json_string());
  CHECK_THROWS_WITH(groupvit::load_model(dir), Catch::Contains(dir) && Catch::Contains("no weights found"));
  write_bytes(tmp.path / "pytorch_model.bin", "x");
  CHECK_THROWS_WITH(groupvit::load_model(dir),
                    Catch::Contains("pytorch_model.bin") && Catch::Contains("convert_hf.py"));
  // No tokenizer files at all, then broken ones.
  CHECK_THROWS_WITH(groupvit::ClipTokenizer::from_directory(dir),
                    Catch::Contains(dir) && Catch::Contains("vocab.json + merges.txt"));
  write_bytes(tmp.path / "vocab.json", "{\"a\": ");
  write_bytes(tmp.path / "merges.txt", "#version: 0.2\n");
  CHECK_THROWS_AS(groupvit::ClipTokenizer::from_directory(dir), groupvit::TokenizerError);
  CHECK_THROWS_WITH(groupvit::ClipTokenizer::from_directory(dir), Catch::Contains("vocab.json"));
  write_bytes(tmp.path / "vocab.json", "{\"a\": 0}");
  CHECK_THROWS_AS(groupvit::ClipTokenizer::from_directory(dir), groupvit::TokenizerError);
  fs::remove(tmp.path / "vocab.json");
  fs::remove(tmp.path / "merges.txt");
  write_bytes(tmp.path / "tokenizer.json", random_bytes(200, 5));
  CHECK_THROWS_WITH(groupvit::ClipTokenizer::from_directory(dir), Catch::Contains("tokenizer.json"));
  fs::remove(tmp.path / "tokenizer.json");
  write_bytes(tmp.path / "bpe_simple_vocab_16e6.txt.gz", "\x1f\x8b\x08\x00" + random_bytes(100, 6));
  CHECK_THROWS_WITH(groupvit::ClipTokenizer::from_directory(dir), Catch::Contains("bpe_simple_vocab_16e6.txt.gz"));
}

TEST_CASE("thousands of prompts and empty batches", "[robust]") {
  const auto paths = json::parse(read_bytes(groupvit::test::fixtures_dir() + "/tokenizer/paths.json"));
  const auto tokenizer = groupvit::ClipTokenizer::from_bpe_gz(paths.at("bpe_gz").get<std::string>());
  std::vector<std::string> prompts;
  for (int i = 0; i < 5000; ++i) prompts.push_back("a photo of object number " + std::to_string(i));
  const auto batch = tokenizer.encode_batch(prompts);
  REQUIRE(batch.size() == prompts.size());
  for (const auto& e : batch) CHECK(e.input_ids.size() == batch[0].input_ids.size());
  CHECK(tokenizer.encode_batch({}).empty());
  // A megabyte of one repeated character and of NUL bytes: truncated to the context, no crash.
  CHECK(tokenizer.encode(std::string(1 << 20, 'a'), 77).input_ids.size() == 77);
  CHECK(tokenizer.encode(std::string(1 << 20, '\0'), 77).input_ids.size() <= 77);
}

#ifdef GROUPVIT_HAVE_OPENCV
TEST_CASE("animated GIF and other unsupported containers are refused by name", "[robust]") {
  // GIF89a header, logical screen 2x2, no global colour table, then the NETSCAPE loop extension.
  const std::string gif = std::string("GIF89a\x02\x00\x02\x00\x00\x00\x00", 13) +
                          std::string("\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00\x3b", 19);
  const std::vector<uint8_t> bytes(gif.begin(), gif.end());
  CHECK_THROWS_WITH(groupvit::decode_image_bytes(bytes, true, "anim.gif"),
                    Catch::Contains("anim.gif") && Catch::Contains("not a recognised image"));
}

// Found by the image fuzzer in CI: RIFF/WEBP data whose header libwebp rejects was offered by OpenCV to its
// DICOM and GDAL decoders (signatures at bytes 128 and 140), and GDCM aborted the process on an assert.
// Both must now be refused as corrupt WebP before OpenCV sees them, without a temporary file left behind.
TEST_CASE("a corrupt WebP header never reaches OpenCV's DICOM or GDAL decoders", "[robust]") {
  const fs::path dir = fs::path(groupvit::test::source_dir()) / "fuzz" / "regressions" / "image";
  const char* tmp = std::getenv("TMPDIR");
  const fs::path tmp_dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  const auto opencv_temp_files = [&] {
    size_t n = 0;
    for (const auto& entry : fs::directory_iterator(tmp_dir)) {
      n += entry.path().filename().string().rfind("__opencv_temp", 0) == 0;
    }
    return n;
  };
  const size_t before = opencv_temp_files();
  for (const char* name : {"webp-bad-header-dicm-at-128-gdcm-abort", "webp-bad-header-dted-at-140-gdal"}) {
    const auto bytes = read_bytes(dir / name);
    std::vector<uint8_t> data(bytes.begin(), bytes.end());
    INFO(name);
    CHECK_THROWS_WITH(groupvit::decode_image_bytes(data, true, name),
                      Catch::Contains(name) && Catch::Contains("invalid or truncated WebP header"));
  }
  CHECK(opencv_temp_files() == before);
}
#endif

// Every input under fuzz/corpus/<target>/ and fuzz/regressions/<target>/ (inputs that once
// crashed a fuzzer) through the fuzz entry points, built here without libFuzzer: a crash or a
// broken invariant (the targets trap) fails this test in every normal build.
TEST_CASE("fuzz corpora and regression inputs replay cleanly", "[robust]") {
  const fs::path fuzz = fs::path(groupvit::test::source_dir()) / "fuzz";
  const auto paths = json::parse(read_bytes(groupvit::test::fixtures_dir() + "/tokenizer/paths.json"));
  ::setenv("GROUPVIT_BPE", paths.at("bpe_gz").get<std::string>().c_str(), 1);
  fuzz_tokenizer_initialize(nullptr, nullptr);
  std::vector<std::pair<std::string, int (*)(const uint8_t*, size_t)>> targets = {
      {"safetensors", fuzz_safetensors_one_input},
      {"config", fuzz_config_one_input},
      {"tokenizer", fuzz_tokenizer_one_input},
#ifdef GROUPVIT_HAVE_OPENCV
      {"image", fuzz_image_one_input},
#endif
  };
  size_t replayed = 0;
  for (const auto& [target, run] : targets) {
    size_t count = 0;
    for (const char* kind : {"corpus", "regressions"}) {
      for (const auto& file : files_under(fuzz / kind / target)) {
        INFO(file.string());
        const auto bytes = read_bytes(file);
        run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
        ++count;
      }
    }
    INFO(target);
    CHECK(count > 0);  // every target has seeds: an empty directory means a wrong path
    replayed += count;
  }
  std::printf("replayed %zu fuzz inputs\n", replayed);
}
