// Output files of the CLI: JSON-lines appends, .npy arrays, label maps and overlays. Whole files
// are written with the library's atomic writes, so a killed run never leaves a half-written file.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "groupvit/formats/atomic_file.h"
#include "groupvit/preprocess/rgb_image.h"

namespace groupvit_cli {

// Failed writes are groupvit::FileError (errno, and whether the output location itself is
// unusable); atomic writes are the library's (groupvit/formats/atomic_file.h).
using OutputError = groupvit::FileError;
using groupvit::file_exists;
using groupvit::make_directories;
using groupvit::parent_directory;
using groupvit::write_file_atomic;
using groupvit::write_files_atomic;

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

}  // namespace groupvit_cli
