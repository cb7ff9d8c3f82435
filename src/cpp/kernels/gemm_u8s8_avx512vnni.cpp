// The int8 GEMM micro-kernel on vpdpbusd (AVX512-VNNI: Intel from Cascade Lake, AMD Zen 4 and
// later). Compiled with -mavx512vnni; chosen at run time only on CPUs that have it.
#include "gemm_u8s8_ukernel.h"

#if defined(CNNFAST_BUILD_AVX512VNNI)
#include <immintrin.h>

namespace cnnfast {

namespace {

// a (14 rows of a_stride quads), b (kq x 32 quads); c (14 x 32 int32) = a * b (+ c).
void ukernel_14x32_avx512vnni(int64_t kq, const uint32_t* a, int64_t a_stride, const uint32_t* b,
                              int32_t* c, int64_t ldc, bool accumulate) {
    // Every loop over the rows fully unrolled, so that GCC keeps the 28 accumulators in zmm
    // registers (with the first loop left rolled it kept the array on the stack and stored
    // every accumulator after each vpdpbusd).
    __m512i acc[kU8MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < kU8MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
    for (int64_t q = 0; q < kq; ++q) {
        const __m512i b0 = _mm512_load_si512(b + q * kU8NR);
        const __m512i b1 = _mm512_load_si512(b + q * kU8NR + 16);
        const uint32_t* aq = a + q;
#pragma GCC unroll 14
        for (int i = 0; i < kU8MR; ++i) {
            const __m512i ai = _mm512_set1_epi32(static_cast<int>(aq[i * a_stride]));
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], ai, b0);  // u8 (a) x s8 (b)
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], ai, b1);
        }
    }
#pragma GCC unroll 14
    for (int i = 0; i < kU8MR; ++i) {
        int32_t* row = c + i * ldc;
        if (accumulate) {
            acc[i][0] = _mm512_add_epi32(acc[i][0], _mm512_loadu_si512(row));
            acc[i][1] = _mm512_add_epi32(acc[i][1], _mm512_loadu_si512(row + 16));
        }
        _mm512_storeu_si512(row, acc[i][0]);
        _mm512_storeu_si512(row + 16, acc[i][1]);
    }
}

// Four rows of 16 bytes into 16 quads (r0[j], r1[j], r2[j], r3[j]): two rounds of interleaves.
void pack_b_avx512vnni(const int8_t* B, int64_t ldb, int64_t q, int64_t n0, uint32_t* out) {
    const int8_t* r = B + 4 * q * ldb + n0;
    for (int64_t h = 0; h < kU8NR; h += 16) {
        const __m128i r0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + h));
        const __m128i r1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + ldb + h));
        const __m128i r2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2 * ldb + h));
        const __m128i r3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 3 * ldb + h));
        const __m128i p01_lo = _mm_unpacklo_epi8(r0, r1), p01_hi = _mm_unpackhi_epi8(r0, r1);
        const __m128i p23_lo = _mm_unpacklo_epi8(r2, r3), p23_hi = _mm_unpackhi_epi8(r2, r3);
        auto* o = reinterpret_cast<__m128i*>(out + h);
        _mm_store_si128(o + 0, _mm_unpacklo_epi16(p01_lo, p23_lo));  // columns 0-3
        _mm_store_si128(o + 1, _mm_unpackhi_epi16(p01_lo, p23_lo));  // 4-7
        _mm_store_si128(o + 2, _mm_unpacklo_epi16(p01_hi, p23_hi));  // 8-11
        _mm_store_si128(o + 3, _mm_unpackhi_epi16(p01_hi, p23_hi));  // 12-15
    }
}

const U8Gemm kTable{"avx512_vnni", ukernel_14x32_avx512vnni, pack_b_avx512vnni, nullptr};

}  // namespace

const U8Gemm* gemm_u8s8_avx512vnni() { return &kTable; }

}  // namespace cnnfast

#else

namespace cnnfast {
const U8Gemm* gemm_u8s8_avx512vnni() { return nullptr; }
}  // namespace cnnfast

#endif
