#include "fma_peak.h"

#include <chrono>

#include "cpu_features.h"
#include "fma_peak_loop.h"

namespace cnnfast {

#if defined(CNNFAST_BUILD_AVX512)
float fma_peak_loop_avx512(int64_t iterations);
#endif
#if defined(CNNFAST_BUILD_AVX2)
float fma_peak_loop_avx2(int64_t iterations);
#endif

namespace {

// Scalar chains: the baseline build's ceiling.
float fma_peak_loop_scalar(int64_t iterations) {
    return fma_chains<kFmaChainsScalar, float>(
        iterations, [](float v) { return v; }, [](float x, float y, float z) { return x * y + z; });
}

}  // namespace

double measure_fma_peak_gflops(int64_t iterations) {
    if (iterations < 1) iterations = 1;
    float (*loop)(int64_t) = &fma_peak_loop_scalar;
    double flop_per_round = kFmaChainsScalar * 2;
    const SimdLevel level = simd_level();
#if defined(CNNFAST_BUILD_AVX512)
    if (level == SimdLevel::avx512)
        loop = &fma_peak_loop_avx512, flop_per_round = kFmaChainsAvx512 * 16 * 2;
#endif
#if defined(CNNFAST_BUILD_AVX2)
    if (level == SimdLevel::avx2)
        loop = &fma_peak_loop_avx2, flop_per_round = kFmaChainsAvx2 * 8 * 2;
#endif
    volatile float sink = loop(iterations / 10 + 1);  // warm-up: clocks, caches
    const auto t0 = std::chrono::steady_clock::now();
    sink = loop(iterations);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (void)sink;
    return flop_per_round * static_cast<double>(iterations) / s / 1e9;
}

}  // namespace cnnfast
