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

}  // namespace

double measure_fma_peak_gflops(int64_t iterations) {
    if (iterations < 1) iterations = 1;
    static SimdTables<FmaPeakLoop> tables(&kScalarLoop, fma_peak_loop_avx2(),
                                          fma_peak_loop_avx512());
    const FmaPeakLoop& loop = *tables.current();
    volatile float sink = loop.run(iterations / 10 + 1);  // warm-up: clocks, caches
    const auto t0 = std::chrono::steady_clock::now();
    sink = loop.run(iterations);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (void)sink;
    return loop.flop_per_iteration * static_cast<double>(iterations) / s / 1e9;
}

}  // namespace cnnfast
