// The AVX-512 instance of fma_peak_loop.h; the dispatch is in fma_peak.cpp.
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>

#include "fma_peak_loop.h"

namespace cnnfast {

float fma_peak_loop_avx512(int64_t iterations) {
    return fma_chains<kFmaChainsAvx512, __m512>(
        iterations, [](float v) { return _mm512_set1_ps(v); },
        [](__m512 x, __m512 y, __m512 z) { return _mm512_fmadd_ps(x, y, z); });
}

}  // namespace cnnfast

#endif
