// When a loop is worth an OpenMP team. Below about 32k multiply-adds the fork and join cost more
// than the work, and on a busy machine a team waiting for a descheduled thread turns microseconds
// into milliseconds; such loops run on the calling thread instead.
#pragma once

#include <cstdint>

namespace vae::ref {

inline constexpr int64_t kMinParallelWork = int64_t{1} << 15;

inline bool worth_parallel(int64_t work) { return work >= kMinParallelWork; }

}  // namespace vae::ref
