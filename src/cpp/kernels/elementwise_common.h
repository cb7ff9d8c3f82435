#pragma once
// Internal helpers shared by the element-wise families (activation, softmax_xent, dropout, optim):
// fixed chunking for OpenMP and deterministic blocked reductions. Chunk and block layouts depend
// only on the problem size, never on the thread count, so every result is bit-identical for any
// number of threads.
#include <algorithm>
#include <cstdint>

#include "parallel.h"

namespace cnnfast::detail {

// Element-wise work below this many elements runs on the calling thread.
constexpr int64_t kElementwiseGrain = 32768;

// Calls f(lo, hi) over consecutive chunks of `grain` units covering [0, n), in parallel when
// there is more than one chunk. The same chunks are used whatever the thread count.
template <class F>
inline void for_each_chunk(int64_t n, int64_t grain, F&& f) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int64_t chunks = (n + grain - 1) / grain;
    parallel_for(threads_for(chunks), chunks,
                 [&](int64_t c) { f(c * grain, std::min(n, (c + 1) * grain)); });
}

// Sum over [0, n) of f(lo, hi) -> double, evaluated on at most kMaxBlocks blocks of at least
// `grain` units and added in block order: a fixed reduction tree, so thread-count independent.
template <class F>
inline double blocked_sum(int64_t n, int64_t grain, F&& f) {
    constexpr int64_t kMaxBlocks = 256;
    if (n <= 0) return 0.0;
    grain = std::max<int64_t>(grain, 1);
    const int64_t bs = std::max(grain, (n + kMaxBlocks - 1) / kMaxBlocks);
    const int64_t nb = (n + bs - 1) / bs;
    double partial[kMaxBlocks];
    parallel_for(threads_for(nb), nb,
                 [&](int64_t b) { partial[b] = f(b * bs, std::min(n, (b + 1) * bs)); });
    double s = 0.0;
    for (int64_t b = 0; b < nb; ++b) s += partial[b];
    return s;
}

}  // namespace cnnfast::detail
