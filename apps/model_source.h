// What --model names: a model directory, or a Hugging Face hub id (ORG/NAME or NAME) already in the
// local hub cache, resolved without network access to a directory groupvit::load_model reads. A
// snapshot with only pytorch_model.bin (a Python pickle LibTorch cannot read) is converted once by
// scripts/convert_hf.py into groupvit's own cache and reused from there.
// std::filesystem and POSIX only (no LibTorch), so that it builds and is tested on its own.
#pragma once

#include <functional>
#include <string>

#include "batch/source.h"  // UsageError

namespace groupvit_cli {

struct ResolvedModel {
  std::string dir;          // what load_model, the tokenizer and the preprocessor read
  std::string description;  // one line for people: the spec, its revision and commit, where it was found
  std::string repo_id;      // the hub id; empty when the spec was a directory
  std::string commit;       // the snapshot's commit; empty when the spec was a directory
  bool converted = false;   // dir is groupvit's conversion of a pytorch_model.bin snapshot
};

// Receives the lines a person should see while resolving (the newest-snapshot fallback, a
// conversion starting, a wait for another process's conversion). Empty: "groupvit: note: ..." on stderr.
using ResolveNote = std::function<void(const std::string&)>;

// spec:     an existing directory (returned as given), else a hub id looked up in the hub cache
//           ($HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub,
//           ~/.cache/huggingface/hub: the first that is set, as huggingface_hub decides).
// revision: a ref (refs/REV: a branch or tag, e.g. main or refs/pr/3), a full commit hash or a
//           unique prefix of one (4 hex digits or more). Empty: not given, which is "main", or the
//           newest snapshot (said through `note`) when the cache has no refs/main.
// Throws UsageError when nothing is found (naming every place looked at and how to get the
// model) or the spec/revision is malformed; std::runtime_error when a conversion fails.
ResolvedModel resolve_model(const std::string& spec, const std::string& revision = "", const ResolveNote& note = {});

// The pieces, exposed for the tests and for messages.
// huggingface_hub's validate_repo_id: NAME or ORG/NAME, each 1 to 96 of [A-Za-z0-9_.-], starting and
// ending with a letter, digit or '_', no "--" or "..", not ending in ".git".
bool is_hub_id(const std::string& spec);
// The hub cache directory and the variable it came from ("HF_HUB_CACHE", ..., or "default").
struct HubCache {
  std::string dir;
  std::string source;
};
HubCache hub_cache_dir();
// Where pytorch_model.bin snapshots are converted to: $GROUPVIT_CACHE, else $XDG_CACHE_HOME/groupvit,
// else ~/.cache/groupvit.
std::string groupvit_cache_dir();

}  // namespace groupvit_cli
