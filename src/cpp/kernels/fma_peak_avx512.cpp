// The AVX-512 instance of fma_peak_loop.h; the dispatch is in fma_peak.cpp.
#include "fma_peak_loop.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

namespace cnnfast {

namespace {

float run(int64_t iterations) {
    return fma_chains<kFmaChainsAvx512, __m512>(
        iterations, [](float v) { return _mm512_set1_ps(v); },
        [](__m512 x, __m512 y, __m512 z) { return _mm512_fmadd_ps(x, y, z); });
}

}  // namespace

const FmaPeakLoop* fma_peak_loop_avx512() {
    static const FmaPeakLoop table = {&run, kFmaChainsAvx512 * 16 * 2};
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const FmaPeakLoop* fma_peak_loop_avx512() { return nullptr; }
}  // namespace cnnfast

#endif
