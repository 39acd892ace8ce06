// Streaming input enumeration and key checks (see source.h). POSIX directory reading: no
// std::filesystem (LibTorch exports a broken copy of some of its symbols).
#include "batch/source.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <unordered_set>
#include <utility>

#include "batch/webdataset.h"

namespace groupvit_cli {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trimmed(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
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

// A WebDataset shard's name in keys: its file name less .tar, .tar.gz or .tgz.
std::string shard_name(const std::string& path) {
  std::string name = base_name(path);
  for (const char* ext : {".tar.gz", ".tgz", ".tar"}) {
    const std::string e = ext;
    if (name.size() > e.size() && lower(name.substr(name.size() - e.size())) == e)
      return name.substr(0, name.size() - e.size());
  }
  return name;
}

struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator<(const FileId& o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
  bool operator==(const FileId& o) const { return dev == o.dev && ino == o.ino; }
};

enum class Kind { kMissing, kFile, kDirectory };

Kind kind_of(const std::string& path, FileId* id = nullptr) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Kind::kMissing;
  if (id) *id = {st.st_dev, st.st_ino};
  return S_ISDIR(st.st_mode) ? Kind::kDirectory : Kind::kFile;
}

std::string real_path(const std::string& path) {
  char buffer[PATH_MAX];
  return ::realpath(path.c_str(), buffer) ? std::string(buffer) : std::string();
}

// A shard sample's image member: the first of the image extensions in default_image_extensions'
// order of preference that the sample has.
const std::string* image_member(const WebDatasetSample& sample, const std::set<std::string>& extensions,
                                std::string* ext) {
  static const std::vector<std::string> preferred = {"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff"};
  for (const auto& e : preferred) {
    const auto it = sample.members.find(e);
    if (it != sample.members.end() && extensions.count(e)) return *ext = e, &it->second;
  }
  for (const auto& [e, bytes] : sample.members)
    if (extensions.count(e)) return *ext = e, &bytes;
  return nullptr;
}

// One for_each pass: the options and the directories walked so far.
class Walker {
 public:
  Walker(const SourceOptions& options, const std::function<bool(const InputItem&)>& visit,
         const std::vector<std::string>* stdin_lines)
      : o_(options), visit_(visit), stdin_lines_(stdin_lines) {
    if (!o_.exclude_dir.empty() && kind_of(o_.exclude_dir, &exclude_id_) == Kind::kDirectory) {
      has_exclude_ = true;
      exclude_real_ = real_path(o_.exclude_dir);
    }
  }

  // Returns false when the visitor asked to stop.
  bool spec(const std::string& spec, bool from_list);

 private:
  bool list(const std::vector<std::string>& lines);
  bool walk(const std::string& dir, const std::string& key_prefix, int depth);
  bool shard(const std::string& path);
  bool file(const std::string& path, const std::string& key);
  bool excluded_dir(const FileId& id) const { return has_exclude_ && id == exclude_id_; }
  // Inside the output tree (an explicitly named file, or a walk's root).
  bool inside_output(const std::string& path) const {
    if (!has_exclude_ || exclude_real_.empty()) return false;
    const auto real = real_path(path);
    return real == exclude_real_ || real.rfind(exclude_real_ + "/", 0) == 0;
  }
  void warn(const std::string& text) const {
    if (o_.warn) o_.warn(text);
  }

  const SourceOptions& o_;
  const std::function<bool(const InputItem&)>& visit_;
  const std::vector<std::string>* stdin_lines_;
  bool has_exclude_ = false;
  FileId exclude_id_;
  std::string exclude_real_;
  std::set<FileId> walked_;  // each real directory once: symlink loops end here
};

bool Walker::list(const std::vector<std::string>& lines) {
  for (const auto& raw : lines) {
    const auto line = trimmed(raw);
    if (line.empty() || line[0] == '#') continue;
    if (!spec(line, true)) return false;
  }
  return true;
}

bool Walker::spec(const std::string& spec, bool from_list) {
  if (!from_list && (spec == "-" || spec == "@-")) return list(*stdin_lines_);
  if (!from_list && !spec.empty() && spec[0] == '@') {
    const std::string path = spec.substr(1);
    std::ifstream in(path);
    if (!in) throw UsageError("cannot read list file " + path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return list(lines);
  }
  FileId id;
  switch (kind_of(spec, &id)) {
    case Kind::kDirectory:
      if (inside_output(spec)) {
        warn("input " + spec + " is inside --output " + o_.exclude_dir + ": skipped (outputs are never inputs)");
        return true;
      }
      walked_.insert(id);
      return walk(spec, from_list ? safe_key(spec) : "", 0);
    case Kind::kFile:
      if (is_webdataset_shard(spec)) return shard(spec);
      if (inside_output(spec)) return true;
      return file(spec, from_list ? safe_key(spec) : base_name(spec));
    case Kind::kMissing:
      break;
  }
  if (spec.find('{') != std::string::npos) {
    std::vector<std::string> expanded;
    try {
      expanded = expand_braces(spec);
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("input ") + e.what());
    }
    if (expanded.size() > 1 || (expanded.size() == 1 && expanded[0] != spec)) {
      for (const auto& s : expanded)
        if (!this->spec(s, from_list)) return false;
      return true;
    }
  }
  if (from_list) return file(spec, safe_key(spec));  // reported as a broken input, not a usage error
  throw UsageError("input " + spec + " does not exist");
}

bool Walker::walk(const std::string& dir, const std::string& key_prefix, int depth) {
  if (depth > 256) throw UsageError("directory nesting deeper than 256 levels at " + dir);
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
    FileId id;
    const Kind k = kind_of(path, &id);
    if (k == Kind::kDirectory) {
      if (excluded_dir(id)) continue;  // the run's own outputs
      if (!walked_.insert(id).second) {
        warn("skipped " + path + ": the same directory as one already walked (a symlink loop?)");
        continue;
      }
      if (!walk(path, key, depth + 1)) return false;
    } else if (k == Kind::kFile && has_extension(name, o_.extensions)) {
      if (!file(path, key)) return false;
    }
  }
  return true;
}

bool Walker::file(const std::string& path, const std::string& key) {
  InputItem item;
  item.path = path;
  item.key = key;
  return visit_(item);
}

bool Walker::shard(const std::string& path) {
  const std::string name = shard_name(path);
  bool go_on = true;
  const auto on_error = [&](const std::string& where, const std::string& message) {
    if (!go_on) return;
    InputItem item;
    item.path = where.empty() ? path : path + "#" + where;
    item.key = name + "/" + (where.empty() ? std::string("(archive)") : where);
    item.error = "WebDataset shard " + path + (where.empty() ? "" : " member " + where) + ": " + message;
    go_on = visit_(item);
  };
  for_each_sample(
      path, o_.headers_only,
      [&](WebDatasetSample& sample) {
        InputItem item;
        item.key = name + "/" + sample.key;
        std::string ext;
        if (const std::string* bytes = image_member(sample, o_.extensions, &ext)) {
          item.path = path + "#" + sample.key + "." + ext;
          item.data = *bytes;
          if (!o_.headers_only && item.data.empty()) item.error = "empty image member " + sample.key + "." + ext;
        } else {
          std::string members;
          for (const auto& m : sample.members) members += (members.empty() ? "" : ", ") + m.first;
          item.path = path + "#" + sample.key;
          item.error = "sample " + sample.key + " of " + path + " has no image member (it has: " + members + ")";
        }
        go_on = visit_(item);
        return go_on;
      },
      on_error);
  return go_on;
}

}  // namespace

const std::set<std::string>& default_image_extensions() {
  static const std::set<std::string> ext = {"jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"};
  return ext;
}

std::set<std::string> image_extensions(const std::string& list) {
  if (list.empty()) return default_image_extensions();
  std::set<std::string> extensions;
  std::stringstream ss(list);
  std::string e;
  while (std::getline(ss, e, ','))
    if (!trimmed(e).empty()) extensions.insert(lower(trimmed(e)[0] == '.' ? trimmed(e).substr(1) : trimmed(e)));
  return extensions;
}

InputSource::InputSource(std::vector<std::string> specs) : specs_(std::move(specs)) {
  if (std::any_of(specs_.begin(), specs_.end(), [](const std::string& s) { return s == "-" || s == "@-"; })) {
    auto lines = std::make_shared<std::vector<std::string>>();
    for (std::string line; std::getline(std::cin, line);) lines->push_back(line);
    stdin_lines_ = lines;
  }
}

void InputSource::for_each(const SourceOptions& options, const std::function<bool(const InputItem&)>& visit) const {
  Walker walker(options, visit, stdin_lines_.get());
  for (const auto& spec : specs_)
    if (!walker.spec(spec, false)) return;
}

uint64_t stable_hash(const std::string& text) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // MurmurHash3's finaliser: FNV-1a's low bits depend only on the low bits of each byte, so without
  // it, shard = h mod 4 would put img0.png, img4.png and img8.png in one shard.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 33);
}

KeyCheck::KeyCheck(const InputSource& source, SourceOptions options,
                   const std::function<void(const InputItem&)>& also) {
  options.headers_only = true;
  // First pass: 8-byte hashes only, so that millions of inputs fit; a repeated hash is looked at
  // again in a second pass, which keeps only the inputs of those keys.
  std::unordered_set<uint64_t> hashes, repeated;
  source.for_each(options, [&](const InputItem& item) {
    if (item.error.empty()) {
      const auto h = stable_hash(item.key);
      if (!hashes.insert(h).second) repeated.insert(h);
    }
    if (also) also(item);
    return true;
  });
  if (repeated.empty()) return;
  options.warn = nullptr;                                 // said once already
  std::map<std::string, std::vector<std::string>> paths;  // key -> the inputs that have it
  source.for_each(options, [&](const InputItem& item) {
    if (item.error.empty() && repeated.count(stable_hash(item.key))) paths[item.key].push_back(item.path);
    return true;
  });
  for (const auto& [key, list] : paths) {
    if (list.size() < 2) continue;  // another key with the same hash
    FileId first, other;
    const bool first_is_file = list[0].find('#') == std::string::npos && kind_of(list[0], &first) == Kind::kFile;
    for (size_t i = 1; i < list.size(); ++i) {
      const bool same = first_is_file && list[i].find('#') == std::string::npos &&
                        kind_of(list[i], &other) == Kind::kFile && other == first;
      if (!same)
        throw UsageError("inputs " + list[0] + " and " + list[i] + " have the same key '" + key +
                         "': their outputs would overwrite each other. Give their directories as inputs (keys "
                         "are paths inside an --input directory), list them with distinct paths in an @list file, "
                         "or rename one");
    }
    duplicated_.insert(key);
  }
}

bool KeyCheck::first_occurrence(const InputItem& item) {
  if (duplicated_.empty() || !item.error.empty() || !duplicated_.count(item.key)) return true;
  return seen_.insert(item.key).second;
}

}  // namespace groupvit_cli
