#include "groupvit/runtime/cpu_share.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#include <time.h>
#include <unistd.h>
#endif

namespace groupvit {

int64_t busy_ticks(const std::string& proc_stat, const std::vector<int>& cpus) {
  std::vector<int64_t> per_cpu;
  std::vector<bool> seen;
  const int highest = cpus.empty() ? -1 : *std::max_element(cpus.begin(), cpus.end());
  per_cpu.assign(static_cast<size_t>(highest + 1), 0);
  seen.assign(per_cpu.size(), false);
  std::istringstream lines(proc_stat);
  std::string line;
  while (std::getline(lines, line)) {
    // "cpuN user nice system idle iowait irq softirq steal guest guest_nice"; "cpu " is the total.
    if (line.size() < 4 || line.compare(0, 3, "cpu") != 0 || !std::isdigit(static_cast<unsigned char>(line[3])))
      continue;
    std::istringstream fields(line.substr(3));
    int cpu = -1;
    int64_t v[8] = {};
    fields >> cpu;
    for (auto& x : v) fields >> x;
    if (!fields || cpu < 0 || cpu > highest) continue;
    // Busy: user, nice, system, irq, softirq and steal (time the hypervisor gave elsewhere).
    per_cpu[static_cast<size_t>(cpu)] = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    seen[static_cast<size_t>(cpu)] = true;
  }
  int64_t total = 0;
  for (int cpu : cpus) {
    if (cpu < 0 || !seen[static_cast<size_t>(cpu)]) return -1;
    total += per_cpu[static_cast<size_t>(cpu)];
  }
  return cpus.empty() ? -1 : total;
}

int threads_for(double others, int cpus, int max_threads) {
  const long left = std::lround(static_cast<double>(cpus) - others);
  // Nothing to give up: the configured count, even above the cores (the user's choice stands).
  if (left >= cpus) return max_threads;
  return static_cast<int>(std::clamp<long>(left, 1, max_threads));
}

namespace {

std::vector<int> affinity_cpus() {
  std::vector<int> cpus;
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
#endif
  return cpus;
}

std::string read_proc_stat() {
  std::ifstream in("/proc/stat");
  if (!in.is_open()) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

double process_cpu_seconds() {
#if defined(__linux__)
  timespec ts{};
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0) return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
#endif
  return 0;
}

}  // namespace

int usable_cpus() {
  const auto cpus = affinity_cpus();
  if (!cpus.empty()) return static_cast<int>(cpus.size());
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

AdaptiveThreads::AdaptiveThreads(int max_threads)
    : cpus_(affinity_cpus()), max_threads_(max_threads > 0 ? max_threads : torch::get_num_threads()) {
  threads_ = max_threads_;
#if defined(__linux__)
  const long hz = sysconf(_SC_CLK_TCK);
  if (hz > 0) seconds_per_tick_ = 1.0 / static_cast<double>(hz);
#endif
  last_ = sample();
  measuring_ = last_.busy_ticks >= 0;
}

AdaptiveThreads::Sample AdaptiveThreads::sample() const {
  Sample s;
  s.wall = std::chrono::steady_clock::now();
  s.own_cpu_s = process_cpu_seconds();
  s.busy_ticks = busy_ticks(read_proc_stat(), cpus_);
  return s;
}

int AdaptiveThreads::update() {
  if (measuring_ && std::chrono::steady_clock::now() - last_.wall >= min_interval) {
    const auto now = sample();
    const double wall_s = std::chrono::duration<double>(now.wall - last_.wall).count();
    if (now.busy_ticks < 0) {
      measuring_ = false;
    } else {
      const double busy_s = static_cast<double>(now.busy_ticks - last_.busy_ticks) * seconds_per_tick_;
      others_ = std::clamp((busy_s - (now.own_cpu_s - last_.own_cpu_s)) / wall_s, 0.0, static_cast<double>(cpus()));
      threads_ = threads_for(others_, cpus(), max_threads_);
      last_ = now;
    }
  }
  // Per calling thread: OpenMP keeps the count in each thread's own settings.
  if (torch::get_num_threads() != threads_) torch::set_num_threads(threads_);
  return threads_;
}

}  // namespace groupvit
