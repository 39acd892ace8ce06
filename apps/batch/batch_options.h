// The options of every batch command (segment, embed, similarity): inputs, output directory,
// batching, threads, --resume and shards, as one struct and one set of flags, turned into the
// engine's settings.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "batch/batch_run.h"

namespace groupvit_cli {

struct BatchOptions {
  std::vector<std::string> inputs;
  std::string output;
  int batch_size = 4;
  int workers = 0;
  int writers = -1;  // -1: by device
  bool resume = false;
  std::string shard;
  int64_t shard_count = 0;
  double progress_interval = 30;
  bool quiet = false;
  std::string extensions;
};

// --input (the help says what the inputs are for).
CLI::Option* add_input_option(CLI::App* cmd, BatchOptions& o);  // -i/--input
// --batch-size's upper bound: a batch is held decoded in memory (and on the device) at once.
constexpr int kMaxBatchSize = 4096;
// --batch-size, --workers, --writers, --resume, --shard, --shard-count, --progress-interval, --quiet
// and --extensions.
void add_batch_run_options(CLI::App* cmd, BatchOptions& o);
// The engine's settings of these options (the shard resolved: a bad --shard or array fails here).
// Unsharded (similarity, embed into one file): the whole input, whatever a Slurm or Kubernetes
// environment says, since such a run writes no per-shard files that could be merged.
BatchSettings batch_settings(const BatchOptions& o, const std::string& tool, bool sharded = true);

}  // namespace groupvit_cli
