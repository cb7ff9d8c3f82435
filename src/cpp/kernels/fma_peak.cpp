#include "fma_peak.h"

#include <chrono>

#include "cpu_features.h"

namespace cnnfast {

#if defined(CNNFAST_BUILD_AVX512)
float fma_peak_loop_avx512(int64_t iterations);
#endif
#if defined(CNNFAST_BUILD_AVX2)
float fma_peak_loop_avx2(int64_t iterations);
#endif

namespace {

// 8 scalar chains: the baseline build's ceiling.
float fma_peak_loop_scalar(int64_t iterations) {
    float acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = 0.001f * static_cast<float>(i);
    for (int64_t it = 0; it < iterations; ++it)
        for (int i = 0; i < 8; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
    float s = 0.0f;
    for (float v : acc) s += v;
    return s;
}

}  // namespace

double measure_fma_peak_gflops(int64_t iterations) {
    if (iterations < 1) iterations = 1;
    float (*loop)(int64_t) = &fma_peak_loop_scalar;
    double flop_per_round = 8 * 2;
    const SimdLevel level = simd_level();
#if defined(CNNFAST_BUILD_AVX512)
    if (level == SimdLevel::avx512) loop = &fma_peak_loop_avx512, flop_per_round = 24 * 16 * 2;
#endif
#if defined(CNNFAST_BUILD_AVX2)
    if (level == SimdLevel::avx2) loop = &fma_peak_loop_avx2, flop_per_round = 12 * 8 * 2;
#endif
    volatile float sink = loop(iterations / 10 + 1);  // warm-up: clocks, caches
    const auto t0 = std::chrono::steady_clock::now();
    sink = loop(iterations);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (void)sink;
    return flop_per_round * static_cast<double>(iterations) / s / 1e9;
}

}  // namespace cnnfast
