// The WebDataset shard reader (apps/batch/webdataset.h) on the shards of scripts/make_webdataset_fixtures.py:
// samples, grouping and skipping as WebDataset does them, both reading modes, damaged shards (one error, the
// samples before the damage, no crash), stopping, and brace expansion.
#include <openssl/evp.h>
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "batch/webdataset.h"

using groupvit_cli::expand_braces;
using groupvit_cli::for_each_sample;
using groupvit_cli::is_webdataset_shard;
using groupvit_cli::split_webdataset_name;
using groupvit_cli::WebDatasetSample;
using nlohmann::json;

namespace {

std::string fixture_dir() {
  const char* root = std::getenv("GROUPVIT_FIXTURES");
  if (root == nullptr || *root == '\0') FAIL("GROUPVIT_FIXTURES is not set (run through ctest)");
  return std::string(root) + "/webdataset";
}

const json& expected() {
  static const json j = [] {
    const std::string path = fixture_dir() + "/expected.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path + " (scripts/make_webdataset_fixtures.py makes it)");
    return json::parse(in);
  }();
  return j;
}

std::string sha256_hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  REQUIRE(EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr) == 1);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

struct Error {
  std::string where, message;
};

struct Result {
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> samples;  // key, ext -> sha256 / ""
  std::vector<Error> errors;
  bool returned = false;
};

// Reads a fixture shard; `stop_after` > 0: visit returns false on that sample.
Result read(const std::string& name, bool headers_only, size_t max_bytes = size_t(256) << 20, size_t stop_after = 0) {
  Result r;
  r.returned = for_each_sample(
      fixture_dir() + "/" + name, headers_only,
      [&](WebDatasetSample& s) {
        std::map<std::string, std::string> members;
        for (const auto& m : s.members) {
          if (headers_only) CHECK(m.second.empty());
          members[m.first] = headers_only ? "" : sha256_hex(m.second);
        }
        r.samples.emplace_back(s.key, std::move(members));
        return stop_after == 0 || r.samples.size() < stop_after;
      },
      [&](const std::string& where, const std::string& message) {
        r.errors.push_back({where, message});
      },
      max_bytes);
  return r;
}

// The expected samples of a shard entry of expected.json, as Result::samples (values "" when headers_only).
std::vector<std::pair<std::string, std::map<std::string, std::string>>> samples_of(const json& entry,
                                                                                   bool headers_only) {
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> out;
  for (const json& s : entry.at("samples")) {
    std::map<std::string, std::string> members;
    for (const auto& m : s.at("members").items()) members[m.key()] = headers_only ? "" : m.value().get<std::string>();
    out.emplace_back(s.at("key").get<std::string>(), std::move(members));
  }
  return out;
}

std::string describe(const Result& r) {
  std::string s = std::to_string(r.samples.size()) + " samples, errors:";
  for (const Error& e : r.errors) s += " [" + e.where + "] " + e.message + ";";
  return s;
}

}  // namespace

TEST_CASE("webdataset: every fixture shard yields the expected samples and errors", "[webdataset]") {
  const json& shards = expected().at("shards");
  REQUIRE(shards.size() >= 13);
  for (const auto& item : shards.items()) {
    const std::string name = item.key();
    const json& entry = item.value();
    for (const bool headers_only : {false, true}) {
      INFO(name << (headers_only ? " (headers only)" : " (full)"));
      const Result r = read(name, headers_only);
      INFO(describe(r));
      CHECK(r.returned);
      const auto want = samples_of(entry, headers_only);
      const auto member_errors = entry.at("member_errors").get<std::vector<std::string>>();
      const bool archive_error = entry.at("archive_error").get<bool>();
      // Member errors come first (in archive order), then at most one error that ended the shard.
      REQUIRE(r.errors.size() == member_errors.size() + (archive_error ? 1 : 0));
      for (size_t i = 0; i < member_errors.size(); ++i) CHECK(r.errors[i].where == member_errors[i]);
      if (archive_error) CHECK(r.errors.back().message.find("truncated or corrupt archive") != std::string::npos);
      if (entry.contains("min_samples")) {
        // A cut .tar.gz: a prefix of the samples before the cut (see make_webdataset_fixtures.py).
        CHECK(r.samples.size() >= entry.at("min_samples").get<size_t>());
        REQUIRE(r.samples.size() <= want.size());
        for (size_t i = 0; i < r.samples.size(); ++i) CHECK(r.samples[i] == want[i]);
      } else {
        CHECK(r.samples == want);
      }
    }
  }
}

TEST_CASE("webdataset: a cut plain .tar names the member cut, in both modes", "[webdataset]") {
  const json& entry = expected().at("shards").at("truncated.tar");
  for (const bool headers_only : {false, true}) {
    const Result r = read("truncated.tar", headers_only);
    INFO(describe(r));
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].where == entry.at("cut_member").get<std::string>());
    CHECK(r.samples == samples_of(entry, headers_only));
  }
}

TEST_CASE("webdataset: headers_only gives the same keys and extensions as a full read", "[webdataset]") {
  for (const char* name : {"plain.tar", "plain.tar.gz", "odd.tar", "shard-001.tar", "shard-002.tar"}) {
    INFO(name);
    const Result full = read(name, false), headers = read(name, true);
    REQUIRE(full.samples.size() == headers.samples.size());
    for (size_t i = 0; i < full.samples.size(); ++i) {
      CHECK(full.samples[i].first == headers.samples[i].first);
      std::vector<std::string> a, b;
      for (const auto& m : full.samples[i].second) a.push_back(m.first);
      for (const auto& m : headers.samples[i].second) b.push_back(m.first);
      CHECK(a == b);
    }
  }
}

TEST_CASE("webdataset: members over max_member_bytes are reported and skipped", "[webdataset]") {
  const json& entry = expected().at("oversize");
  const auto limit = entry.at("max_member_bytes").get<size_t>();
  const auto member_errors = entry.at("member_errors").get<std::vector<std::string>>();
  for (const bool headers_only : {false, true}) {
    const Result r = read(entry.at("file").get<std::string>(), headers_only, limit);
    INFO(describe(r));
    REQUIRE(r.errors.size() == member_errors.size());
    for (size_t i = 0; i < member_errors.size(); ++i) {
      CHECK(r.errors[i].where == member_errors[i]);
      CHECK(r.errors[i].message.find("limit") != std::string::npos);
    }
    CHECK(r.samples == samples_of(entry, headers_only));
  }
}

TEST_CASE("webdataset: visit returning false stops the shard at once", "[webdataset]") {
  const auto all = samples_of(expected().at("shards").at("plain.tar"), false);
  REQUIRE(all.size() > 3);
  for (const char* name : {"plain.tar", "plain.tar.gz"}) {
    for (size_t stop : {size_t(1), size_t(3)}) {
      INFO(name << " stop after " << stop);
      const Result r = read(name, false, size_t(256) << 20, stop);
      CHECK_FALSE(r.returned);
      CHECK(r.errors.empty());
      REQUIRE(r.samples.size() == stop);
      for (size_t i = 0; i < stop; ++i) CHECK(r.samples[i] == all[i]);
    }
  }
  // Stopping on the last sample still says "stopped".
  const Result last = read("plain.tar", false, size_t(256) << 20, all.size());
  CHECK_FALSE(last.returned);
  CHECK(last.samples.size() == all.size());
}

TEST_CASE("webdataset: a shard that cannot be opened is one error and returns true", "[webdataset]") {
  for (const std::string& path : {fixture_dir() + "/no-such-shard.tar", fixture_dir()}) {
    INFO(path);
    std::vector<Error> errors;
    size_t visits = 0;
    const bool ok = for_each_sample(
        path, false, [&](WebDatasetSample&) { return ++visits, true; },
        [&](const std::string& where, const std::string& message) {
          errors.push_back({where, message});
        });
    CHECK(ok);
    CHECK(visits == 0);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].where.empty());
    CHECK(errors[0].message.rfind("cannot open " + path + ": ", 0) == 0);
  }
}

TEST_CASE("webdataset: the brace pattern of the fixture shards expands to their names", "[webdataset]") {
  const json& brace = expected().at("brace");
  const std::string dir = fixture_dir() + "/";
  const auto files = brace.at("files").get<std::vector<std::string>>();
  const auto names = expand_braces(dir + brace.at("pattern").get<std::string>());
  REQUIRE(names.size() == files.size());
  for (size_t i = 0; i < names.size(); ++i) {
    CHECK(names[i] == dir + files[i]);
    CHECK(is_webdataset_shard(names[i]));
    CHECK(read(files[i], false).samples.size() == 2);
  }
}

TEST_CASE("webdataset: expand_braces", "[webdataset]") {
  using V = std::vector<std::string>;
  CHECK(expand_braces("plain.tar") == V{"plain.tar"});
  CHECK(expand_braces("") == V{""});
  CHECK(expand_braces("a-{000..002}.tar") == V{"a-000.tar", "a-001.tar", "a-002.tar"});
  CHECK(expand_braces("{8..11}") == V{"8", "9", "10", "11"});     // no leading zero: no padding
  CHECK(expand_braces("{08..11}") == V{"08", "09", "10", "11"});  // padded to the wider bound
  CHECK(expand_braces("{0..2}") == V{"0", "1", "2"});             // a lone "0" is no padding
  CHECK(expand_braces("{7..0010}") == V{"0007", "0008", "0009", "0010"});
  CHECK(expand_braces("x{5..5}y") == V{"x5y"});
  CHECK(expand_braces("{a,b,c}") == V{"a", "b", "c"});
  CHECK(expand_braces("x{,-hi}") == V{"x", "x-hi"});
  CHECK(expand_braces("{a..b,c}") == V{"a..b", "c"});  // a list's items are literal
  CHECK(expand_braces("s3://b/{a,b}-{0..1}.tar") ==
        V{"s3://b/a-0.tar", "s3://b/a-1.tar", "s3://b/b-0.tar", "s3://b/b-1.tar"});
  CHECK(expand_braces("{0..999}-{0..999}").size() == 1000000);  // the limit itself is allowed

  for (const std::string bad :
       {"a{0..2", "a}0", "{a,{b,c}}", "{}", "x{abc}y", "{3..1}", "{a..c}", "{1..}", "{..3}", "{-1..2}", "{0..10..2}",
        "{0..1000000}", "{0..999}-{0..1000}", "{0..9999999999999999999}"}) {
    INFO(bad);
    try {
      expand_braces(bad);
      FAIL("no exception");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("'" + bad + "'") != std::string::npos);
    }
  }
}

TEST_CASE("webdataset: is_webdataset_shard and split_webdataset_name", "[webdataset]") {
  for (const char* yes : {"a.tar", "a.TAR", "dir/a.tar.gz", "a.Tar.Gz", "a.tgz", "A.TGZ", ".tar"}) {
    CHECK(is_webdataset_shard(yes));
  }
  for (const char* no : {"a.tar.bz2", "a.tarx", "a.gz", "atar", "a.zip", "", "tar"})
    CHECK_FALSE(is_webdataset_shard(no));

  std::string key, ext;
  CHECK(split_webdataset_name("sub/000002.seg.PNG", key, ext));
  CHECK(key == "sub/000002");
  CHECK(ext == "seg.png");
  CHECK(split_webdataset_name("a.b/c.JPG", key, ext));  // a '.' in a directory name is not the base name's
  CHECK(key == "a.b/c");
  CHECK(ext == "jpg");
  CHECK(split_webdataset_name("./x.txt", key, ext));  // GNU tar's "./" prefix is kept in the key, as WebDataset does
  CHECK(key == "./x");
  for (const char* skipped : {"README", "sub/.hidden.txt", ".x", "a.b/c", "a.", "sub/", ""}) {
    INFO(skipped);
    key = ext = "unchanged";
    CHECK_FALSE(split_webdataset_name(skipped, key, ext));
    CHECK(key == "unchanged");
  }
}

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A scratch copy of a shard, rewritten for each variant; removed with its folder at the end.
struct ScratchShard {
  std::string dir, path;
  explicit ScratchShard(const std::string& name) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "groupvit-wds-XXXXXX").string();
    REQUIRE(mkdtemp(&tmpl[0]) != nullptr);
    dir = tmpl;
    path = dir + "/" + name;
  }
  ~ScratchShard() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  void write(const std::string& bytes) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
  }
  Result read(bool headers_only) const {
    Result r;
    r.returned = for_each_sample(
        path, headers_only,
        [&](WebDatasetSample& s) {
          std::map<std::string, std::string> members;
          for (const auto& m : s.members) members[m.first] = headers_only ? "" : sha256_hex(m.second);
          r.samples.emplace_back(s.key, std::move(members));
          return true;
        },
        [&](const std::string& where, const std::string& message) {
          r.errors.push_back({where, message});
        });
    return r;
  }
};

bool is_prefix(const Result& r, const std::vector<std::pair<std::string, std::map<std::string, std::string>>>& all) {
  if (r.samples.size() > all.size()) return false;
  for (size_t i = 0; i < r.samples.size(); ++i) {
    if (r.samples[i] != all[i]) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("webdataset: a shard cut anywhere yields a prefix of its samples and at most one error", "[webdataset]") {
  for (const char* name : {"plain.tar", "plain.tar.gz"}) {
    const std::string bytes = slurp(fixture_dir() + "/" + name);
    const ScratchShard scratch(name);
    // Every 509th byte (prime, so cuts fall everywhere within the 512-byte tar blocks) and the first few.
    for (size_t cut = 0; cut < bytes.size(); cut += cut < 16 ? 1 : 509) {
      scratch.write(bytes.substr(0, cut));
      for (const bool headers_only : {false, true}) {
        const auto all = samples_of(expected().at("shards").at(name), headers_only);
        INFO(name << " cut at " << cut << (headers_only ? " (headers only)" : ""));
        const Result r = scratch.read(headers_only);
        INFO(describe(r));
        CHECK(r.returned);
        CHECK(r.errors.size() <= 1);
        CHECK(is_prefix(r, all));
        // Only a cut in the end-of-archive blocks may pass unnoticed, and then nothing is missing.
        if (r.errors.empty()) CHECK(r.samples.size() == all.size());
      }
    }
  }
}

TEST_CASE("webdataset: damaged bytes never crash the reader", "[webdataset]") {
  std::mt19937 rng(12345);
  for (const char* name : {"plain.tar", "plain.tar.gz", "shard-001.tar", "shard-002.tar"}) {
    const std::string bytes = slurp(fixture_dir() + "/" + name);
    const ScratchShard scratch(name);
    for (int round = 0; round < 60; ++round) {
      std::string damaged = bytes;
      // A few bytes overwritten, in the first blocks (headers) more often than elsewhere.
      const int flips = 1 + static_cast<int>(rng() % 8);
      for (int i = 0; i < flips; ++i) {
        const size_t span = rng() % 2 ? std::min<size_t>(damaged.size(), 4096) : damaged.size();
        damaged[rng() % span] = static_cast<char>(rng() & 0xff);
      }
      scratch.write(damaged);
      for (const bool headers_only : {false, true}) {
        INFO(name << " round " << round << (headers_only ? " (headers only)" : ""));
        const Result r = scratch.read(headers_only);
        INFO(describe(r));
        CHECK(r.returned);
        // At most one error that ends the shard, and it is the last one.
        size_t fatal = 0;
        for (const Error& e : r.errors) fatal += e.message.find("truncated or corrupt archive") != std::string::npos;
        CHECK(fatal <= 1);
        if (fatal == 1) CHECK(r.errors.back().message.find("truncated or corrupt archive") != std::string::npos);
      }
    }
  }
}
