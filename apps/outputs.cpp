// Output writing (see outputs.h). POSIX calls rather than std::filesystem (LibTorch exports a
// broken copy of some of its symbols).
#include "outputs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <stdexcept>

#include "text_renderer.h"

namespace groupvit_cli {

namespace {

std::string errno_text() { return std::strerror(errno); }

[[noreturn]] void fail(const std::string& what, int error) {
  throw OutputError(what + ": " + std::strerror(error), error);
}

}  // namespace

LineAppender::LineAppender(const std::string& path, bool truncate) : path_(path) {
  make_directories(parent_directory(path));
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0666);
  if (fd_ < 0) fail("cannot open " + path, errno);
}

LineAppender::~LineAppender() {
  if (fd_ >= 0) ::close(fd_);
}

void LineAppender::append(const std::string& line) {
  const std::string data = line + "\n";
  struct stat before {};
  const bool know_size = ::fstat(fd_, &before) == 0;
  size_t done = 0;
  int error = 0;
  while (done < data.size()) {  // a short write returns the count, the next one the reason (ENOSPC, EFBIG)
    const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? errno : EIO;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (error == 0) return;
  const bool cut = done == 0 || (know_size && ::ftruncate(fd_, before.st_size) == 0);
  fail("cannot append to " + path_ + (cut ? "" : " (its last line is partial; --resume drops it)"), error);
}

std::vector<std::string> read_complete_lines_and_trim(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path, std::ios::binary);
  if (!in) return lines;
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t start = 0, complete = 0;
  while (true) {
    const auto nl = content.find('\n', start);
    if (nl == std::string::npos) break;
    if (nl > start) lines.push_back(content.substr(start, nl - start));
    start = complete = nl + 1;
  }
  if (complete < content.size() && ::truncate(path.c_str(), static_cast<off_t>(complete)) != 0)
    throw std::runtime_error("cannot trim the partial last line of " + path + ": " + errno_text());
  return lines;
}

std::string npy_bytes(const std::vector<float>& values, const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << shape[i] << (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  s << ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + s.str() + ", }";
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  return out;
}

std::vector<uint8_t> overlay_image(const groupvit::RgbImage& image, const std::vector<uint8_t>& labels,
                                   const std::vector<std::string>& names,
                                   const std::vector<std::array<uint8_t, 3>>& palette, const std::string& ext) {
  const int h = static_cast<int>(image.height), w = static_cast<int>(image.width);
  cv::Mat bgr(h, w, CV_8UC3);
  std::vector<int64_t> count(names.size(), 0);
  for (int y = 0; y < h; ++y) {
    const uint8_t* src = image.row(y);
    auto* dst = bgr.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x) {
      const uint8_t l = labels[static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)];
      if (l < count.size()) ++count[l];
      for (int c = 0; c < 3; ++c) {
        const int v = src[x * 3 + c];
        const int blended = l == 0 ? v : (v + palette[l][static_cast<size_t>(c)] + 1) / 2;
        dst[x * 3 + (2 - c)] = static_cast<uint8_t>(blended);
      }
    }
  }
  // Legend: one swatch and name per label present, top left, scaled to the image. Names go through
  // TextRenderer (any script, emoji); Hershey, ASCII-only, is left for a machine without any font.
  const TextRenderer& text = TextRenderer::shared();
  static std::once_flag font_warning, coverage_warning;
  if (!text.fallback_reason().empty())
    std::call_once(font_warning, [&] { std::cerr << "warning: " << text.fallback_reason() << "\n"; });
  const double font = std::max(0.35, std::min(1.0, w / 900.0));
  const int line_h = static_cast<int>(22 * font) + 6;
  const int text_h = line_h - 2;  // ascent + descent of the name; Hershey's caps-only box was 22 * font
  int y = 4;
  for (size_t l = 1; l < names.size(); ++l) {
    if (count[l] == 0) continue;
    if (y + line_h > h) break;
    int baseline = 0;
    const int text_w = text.has_fonts() ? text.measure(names[l], text_h).width
                                        : cv::getTextSize(names[l], cv::FONT_HERSHEY_SIMPLEX, font, 1, &baseline).width;
    cv::rectangle(bgr, cv::Rect(2, y, line_h + text_w + 10, line_h), cv::Scalar(0, 0, 0), cv::FILLED);
    cv::rectangle(bgr, cv::Rect(5, y + 3, line_h - 6, line_h - 6),
                  cv::Scalar(palette[l][2], palette[l][1], palette[l][0]), cv::FILLED);
    if (text.has_fonts()) {
      text.draw(bgr, names[l], cv::Point(line_h + 4, y + 1), text_h, cv::Scalar(255, 255, 255));
      if (!text.covers(names[l]))
        std::call_once(coverage_warning, [&] {
          std::cerr << "warning: no installed font has every character of label '" << names[l]
                    << "' (boxes drawn); install the Debian packages " << TextRenderer::kFontPackages << "\n";
        });
    } else {
      cv::putText(bgr, names[l], cv::Point(line_h + 4, y + line_h - 6), cv::FONT_HERSHEY_SIMPLEX, font,
                  cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
    }
    y += line_h;
  }
  std::vector<uint8_t> bytes;
  std::vector<int> params;
  if (ext == ".jpg") params = {cv::IMWRITE_JPEG_QUALITY, 90};
  if (!cv::imencode(ext, bgr, bytes, params)) throw std::runtime_error("cannot encode the overlay as " + ext);
  return bytes;
}

}  // namespace groupvit_cli
