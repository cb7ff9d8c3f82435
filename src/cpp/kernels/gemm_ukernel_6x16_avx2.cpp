// GEMM micro-kernel, AVX2 + FMA: a 6 x 16 tile of C held in 12 ymm accumulators.
// Why 6x16: 16 ymm = 12 accumulators + 2 B vectors + 1 broadcast; 12 independent FMA chains cover
// latency 4-5 x 2 pipes, with 2 vector loads + 6 broadcasts per 12 FMAs.
#include "gemm_ukernel.h"

#if defined(CNNFAST_BUILD_AVX2)
#include <immintrin.h>

namespace cnnfast {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

template <bool KMajor>
inline const float* a_elem(const float* a, int i, int64_t k) {
    return KMajor ? a + k * MR + i : a + i * kGemmARowStride + k;
}

#define CNNFAST_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

// a: packed A panel; b: kc x 16 k-major; c (6, 16) with row stride ldc.
template <bool KMajor>
void ukernel_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                  float beta) {
#define DECLARE(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
    CNNFAST_ROWS(DECLARE)
#undef DECLARE
#define PREFETCH_C(i) \
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0); \
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
    CNNFAST_ROWS(PREFETCH_C)
#undef PREFETCH_C

#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_load_ps(b + k * NR);
        const __m256 b1 = _mm256_load_ps(b + k * NR + 8);
#define STEP(i)                                                        \
    {                                                                  \
        const __m256 ai = _mm256_broadcast_ss(a_elem<KMajor>(a, i, k)); \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                    \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                    \
    }
        CNNFAST_ROWS(STEP)
#undef STEP
    }

    const __m256 va = _mm256_set1_ps(alpha);
    if (beta == 0.0f) {
#define STORE(i)                                                  \
    _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, c##i##0));    \
    _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, c##i##1));
        CNNFAST_ROWS(STORE)
#undef STORE
    } else {
        const __m256 vb = _mm256_set1_ps(beta);
#define UPDATE(i)                                                                              \
    _mm256_storeu_ps(c + i * ldc,                                                              \
                     _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + i * ldc), _mm256_mul_ps(va, c##i##0))); \
    _mm256_storeu_ps(c + i * ldc + 8, _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + i * ldc + 8),      \
                                                      _mm256_mul_ps(va, c##i##1)));
        CNNFAST_ROWS(UPDATE)
#undef UPDATE
    }
}

#undef CNNFAST_ROWS

}  // namespace

const GemmUkernel* gemm_ukernel_6x16_avx2() {
    static const GemmUkernel table = {
        "avx2", MR, NR, &ukernel_6x16<true>, &ukernel_6x16<false>, nullptr, nullptr};
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const GemmUkernel* gemm_ukernel_6x16_avx2() { return nullptr; }
}  // namespace cnnfast

#endif
