// GEMM micro-kernel, AVX-512: a 14 x 32 tile of C held in 28 zmm accumulators.
// Why 14x32: 32 zmm = 28 accumulators + 2 B vectors + 2 spare; each k step issues 28 FMAs
// against 2 vector loads and 14 broadcast loads, so the two FMA pipes stay busy (28 independent
// chains >> latency 4 x 2 pipes) while loads stay under one per FMA.
// Why not 9x48 (27 accumulators, 12 loads per 27 FMAs): alone in L1 its loop came closer to the
// FMA peak (about 0.95 of it, against 0.89 here; Xeon, scratch builds), but sgemm was no faster
// with it at 1024^2-2048^2. In gemm.cpp's loop order its B panels stream 1.5x the bytes per k
// step from L2; in the textbook order (B panel in L1) the 48 KiB L1 caps the depth near 192,
// which doubles the C traffic per multiply-add.
#include "gemm_ukernel.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

namespace cnnfast {
namespace {

constexpr int MR = 14;
constexpr int NR = 32;

// Address of A(i, k) inside a packed panel of either layout (see gemm_ukernel.h).
template <bool KMajor>
inline const float* a_elem(const float* a, int i, int64_t k) {
    return KMajor ? a + k * MR + i : a + i * kGemmARowStride + k;
}

#define CNNFAST_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

// a: packed A panel; b: kc x 32 k-major; c (14, 32) with row stride ldc.
template <bool KMajor>
void ukernel_14x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                   float beta) {
#define DECLARE(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
    CNNFAST_ROWS(DECLARE)
#undef DECLARE
    // The C tile is written once at the end: start pulling it in now, behind the FMAs.
#define PREFETCH_C(i) \
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0); \
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
    CNNFAST_ROWS(PREFETCH_C)
#undef PREFETCH_C

#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_load_ps(b + k * NR);
        const __m512 b1 = _mm512_load_ps(b + k * NR + 16);
#define STEP(i)                                                   \
    {                                                             \
        const __m512 ai = _mm512_set1_ps(*a_elem<KMajor>(a, i, k)); \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);               \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);               \
    }
        CNNFAST_ROWS(STEP)
#undef STEP
    }

    const __m512 va = _mm512_set1_ps(alpha);
    if (beta == 0.0f) {
#define STORE(i)                                                  \
    _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, c##i##0));    \
    _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, c##i##1));
        CNNFAST_ROWS(STORE)
#undef STORE
    } else {
        const __m512 vb = _mm512_set1_ps(beta);
#define UPDATE(i)                                                                              \
    _mm512_storeu_ps(c + i * ldc,                                                              \
                     _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + i * ldc), _mm512_mul_ps(va, c##i##0))); \
    _mm512_storeu_ps(c + i * ldc + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + i * ldc + 16),    \
                                                       _mm512_mul_ps(va, c##i##1)));
        CNNFAST_ROWS(UPDATE)
#undef UPDATE
    }
}

#undef CNNFAST_ROWS

}  // namespace

const GemmUkernel* gemm_ukernel_14x32_avx512() {
    static const GemmUkernel table = {"avx512",
                                      MR,
                                      NR,
                                      &ukernel_14x32<true>,
                                      &ukernel_14x32<false>,
                                      &gemm_small_m_avx512,
                                      &gemm_tn_narrow_avx512};
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const GemmUkernel* gemm_ukernel_14x32_avx512() { return nullptr; }
}  // namespace cnnfast

#endif
