// The AVX2+FMA instance of fma_peak_loop.h; the dispatch is in fma_peak.cpp.
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include "fma_peak_loop.h"

namespace cnnfast {

float fma_peak_loop_avx2(int64_t iterations) {
    return fma_chains<kFmaChainsAvx2, __m256>(
        iterations, [](float v) { return _mm256_set1_ps(v); },
        [](__m256 x, __m256 y, __m256 z) { return _mm256_fmadd_ps(x, y, z); });
}

}  // namespace cnnfast

#endif
