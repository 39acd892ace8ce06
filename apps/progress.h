// Progress reporting for batch runs: a redrawn bar with images/s and ETA on a terminal, plain
// periodic lines otherwise (logs of Slurm or Kubernetes jobs). Writes to stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace groupvit_cli {

class Progress {
 public:
  // total < 0: unknown. interval_s: seconds between plain lines (non-terminal output). `unit`
  // names what is counted ("images", "steps").
  Progress(int64_t total, double interval_s, bool enabled, std::string unit = "images");
  // Extra text at the end of the line, e.g. the training loss.
  void set_note(std::string note) { note_ = std::move(note); }
  void update(int64_t done, int64_t failed);
  void finish(int64_t done, int64_t failed);

 private:
  std::string line(int64_t done, int64_t failed, bool bar) const;
  int64_t total_;
  double interval_s_;
  bool enabled_, tty_;
  std::string unit_, note_;
  std::chrono::steady_clock::time_point start_, last_;
};

std::string format_duration(double seconds);

// Seconds on the steady clock since `start`.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace groupvit_cli
