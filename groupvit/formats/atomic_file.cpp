// AtomicFile and the helpers built on it (see atomic_file.h). POSIX calls rather than
// std::filesystem or streams: fsync, O_EXCL and errno are what make the guarantees, and streams
// hide all three.
#include "groupvit/formats/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

namespace groupvit {

namespace {

// The directory entry of a rename is durable only once the directory itself is flushed.
int fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int result = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  // Some file systems (e.g. some FUSE and network ones) cannot fsync a directory; the rename
  // itself has happened, so that is not an error of the write.
  return result == EINVAL || result == ENOTSUP ? 0 : result;
}

// Unique per call, not only per process: threads of one process may write the same path at once
// (two inputs with the same key), and processes on other hosts may share the directory (NFS).
std::string temporary_name(const std::string& path) {
  static std::atomic<uint64_t> serial{0};
  static const uint64_t salt = std::random_device{}();
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(serial++) + "-" +
         std::to_string(salt % 1000000);
}

}  // namespace

bool FileError::location_unusable() const {
  return error_ == ENOSPC || error_ == EDQUOT || error_ == EFBIG || error_ == EROFS || error_ == EIO;
}

std::string parent_directory(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string file_name(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void make_directories(const std::string& dir) {
  if (dir.empty() || dir == "." || dir == "/") return;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw FileError(dir + " exists and is not a directory", ENOTDIR);
    return;
  }
  make_directories(parent_directory(dir));
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    throw FileError("cannot create directory " + dir + ": " + std::strerror(errno), errno);
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  try {
    make_directories(parent_directory(path_));
  } catch (const FileError& e) {
    throw FileError("cannot write " + path_ + ": " + e.what(), e.error());
  }
  temp_ = temporary_name(path_);
  // 0666: the kernel applies the umask, as for any new file (mkstemp's 0600 would make a shared
  // model directory unreadable for everyone else).
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0) throw FileError("cannot write " + path_ + " (creating " + temp_ + "): " + std::strerror(errno), errno);
  struct stat existing {};
  if (::stat(path_.c_str(), &existing) == 0 && S_ISREG(existing.st_mode))
    (void)::fchmod(fd_, existing.st_mode & 07777);  // best effort: not owning the old file is no reason to fail
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      temp_(std::move(other.temp_)),
      fd_(std::exchange(other.fd_, -1)),
      finished_(other.finished_),
      committed_(std::exchange(other.committed_, true)),
      digest_(std::move(other.digest_)),
      sha256_(std::move(other.sha256_)) {}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::fail(const std::string& doing, int error) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(temp_.c_str());
  committed_ = true;  // nothing left to clean up
  throw FileError("cannot write " + path_ + " (" + doing + "): " + std::strerror(error), error);
}

void AtomicFile::write(const void* data, size_t size) {
  if (finished_) throw std::logic_error("AtomicFile::write after finish: " + path_);
  const auto* p = static_cast<const char*>(data);
  digest_.update(p, size);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("writing", n < 0 ? errno : EIO);  // a short write's next call says why (ENOSPC, EFBIG)
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::finish() {
  if (finished_) return;
  // fsync before the rename: otherwise a power cut can leave the new name on an empty file.
  if (::fsync(fd_) != 0) fail("flushing to disk", errno);
  // close reports delayed write errors (e.g. on NFS).
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) fail("closing", errno);
  sha256_ = digest_.hex_digest();
  finished_ = true;
}

void AtomicFile::commit() {
  finish();
  if (::rename(temp_.c_str(), path_.c_str()) != 0) fail("renaming " + temp_, errno);
  committed_ = true;
  if (const int error = fsync_directory(parent_directory(path_)); error != 0)
    throw FileError("cannot write " + path_ + " (flushing its directory): " + std::strerror(error), error);
}

const std::string& AtomicFile::sha256() const {
  if (!finished_) throw std::logic_error("AtomicFile::sha256 before finish: " + path_);
  return sha256_;
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  AtomicFile file(path);
  file.write(data, size);
  file.commit();
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}

void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files) {
  std::vector<AtomicFile> staged;
  staged.reserve(files.size());
  for (const auto& [path, bytes] : files) {
    staged.emplace_back(path);
    staged.back().write(bytes);
    staged.back().finish();
  }
  for (auto& file : staged) file.commit();
}

std::optional<std::string> read_file(const std::string& path) {
  if (!file_exists(path)) return std::nullopt;  // a directory would "open" and read as empty
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return buffer.str();
}

}  // namespace groupvit
