// The AVX2+FMA instance of fma_peak_loop.h; the dispatch is in fma_peak.cpp.
#include "fma_peak_loop.h"

#if defined(CNNFAST_BUILD_AVX2)
#include <immintrin.h>

namespace cnnfast {

namespace {

float run(int64_t iterations) {
    return fma_chains<kFmaChainsAvx2, __m256>(
        iterations, [](float v) { return _mm256_set1_ps(v); },
        [](__m256 x, __m256 y, __m256 z) { return _mm256_fmadd_ps(x, y, z); });
}

}  // namespace

const FmaPeakLoop* fma_peak_loop_avx2() {
    static const FmaPeakLoop table = {&run, kFmaChainsAvx2 * 8 * 2};
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const FmaPeakLoop* fma_peak_loop_avx2() { return nullptr; }
}  // namespace cnnfast

#endif
