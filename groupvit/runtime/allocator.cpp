#include "groupvit/runtime/allocator.h"

#include <climits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace groupvit {

bool keep_freed_memory_for_reuse(std::size_t bytes) {
#if defined(__GLIBC__)
  const int value = bytes > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(bytes);
  // Both settings: the threshold keeps large blocks in the heap, the trim threshold keeps the
  // heap from shrinking when they are freed. Setting either also stops glibc's own adjustment.
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, value) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, value) == 1;
  return mmap_ok && trim_ok;
#else
  (void)bytes;
  return false;
#endif
}

}  // namespace groupvit
