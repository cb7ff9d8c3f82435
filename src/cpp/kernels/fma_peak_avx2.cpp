// The AVX2+FMA loop of fma_peak.h; the dispatch is in fma_peak.cpp.
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace cnnfast {

// 12 independent accumulators (16 ymm registers), more than FMA latency x pipes.
float fma_peak_loop_avx2(int64_t iterations) {
    __m256 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    __m256 s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
    alignas(32) float t[8];
    _mm256_store_ps(t, s);
    float r = 0.0f;
    for (float v : t) r += v;
    return r;
}

}  // namespace cnnfast

#endif
