#pragma once
// Thread-count control shared by every kernel family. Kernels parallelise at one level with
// OpenMP; a kernel called from inside a parallel region runs on the calling thread only.
#include <cstdint>

namespace cnnfast {

// Number of threads kernels use; defaults to OpenMP's (OMP_NUM_THREADS or the core count).
int get_num_threads();
// n >= 1 sets the count; n <= 0 restores the default.
void set_num_threads(int n);
// Threads for a kernel with `work` independent units, never more than units, 1 inside a parallel region.
int threads_for(int64_t work);

}  // namespace cnnfast
