// Batch command options (see batch_options.h).
#include "batch/batch_options.h"

#include "cli_common.h"

namespace groupvit_cli {

CLI::Option* add_input_option(CLI::App* cmd, BatchOptions& o) {
  return cmd->add_option("-i,--input", o.inputs,
                         "image files, directories (searched recursively by extension), @list.txt files (one path "
                         "a line; @- or - reads the list from standard input) and WebDataset shards (.tar, "
                         ".tar.gz; brace patterns like 'shards-{000..099}.tar')");
}

void add_batch_run_options(CLI::App* cmd, BatchOptions& o) {
  cmd->add_option("--batch-size", o.batch_size, "images per model call")
      ->check(CLI::Range(1, kMaxBatchSize))
      ->capture_default_str();
  cmd->add_option("--workers", o.workers,
                  "decode/preprocess threads (0 or not given: min(4, cores - 1); on the CPU, when the model's "
                  "threads already use every core, min(4, cores), decoding while the model waits for a batch)")
      ->check(CLI::Range(0, 256));
  cmd->add_option("--writers", o.writers,
                  "threads that encode and write a batch's outputs while the model runs the next batch; 0: the "
                  "model's thread writes between batches (default: as many as --workers on CUDA, 0 on the CPU, "
                  "whose cores the model's own threads already use)")
      ->check(CLI::Range(0, 256));
  cmd->add_flag("--resume", o.resume, "skip images already recorded in results.jsonl with their outputs present");
  cmd->add_option("--shard", o.shard,
                  "I/N: process the I-th of N deterministic parts of the inputs (default: from a Slurm array "
                  "range's SLURM_ARRAY_TASK_ID/_MIN/_STEP/_COUNT, or JOB_COMPLETION_INDEX with --shard-count)");
  cmd->add_option("--shard-count", o.shard_count, "number of shards of a Kubernetes indexed Job")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  add_progress_options(cmd, o.progress_interval, o.quiet);
  cmd->add_option("--extensions", o.extensions,
                  "image extensions searched in directories and shards (default: "
                  "jpg,jpeg,png,bmp,tif,tiff,webp)");
}

BatchSettings batch_settings(const BatchOptions& o, const std::string& tool, bool sharded) {
  BatchSettings s;
  s.tool = tool;
  s.inputs = o.inputs;
  s.extensions = image_extensions(o.extensions);
  s.output = o.output;
  if (sharded) s.shard = resolve_shard(o.shard, o.shard_count);
  s.resume = o.resume;
  s.batch_size = o.batch_size;
  s.workers = o.workers;
  s.writers = o.writers;
  s.progress_interval = o.progress_interval;
  s.quiet = o.quiet;
  return s;
}

}  // namespace groupvit_cli
