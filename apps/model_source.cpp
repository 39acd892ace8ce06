// --model resolution (see model_source.h). The hub cache is read the way huggingface_hub reads it
// offline (constants.py for the cache's location, _snapshot_download / try_to_load_from_cache for
// refs/ and snapshots/), so that a model `hf download` fetched is found where Python would find it.
#include "model_source.h"

#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

extern char** environ;

namespace groupvit_cli {

namespace fs = std::filesystem;

namespace {

constexpr const char* kConfig = "config.json";
constexpr const char* kSafetensors = "model.safetensors";
constexpr const char* kArchive = "groupvit_weights.pt";  // what convert_hf.py writes besides safetensors
constexpr const char* kPickle = "pytorch_model.bin";
constexpr const char* kManifest = "checksums.sha256";
constexpr size_t kMinPrefix = 4;  // git's shortest abbreviation

// Set and non-empty. huggingface_hub takes a set-but-empty variable literally (a cache in the
// current directory); an empty value is far more often an accident, so it counts as unset here.
std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::string home_dir() {
  if (const char* h = std::getenv("HOME")) return h;  // as os.path.expanduser: HOME wins when set
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(::getuid(), &pw, buf.data(), buf.size(), &found) == 0 && found) return found->pw_dir;
  return "/";
}

// ASCII only, whatever the locale: hub ids are ASCII (validate_repo_id uses re.ASCII).
bool is_word(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

// os.path.expanduser: "~" and "~/x" from HOME, "~user/x" from the password database; unknown users
// leave the path as it is.
std::string expand_user(const std::string& path) {
  if (path.empty() || path[0] != '~') return path;
  const auto slash = path.find('/', 1);
  const auto name = path.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
  std::string home;
  if (name.empty()) {
    home = home_dir();
  } else {
    struct passwd pw {};
    struct passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found) return path;
    home = found->pw_dir;
  }
  while (home.size() > 1 && home.back() == '/') home.pop_back();
  if (home == "/") home.clear();
  const auto rest = slash == std::string::npos ? std::string() : path.substr(slash);
  return (home + rest).empty() ? "/" : home + rest;
}

// os.path.expandvars (posixpath): $NAME and ${NAME} replaced when NAME is set, left as written otherwise.
std::string expand_vars(const std::string& path) {
  std::string out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] != '$') {
      out += path[i++];
      continue;
    }
    size_t end = i + 1;
    std::string name;
    if (end < path.size() && path[end] == '{') {
      const auto close = path.find('}', end + 1);
      if (close == std::string::npos) {
        out += path[i++];
        continue;
      }
      name = path.substr(end + 1, close - end - 1);
      end = close + 1;
    } else {
      while (end < path.size() && is_word(path[end])) ++end;
      name = path.substr(i + 1, end - i - 1);
    }
    const char* value = name.empty() ? nullptr : std::getenv(name.c_str());
    if (value == nullptr) {
      out += path.substr(i, end - i);
    } else {
      out += value;
    }
    i = end;
  }
  return out;
}

std::string expand(const std::string& path) { return expand_vars(expand_user(path)); }

bool is_id_part(const std::string& part) {
  if (part.empty() || part.size() > 96 || !is_word(part.front()) || !is_word(part.back())) return false;
  return std::all_of(part.begin(), part.end(), [](char c) { return is_word(c) || c == '-' || c == '.'; });
}

bool is_hex(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string short_commit(const std::string& commit) { return commit.substr(0, 12); }

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// A ref names a file under refs/ (huggingface_hub writes refs/pr/3 for revision "refs/pr/3"): its
// path parts must stay inside refs/.
bool is_safe_relative(const std::string& rev) {
  if (rev.empty() || rev.front() == '/' || rev.back() == '/') return false;
  std::stringstream parts(rev);
  for (std::string part; std::getline(parts, part, '/');)
    if (part.empty() || part == "." || part == "..") return false;
  return rev.find('\0') == std::string::npos;
}

// A snapshot folder name: one path component (what a ref file holds becomes one).
bool is_component(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool is_file(const fs::path& p) {  // through symlinks: a snapshot file is a link into ../../blobs
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_dangling_link(const fs::path& p) {
  std::error_code ec;
  return fs::is_symlink(fs::symlink_status(p, ec)) && !fs::exists(p, ec);
}

std::string read_ref(const fs::path& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // huggingface_hub writes the hash without a newline; one added by hand is not part of it.
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

struct Snapshot {
  std::string commit;
  fs::file_time_type mtime;
};

std::vector<Snapshot> list_snapshots(const fs::path& snapshots) {
  std::vector<Snapshot> out;
  std::error_code ec;
  for (fs::directory_iterator it(snapshots, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (name.empty() || name[0] == '.' || !is_dir(it->path())) continue;
    std::error_code time_ec;
    const auto mtime = fs::last_write_time(it->path(), time_ec);
    out.push_back({name, time_ec ? fs::file_time_type::min() : mtime});
  }
  std::sort(out.begin(), out.end(), [](const Snapshot& a, const Snapshot& b) { return a.commit < b.commit; });
  return out;
}

std::string list_commits(const std::vector<Snapshot>& snaps) {
  if (snaps.empty()) return "none";
  std::string s;
  for (size_t i = 0; i < snaps.size() && i < 8; ++i) s += (i ? ", " : "") + short_commit(snaps[i].commit);
  if (snaps.size() > 8) s += ", ... (" + std::to_string(snaps.size()) + " in all)";
  return s;
}

std::vector<std::string> list_refs(const fs::path& refs) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(refs, ec), end; !ec && it != end; it.increment(ec))
    if (is_file(it->path())) out.push_back(fs::relative(it->path(), refs, ec).string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string how_to_get(const std::string& id, const std::string& revision) {
  const auto args = id + (revision.empty() ? "" : " --revision " + revision);
  return "Get it with `hf download " + args + "` (`huggingface-cli download " + args +
         "` with an older huggingface_hub) where the hub is reachable, into this cache (or copy the cache here), or "
         "convert a checkpoint with `scripts/convert_hf.py SRC OUT_DIR` and pass --model OUT_DIR";
}

// --- conversion of pytorch_model.bin snapshots --------------------------------------------------

// Complete when checksums.sha256 (written by convert_hf.py around its renames) lists config.json
// and model.safetensors and every file it lists is there: a converter killed part-way can leave the
// manifest before all of its files. The loader checks the contents against the manifest.
bool conversion_complete(const fs::path& dir) {
  std::ifstream in(dir / kManifest);
  if (!in) return false;
  std::set<std::string> names;
  for (std::string line; std::getline(in, line);) {
    if (line.size() < 67 || !is_hex(line.substr(0, 64)) || line[64] != ' ') continue;
    const auto name = line.substr(66);
    if (!is_component(name) || !is_file(dir / name)) return false;
    names.insert(name);
  }
  return names.count(kConfig) && names.count(kSafetensors);
}

std::string converter_script() {
  if (auto v = env("GROUPVIT_CONVERTER")) return *v;
#ifdef GROUPVIT_SOURCE_DIR
  return std::string(GROUPVIT_SOURCE_DIR) + "/scripts/convert_hf.py";
#else
  return "";
#endif
}

std::string converter_python() {
  if (auto v = env("GROUPVIT_PYTHON")) return *v;
#ifdef GROUPVIT_SOURCE_DIR
  // The project's setup (scripts/setup.sh) installs torch and transformers there.
  const std::string venv = std::string(GROUPVIT_SOURCE_DIR) + "/.venv/bin/python";
  if (::access(venv.c_str(), X_OK) == 0) return venv;
#endif
  return "python3";
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "wait status " + std::to_string(status);
}

// Runs argv[0] (looked up in PATH when it has no '/') with no shell in between, so nothing in the
// paths is interpreted. Its stdout goes to /dev/null (ours carries results, e.g. --json) and its
// stdin comes from /dev/null (ours may be an input list); stderr stays ours, for its errors.
// Returns the wait status; throws when it cannot be started.
int run_process(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const bool search = args[0].find('/') == std::string::npos;
  const int rc = search ? ::posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ)
                        : ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    throw std::runtime_error("cannot run " + args[0] + ": " + std::strerror(rc) +
                             " (set GROUPVIT_PYTHON to a Python with torch, transformers and safetensors)");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waiting for " + args[0] + ": " + std::strerror(errno));
  }
  return status;
}

// An exclusive flock on a file beside the conversion, held while one process checks and converts:
// parallel jobs (a Slurm array) given the same hub id wait for the first conversion instead of
// all converting (convert_hf.py's own lock would refuse all but one of them).
class ConversionLock {
 public:
  ConversionLock(const fs::path& path, const std::string& what, const ResolveNote& note) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ < 0) throw std::runtime_error(path.string() + ": cannot open the lock file: " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
    if (errno != EWOULDBLOCK) fail(path);
    note("waiting for another process that is converting " + what);
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) fail(path);
  }
  ~ConversionLock() { ::close(fd_); }  // releases the lock; the file stays (removing it would race)
  ConversionLock(const ConversionLock&) = delete;
  ConversionLock& operator=(const ConversionLock&) = delete;

 private:
  [[noreturn]] void fail(const fs::path& path) {
    const int err = errno;
    ::close(fd_);
    throw std::runtime_error(path.string() + ": cannot lock: " + std::strerror(err));
  }
  int fd_ = -1;
};

std::string convert_snapshot(const fs::path& snapshot, const std::string& repo_folder, const std::string& commit,
                             const std::string& what, const ResolveNote& note) {
  const fs::path parent = fs::path(groupvit_cache_dir()) / repo_folder;
  const fs::path out = parent / commit;
  if (conversion_complete(out)) return out.string();  // the usual case: no write to the cache at all

  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec)
    throw std::runtime_error("cannot create " + parent.string() + " for the conversion of " + what + ": " +
                             ec.message() + " (set GROUPVIT_CACHE to a writable directory)");
  ConversionLock lock(parent / ("." + commit + ".convert.lock"), what, note);
  if (conversion_complete(out)) return out.string();  // converted by the process we waited for

  const auto script = converter_script();
  if (script.empty() || !is_file(script))
    throw std::runtime_error(what + " has only " + kPickle + ", which must be converted, but the converter " +
                             (script.empty() ? std::string("is unknown") : script + " does not exist") +
                             " (set GROUPVIT_CONVERTER to scripts/convert_hf.py of the groupvit sources)");
  const auto python = converter_python();
  note("converting " + what + ": " + kPickle + " into " + out.string() + " with " + script + "; later runs reuse it");
  const int status = run_process({python, script, snapshot.string(), out.string()});
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(
        "converting " + what + " failed: " + python + " " + script + " " + snapshot.string() + " " + out.string() +
        ": " + describe_status(status) +
        " (its error is above; GROUPVIT_PYTHON selects the Python, GROUPVIT_CONVERTER the script)");
  if (!conversion_complete(out))
    throw std::runtime_error("converting " + what + ": the converter succeeded but " + out.string() +
                             " lacks a complete " + kManifest);
  return out.string();
}

// --- snapshots -----------------------------------------------------------------------------------

std::string dir_problem(const std::string& spec) {
  std::error_code ec;
  const auto st = fs::status(spec, ec);
  if (fs::is_directory(st)) return "";
  if (fs::exists(st)) return "is a file, not a directory";
  if (is_dangling_link(spec)) return "is a dangling symbolic link";
  return "does not exist";
}

// One repository of the hub cache: its folders, and the message that names every place looked at.
struct HubRepo {
  HubRepo(const std::string& spec_in, const std::string& revision_in, const std::string& as_dir_in)
      : spec(spec_in), revision(revision_in), as_dir(as_dir_in), cache(hub_cache_dir()) {
    auto name = spec;
    const auto slash = name.find('/');
    if (slash != std::string::npos) name.replace(slash, 1, "--");
    folder = "models--" + name;  // huggingface_hub's repo_folder_name
    repo = fs::path(cache.dir) / folder;
    refs = repo / "refs";
    snapshots = repo / "snapshots";
    snaps = list_snapshots(snapshots);
  }

  UsageError not_found(const std::string& why) const {
    const std::string where =
        cache.dir + (cache.source == "default" ? " (the default; HF_HUB_CACHE or HF_HOME select another)"
                                               : " (from " + cache.source + ")");
    std::ostringstream msg;
    // One line, as every groupvit error: looked at the directory, the cache's folder, the revision.
    msg << "model " << quoted(spec) << " not found: " << why << ". Looked at: the directory " << quoted(spec) << " ("
        << as_dir << "); " << repo.string() << " in the Hugging Face cache " << where
        << "; revision: " << (revision.empty() ? "main (the default)" : revision) << ". " << how_to_get(spec, revision);
    return UsageError(msg.str());
  }

  std::string state() const {  // what the cache has, for a revision that matched nothing
    const auto r = list_refs(refs);
    std::string s = "refs: ";
    if (r.empty()) s += "none";
    for (size_t i = 0; i < r.size(); ++i) s += (i ? ", " : "") + r[i];
    return s + "; snapshots: " + list_commits(snaps);
  }

  struct Commit {
    std::string hash;
    std::string how;  // for people: "main = commit 0123456789ab"
  };
  // As _snapshot_download offline: a full hash is the commit, else refs/REV holds it; then, beyond
  // huggingface_hub, the newest snapshot when no revision was given and a unique hash prefix.
  Commit commit(const ResolveNote& note) const {
    const std::string rev = revision.empty() ? "main" : revision;
    if (rev.size() == 40 && is_hex(rev) && rev == lower(rev)) return {rev, "commit " + short_commit(rev)};
    if (is_file(refs / rev)) {
      const auto hash = read_ref(refs / rev);
      if (!is_component(hash))
        throw UsageError((refs / rev).string() + " does not hold a commit hash (the cache is damaged; download again)");
      if (!is_dir(snapshots / hash))
        throw not_found("refs/" + rev + " names commit " + hash + ", which has no snapshots/" + hash + " (" + state() +
                        ")");
      return {hash, rev + " = commit " + short_commit(hash)};
    }
    if (revision.empty()) {
      if (snaps.empty()) throw not_found(folder + " has no refs/main and no snapshots");
      // No refs/main (a snapshot copied in, or downloaded by commit): the newest snapshot, said aloud.
      const auto newest = std::max_element(snaps.begin(), snaps.end(), [](const Snapshot& a, const Snapshot& b) {
        return a.mtime != b.mtime ? a.mtime < b.mtime : a.commit < b.commit;
      });
      note(spec + ": the cache has no refs/main; using the newest of its " + std::to_string(snaps.size()) +
           " snapshot(s), commit " + newest->commit + " (--revision selects another)");
      return {newest->commit, "newest snapshot " + short_commit(newest->commit)};
    }
    if (rev.size() < kMinPrefix || rev.size() > 40 || !is_hex(rev))
      throw not_found(
          "no ref or snapshot matches revision " + rev + " (" + state() + ")" +
          (is_hex(rev) ? "; a commit prefix needs " + std::to_string(kMinPrefix) + " hex digits or more" : ""));
    std::vector<std::string> matches;
    for (const auto& s : snaps)
      if (s.commit.compare(0, rev.size(), lower(rev)) == 0) matches.push_back(s.commit);
    if (matches.empty()) throw not_found("no ref or snapshot matches revision " + rev + " (" + state() + ")");
    if (matches.size() > 1) {
      std::string list;
      for (const auto& m : matches) list += (list.empty() ? "" : ", ") + m;
      throw UsageError("--revision " + rev + " is ambiguous in " + repo.string() + ": it begins " + list +
                       "; give more digits");
    }
    return {matches[0], "commit " + short_commit(matches[0])};
  }

  std::string spec, revision, as_dir, folder;
  HubCache cache;
  fs::path repo, refs, snapshots;
  std::vector<Snapshot> snaps;
};

// The snapshot as a model directory: itself when the loader reads its weights, its conversion
// when it has only pytorch_model.bin.
ResolvedModel from_snapshot(const HubRepo& repo, const HubRepo::Commit& commit, const ResolveNote& note) {
  const fs::path snapshot = repo.snapshots / commit.hash;
  if (!is_dir(snapshot)) throw repo.not_found("there is no snapshots/" + commit.hash + " (" + repo.state() + ")");
  const std::string what = repo.spec + " (" + commit.how + ")";
  ResolvedModel resolved{snapshot.string(), what + " from " + snapshot.string(), repo.spec, commit.hash, false};
  std::vector<std::string> missing;
  for (const char* name : {kConfig, kSafetensors, kArchive, kPickle})
    if (!is_file(snapshot / name) && is_dangling_link(snapshot / name))
      missing.push_back(std::string(name) + " (a link to a missing blob: an interrupted download?)");
  if (!is_file(snapshot / kConfig))
    throw UsageError(snapshot.string() + ": snapshot of " + what + " has no " + kConfig +
                     (missing.empty() ? "" : "; " + missing[0]) + " (download it again: `hf download " + repo.spec +
                     "`)");
  if (is_file(snapshot / kSafetensors) || is_file(snapshot / kArchive)) return resolved;
  if (is_file(snapshot / kPickle)) {
    resolved.dir = convert_snapshot(snapshot, repo.folder, commit.hash, what, note);
    resolved.description = what + ": " + kPickle + " of " + snapshot.string() + " converted into " + resolved.dir;
    resolved.converted = true;
    return resolved;
  }
  std::string detail;
  for (const auto& m : missing) detail += "; " + m;
  if (is_file(snapshot / "model.safetensors.index.json")) detail += "; sharded checkpoints are not supported";
  throw UsageError(snapshot.string() + ": snapshot of " + what + " has no weights (" + kSafetensors + " or " + kPickle +
                   ")" + detail + " (download them: `hf download " + repo.spec + "`)");
}

}  // namespace

bool is_hub_id(const std::string& spec) {
  if (std::count(spec.begin(), spec.end(), '/') > 1) return false;
  const auto slash = spec.find('/');
  if (slash != std::string::npos && !is_id_part(spec.substr(0, slash))) return false;
  if (!is_id_part(slash == std::string::npos ? spec : spec.substr(slash + 1))) return false;
  if (spec.find("--") != std::string::npos || spec.find("..") != std::string::npos) return false;
  return !(spec.size() >= 4 && spec.compare(spec.size() - 4, 4, ".git") == 0);
}

HubCache hub_cache_dir() {
  // huggingface_hub/constants.py: HF_HUB_CACHE, else the legacy HUGGINGFACE_HUB_CACHE, else
  // HF_HOME/hub with HF_HOME defaulting to $XDG_CACHE_HOME/huggingface, then ~/.cache/huggingface;
  // each value goes through expanduser and expandvars.
  if (auto v = env("HF_HUB_CACHE")) return {expand(*v), "HF_HUB_CACHE"};
  if (auto v = env("HUGGINGFACE_HUB_CACHE")) return {expand(*v), "HUGGINGFACE_HUB_CACHE"};
  if (auto v = env("HF_HOME")) return {(fs::path(expand(*v)) / "hub").string(), "HF_HOME"};
  if (auto v = env("XDG_CACHE_HOME"))
    return {(fs::path(expand(*v + "/huggingface")) / "hub").string(), "XDG_CACHE_HOME"};
  return {(fs::path(home_dir()) / ".cache" / "huggingface" / "hub").string(), "default"};
}

std::string groupvit_cache_dir() {
  if (auto v = env("GROUPVIT_CACHE")) return *v;
  if (auto v = env("XDG_CACHE_HOME")) return (fs::path(*v) / "groupvit").string();
  return (fs::path(home_dir()) / ".cache" / "groupvit").string();
}

ResolvedModel resolve_model(const std::string& spec, const std::string& revision, const ResolveNote& note_in) {
  const ResolveNote note =
      note_in ? note_in : ResolveNote([](const std::string& m) { std::cerr << "groupvit: note: " << m << "\n"; });
  if (spec.empty()) throw UsageError("--model is empty: give a model directory or a Hugging Face id (ORG/NAME)");

  // A directory always wins, as transformers' from_pretrained does: nothing changes for existing users.
  const auto as_dir = dir_problem(spec);
  if (as_dir.empty()) {
    if (!revision.empty())
      throw UsageError("--revision " + revision + " selects a snapshot of a Hugging Face id, but --model " + spec +
                       " is a directory");
    return {spec, spec, "", "", false};
  }
  if (!is_hub_id(spec))
    throw UsageError("model directory " + quoted(spec) + " " + as_dir +
                     ", and it is not a Hugging Face id either (NAME or ORG/NAME: letters, digits, '-', '_' and '.', "
                     "starting and ending with a letter, digit or '_'; no '--' or '..'). Convert a checkpoint with "
                     "scripts/convert_hf.py, or pass a Hugging Face snapshot directory or a hub id in the local cache");
  const HubRepo repo(spec, revision, as_dir);
  if (!is_dir(repo.repo)) throw repo.not_found("the hub cache has no " + repo.folder);
  if (!revision.empty() && !is_safe_relative(revision))
    throw UsageError("--revision " + quoted(revision) +
                     " is not a revision (a branch or tag such as main, refs/pr/3, or a commit hash)");
  return from_snapshot(repo, repo.commit(note), note);
}

}  // namespace groupvit_cli
