// The source of a batch run: image files, directories (walked recursively by extension, in byte
// order of names, each real directory once), @list files, "-" (a list on standard input) and
// WebDataset shards (.tar, .tar.gz, .tgz; brace patterns such as shard-{000..099}.tar), streamed
// one input at a time. Every input gets a key, its output name relative to --output; keys are
// unique by construction or the run is refused before any work (KeyCheck).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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
  std::string path;   // as it will be opened; for a shard member "SHARD.tar#MEMBER"
  std::string key;    // output name relative to --output: the path inside its --input directory, the
                      // file name of a file argument, a list entry normalised (leading / and ../
                      // removed), or SHARD/KEY for a WebDataset sample (SHARD: the file name less .tar)
  std::string data;   // a shard member's encoded bytes (empty: read `path`)
  std::string extra;  // what the command attached (eval: the label map's path)
  std::string error;  // already known to be broken (a missing list entry, a damaged shard)
  uint64_t seq = 0;   // position in the listing (the engine numbers them)
};

// Image extensions looked for inside directories and shards (lower case, without the dot).
const std::set<std::string>& default_image_extensions();
// --extensions (comma-separated, the dot optional), or the default set when it is empty.
std::set<std::string> image_extensions(const std::string& list);

struct SourceOptions {
  std::set<std::string> extensions = default_image_extensions();
  // A directory never walked (the run's --output): a second run does not take the first run's
  // outputs as inputs. Empty: none.
  std::string exclude_dir;
  // Shards are read for their keys only (no image bytes): the counting pass.
  bool headers_only = false;
  // Something the user should know that does not stop the run (a symlink loop skipped).
  std::function<void(const std::string&)> warn;
};

// The inputs of a run. Standard input ("-" or "@-") is read once, when the source is made, so that
// the counting pass and the streaming pass see the same list.
class InputSource {
 public:
  explicit InputSource(std::vector<std::string> specs);
  // Calls `visit` for every input in a deterministic order until it returns false. Throws
  // UsageError for a path that does not exist or an unreadable list file.
  void for_each(const SourceOptions& options, const std::function<bool(const InputItem&)>& visit) const;
  bool empty() const { return specs_.empty(); }

 private:
  std::vector<std::string> specs_;
  std::shared_ptr<const std::vector<std::string>> stdin_lines_;
};

// Refuses two different inputs with one key (their outputs would overwrite each other), naming
// both; the same file named twice (x.png and a/../x.png) is taken once. Memory: 8 bytes a key.
class KeyCheck {
 public:
  // One pass over the source (headers only), which also shows each input to `also` (the
  // counting for the progress bar); throws UsageError on a collision.
  KeyCheck(const InputSource& source, SourceOptions options,
           const std::function<void(const InputItem&)>& also = nullptr);
  // False for a later occurrence of a file already taken under this key.
  bool first_occurrence(const InputItem& item);

 private:
  std::set<std::string> duplicated_;  // keys named twice for the same file
  std::set<std::string> seen_;        // of those, the ones taken already
};

// FNV-1a of the key, finalised (MurmurHash3's fmix64): which shard an input belongs to does not
// depend on the listing order, and shards of a power-of-two count get even shares.
uint64_t stable_hash(const std::string& text);

}  // namespace groupvit_cli
