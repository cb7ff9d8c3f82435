// The bfloat16 GEMM micro-kernel on vdpbf16ps (AVX512-BF16: AMD Zen 4 and later, Intel from
// Cooper Lake). Compiled with -mavx512bf16; chosen at run time only on CPUs that have it.
#include "gemm_bf16_ukernel.h"

#if defined(CNNFAST_BUILD_AVX512BF16)
#include <immintrin.h>

namespace cnnfast {

namespace {

// a (kp x 14 pairs), b (kp x 32 pairs); c (14 x 32) = a * b + beta * c.
void ukernel_14x32_avx512bf16(int64_t kp, const uint32_t* a, const uint32_t* b, float* c,
                              int64_t ldc, float beta) {
    __m512 acc[kBf16MR][2];
    for (int i = 0; i < kBf16MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kp; ++p) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b + p * kBf16NR);
        const __m512bh b1 = (__m512bh)_mm512_load_si512(b + p * kBf16NR + 16);
        const uint32_t* ap = a + p * kBf16MR;
#pragma GCC unroll 14
        for (int i = 0; i < kBf16MR; ++i) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[i]));
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
        }
    }
    const __m512 vb = _mm512_set1_ps(beta);
    for (int i = 0; i < kBf16MR; ++i) {
        float* row = c + i * ldc;
        if (beta == 0.0f) {
            _mm512_storeu_ps(row, acc[i][0]);
            _mm512_storeu_ps(row + 16, acc[i][1]);
        } else {
            _mm512_storeu_ps(row, _mm512_fmadd_ps(vb, _mm512_loadu_ps(row), acc[i][0]));
            _mm512_storeu_ps(row + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(row + 16), acc[i][1]));
        }
    }
}

const Bf16Gemm kTable{"avx512_bf16", ukernel_14x32_avx512bf16};

}  // namespace

const Bf16Gemm* gemm_bf16_avx512bf16() { return &kTable; }

}  // namespace cnnfast

#else

namespace cnnfast {
const Bf16Gemm* gemm_bf16_avx512bf16() { return nullptr; }
}  // namespace cnnfast

#endif
