// checksums.sha256: the SHA-256 of each file of a model directory (and of train's checkpoint),
// so that a damaged file is refused on load instead of giving wrong numbers. The format is
// sha256sum's ("<64 hex>  <name>" per line, sorted by name), so `sha256sum -c checksums.sha256`
// checks a directory by hand; scripts/convert_hf.py writes the same file.
//
// Replacing files keeps the manifest true at every instant, a power cut included: the manifest
// first lists the old and the new hash of each file being replaced (a file is valid when it
// matches any line of its name), then the files are renamed into place, then the manifest drops
// the old lines. Writers hold the directory's lock (directory_lock.h) while they do this.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "groupvit/formats/atomic_file.h"

namespace groupvit {

inline constexpr const char* kChecksumFile = "checksums.sha256";

// A file that does not match its checksum, or a checksum that is required and missing.
class ChecksumError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Lower-case hex SHA-256 of a file's contents; throws FileError naming the file.
std::string sha256_of_file(const std::string& path);

// Commits staged files (AtomicFiles whose targets are all in one directory) and records their
// hashes in that directory's checksums.sha256 as described above. Entries of other files are
// kept while those files exist.
void commit_with_checksums(std::vector<AtomicFile>& files);

// Checks dir/name against dir/checksums.sha256. A directory without the manifest (a Hugging Face
// snapshot, a directory written by hand) or a file the manifest does not list passes unless
// `required`; a listed file that does not match throws ChecksumError naming the file.
void verify_checksum(const std::string& dir, const std::string& name, bool required = false);

}  // namespace groupvit
