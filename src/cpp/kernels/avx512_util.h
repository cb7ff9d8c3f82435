#pragma once
// Internal helpers shared by the *_avx512.cpp files (include only from them: they are the files
// compiled with AVX-512 flags).
#include <immintrin.h>

#include <cstdint>

namespace cnnfast {

// The first n lanes of a 16-lane vector (all for n >= 16, none for n <= 0): the mask of a
// vector's worth of a row whose last n values remain.
inline __mmask16 lanes(int64_t n) {
    return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}
// The same for 32 16-bit lanes and 64 byte lanes.
inline __mmask32 lanes32(int64_t n) {
    return n >= 32 ? ~__mmask32(0) : n <= 0 ? __mmask32(0) : (__mmask32(1) << n) - 1;
}
inline __mmask64 lanes64(int64_t n) {
    return n >= 64 ? ~__mmask64(0) : n <= 0 ? __mmask64(0) : (__mmask64(1) << n) - 1;
}

// The bfloat16 bits of 16 floats, round to nearest even in the upper half of each lane (the
// lower half zero, so that the lane read as a float is the rounded value): bf16_bits of
// gemm_bf16.cpp, lane by lane (subnormals to signed zero, NaN kept quiet), on AVX-512F alone.
inline __m512i bf16_upper(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i rounded = _mm512_add_epi32(
        u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                            _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
    __m512i r = _mm512_and_si512(rounded, _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
    const __m512i exponent = _mm512_and_si512(u, _mm512_set1_epi32(0x7f800000));
    const __mmask16 subnormal = _mm512_cmpeq_epi32_mask(exponent, _mm512_setzero_si512());
    r = _mm512_mask_and_epi32(r, subnormal, u, _mm512_set1_epi32(static_cast<int>(0x80000000u)));
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(
        _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_and_epi32(
        r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)),
        _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
}

// One vector of a finished GEMM tile (m: its columns): c = act(s + beta * c + bias), where s
// already holds alpha * (the product) and act is ReLU when relu. beta == 0 never reads c (NaNs
// in an overwritten C must not propagate); bias points at the vector's columns, or is null.
inline void store_c_vector(float* c, __mmask16 m, __m512 s, float beta, const float* bias,
                           bool relu) {
    if (beta != 0.0f) s = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, c), s);
    if (bias) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, bias));
    // vmaxps returns its second operand when either is NaN: NaN must survive ReLU.
    if (relu) s = _mm512_max_ps(_mm512_setzero_ps(), s);
    _mm512_mask_storeu_ps(c, m, s);
}

// acc += the R x (16 V) outer product of R values ak[0..R) and V vectors from bk (the rank-1
// step of a register-tiled product; bk need not be aligned).
template <int R, int V>
__attribute__((always_inline)) inline void rank1_update(__m512 (&acc)[R][V], const float* ak,
                                                        const float* bk) {
    __m512 bv[V];
#pragma GCC unroll 64
    for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_ps(bk + 16 * v);
#pragma GCC unroll 64
    for (int r = 0; r < R; ++r) {
        const __m512 ar = _mm512_set1_ps(ak[r]);
#pragma GCC unroll 64
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
}

// The same step with the R values from a(r) and the last vector's lanes limited to ml (rows
// of w whose width is not a multiple of 16): the direct convolution's backward-data and
// weight-streaming tiles and the small-M GEMM run it.
template <int R, int V, class A>
__attribute__((always_inline)) inline void rank1_update(__m512 (&acc)[R][V], const A& a,
                                                        const float* bk, __mmask16 ml) {
    __m512 bv[V];
#pragma GCC unroll 64
    for (int v = 0; v < V - 1; ++v) bv[v] = _mm512_loadu_ps(bk + 16 * v);
    bv[V - 1] = _mm512_maskz_loadu_ps(ml, bk + 16 * (V - 1));
#pragma GCC unroll 64
    for (int r = 0; r < R; ++r) {
        const __m512 ar = _mm512_set1_ps(a(r));
#pragma GCC unroll 64
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
}

}  // namespace cnnfast
