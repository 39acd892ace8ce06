// Shard resolution (see shard.h).
#include "batch/shard.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <regex>
#include <vector>

#include "batch/source.h"

namespace groupvit_cli {

namespace {

int64_t parse_int(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno) throw UsageError(what + ": '" + text + "' is not an integer");
  return v;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int64_t env_int(const char* name, int64_t fallback) { return env(name) ? parse_int(env(name), name) : fallback; }

Shard slurm_shard() {
  const int64_t id = env_int("SLURM_ARRAY_TASK_ID", 0), count = env_int("SLURM_ARRAY_TASK_COUNT", 1);
  const int64_t min = env_int("SLURM_ARRAY_TASK_MIN", 0), max = env_int("SLURM_ARRAY_TASK_MAX", min + count - 1);
  const int64_t step = std::max<int64_t>(1, env_int("SLURM_ARRAY_TASK_STEP", 1));
  // A range MIN-MAX:STEP has (MAX-MIN)/STEP+1 tasks; a list usually does not (and then its STEP is 1).
  const bool range = (max - min) % step == 0 && (max - min) / step + 1 == count && (id - min) % step == 0;
  if (!range)
    throw UsageError("Slurm array task " + std::to_string(id) + " belongs to a list-form array (" +
                     std::to_string(count) + " tasks between " + std::to_string(min) + " and " + std::to_string(max) +
                     "): Slurm's variables cannot tell this task's position in a list, so its shard is unknown. "
                     "Submit a range (--array=0-" +
                     std::to_string(count - 1) +
                     ", a step such as 1-7:2 and a throttle %N are fine), or pass --shard I/" + std::to_string(count) +
                     " yourself (e.g. from a case statement on SLURM_ARRAY_TASK_ID)");
  Shard s;
  s.index = (id - min) / step;
  s.count = count;
  s.source = "slurm";
  return s;
}

}  // namespace

bool Shard::contains(const std::string& key) const {
  return count <= 1 || static_cast<int64_t>(stable_hash(key) % static_cast<uint64_t>(count)) == index;
}

std::string Shard::part() const {
  return count > 1 ? "shard-" + std::to_string(index) + "-of-" + std::to_string(count) : "";
}

Shard resolve_shard(const std::string& shard_option, int64_t shard_count) {
  Shard s;
  if (!shard_option.empty()) {
    const auto slash = shard_option.find('/');
    if (slash == std::string::npos) throw UsageError("--shard expects I/N, e.g. 0/4; got '" + shard_option + "'");
    s.index = parse_int(shard_option.substr(0, slash), "--shard index");
    s.count = parse_int(shard_option.substr(slash + 1), "--shard count");
    s.source = "--shard";
  } else if (env("SLURM_ARRAY_TASK_ID") && env("SLURM_ARRAY_TASK_COUNT")) {
    s = slurm_shard();
  } else if (env("JOB_COMPLETION_INDEX")) {
    if (shard_count < 1)
      throw UsageError(
          "JOB_COMPLETION_INDEX is set (Kubernetes indexed Job): give the Job's completions as "
          "--shard-count N");
    s.index = parse_int(env("JOB_COMPLETION_INDEX"), "JOB_COMPLETION_INDEX");
    s.count = shard_count;
    s.source = "kubernetes";
  } else if (shard_count > 1) {
    throw UsageError("--shard-count needs JOB_COMPLETION_INDEX in the environment, or use --shard I/N");
  }
  if (s.count < 1 || s.index < 0 || s.index >= s.count)
    throw UsageError("shard " + std::to_string(s.index) + "/" + std::to_string(s.count) + " (from " + s.source +
                     ") is out of range: need 0 <= I < N");
  return s;
}

void check_partition(const std::string& dir, const Shard& shard) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;  // not there yet: nothing to clash with
  static const std::regex results_name(R"(results(\.shard-(\d+)-of-(\d+))?\.jsonl)");
  std::vector<std::string> others;
  int64_t other_count = 0;
  while (const dirent* e = ::readdir(d)) {
    std::smatch m;
    const std::string name = e->d_name;
    if (!std::regex_match(name, m, results_name)) continue;
    struct stat st {};
    if (::stat((dir + "/" + name).c_str(), &st) != 0 || st.st_size == 0) continue;  // nothing recorded
    const int64_t count = m[1].matched ? std::stoll(m[3].str()) : 1;
    if (count != shard.count) {
      others.push_back(name);
      other_count = count;
    }
  }
  ::closedir(d);
  if (others.empty()) return;
  std::sort(others.begin(), others.end());
  const std::string found =
      others.front() + (others.size() > 1 ? " and " + std::to_string(others.size() - 1) + " more" : "");
  const std::string how = shard.count == 1 ? "an unsharded run" : "shard " + shard.part();
  std::string fix = other_count > 1 ? "to redo part of it pass --shard I/" + std::to_string(other_count) +
                                          " --resume (a Slurm task resubmitted alone as --array=K has one task, so "
                                          "it looks unsharded: give --shard K/" +
                                          std::to_string(other_count) + ")"
                                    : "to go on with it run unsharded with --resume";
  throw UsageError("--output " + dir + " holds the results of a run " +
                   (other_count > 1 ? "in " + std::to_string(other_count) + " shards" : std::string("unsharded")) +
                   " (" + found + "); this is " + how + ", which would process their images again. " + fix +
                   ", or give another --output");
}

}  // namespace groupvit_cli
