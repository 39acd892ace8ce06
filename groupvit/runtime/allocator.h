// Process-wide allocator setting for repeated CPU forwards. Opt-in: a library should not change
// how its host process allocates memory behind its back; the groupvit CLI and the benchmark call
// it once their model is loaded.
#pragma once

#include <cstddef>

namespace groupvit {

// Makes the C library's malloc keep freed blocks of up to `bytes` in the process heap for reuse
// instead of mapping every large block afresh and handing freed ones back to the kernel.
//
// Why: glibc maps each large activation afresh and unmaps it on free, so every forward page-faults
// it in again (measurements: docs/design-notes.md).
// Cost: memory freed after a forward stays resident for the next one. Call it after loading the
// model, so the loader's temporary buffers are not kept. Returns false (and changes nothing)
// where the C library is not glibc.
bool keep_freed_memory_for_reuse(std::size_t bytes = std::size_t{1} << 30);

}  // namespace groupvit
