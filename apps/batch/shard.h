// Which part of the inputs a run takes: --shard I/N, a Slurm array task, a Kubernetes indexed Job
// completion, or all. Deterministic by key, so the parts are disjoint and complete whatever the
// listing order; an array form whose position Slurm's variables cannot tell is refused.
#pragma once

#include <cstdint>
#include <string>

namespace groupvit_cli {

struct Shard {
  int64_t index = 0;
  int64_t count = 1;
  std::string source = "none";  // "--shard", "slurm", "kubernetes" or "none"
  bool contains(const std::string& key) const;
  // "shard-I-of-N" when sharded, else empty: the part of the run's file names.
  std::string part() const;
};

// --shard I/N if given; else the Slurm array task's position (SLURM_ARRAY_TASK_ID less
// SLURM_ARRAY_TASK_MIN, over SLURM_ARRAY_TASK_STEP) among SLURM_ARRAY_TASK_COUNT, for ranges
// (1-7:2, 0-99%10); a list (1,3,5,7) is refused, since no arithmetic on the variables gives a
// list's index; else JOB_COMPLETION_INDEX with `shard_count` (from --shard-count); else the whole
// input. Throws UsageError for malformed values.
Shard resolve_shard(const std::string& shard_option, int64_t shard_count);

// The results files already in `dir` must belong to the same partition as this run: an unsharded
// run into a directory of shard results (a Slurm task resubmitted alone as --array=K has one task,
// so looks unsharded), or shards of another count, would redo and duplicate their images. Throws
// UsageError saying what to pass instead.
void check_partition(const std::string& dir, const Shard& shard);

}  // namespace groupvit_cli
