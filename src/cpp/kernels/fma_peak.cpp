#include "fma_peak.h"

#include <chrono>

#include "cpu_features.h"
#include "fma_peak_loop.h"

namespace cnnfast {

namespace {

// Scalar chains: the baseline build's ceiling.
float fma_peak_loop_scalar(int64_t iterations) {
    return fma_chains<kFmaChainsScalar, float>(
        iterations, [](float v) { return v; }, [](float x, float y, float z) { return x * y + z; });
}

const FmaPeakLoop kScalarLoop = {&fma_peak_loop_scalar, kFmaChainsScalar * 2};

double timed_gflops(const FmaPeakLoop& loop, int64_t iterations) {
    if (iterations < 1) iterations = 1;
    volatile float sink = loop.run(iterations / 10 + 1);  // warm-up: clocks, caches
    const auto t0 = std::chrono::steady_clock::now();
    sink = loop.run(iterations);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (void)sink;
    return loop.flop_per_iteration * static_cast<double>(iterations) / s / 1e9;
}

}  // namespace

double measure_fma_peak_gflops(int64_t iterations) {
    static SimdTables<FmaPeakLoop> tables(&kScalarLoop, fma_peak_loop_avx2(),
                                          fma_peak_loop_avx512());
    return timed_gflops(*tables.current(), iterations);
}

double measure_bf16_peak_gflops(int64_t iterations) {
    // Under a CNNFAST_SIMD cap below avx512 the bfloat16 GEMM runs its portable kernel (and
    // measure_fma_peak_gflops a narrower loop): no vdpbf16ps to measure.
    const FmaPeakLoop* loop = bf16_peak_loop_avx512bf16();
    if (!loop || !cpu_has_avx512_bf16() || simd_level() != SimdLevel::avx512) return 0.0;
    return timed_gflops(*loop, iterations);
}

}  // namespace cnnfast
