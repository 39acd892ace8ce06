// The lock a command holds on the directory it writes (train's model directory, segment's
// output, the converter's output), so that a second writer is refused at once instead of mixing
// its files with the first one's. flock(2) on DIR/.groupvit.lock, which records who holds it;
// the kernel releases the lock when the holder exits, however it exits.
#pragma once

#include <stdexcept>
#include <string>

namespace groupvit {

inline constexpr const char* kLockFile = ".groupvit.lock";

class DirectoryLockedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DirectoryLock {
 public:
  // Locks `dir` (created if missing) for `command` (e.g. "groupvit train"), or throws
  // DirectoryLockedError naming the process that holds it.
  //
  // With a `part` (e.g. "shard-3-of-8"), the directory is shared with writers of other parts:
  // the directory's lock is taken shared and DIR/.groupvit.PART.lock exclusively, so the shards
  // of one run write side by side while a second run of the same shard, or an unsharded run, is
  // refused.
  DirectoryLock(const std::string& dir, const std::string& command, const std::string& part = "");
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int dir_fd_ = -1;
  int part_fd_ = -1;
};

}  // namespace groupvit
