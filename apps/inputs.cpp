// Streaming input enumeration and sharding (see inputs.h). POSIX directory reading: no
// std::filesystem (LibTorch exports a broken copy of some of its symbols).
#include "inputs.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>

namespace groupvit_cli {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool has_extension(const std::string& name, const std::set<std::string>& extensions) {
  const auto dot = name.rfind('.');
  return dot != std::string::npos && extensions.count(lower(name.substr(dot + 1))) > 0;
}

std::string base_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// A relative, normalised form of a path for use under the output directory.
std::string safe_key(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const auto part = path.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string key;
  for (const auto& p : parts) key += (key.empty() ? "" : "/") + p;
  return key;
}

enum class Kind { kMissing, kFile, kDirectory };

Kind kind_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Kind::kMissing;
  return S_ISDIR(st.st_mode) ? Kind::kDirectory : Kind::kFile;
}

// Returns false when the visitor asked to stop.
bool walk(const std::string& dir, const std::string& key_prefix, const std::set<std::string>& extensions,
          const std::function<bool(const InputItem&)>& visit, int depth) {
  if (depth > 64) throw UsageError("directory nesting deeper than 64 levels (a symlink loop?) at " + dir);
  DIR* d = ::opendir(dir.c_str());
  if (!d) throw UsageError("cannot read directory " + dir);
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string path = dir + (dir.back() == '/' ? "" : "/") + name;
    const std::string key = key_prefix.empty() ? name : key_prefix + "/" + name;
    const Kind k = kind_of(path);
    if (k == Kind::kDirectory) {
      if (!walk(path, key, extensions, visit, depth + 1)) return false;
    } else if (k == Kind::kFile && has_extension(name, extensions)) {
      if (!visit({path, key})) return false;
    }
  }
  return true;
}

bool visit_spec(const std::string& spec, const std::set<std::string>& extensions,
                const std::function<bool(const InputItem&)>& visit, bool from_list) {
  if (!from_list && !spec.empty() && spec[0] == '@') {
    const std::string list = spec.substr(1);
    std::ifstream in(list);
    if (!in) throw UsageError("cannot read list file " + list);
    std::string line;
    while (std::getline(in, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      if (!visit_spec(line, extensions, visit, true)) return false;
    }
    return true;
  }
  switch (kind_of(spec)) {
    case Kind::kDirectory:
      return walk(spec, from_list ? safe_key(spec) : "", extensions, visit, 0);
    case Kind::kFile:
      return visit({spec, from_list ? safe_key(spec) : base_name(spec)});
    case Kind::kMissing:
      break;
  }
  if (from_list) return visit({spec, safe_key(spec)});  // reported as a broken input, not a usage error
  throw UsageError("input " + spec + " does not exist");
}

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

}  // namespace

const std::set<std::string>& default_image_extensions() {
  static const std::set<std::string> ext = {"jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"};
  return ext;
}

void for_each_input(const std::vector<std::string>& specs, const std::set<std::string>& extensions,
                    const std::function<bool(const InputItem&)>& visit) {
  for (const auto& spec : specs)
    if (!visit_spec(spec, extensions, visit, false)) return;
}

uint64_t stable_hash(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

bool Shard::contains(const std::string& key) const {
  return count <= 1 || static_cast<int64_t>(stable_hash(key) % static_cast<uint64_t>(count)) == index;
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
    s.index = parse_int(env("SLURM_ARRAY_TASK_ID"), "SLURM_ARRAY_TASK_ID");
    if (env("SLURM_ARRAY_TASK_MIN")) s.index -= parse_int(env("SLURM_ARRAY_TASK_MIN"), "SLURM_ARRAY_TASK_MIN");
    s.count = parse_int(env("SLURM_ARRAY_TASK_COUNT"), "SLURM_ARRAY_TASK_COUNT");
    s.source = "slurm";
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

}  // namespace groupvit_cli
