// DirectoryLock (see directory_lock.h).
#include "groupvit/formats/directory_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "groupvit/formats/atomic_file.h"

namespace groupvit {

namespace {

std::string holder_text(const std::string& command) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
  return "pid=" + std::to_string(::getpid()) + " host=" + host + " command=" + command + "\n";
}

// What the holder wrote into the lock file ("pid=... host=... command=..."), for the message.
std::string read_holder(int fd) {
  char buffer[512] = {};
  const ssize_t n = ::pread(fd, buffer, sizeof buffer - 1, 0);
  std::string text = n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text.empty() ? "a process that has not said who it is" : text;
}

// Opens `path` and takes the lock (LOCK_EX or LOCK_SH) without waiting. Returns the descriptor;
// -1 when another process holds a conflicting lock (`*holder` says who).
int try_lock(const std::string& path, int operation, std::string* holder) {
  // O_RDWR without O_TRUNC: the holder's line must survive a refused opener.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) throw FileError("cannot lock " + path + ": " + std::strerror(errno), errno);
  while (::flock(fd, operation | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    const int error = errno;
    if (error == EWOULDBLOCK) {
      *holder = read_holder(fd);
      ::close(fd);
      return -1;
    }
    ::close(fd);
    throw FileError("cannot lock " + path + ": " + std::strerror(error), error);
  }
  return fd;
}

void record_holder(int fd, const std::string& command) {
  const std::string text = holder_text(command);
  // Best effort: the lock itself is what excludes; the line only makes the refusal readable.
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, text.data(), text.size(), 0);
}

[[noreturn]] void refuse(const std::string& dir, const std::string& holder) {
  throw DirectoryLockedError(dir + " is being written by another process (" + holder +
                             "); wait for it to finish or choose another output directory");
}

}  // namespace

DirectoryLock::DirectoryLock(const std::string& dir, const std::string& command, const std::string& part) {
  make_directories(dir);
  std::string holder;
  const std::string dir_lock = dir + "/" + kLockFile;
  dir_fd_ = try_lock(dir_lock, part.empty() ? LOCK_EX : LOCK_SH, &holder);
  if (dir_fd_ < 0) {
    // Refused an exclusive lock: the holders may be the shards of a run (shared locks, and the
    // file then names an earlier holder), which a shared probe tells apart.
    std::string ignored;
    if (part.empty()) {
      if (const int probe = try_lock(dir_lock, LOCK_SH, &ignored); probe >= 0) {
        ::close(probe);
        holder = "the shards of a sharded run";
      }
    }
    refuse(dir, holder);
  }
  if (part.empty()) {
    record_holder(dir_fd_, command);
    return;
  }
  part_fd_ = try_lock(dir + "/.groupvit." + part + ".lock", LOCK_EX, &holder);
  if (part_fd_ < 0) {
    ::close(dir_fd_);
    refuse(dir + " (" + part + ")", holder);
  }
  record_holder(part_fd_, command);
}

DirectoryLock::~DirectoryLock() {
  if (part_fd_ >= 0) ::close(part_fd_);
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

}  // namespace groupvit
