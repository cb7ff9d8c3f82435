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

// Multiply-adds worth giving a thread: ~5-20 us of one core, against ~2 us for a fork/join. The
// compute kernels (GEMM, direct, Winograd and fused convolutions) pass macs / kMacsPerThread to
// threads_for. At 4x this LeNet-5's C5 layer (M=128, N=120, K=400) ran on one thread, 1.5x
// slower than on two.
constexpr int64_t kMacsPerThread = int64_t(1) << 20;

}  // namespace cnnfast
