// Intra-op threads that follow how much of this process's CPUs other processes are using.
//
// Why: LibTorch's OpenMP threads spin between operators. With another busy process on one of two
// cores, two spinning threads and the neighbour share the cores three ways, and every parallel
// region waits for the thread that lost its core: batch 8 took 1.9-2.0 s instead of 0.67 s, and a
// one-prompt text forward 41-152 ms instead of 16 ms (docs/design-notes.md, "Threads on a shared
// CPU"). A passive wait policy fixes that but costs 27% on a quiet machine, and libgomp reads it
// only at process start. So instead the thread count follows a measurement: the CPU time the
// process's own CPUs (its affinity mask) spent busy, minus the process's own CPU time, over the
// interval since the last measurement, is what the neighbours took; the threads are the cores left.
// Measured from /proc/stat and the process clock, it costs nothing to take between forwards.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace groupvit {

// Busy clock ticks (user, nice, system, irq, softirq, steal) of the given CPUs in a /proc/stat
// text; -1 when a CPU's line is missing or malformed.
int64_t busy_ticks(const std::string& proc_stat, const std::vector<int>& cpus);

// The threads to run when `others` cores' worth of CPU time went to other processes on `cpus`
// cores: the cores left, rounded, between 1 and `max_threads`.
int threads_for(double others, int cpus, int max_threads);

// The CPUs this process may run on (its affinity mask; std::thread::hardware_concurrency where
// that cannot be read), at least 1.
int usable_cpus();

class AdaptiveThreads {
 public:
  // max_threads: the most to use (0: the CPUs of the affinity mask). The measurement starts here.
  explicit AdaptiveThreads(int max_threads = 0);

  // Measures the interval since the last measurement (when at least min_interval long; shorter
  // ones are too coarse for /proc/stat's 10 ms ticks and keep the last choice) and sets LibTorch's
  // intra-op threads for the calling thread to the cores left. Call it on the thread that runs the
  // forwards, before each. Returns the threads now set.
  int update();

  int threads() const { return threads_; }
  int max_threads() const { return max_threads_; }
  int cpus() const { return static_cast<int>(cpus_.size()); }
  // Cores' worth of CPU time other processes took in the last measured interval (0 before one).
  double others() const { return others_; }
  // False where /proc/stat cannot be read (not Linux): the thread count then stays at max_threads.
  bool measuring() const { return measuring_; }

  static constexpr std::chrono::milliseconds min_interval{200};

 private:
  struct Sample {
    std::chrono::steady_clock::time_point wall;
    int64_t busy_ticks = -1;
    double own_cpu_s = 0;
  };
  Sample sample() const;

  std::vector<int> cpus_;
  int max_threads_ = 1;
  int threads_ = 1;
  double others_ = 0;
  bool measuring_ = false;
  double seconds_per_tick_ = 0.01;
  Sample last_;
};

}  // namespace groupvit
