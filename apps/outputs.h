// Output files of the CLI: atomic writes (temp file + rename, so a killed run never leaves a
// half-written file), JSON-lines appends, .npy arrays, label maps and overlays.
#pragma once

#include "groupvit/rgb_image.h"

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace groupvit_cli {

// A failed write. `error` is the errno. Disk full (ENOSPC), quota (EDQUOT), file size limit
// (EFBIG), read-only file system (EROFS) and I/O errors (EIO) mean the output location itself is
// unusable: a batch run stops on them instead of failing every remaining image the same way.
class OutputError : public std::runtime_error {
 public:
  OutputError(const std::string& what, int error) : std::runtime_error(what), error_(error) {}
  int error() const { return error_; }
  bool output_unusable() const;

 private:
  int error_;
};

// mkdir -p; throws OutputError naming the directory.
void make_directories(const std::string& dir);
std::string parent_directory(const std::string& path);

// Writes to PATH.tmp-PID, then renames over PATH (creating parent directories); on failure the
// temporary file is removed and OutputError names PATH and the reason.
void write_file_atomic(const std::string& path, const void* data, size_t size);
void write_file_atomic(const std::string& path, const std::string& text);

// Appends one line (a trailing newline is added) with a single write(2) on an O_APPEND descriptor.
// A write that fails part-way (disk full) is cut off again, so the file keeps complete lines only.
class LineAppender {
 public:
  LineAppender() = default;
  explicit LineAppender(const std::string& path, bool truncate = false);
  ~LineAppender();
  LineAppender(const LineAppender&) = delete;
  LineAppender& operator=(const LineAppender&) = delete;
  void append(const std::string& line);
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// The complete lines of a JSON-lines file (a trailing partial line, left by a killed writer, is
// cut off the file). Missing file: empty.
std::vector<std::string> read_complete_lines_and_trim(const std::string& path);

// NumPy .npy (version 1.0) of a C-order float32 array.
std::string npy_bytes(const std::vector<float>& values, const std::vector<int64_t>& shape);

// Image blended with the colour of each pixel's label (opacity 0.5), label 0 (background) left
// as is, with a legend of the labels present. Encoded as JPEG or PNG by the path's extension.
std::vector<uint8_t> overlay_image(const groupvit::RgbImage& image, const std::vector<uint8_t>& labels,
                                   const std::vector<std::string>& names,
                                   const std::vector<std::array<uint8_t, 3>>& palette, const std::string& ext);

bool file_exists(const std::string& path);

}  // namespace groupvit_cli
