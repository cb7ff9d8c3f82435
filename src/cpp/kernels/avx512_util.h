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
