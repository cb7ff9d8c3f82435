// The bfloat16 GEMM micro-kernel on vdpbf16ps (AVX512-BF16: AMD Zen 4 and later, Intel from
// Cooper Lake). Compiled with -mavx512bf16; chosen at run time only on CPUs that have it.
#include "gemm_bf16_ukernel.h"

#if defined(CNNFAST_BUILD_AVX512BF16)
#include <immintrin.h>

#include <algorithm>

namespace cnnfast {

namespace {

// a (14 rows: of a_stride pairs, or 14 columns of a 32-wide panel), b (kp x 32 pairs);
// c (14 x 32) = a * b + beta * c. The layout is a template argument so that each broadcast's
// address is a constant offset.
template <bool kPanel>
void ukernel_14x32(int64_t kp, const uint32_t* a, int64_t a_stride, const uint32_t* b, float* c,
                   int64_t ldc, float beta) {
    // Every loop over the tile's rows unrolled, so that the accumulators are registers
    // throughout: with the first and last loops rolled, GCC kept a stack copy of all 28, zeroed
    // and stored at every call (objdump: 100 stack references in ukernel_14x32<false>, 15
    // without vectors now), as gemm_u8s8_avx512vnni.cpp's kernel once did.
    __m512 acc[kBf16MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < kBf16MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kp; ++p) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b + p * kBf16NR);
        const __m512bh b1 = (__m512bh)_mm512_load_si512(b + p * kBf16NR + 16);
        const uint32_t* ap = kPanel ? a + p * kBf16NR : a + p;
#pragma GCC unroll 14
        for (int i = 0; i < kBf16MR; ++i) {
            const uint32_t pair = kPanel ? ap[i] : ap[i * a_stride];
            const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
        }
    }
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
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

void ukernel_14x32_avx512bf16(int64_t kp, const uint32_t* a, int64_t a_stride, bool a_panel,
                              const uint32_t* b, float* c, int64_t ldc, float beta) {
    if (a_panel) return ukernel_14x32<true>(kp, a, a_stride, b, c, ldc, beta);
    ukernel_14x32<false>(kp, a, a_stride, b, c, ldc, beta);
}

// 32 floats of a row as 16 pairs: vcvtne2ps2bf16 puts the second operand's 16 bfloat16 in the
// low half, so (hi, lo) gives them in memory order, which is the pair order.
inline __m512i pairs_of(const float* x, __mmask16 lo_mask, __mmask16 hi_mask) {
    const __m512 lo = _mm512_maskz_loadu_ps(lo_mask, x);
    const __m512 hi = _mm512_maskz_loadu_ps(hi_mask, x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

void pack_row_avx512bf16(const float* row, int64_t K, uint32_t* out) {
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) _mm512_storeu_si512(out + k / 2, pairs_of(row + k, 0xffff, 0xffff));
    if (k < K) {
        const int64_t left = K - k;  // 1..31 floats; odd K pads its last pair with zero
        const __mmask16 lo = static_cast<__mmask16>(left >= 16 ? 0xffff : (1u << left) - 1);
        const __mmask16 hi =
            static_cast<__mmask16>(left <= 16 ? 0 : (1u << (left - 16)) - 1);
        const int64_t pairs = (left + 1) / 2;
        _mm512_mask_storeu_epi32(out + k / 2, static_cast<__mmask16>((1u << pairs) - 1),
                                 pairs_of(row + k, lo, hi));
    }
}

// Columns n0.. of rows 2p, 2p + 1, for every pair p: convert both rows (row 2p in the low half),
// then interleave them column by column into pairs. The masks are the panel's, made once.
void pack_b_avx512bf16(const float* B, int64_t ldb, int64_t K, int64_t N, int64_t n0, int64_t kp,
                       uint32_t* out) {
    static const __m512i interleave = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
        23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __mmask16 mask[2];
    for (int h = 0; h < 2; ++h) {
        const int64_t cols = std::min<int64_t>(16, std::max<int64_t>(0, N - n0 - 16 * h));
        mask[h] = static_cast<__mmask16>(cols >= 16 ? 0xffff : (1u << cols) - 1);
    }
    const float* col = B + n0;
    for (int64_t p = 0; p < kp; ++p) {
        const float* r0 = col + 2 * p * ldb;
        const bool has_r1 = 2 * p + 1 < K;
        for (int h = 0; h < 2; ++h) {
            const __m512 lo = _mm512_maskz_loadu_ps(mask[h], r0 + 16 * h);
            const __m512 hi =
                has_r1 ? _mm512_maskz_loadu_ps(mask[h], r0 + ldb + 16 * h) : _mm512_setzero_ps();
            const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            _mm512_store_si512(out + p * kBf16NR + 16 * h,
                               _mm512_permutexvar_epi16(interleave, both));
        }
    }
}

const Bf16Gemm kTable{"avx512_bf16", ukernel_14x32_avx512bf16, pack_row_avx512bf16,
                      pack_b_avx512bf16, nullptr};

}  // namespace

const Bf16Gemm* gemm_bf16_avx512bf16() { return &kTable; }

}  // namespace cnnfast

#else

namespace cnnfast {
const Bf16Gemm* gemm_bf16_avx512bf16() { return nullptr; }
}  // namespace cnnfast

#endif
