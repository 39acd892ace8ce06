// checksums.sha256 reading, writing and verification (see checksums.h).
#include "groupvit/formats/checksums.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <utility>

namespace groupvit {

namespace {

using Entry = std::pair<std::string, std::string>;  // (name, hex digest); sorted by name, then digest

std::string join(const std::string& dir, const std::string& name) { return dir + "/" + name; }

bool is_hex_digest(const std::string& s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The manifest's entries; a missing manifest is an empty set, a malformed line an error (a
// manifest that cannot be read cannot vouch for anything).
std::set<Entry> read_manifest(const std::string& dir, bool* present = nullptr) {
  const auto path = join(dir, kChecksumFile);
  std::set<Entry> entries;
  std::ifstream in(path);
  if (present) *present = static_cast<bool>(in);
  if (!in) return entries;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    // sha256sum writes "<digest>  <name>" (two spaces: text mode) or "<digest> *<name>" (binary).
    const std::string digest = line.substr(0, 64);
    const bool separator = line.size() > 66 && line[64] == ' ' && (line[65] == ' ' || line[65] == '*');
    const std::string name = separator ? line.substr(66) : "";
    if (!is_hex_digest(digest) || name.empty() || name.find('/') != std::string::npos)
      throw ChecksumError(path + ":" + std::to_string(number) + ": not a sha256sum line: " + line);
    entries.emplace(name, digest);
  }
  return entries;
}

void write_manifest(const std::string& dir, const std::set<Entry>& entries) {
  std::string text;
  for (const auto& [name, digest] : entries) text += digest + "  " + name + "\n";
  write_file_atomic(join(dir, kChecksumFile), text);
}

}  // namespace

std::string sha256_of_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FileError("cannot read " + path + ": " + std::strerror(errno), errno);
  Sha256 digest;
  std::vector<char> buffer(1 << 20);
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      throw FileError("cannot read " + path + ": " + std::strerror(error), error);
    }
    if (n == 0) break;
    digest.update(buffer.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return digest.hex_digest();
}

void commit_with_checksums(std::vector<AtomicFile>& files) {
  if (files.empty()) return;
  const std::string dir = parent_directory(files.front().path());
  std::set<Entry> entries = read_manifest(dir);
  std::set<std::string> replaced;
  for (auto& file : files) {
    if (parent_directory(file.path()) != dir)
      throw std::logic_error("commit_with_checksums: " + file.path() + " is not in " + dir);
    file.finish();
    replaced.insert(file_name(file.path()));
    entries.emplace(file_name(file.path()), file.sha256());
  }
  write_manifest(dir, entries);  // old and new lines: whichever file a crash leaves is listed
  for (auto& file : files) file.commit();
  std::set<Entry> current;
  for (const auto& [name, digest] : entries) {
    if (replaced.count(name)) continue;
    if (file_exists(join(dir, name))) current.emplace(name, digest);
  }
  for (auto& file : files) current.emplace(file_name(file.path()), file.sha256());
  write_manifest(dir, current);
}

void verify_checksum(const std::string& dir, const std::string& name, bool required) {
  bool present = false;
  const auto entries = read_manifest(dir, &present);
  std::set<std::string> listed;
  for (const auto& [n, digest] : entries)
    if (n == name) listed.insert(digest);
  const auto path = join(dir, name);
  const auto manifest = join(dir, kChecksumFile);
  if (listed.empty()) {
    if (!required) return;
    throw ChecksumError(path + ": no checksum for it in " + manifest + (present ? "" : " (no such file)") +
                        ", so it cannot be trusted; it was not written by this version of groupvit");
  }
  if (!listed.count(sha256_of_file(path)))
    throw ChecksumError(path + ": contents do not match its SHA-256 in " + manifest +
                        " (the file is damaged or was changed after it was written)");
}

}  // namespace groupvit
