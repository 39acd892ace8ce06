// Progress bar and periodic progress lines (see progress.h).
#include "progress.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <sstream>

namespace groupvit_cli {

std::string format_duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  return buf;
}

Progress::Progress(int64_t total, double interval_s, bool enabled, std::string unit)
    : total_(total),
      interval_s_(interval_s),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0),
      unit_(std::move(unit)) {
  start_ = last_ = std::chrono::steady_clock::now();
}

std::string Progress::line(int64_t done, int64_t failed, bool bar) const {
  const double elapsed = seconds_since(start_);
  const double rate = elapsed > 0 ? static_cast<double>(done + failed) / elapsed : 0;
  std::ostringstream o;
  if (bar && total_ > 0) {
    const int width = 30;
    const int filled = static_cast<int>(width * static_cast<double>(done + failed) / static_cast<double>(total_));
    o << "[" << std::string(static_cast<size_t>(std::min(filled, width)), '#')
      << std::string(static_cast<size_t>(width - std::min(filled, width)), ' ') << "] ";
  }
  o << (done + failed);
  if (total_ >= 0) o << "/" << total_;
  o << " " << unit_;
  if (failed) o << " (" << failed << " failed)";
  char r[32];
  std::snprintf(r, sizeof r, "%.2f", rate);
  o << ", " << r << " " << unit_ << "/s, elapsed " << format_duration(elapsed);
  if (total_ >= 0 && rate > 0) o << ", ETA " << format_duration(static_cast<double>(total_ - done - failed) / rate);
  if (!note_.empty()) o << ", " << note_;
  return o.str();
}

void Progress::update(int64_t done, int64_t failed) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (tty_) {
    if (since < 0.2) return;
    std::cerr << "\r" << line(done, failed, true) << "\033[K" << std::flush;
  } else {
    if (since < interval_s_) return;
    std::cerr << "groupvit: progress: " << line(done, failed, false) << "\n" << std::flush;
  }
  last_ = now;
}

void Progress::finish(int64_t done, int64_t failed) {
  if (!enabled_) return;
  if (tty_)
    std::cerr << "\r" << line(done, failed, true) << "\033[K\n";
  else
    std::cerr << "groupvit: progress: " << line(done, failed, false) << "\n";
}

}  // namespace groupvit_cli
