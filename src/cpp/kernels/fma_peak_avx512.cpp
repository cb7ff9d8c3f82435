// The AVX-512 loop of fma_peak.h; the dispatch is in fma_peak.cpp.
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>

namespace cnnfast {

// 24 independent accumulators: more than FMA latency x pipes (4 x 2), as the GEMM tile has.
float fma_peak_loop_avx512(int64_t iterations) {
    __m512 acc[24];
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 24
        for (int i = 0; i < 24; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
    // Summed through memory: GCC 12 warns falsely inside _mm512_reduce_add_ps.
    alignas(64) float t[16];
    _mm512_store_ps(t, s);
    float r = 0.0f;
    for (float v : t) r += v;
    return r;
}

}  // namespace cnnfast

#endif
