// Input enumeration for batch runs: files, directories (recursive, by extension, sorted) and
// list files (@list.txt), streamed one path at a time; deterministic sharding by path key.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace groupvit_cli {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct InputItem {
  std::string path;  // as it will be opened
  std::string key;   // output name relative to --output: the path inside its --input directory, the
                     // file name of a file argument, or a list entry as written (leading / and ../ removed)
};

// Image extensions looked for inside directories (lower case, without the dot).
const std::set<std::string>& default_image_extensions();

// Calls `visit` for every input in a deterministic order until it returns false. Directories are
// walked recursively in byte order of names; files given explicitly are taken whatever their
// extension. Throws UsageError for a path that does not exist or an unreadable list file.
void for_each_input(const std::vector<std::string>& specs, const std::set<std::string>& extensions,
                    const std::function<bool(const InputItem&)>& visit);

struct Shard {
  int64_t index = 0;
  int64_t count = 1;
  std::string source = "none";  // "--shard", "slurm", "kubernetes" or "none"
  bool contains(const std::string& key) const;
};

// --shard I/N if given; else SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (minus
// SLURM_ARRAY_TASK_MIN when set); else JOB_COMPLETION_INDEX with `shard_count` (from
// --shard-count); else the whole input. Throws UsageError for malformed values.
Shard resolve_shard(const std::string& shard_option, int64_t shard_count);

// FNV-1a of the key: which shard an input belongs to does not depend on the listing order.
uint64_t stable_hash(const std::string& text);

}  // namespace groupvit_cli
