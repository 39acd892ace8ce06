// Durable file writes: every file this project writes goes through AtomicFile, so that a crash,
// a power cut, a full disk or a second writer never leaves a half-written or mixed file.
// Free of LibTorch (part of groupvit_formats).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "groupvit/formats/sha256.h"

namespace groupvit {

// A failed file operation; the message names the file, `error()` is the errno. Disk full
// (ENOSPC), quota (EDQUOT), file size limit (EFBIG), read-only file system (EROFS) and I/O errors
// (EIO) mean the location itself is unusable: a batch run stops on them instead of failing every
// remaining input the same way.
class FileError : public std::runtime_error {
 public:
  FileError(const std::string& what, int error) : std::runtime_error(what), error_(error) {}
  int error() const { return error_; }
  bool location_unusable() const;

 private:
  int error_;
};

// A file being written: the bytes go to a temporary beside the target (unique per call, so two
// writers of one path never share it), which commit() flushes to disk (fsync), renames over the
// target and makes durable (fsync of the directory). Until then the target is untouched; an
// AtomicFile destroyed without commit() removes its temporary.
//
// The file gets the permissions a plain open(2) would give (0666 less the umask); when it
// replaces an existing file, that file's mode is kept. The SHA-256 of the bytes written is
// computed on the way (for checksums.sha256, see checksums.h).
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // creates the parent directories; throws FileError
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  void write(const void* data, size_t size);
  void write(const std::string& bytes) { write(bytes.data(), bytes.size()); }
  // Flushes and closes the temporary (after this, no more writes); commit() calls it too. Split
  // out so that several files can be made complete before any of them replaces its target.
  void finish();
  void commit();

  const std::string& path() const { return path_; }
  const std::string& sha256() const;  // lower-case hex, after finish()

 private:
  [[noreturn]] void fail(const std::string& doing, int error);
  std::string path_;
  std::string temp_;
  int fd_ = -1;
  bool finished_ = false;
  bool committed_ = false;
  Sha256 digest_;
  std::string sha256_;
};

// One file, written whole or not at all.
void write_file_atomic(const std::string& path, const void* data, size_t size);
void write_file_atomic(const std::string& path, const std::string& bytes);

// Files that belong together (e.g. embed's NAME.image.npy and NAME.text.npy): every one is written
// and flushed before the first replaces its target, so a failure while writing (disk full, size
// limit) leaves all the old files in place. (Only a power cut between two renames, microseconds
// apart, can leave a mix.)
void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files);

// mkdir -p with the umask's permissions; throws FileError naming the directory.
void make_directories(const std::string& dir);
std::string parent_directory(const std::string& path);
std::string file_name(const std::string& path);  // the part after the last '/'
bool file_exists(const std::string& path);       // a regular file (or a link to one)
// A whole regular file's bytes; nullopt when it is missing, not a regular file, or unreadable (the caller names the
// file and what it is in its own error: a config, a preprocessor config, ...).
std::optional<std::string> read_file(const std::string& path);

}  // namespace groupvit
