// AdaptiveThreads (groupvit/runtime/cpu_share.h): the /proc/stat arithmetic, the rule, and the
// policy against a real neighbour, a busy child process pinned to one of this process's CPUs.
// Also the batch engine's ModelTurn (apps/batch/model_turn.h): workers pause while the model runs.
// CTest runs this suite alone (RUN_SERIAL): the live cases need the other cores quiet.
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "batch/model_turn.h"
#include "groupvit/runtime/cpu_share.h"

namespace {

const char* kStat =
    "cpu  900 10 300 5000 20 5 7 3 0 0\n"
    "cpu0 100 1 30 2000 10 2 3 1 0 0\n"
    "cpu1 200 2 40 1000 5 1 1 1 0 0\n"
    "cpu3 600 7 230 2000 5 2 3 1 0 0\n"
    "intr 12345 0 0\n"
    "ctxt 999\n";

TEST_CASE("busy_ticks sums user, nice, system, irq, softirq and steal of the named CPUs", "[cpu_share]") {
  // cpu0: 100+1+30+2+3+1; cpu1: 200+2+40+1+1+1; idle and iowait are not busy, guest is in user.
  CHECK(groupvit::busy_ticks(kStat, {0}) == 137);
  CHECK(groupvit::busy_ticks(kStat, {1}) == 245);
  CHECK(groupvit::busy_ticks(kStat, {0, 1}) == 137 + 245);
  CHECK(groupvit::busy_ticks(kStat, {3}) == 843);
  // A CPU without a line (offline, or outside this text), no CPUs, or no text: no measurement.
  CHECK(groupvit::busy_ticks(kStat, {2}) == -1);
  CHECK(groupvit::busy_ticks(kStat, {}) == -1);
  CHECK(groupvit::busy_ticks("", {0}) == -1);
  CHECK(groupvit::busy_ticks("cpu0 1 2\n", {0}) == -1);
}

TEST_CASE("threads_for gives the cores the neighbours left, and the configured count when they left all",
          "[cpu_share]") {
  CHECK(groupvit::threads_for(0.0, 2, 2) == 2);
  CHECK(groupvit::threads_for(0.3, 2, 2) == 2);   // a daemon's blip is not a neighbour
  CHECK(groupvit::threads_for(0.67, 2, 2) == 1);  // a busy loop sharing the cores with two spinning threads
  CHECK(groupvit::threads_for(1.0, 2, 2) == 1);
  CHECK(groupvit::threads_for(2.0, 2, 2) == 1);  // never fewer than one
  CHECK(groupvit::threads_for(0.0, 2, 8) == 8);  // --threads 8 on 2 quiet cores stays the user's choice
  CHECK(groupvit::threads_for(1.0, 2, 8) == 1);
  CHECK(groupvit::threads_for(10.0, 16, 4) == 4);  // 6 cores left: the 4 configured
  CHECK(groupvit::threads_for(13.0, 16, 4) == 3);
}

// A child process that spins on `cpu` until killed.
pid_t start_busy_child(int cpu) {
  const pid_t pid = fork();
  if (pid == 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
    volatile unsigned long x = 0;
    for (;;) x = x + 1;
  }
  return pid;
}

void stop_child(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

void wait_past_interval() {
  std::this_thread::sleep_for(groupvit::AdaptiveThreads::min_interval + std::chrono::milliseconds(300));
}

TEST_CASE("AdaptiveThreads gives up a core to a busy neighbour and takes it back when it leaves", "[cpu_share]") {
  groupvit::AdaptiveThreads adaptive;
  REQUIRE(adaptive.measuring());
  const int cpus = adaptive.cpus();
  const int max = adaptive.max_threads();
  REQUIRE(cpus >= 1);
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  int first_cpu = 0;
  while (!CPU_ISSET(first_cpu, &set)) ++first_cpu;

  const pid_t child = start_busy_child(first_cpu);
  REQUIRE(child > 0);
  wait_past_interval();
  const int with_neighbour = adaptive.update();
  const double others = adaptive.others();
  stop_child(child);
  CHECK(others > 0.7);
  CHECK(others <= cpus);
  CHECK(with_neighbour == groupvit::threads_for(others, cpus, max));
  if (cpus >= 2 && max >= cpus) CHECK(with_neighbour <= cpus - 1);
  CHECK(torch::get_num_threads() == with_neighbour);

  wait_past_interval();
  CHECK(adaptive.update() == max);
  CHECK(adaptive.others() < 0.5);
  CHECK(torch::get_num_threads() == max);
}

TEST_CASE("AdaptiveThreads does not count this process's own threads as a neighbour", "[cpu_share]") {
  groupvit::AdaptiveThreads adaptive;
  std::atomic<bool> stop{false};
  std::thread spinner([&] {
    volatile unsigned long x = 0;
    while (!stop.load(std::memory_order_relaxed)) x = x + 1;
  });
  wait_past_interval();
  const int threads = adaptive.update();
  stop = true;
  spinner.join();
  CHECK(adaptive.others() < 0.5);
  CHECK(threads == adaptive.max_threads());
}

TEST_CASE("AdaptiveThreads keeps its choice over intervals too short to measure", "[cpu_share]") {
  groupvit::AdaptiveThreads adaptive(1);
  CHECK(adaptive.max_threads() == 1);
  CHECK(adaptive.update() == 1);  // right after the start: no measurement yet, the configured count
  CHECK(adaptive.others() == 0.0);
  CHECK(torch::get_num_threads() == 1);
}

TEST_CASE("usable_cpus counts the affinity mask", "[cpu_share]") {
  cpu_set_t set;
  CPU_ZERO(&set);
  REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
  CHECK(groupvit::usable_cpus() == CPU_COUNT(&set));
}

TEST_CASE("ModelTurn: a worker waits while the model runs and goes on when it ends or on stop", "[cpu_share]") {
  using namespace std::chrono_literals;
  for (const bool by_stop : {false, true}) {
    groupvit_cli::ModelTurn turn(true);
    turn.wait_for_workers_turn();  // the model is not running: no wait
    turn.model_starts();
    std::atomic<bool> passed{false};
    std::thread worker([&] {
      turn.wait_for_workers_turn();
      passed = true;
    });
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(passed.load());  // still the model's turn
    if (by_stop)
      turn.stop();
    else
      turn.model_ends();
    worker.join();
    CHECK(passed.load());
  }
}

TEST_CASE("ModelTurn disabled never makes a worker wait", "[cpu_share]") {
  groupvit_cli::ModelTurn turn(false);
  CHECK_FALSE(turn.enabled());
  {
    const groupvit_cli::ModelTurnScope scope(turn);
    turn.wait_for_workers_turn();  // returns at once although the model "runs"
  }
  SUCCEED("no wait");
}

}  // namespace
