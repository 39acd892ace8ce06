// Process-wide allocator setting for repeated CPU forwards. Opt-in: a library should not change
// how its host process allocates memory behind its back; the groupvit CLI and the benchmark call
// it once their model is loaded.
#pragma once

#include <cstddef>

namespace groupvit {

// Makes the C library's malloc keep freed blocks of up to `bytes` in the process heap for reuse
// instead of mapping every large block afresh and handing freed ones back to the kernel.
//
// Why: LibTorch allocates each activation with malloc. glibc serves blocks above its mmap
// threshold (at most 32 MiB, and a [32, 260, 1536] float activation is 51 MiB) with a fresh
// mmap and unmaps them on free, and it returns freed heap tops to the kernel, so every forward
// page-faults its activations in again: about a quarter of a batch-32 image forward on a
// 2-core machine went to the kernel zeroing pages (docs/benchmarks.md).
// Cost: memory freed after a forward stays resident for the next one. Call it after loading the
// model, so the loader's temporary buffers are not kept. Returns false (and changes nothing)
// where the C library is not glibc.
bool keep_freed_memory_for_reuse(std::size_t bytes = std::size_t{1} << 30);

}  // namespace groupvit
