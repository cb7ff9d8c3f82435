#include "parallel.h"

#include <omp.h>

#include <algorithm>
#include <atomic>

namespace cnnfast {

static std::atomic<int> g_num_threads{0};

int get_num_threads() {
    int n = g_num_threads.load(std::memory_order_relaxed);
    return n > 0 ? n : omp_get_max_threads();
}

void set_num_threads(int n) { g_num_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

int threads_for(int64_t work) {
    if (omp_in_parallel()) return 1;
    int64_t n = std::min<int64_t>(get_num_threads(), std::max<int64_t>(work, 1));
    return static_cast<int>(n);
}

}  // namespace cnnfast
