// Durable files: atomic writes (modes, failures, files written together), checksums.sha256 and
// directory locks. The checksum format is checked against coreutils' sha256sum, its reference.
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "groupvit/formats/atomic_file.h"
#include "groupvit/formats/checksums.h"
#include "groupvit/formats/directory_lock.h"

namespace {

std::string make_temp_dir() {
  char templ[] = "/tmp/groupvit-files-XXXXXX";
  REQUIRE(::mkdtemp(templ) != nullptr);
  return templ;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (auto* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
  ::closedir(d);
  return names;
}

bool has_temporary(const std::string& dir) {
  for (const auto& name : entries(dir))
    if (name.find(".tmp-") != std::string::npos) return true;
  return false;
}

// Sets the umask for a scope (the process-wide one: tests run sequentially).
struct Umask {
  explicit Umask(mode_t mask) : old(::umask(mask)) {}
  ~Umask() { ::umask(old); }
  mode_t old;
};

// A file size limit for a scope, with SIGXFSZ ignored so that the write fails with EFBIG (as a
// full disk fails with ENOSPC) instead of killing the test.
struct FileSizeLimit {
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    previous = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{bytes, old.rlim_max};
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, previous);
  }
  rlimit old{};
  void (*previous)(int);
};

int run_shell(const std::string& command) { return std::system(command.c_str()); }

}  // namespace

TEST_CASE("atomic writes give new files the umask's mode and keep a replaced file's mode", "[files]") {
  const auto dir = make_temp_dir();
  {
    Umask mask(022);
    groupvit::write_file_atomic(dir + "/a.json", "{}");
    CHECK(mode_of(dir + "/a.json") == 0644);
    groupvit::make_directories(dir + "/sub/deeper");
    CHECK(mode_of(dir + "/sub/deeper") == 0755);
  }
  {
    Umask mask(077);
    groupvit::write_file_atomic(dir + "/b.json", "{}");
    CHECK(mode_of(dir + "/b.json") == 0600);
    // Replacing keeps the existing file's mode (a shared 0644 model stays readable for others).
    groupvit::write_file_atomic(dir + "/a.json", "{\"new\": 1}");
    CHECK(mode_of(dir + "/a.json") == 0644);
    CHECK(slurp(dir + "/a.json") == "{\"new\": 1}");
  }
  CHECK_FALSE(has_temporary(dir));
  run_shell("rm -rf " + dir);
}

TEST_CASE("a failed write leaves the old file and no temporary", "[files]") {
  const auto dir = make_temp_dir();
  const auto path = dir + "/out.bin";
  spit(path, "old");
  {
    FileSizeLimit limit(1000);
    try {
      groupvit::write_file_atomic(path, std::string(5000, 'x'));
      FAIL("a write past the file size limit succeeded");
    } catch (const groupvit::FileError& e) {
      CHECK(e.error() == EFBIG);
      CHECK(e.location_unusable());
      CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
  }
  CHECK(slurp(path) == "old");
  CHECK_FALSE(has_temporary(dir));
  // An AtomicFile abandoned before commit (an exception between writes) cleans up too.
  {
    groupvit::AtomicFile file(path);
    file.write("partial");
  }
  CHECK(slurp(path) == "old");
  CHECK_FALSE(has_temporary(dir));
  run_shell("rm -rf " + dir);
}

TEST_CASE("files written together are replaced together or not at all", "[files]") {
  const auto dir = make_temp_dir();
  spit(dir + "/p.image.npy", "old image");
  spit(dir + "/p.text.npy", "old text");
  {
    // The first file fits under the limit, the second does not: neither may replace its old one.
    FileSizeLimit limit(1000);
    CHECK_THROWS_AS(groupvit::write_files_atomic(
                        {{dir + "/p.image.npy", std::string(100, 'i')}, {dir + "/p.text.npy", std::string(5000, 't')}}),
                    groupvit::FileError);
  }
  CHECK(slurp(dir + "/p.image.npy") == "old image");
  CHECK(slurp(dir + "/p.text.npy") == "old text");
  CHECK_FALSE(has_temporary(dir));
  groupvit::write_files_atomic({{dir + "/p.image.npy", "new image"}, {dir + "/p.text.npy", "new text"}});
  CHECK(slurp(dir + "/p.image.npy") == "new image");
  CHECK(slurp(dir + "/p.text.npy") == "new text");
  run_shell("rm -rf " + dir);
}

TEST_CASE("checksums.sha256 is sha256sum's format and catches damaged files", "[files]") {
  const auto dir = make_temp_dir();
  std::vector<groupvit::AtomicFile> files;
  files.emplace_back(dir + "/model.safetensors");
  files.back().write(std::string(4096, '\x01'));
  files.emplace_back(dir + "/config.json");
  files.back().write("{\"projection_dim\": 8}");
  groupvit::commit_with_checksums(files);
  // coreutils checks it as written, from inside the directory.
  CHECK(run_shell("cd " + dir + " && sha256sum --quiet -c " + groupvit::kChecksumFile) == 0);
  const auto manifest = slurp(dir + "/" + groupvit::kChecksumFile);
  CHECK(manifest.find("  config.json\n") < manifest.find("  model.safetensors\n"));  // sorted by name
  CHECK(std::count(manifest.begin(), manifest.end(), '\n') == 2);                    // old lines dropped
  CHECK(groupvit::sha256_of_file(dir + "/config.json") == files[1].sha256());
  CHECK_NOTHROW(groupvit::verify_checksum(dir, "model.safetensors", true));
  CHECK_NOTHROW(groupvit::verify_checksum(dir, "unlisted.txt"));  // not listed, not required
  CHECK_THROWS_WITH(groupvit::verify_checksum(dir, "unlisted.txt", true),
                    Catch::Contains("no checksum") && Catch::Contains("unlisted.txt"));

  // Replacing one file keeps the other's entry; 64 bytes flipped inside the data are refused.
  std::vector<groupvit::AtomicFile> again;
  again.emplace_back(dir + "/config.json");
  again.back().write("{\"projection_dim\": 16}");
  groupvit::commit_with_checksums(again);
  CHECK(run_shell("cd " + dir + " && sha256sum --quiet -c " + groupvit::kChecksumFile) == 0);
  auto bytes = slurp(dir + "/model.safetensors");
  for (size_t i = 1000; i < 1064; ++i) bytes[i] = static_cast<char>(bytes[i] ^ 0xff);
  spit(dir + "/model.safetensors", bytes);
  CHECK_THROWS_AS(groupvit::verify_checksum(dir, "model.safetensors"), groupvit::ChecksumError);
  CHECK_THROWS_WITH(groupvit::verify_checksum(dir, "model.safetensors"),
                    Catch::Contains(dir + "/model.safetensors") && Catch::Contains("do not match"));
  CHECK_NOTHROW(groupvit::verify_checksum(dir, "config.json"));
  run_shell("rm -rf " + dir);
}

TEST_CASE("during a replacement the manifest vouches for the old and the new file", "[files]") {
  // A crash between the renames leaves some files old and some new: both must verify. The state
  // right after the first manifest write is reproduced by hand: old and new lines for one name.
  const auto dir = make_temp_dir();
  spit(dir + "/w.bin", "old");
  const auto old_hash = groupvit::sha256_of_file(dir + "/w.bin");
  spit(dir + "/new.bin", "new");
  const auto new_hash = groupvit::sha256_of_file(dir + "/new.bin");
  spit(dir + "/" + groupvit::kChecksumFile, new_hash + "  w.bin\n" + old_hash + "  w.bin\n");
  CHECK_NOTHROW(groupvit::verify_checksum(dir, "w.bin", true));
  ::rename((dir + "/new.bin").c_str(), (dir + "/w.bin").c_str());
  CHECK_NOTHROW(groupvit::verify_checksum(dir, "w.bin", true));
  spit(dir + "/w.bin", "neither");
  CHECK_THROWS_AS(groupvit::verify_checksum(dir, "w.bin", true), groupvit::ChecksumError);
  // A manifest line that is not sha256sum's format is an error, not a pass.
  spit(dir + "/" + groupvit::kChecksumFile, "garbage\n");
  CHECK_THROWS_WITH(groupvit::verify_checksum(dir, "w.bin"), Catch::Contains("not a sha256sum line"));
  run_shell("rm -rf " + dir);
}

TEST_CASE("a directory lock refuses a second writer and names the first", "[files]") {
  const auto dir = make_temp_dir();
  {
    groupvit::DirectoryLock first(dir, "groupvit train");
    // flock conflicts between open file descriptions, so a second lock in this process stands
    // in for a second process (train_test.py and cli_test.py run real second processes).
    CHECK_THROWS_AS(groupvit::DirectoryLock(dir, "groupvit segment"), groupvit::DirectoryLockedError);
    CHECK_THROWS_WITH(groupvit::DirectoryLock(dir, "groupvit segment"),
                      Catch::Contains("pid=" + std::to_string(::getpid())) &&
                          Catch::Contains("command=groupvit train") && Catch::Contains(dir));
    CHECK_THROWS_AS(groupvit::DirectoryLock(dir, "groupvit segment", "shard-0-of-2"), groupvit::DirectoryLockedError);
  }
  CHECK_NOTHROW(groupvit::DirectoryLock(dir, "groupvit train"));  // released with its holder
  {
    // Shards of one run share the directory; a second run of one shard, or an unsharded run, is refused.
    groupvit::DirectoryLock shard0(dir, "groupvit segment", "shard-0-of-2");
    CHECK_NOTHROW(groupvit::DirectoryLock(dir, "groupvit segment", "shard-1-of-2"));
    CHECK_THROWS_WITH(groupvit::DirectoryLock(dir, "groupvit segment", "shard-0-of-2"),
                      Catch::Contains("shard-0-of-2") && Catch::Contains("command=groupvit segment"));
    CHECK_THROWS_WITH(groupvit::DirectoryLock(dir, "groupvit train"), Catch::Contains("shards"));
  }
  run_shell("rm -rf " + dir);
}
