#pragma once
// Thread-count control shared by every kernel family. Kernels parallelise at one level with
// OpenMP; a kernel called from inside a parallel region runs on the calling thread only.
#include <omp.h>

#include <algorithm>
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

// f(i) for i in [0, n) on T threads, split statically (so a given T always gives each thread the
// same indices), or inline on the calling thread when T <= 1: no OpenMP region at all, since
// entering one costs ~1 us even when it would run one thread.
template <class F>
void parallel_for(int T, int64_t n, const F& f) {
    if (T <= 1) {
        for (int64_t i = 0; i < n; ++i) f(i);
        return;
    }
#pragma omp parallel for num_threads(T) schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i);
}

// f(i) for i in [0, n) on T threads, handed out one at a time (for units of uneven cost whose
// results do not depend on which thread runs them), or inline when T <= 1.
template <class F>
void parallel_for_dynamic(int T, int64_t n, const F& f) {
    if (T <= 1) {
        for (int64_t i = 0; i < n; ++i) f(i);
        return;
    }
#pragma omp parallel for num_threads(T) schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) f(i);
}

// body(lo, hi) over [0, units) split into one contiguous block per thread; inline when T <= 1 or
// units <= 1. Returns the sum of body's results.
template <class Body>
int64_t parallel_blocks(int64_t units, int T, Body&& body) {
    if (T <= 1 || units <= 1) return body(int64_t{0}, units);
    int64_t total = 0;
#pragma omp parallel num_threads(T) reduction(+ : total)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        total += body(units * t / nt, units * (t + 1) / nt);
    }
    return total;
}

// A weight-gradient reduction over `units` (images, blocks of tiles) on T threads: unit(part, u)
// adds unit u's contribution into the calling thread's partial of part_floats floats (zeroed
// first; parts + t * part_floats), the units split statically; then finish(used, i) for i in
// [0, items), split statically in the same parallel region, combines the `used` filled partials
// in thread order (the runtime may grant fewer threads than T). The sums so depend on T only, not
// on timing. T <= 1 runs inline with one partial. parts holds max(T, 1) partials.
template <class Unit, class Finish>
void reduce_over_threads(int T, int64_t units, float* parts, int64_t part_floats,
                         const Unit& unit, int64_t items, const Finish& finish) {
    if (T <= 1) {
        std::fill(parts, parts + part_floats, 0.0f);
        for (int64_t u = 0; u < units; ++u) unit(parts, u);
        for (int64_t i = 0; i < items; ++i) finish(1, i);
        return;
    }
    int used = T;
#pragma omp parallel num_threads(T)
    {
        const int t = omp_get_thread_num();
        float* part = parts + t * part_floats;
        std::fill(part, part + part_floats, 0.0f);
        if (t == 0) used = omp_get_num_threads();
#pragma omp for schedule(static)
        for (int64_t u = 0; u < units; ++u) unit(part, u);
        // The implicit barrier above completes every partial (and publishes `used`).
#pragma omp for schedule(static)
        for (int64_t i = 0; i < items; ++i) finish(used, i);
    }
}

}  // namespace cnnfast
