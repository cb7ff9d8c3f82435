// The transforms of Winograd F(2x2, 3x3) on AVX-512 (contracts in conv2d_winograd.h; the drivers
// that block, thread and multiply are in conv2d_winograd.cpp). The matrices:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   (input, 4x4 -> 4x4)
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] (kernel, 3x3 -> 4x4)
//   A^T = [1 1 1 0; 0 1 -1 -1]                       (output, 4x4 -> 2x2)
#include "conv2d_winograd.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "avx512_util.h"
#include "conv2d_winograd_input.h"
#include "workspace.h"

namespace cnnfast {
namespace {

// U (16, Cin, ldu) = G g G^T for input channels [ci0, ci1) x output channels [co0, co1) (16 at a
// time; co0 and co1 multiples of 16), where tap (i, j) of
// g is w[tap(i, j) * taps + ci * s_ci + co * s_co]; ldu is a multiple of 16, and lanes
// co >= Cout are zeroed. Vectorised over 16 output channels: the 16 positions' rows lie
// Cin * ldu floats apart, a multiple of 4 KiB for 64 or more channels, so they share one L1 set,
// and a scalar loop's one-float stores to them missed the L1 nearly every time (about 50 ns per
// (ci, co) pair: 0.25 ms per call at 64x64 channels, 3.5 ms at 256x256).
// r[pos] = (G g G^T)[pos] of input channel ci and output channels [co, co + 16) (lanes past
// Cout zero), tap (i, j) of g at w[tap(i, j) * taps + ci * s_ci + co * s_co] (gathered when
// s_co != 1, with gather_index the lanes' offsets).
inline __attribute__((always_inline)) void kernel_positions(
    __m512 r[16], const float* w, int64_t Cout, bool flipped, int64_t taps, int64_t s_ci,
    int64_t s_co, const __m512i& gather_index, int64_t ci, int64_t co) {
    const __m512 half = _mm512_set1_ps(0.5f);
    const __mmask16 m = lanes(Cout - co);
    __m512 g[3][3], t[4][3];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            const int tap = flipped ? 8 - (3 * i + j) : 3 * i + j;
            const float* src = w + tap * taps + ci * s_ci + co * s_co;
            g[i][j] = s_co == 1 ? _mm512_maskz_loadu_ps(m, src)
                                : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, gather_index,
                                                           src, 4);
        }
    for (int j = 0; j < 3; ++j) {  // G g
        const __m512 outer = _mm512_add_ps(g[0][j], g[2][j]);
        t[0][j] = g[0][j];
        t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(outer, g[1][j]));
        t[2][j] = _mm512_mul_ps(half, _mm512_sub_ps(outer, g[1][j]));
        t[3][j] = g[2][j];
    }
    for (int a = 0; a < 4; ++a) {  // (G g) G^T
        const __m512 outer = _mm512_add_ps(t[a][0], t[a][2]);
        r[4 * a] = t[a][0];
        r[4 * a + 1] = _mm512_mul_ps(half, _mm512_add_ps(outer, t[a][1]));
        r[4 * a + 2] = _mm512_mul_ps(half, _mm512_sub_ps(outer, t[a][1]));
        r[4 * a + 3] = t[a][2];
    }
}

inline __m512i gather_offsets(int64_t s_co) {
    return _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(static_cast<int>(s_co)));
}

void transform_kernel(float* U, int64_t ldu, const float* w, int64_t Cin, int64_t Cout,
                      bool flipped, int64_t taps, int64_t s_ci, int64_t s_co, int64_t ci0,
                      int64_t ci1, int64_t co0, int64_t co1) {
    const int64_t pos_stride = winograd_kernel_stride(Cin, ldu);
    // Output channels s_co floats apart (backward-data's transposed kernels) are gathered; with
    // ci inner, a block of 16 channels' cache lines serves 16 consecutive ci from L1.
    const __m512i gather_index = gather_offsets(s_co);
    auto transform = [&](int64_t ci, int64_t co) {
        __m512 r[16];
        kernel_positions(r, w, Cout, flipped, taps, s_ci, s_co, gather_index, ci, co);
        float* u = U + ci * ldu + co;
        for (int pos = 0; pos < 16; ++pos) _mm512_storeu_ps(u + pos * pos_stride, r[pos]);
    };
    if (s_co == 1) {  // rows of w and of U[pos] read and written in order
        for (int64_t ci = ci0; ci < ci1; ++ci)
            for (int64_t co = co0; co < co1; co += 16) transform(ci, co);
    } else {
        for (int64_t co = co0; co < co1; co += 16)
            for (int64_t ci = ci0; ci < ci1; ++ci) transform(ci, co);
    }
}

// transform_kernel's U written as the bfloat16 GEMM's packed B (gemm_bf16.h): position pos at
// P + pos * pos_size, each U[pos] (Cin x Cout) in panels of 32 output channels holding ceil(Cin/2)
// pairs of input channels: P[pos][co / 32][ci / 2][co % 32] = bf16(U[ci]) | bf16(U[ci + 1]) << 16
// (zero past Cin and Cout). ci0 is even; co0, co1 multiples of 16.
void transform_kernel_bf16(uint32_t* P, int64_t pos_size, const float* w, int64_t Cin,
                           int64_t Cout, bool flipped, int64_t taps, int64_t s_ci, int64_t s_co,
                           int64_t ci0, int64_t ci1, int64_t co0, int64_t co1) {
    const int64_t kp = (Cin + 1) / 2, cout16 = (Cout + 15) / 16 * 16;
    const __m512i gather_index = gather_offsets(s_co);
    auto transform = [&](int64_t ci, int64_t co) {  // channels ci, ci + 1
        __m512 lo[16], hi[16];
        kernel_positions(lo, w, Cout, flipped, taps, s_ci, s_co, gather_index, ci, co);
        if (ci + 1 < Cin)
            kernel_positions(hi, w, Cout, flipped, taps, s_ci, s_co, gather_index, ci + 1, co);
        else
            for (auto& h : hi) h = _mm512_setzero_ps();
        uint32_t* out = P + (co / 32) * kp * 32 + (ci / 2) * 32 + co % 32;
        // The last panel's columns past the 16-channel block that holds Cout stay zero.
        const bool zero_next = co % 32 == 0 && co + 16 == cout16;
        for (int pos = 0; pos < 16; ++pos) {
            const __m512i pairs = _mm512_or_si512(_mm512_srli_epi32(bf16_upper(lo[pos]), 16),
                                                  bf16_upper(hi[pos]));
            _mm512_storeu_si512(out + pos * pos_size, pairs);
            if (zero_next) _mm512_storeu_si512(out + pos * pos_size + 16, _mm512_setzero_si512());
        }
    };
    if (s_co == 1) {
        for (int64_t ci = ci0; ci < ci1; ci += 2)
            for (int64_t co = co0; co < co1; co += 16) transform(ci, co);
    } else {
        for (int64_t co = co0; co < co1; co += 16)
            for (int64_t ci = ci0; ci < ci1; ci += 2) transform(ci, co);
    }
}

// 16 lanes (m of them) of a transformed patch stored as float32, or, for mixed-precision
// training on the portable bfloat16 GEMM (without AVX512-BF16, or selected for tests), as
// bfloat16 (gemm_bf16.h's rounding, bf16_upper), which the GEMM reads in place as pairs of
// channels.
inline void store_lanes(float* at, __mmask16 m, __m512 v) { _mm512_mask_storeu_ps(at, m, v); }
inline void store_lanes(uint16_t* at, __mmask16 m, __m512 v) {
    _mm512_mask_cvtepi32_storeu_epi16(at, m, _mm512_srli_epi32(bf16_upper(v), 16));
}

// V[pos][i][c] = (B^T d B)[pos] for tiles t0 + i, i < nt, of x (N,H,W,C); V's positions are
// ldpos values apart, its tiles C values.
template <class T>
void transform_input_to(T* V, int64_t ldpos, const float* x, int64_t t0, int64_t nt,
                        const Conv2dDims& d, const TileGrid& g) {
    const int64_t C = d.C;
    winograd_input::walk_tiles(x, t0, nt, d, g, [&](int64_t i, const auto& patch) {
        T* v = V + i * C;
        for (int64_t c = 0; c < C; c += 16) {
            const __mmask16 m = lanes(C - c);
            __m512 o[16];
            winograd_input::patch_positions(o, patch, c, m);
            for (int pos = 0; pos < 16; ++pos) store_lanes(v + pos * ldpos + c, m, o[pos]);
        }
    });
}

void transform_input(float* V, int64_t ldpos, const float* x, int64_t t0, int64_t nt,
                     const Conv2dDims& d, const TileGrid& g) {
    transform_input_to(V, ldpos, x, t0, nt, d, g);
}

void transform_input_bf16(uint16_t* V, int64_t ldpos, const float* x, int64_t t0, int64_t nt,
                          const Conv2dDims& d, const TileGrid& g) {
    transform_input_to(V, ldpos, x, t0, nt, d, g);
}

// Where tile `tile` of m x m outputs (grid g) writes in y (N,OH,OW,K): its first output, and
// how many of its rows and columns lie inside OH x OW.
struct TileOutputs {
    float* out;
    int rows, cols;
};

inline TileOutputs tile_outputs(float* y, int64_t tile, int64_t m, const Conv2dDims& d,
                                const TileGrid& g) {
    const int64_t n = tile / g.per_image, r = tile % g.per_image;
    const int64_t oh0 = m * (r / g.TW), ow0 = m * (r % g.TW);
    return {y + ((n * d.OH + oh0) * d.OW + ow0) * d.K,
            static_cast<int>(std::min(m, d.OH - oh0)), static_cast<int>(std::min(m, d.OW - ow0))};
}

// y (N,OH,OW,K) for tiles t0 + i, i < nt: act(bias + A^T M A), M[pos][i][k] with positions ldpos
// and tiles ldk floats apart. Tile outputs beyond OH or OW are dropped.
void transform_output(float* y, const float* M, int64_t ldpos, int64_t ldk, int64_t t0,
                      int64_t nt, const float* bias, bool relu, const Conv2dDims& d,
                      const TileGrid& g) {
    const int64_t K = d.K;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < nt; ++i) {
        const auto [out, rows, cols] = tile_outputs(y, t0 + i, 2, d, g);
        const float* mt = M + i * ldk;
        for (int64_t k = 0; k < K; k += 16) {
            const __mmask16 m = lanes(K - k);
            __m512 s[2][4];
            for (int b = 0; b < 4; ++b) {  // A^T M
                const __m512 m0 = _mm512_loadu_ps(mt + b * ldpos + k);
                const __m512 m1 = _mm512_loadu_ps(mt + (4 + b) * ldpos + k);
                const __m512 m2 = _mm512_loadu_ps(mt + (8 + b) * ldpos + k);
                const __m512 m3 = _mm512_loadu_ps(mt + (12 + b) * ldpos + k);
                s[0][b] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                s[1][b] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            const __m512 bv = bias ? _mm512_maskz_loadu_ps(m, bias + k) : zero;
            __m512 o[2][2];
            for (int a = 0; a < 2; ++a) {  // (A^T M) A
                o[a][0] = _mm512_add_ps(_mm512_add_ps(s[a][0], s[a][1]), _mm512_add_ps(s[a][2], bv));
                o[a][1] = _mm512_sub_ps(_mm512_sub_ps(s[a][1], s[a][2]), _mm512_sub_ps(s[a][3], bv));
                // vmaxps returns its second operand when either is NaN: NaN survives ReLU.
                if (relu) o[a][0] = _mm512_max_ps(zero, o[a][0]), o[a][1] = _mm512_max_ps(zero, o[a][1]);
            }
            _mm512_mask_storeu_ps(out + k, m, o[0][0]);
            if (cols == 2) _mm512_mask_storeu_ps(out + K + k, m, o[0][1]);
            if (rows == 2) {
                _mm512_mask_storeu_ps(out + d.OW * K + k, m, o[1][0]);
                if (cols == 2) _mm512_mask_storeu_ps(out + (d.OW + 1) * K + k, m, o[1][1]);
            }
        }
    }
}

// D[pos][i][k] = (A e A^T)[pos] for the 2x2 dy tiles e of tiles t0 + i, i < nt, of dy
// (N,OH,OW,K); positions ldpos and tiles ldk floats apart, lanes K..ldk zeroed. Adds each tile's
// dy to db (ldk floats) unless db is null. Tile outputs beyond OH or OW read as zero.
void transform_gradient(float* D, int64_t ldpos, int64_t ldk, float* db, const float* dy,
                        int64_t t0, int64_t nt, const Conv2dDims& d, const TileGrid& g) {
    const int64_t K = d.K;
    for (int64_t i = 0; i < nt; ++i) {
        const int64_t tile = t0 + i, n = tile / g.per_image, r = tile % g.per_image;
        const int64_t oh0 = 2 * (r / g.TW), ow0 = 2 * (r % g.TW);
        const bool row1 = oh0 + 1 < d.OH, col1 = ow0 + 1 < d.OW;
        const float* e00 = dy + ((n * d.OH + oh0) * d.OW + ow0) * K;
        const float* e10 = e00 + d.OW * K;
        float* dt = D + i * ldk;
        for (int64_t k = 0; k < ldk; k += 16) {
            const __mmask16 m = lanes(K - k);
            const __m512 e[2][2] = {
                {_mm512_maskz_loadu_ps(m, e00 + k), _mm512_maskz_loadu_ps(col1 ? m : 0, e00 + K + k)},
                {_mm512_maskz_loadu_ps(row1 ? m : 0, e10 + k),
                 _mm512_maskz_loadu_ps(row1 && col1 ? m : 0, e10 + K + k)}};
            if (db) {
                const __m512 sum = _mm512_add_ps(_mm512_add_ps(e[0][0], e[0][1]),
                                                 _mm512_add_ps(e[1][0], e[1][1]));
                _mm512_storeu_ps(db + k, _mm512_add_ps(_mm512_loadu_ps(db + k), sum));
            }
            __m512 u[4][2];
            for (int b = 0; b < 2; ++b) {  // A e
                u[0][b] = e[0][b];
                u[1][b] = _mm512_add_ps(e[0][b], e[1][b]);
                u[2][b] = _mm512_sub_ps(e[0][b], e[1][b]);
                u[3][b] = _mm512_sub_ps(_mm512_setzero_ps(), e[1][b]);
            }
            for (int a = 0; a < 4; ++a) {  // (A e) A^T
                float* row = dt + 4 * a * ldpos + k;
                _mm512_storeu_ps(row, u[a][0]);
                _mm512_storeu_ps(row + ldpos, _mm512_add_ps(u[a][0], u[a][1]));
                _mm512_storeu_ps(row + 2 * ldpos, _mm512_sub_ps(u[a][0], u[a][1]));
                _mm512_storeu_ps(row + 3 * ldpos, _mm512_sub_ps(_mm512_setzero_ps(), u[a][1]));
            }
        }
    }
}

// dx (N,H,W,C) += B dV B^T, the input-patch gradients of tiles t0 + i, i < nt, from
// dV[pos][i][c] (positions ldpos and tiles ldc floats apart); patch pixels outside x are dropped.
// B = [1 0 0 0; 0 1 -1 1; -1 1 1 0; 0 0 0 -1] (the transpose of the input transform's B^T).
void scatter_input_gradient(float* dx, const float* dV, int64_t ldpos, int64_t ldc, int64_t t0,
                            int64_t nt, const Conv2dDims& d, const TileGrid& g) {
    const int64_t C = d.C;
    for (int64_t i = 0; i < nt; ++i) {
        const int64_t tile = t0 + i, n = tile / g.per_image, r = tile % g.per_image;
        const int64_t ih0 = 2 * (r / g.TW) - d.pad_top, iw0 = 2 * (r % g.TW) - d.pad_left;
        bool in[4][4];
        for (int a = 0; a < 4; ++a)
            for (int b = 0; b < 4; ++b)
                in[a][b] = ih0 + a >= 0 && ih0 + a < d.H && iw0 + b >= 0 && iw0 + b < d.W;
        float* patch = dx + ((n * d.H + ih0) * d.W + iw0) * C;
        const float* v = dV + i * ldc;
        for (int64_t c = 0; c < C; c += 16) {
            const __mmask16 m = lanes(C - c);
            __m512 q[4][4], t[4][4];
            for (int a = 0; a < 4; ++a)
                for (int b = 0; b < 4; ++b) q[a][b] = _mm512_loadu_ps(v + (4 * a + b) * ldpos + c);
            for (int b = 0; b < 4; ++b) {  // B dV
                t[0][b] = q[0][b];
                t[1][b] = _mm512_add_ps(_mm512_sub_ps(q[1][b], q[2][b]), q[3][b]);
                t[2][b] = _mm512_sub_ps(_mm512_add_ps(q[1][b], q[2][b]), q[0][b]);
                t[3][b] = _mm512_sub_ps(_mm512_setzero_ps(), q[3][b]);
            }
            for (int a = 0; a < 4; ++a) {  // (B dV) B^T
                const __m512 o[4] = {t[a][0], _mm512_add_ps(_mm512_sub_ps(t[a][1], t[a][2]), t[a][3]),
                                     _mm512_sub_ps(_mm512_add_ps(t[a][1], t[a][2]), t[a][0]),
                                     _mm512_sub_ps(_mm512_setzero_ps(), t[a][3])};
                for (int b = 0; b < 4; ++b) {
                    if (!in[a][b]) continue;
                    float* at = patch + (a * d.W + b) * C + c;
                    // Neighbouring tiles overlap: full-width accesses let the next tile's load
                    // take its data from this store; a masked store would make it wait.
                    if (m == __mmask16(0xFFFF))
                        _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), o[b]));
                    else
                        _mm512_mask_storeu_ps(at, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, at), o[b]));
                }
            }
        }
    }
}

// Row c of dw[i][j][c][k] = (G^T S G)[i][j], S[pos][c][k] = the sum over `used` partials
// (part_floats apart, in order) of dU[pos][c][k] (16, C, Kp); 16 output channels at a time (see
// transform_kernel: the 16 positions share one L1 set).
void weight_gradient_row(float* dw, const float* parts, int64_t part_floats, int used, int64_t C,
                         int64_t K, int64_t Kp, int64_t c) {
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int64_t k = 0; k < K; k += 16) {
        const __mmask16 m = lanes(K - k);
        __m512 s[16], t[3][4];
        for (int pos = 0; pos < 16; ++pos) {
            const float* at = parts + pos * C * Kp + c * Kp + k;
            __m512 v = _mm512_setzero_ps();
            for (int p = 0; p < used; ++p)
                v = _mm512_add_ps(v, _mm512_loadu_ps(at + p * part_floats));
            s[pos] = v;
        }
        for (int b = 0; b < 4; ++b) {  // G^T S
            const __m512 inner = _mm512_mul_ps(half, _mm512_add_ps(s[4 + b], s[8 + b]));
            t[0][b] = _mm512_add_ps(s[b], inner);
            t[1][b] = _mm512_mul_ps(half, _mm512_sub_ps(s[4 + b], s[8 + b]));
            t[2][b] = _mm512_add_ps(inner, s[12 + b]);
        }
        for (int i = 0; i < 3; ++i) {  // (G^T S) G
            float* o = dw + (3 * i) * C * K + c * K + k;
            const __m512 inner = _mm512_mul_ps(half, _mm512_add_ps(t[i][1], t[i][2]));
            _mm512_mask_storeu_ps(o, m, _mm512_add_ps(t[i][0], inner));
            _mm512_mask_storeu_ps(o + C * K, m,
                                  _mm512_mul_ps(half, _mm512_sub_ps(t[i][1], t[i][2])));
            _mm512_mask_storeu_ps(o + 2 * C * K, m, _mm512_add_ps(inner, t[i][3]));
        }
    }
}


// Winograd F(4x4, 3x3), for the forward pass on a kept kernel (conv2d_winograd.h):
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
//          0 4 0 -5 0 1]                                          (input, 6x6 -> 6x6)
//   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] (output, 6x6 -> 4x4)

// r[0..5] = G g for the 3 values g[0..2] (one column or row of a kernel).
inline void kernel_column_f4(__m512 r[6], const __m512 g[3]) {
    const __m512 sixth = _mm512_set1_ps(1.0f / 6.0f);
    const __m512 outer = _mm512_add_ps(g[0], g[2]);
    r[0] = _mm512_mul_ps(_mm512_set1_ps(0.25f), g[0]);
    r[1] = _mm512_mul_ps(_mm512_set1_ps(-1.0f / 6.0f), _mm512_add_ps(outer, g[1]));
    r[2] = _mm512_mul_ps(_mm512_set1_ps(-1.0f / 6.0f), _mm512_sub_ps(outer, g[1]));
    const __m512 even = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 24.0f), g[0],
                                        _mm512_mul_ps(sixth, g[2]));
    const __m512 odd = _mm512_mul_ps(_mm512_set1_ps(1.0f / 12.0f), g[1]);
    r[3] = _mm512_add_ps(even, odd);
    r[4] = _mm512_sub_ps(even, odd);
    r[5] = g[2];
}

// U (36, Cin, ldu), positions winograd_kernel_stride(Cin, ldu) floats apart, = G g G^T of the
// kernel w (3,3,Cin,Cout) for input channels [ci0, ci1); lanes co >= Cout zeroed.
void transform_kernel_f4(float* U, int64_t ldu, const float* w, int64_t Cin, int64_t Cout,
                         int64_t ci0, int64_t ci1) {
    const int64_t pos_stride = winograd_kernel_stride(Cin, ldu);
    for (int64_t ci = ci0; ci < ci1; ++ci)
        for (int64_t co = 0; co < ldu; co += 16) {
            const __mmask16 m = lanes(Cout - co);
            __m512 g[3][3], t[6][3];
            for (int i = 0; i < 3; ++i)
                for (int j = 0; j < 3; ++j)
                    g[i][j] = _mm512_maskz_loadu_ps(m, w + ((3 * i + j) * Cin + ci) * Cout + co);
            for (int j = 0; j < 3; ++j) {  // G g, column by column
                const __m512 col[3] = {g[0][j], g[1][j], g[2][j]};
                __m512 r[6];
                kernel_column_f4(r, col);
                for (int a = 0; a < 6; ++a) t[a][j] = r[a];
            }
            float* u = U + ci * ldu + co;
            for (int a = 0; a < 6; ++a) {  // (G g) G^T, row by row
                __m512 r[6];
                kernel_column_f4(r, t[a]);
                for (int b = 0; b < 6; ++b) _mm512_storeu_ps(u + (6 * a + b) * pos_stride, r[b]);
            }
        }
}

// r[0..5] = B^T d for 6 values d[0..5].
inline __attribute__((always_inline)) void input_column_f4(__m512 r[6], const __m512 d[6]) {
    const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
    const __m512 two = _mm512_set1_ps(2.0f);
    r[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    const __m512 a = _mm512_fnmadd_ps(four, d[2], d[4]), b = _mm512_fnmadd_ps(four, d[1], d[3]);
    r[1] = _mm512_add_ps(a, b);
    r[2] = _mm512_sub_ps(a, b);
    const __m512 c = _mm512_sub_ps(d[4], d[2]), e = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
    r[3] = _mm512_add_ps(c, e);
    r[4] = _mm512_sub_ps(c, e);
    r[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

// V[pos][i][c] = (B^T d B)[pos] for the nt patches d (6x6 pixels of C channels) starting at
// patch0 + i * step, their rows row_floats apart, all inside the (padded) image; V's positions
// ldpos floats apart, its tiles C.
void transform_input_f4(float* V, int64_t ldpos, const float* patch0, int64_t row_floats,
                        int64_t step, int64_t nt, int64_t C) {
    for (int64_t i = 0; i < nt; ++i) {
        const float* patch = patch0 + i * step;
        float* v = V + i * C;
        for (int64_t c = 0; c < C; c += 16) {
            const __mmask16 m = lanes(C - c);
            __m512 t[6][6];
            for (int a = 0; a < 6; ++a) {  // each row d B
                __m512 row[6], r[6];
                for (int b = 0; b < 6; ++b)
                    row[b] = _mm512_maskz_loadu_ps(m, patch + a * row_floats + b * C + c);
                input_column_f4(r, row);
                for (int b = 0; b < 6; ++b) t[b][a] = r[b];
            }
            for (int b = 0; b < 6; ++b) {  // B^T (d B), column by column
                __m512 r[6];
                input_column_f4(r, t[b]);
                for (int a = 0; a < 6; ++a)
                    _mm512_mask_storeu_ps(v + (6 * a + b) * ldpos + c, m, r[a]);
            }
        }
    }
}

// o[0..3] = A^T m for 6 values m[0..5].
inline __attribute__((always_inline)) void output_column_f4(__m512 o[4], const __m512 m[6]) {
    const __m512 s12 = _mm512_add_ps(m[1], m[2]), d12 = _mm512_sub_ps(m[1], m[2]);
    const __m512 s34 = _mm512_add_ps(m[3], m[4]), d34 = _mm512_sub_ps(m[3], m[4]);
    o[0] = _mm512_add_ps(_mm512_add_ps(m[0], s12), s34);
    o[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12);
    o[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s34, s12);
    o[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d34, d12), m[5]);
}

// y (N,OH,OW,K) for tiles t0 + i, i < nt (4x4 outputs each, numbered as g says): act(bias +
// A^T M A), M[pos][i][k] with positions ldpos and tiles ldk floats apart. Outputs beyond OH or
// OW are dropped.
void transform_output_f4(float* y, const float* M, int64_t ldpos, int64_t ldk, int64_t t0,
                         int64_t nt, const float* bias, bool relu, const Conv2dDims& d,
                         const TileGrid& g) {
    const int64_t K = d.K;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < nt; ++i) {
        const auto [out, rows, cols] = tile_outputs(y, t0 + i, 4, d, g);
        const float* mt = M + i * ldk;
        for (int64_t k = 0; k < K; k += 16) {
            const __mmask16 m = lanes(K - k);
            const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + k) : zero;
            __m512 t[4][6];
            for (int col = 0; col < 6; ++col) {  // A^T M, column by column
                __m512 mc[6], o[4];
                for (int a = 0; a < 6; ++a) mc[a] = _mm512_loadu_ps(mt + (6 * a + col) * ldpos + k);
                output_column_f4(o, mc);
                for (int a = 0; a < 4; ++a) t[a][col] = o[a];
            }
            for (int a = 0; a < rows; ++a) {  // (A^T M) A, row by row
                __m512 o[4];
                output_column_f4(o, t[a]);
                for (int c = 0; c < cols; ++c) {
                    __m512 v = _mm512_add_ps(o[c], b);
                    if (relu) v = _mm512_max_ps(zero, v);  // NaN survives (second operand)
                    _mm512_mask_storeu_ps(out + (a * d.OW + c) * K + k, m, v);
                }
            }
        }
    }
}

// db[k, k + 16) (lanes below K) = the sum over `pixels` rows of dy (pixels, K), row by row.
void bias_gradient_block(float* db, const float* dy, int64_t pixels, int64_t K, int64_t k) {
    const __mmask16 m = lanes(K - k);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t p = 0; p < pixels; ++p)
        sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(m, dy + p * K + k));
    _mm512_mask_storeu_ps(db + k, m, sum);
}

}  // namespace

const WinogradTransforms* conv2d_winograd_avx512() {
    static const WinogradTransforms table = {"avx512",
                                             &transform_kernel,
                                             &transform_kernel_bf16,
                                             &transform_input,
                                             &transform_input_bf16,
                                             &transform_output,
                                             &transform_gradient,
                                             &scatter_input_gradient,
                                             &weight_gradient_row,
                                             &bias_gradient_block,
                                             &transform_kernel_f4,
                                             &transform_input_f4,
                                             &transform_output_f4};
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const WinogradTransforms* conv2d_winograd_avx512() { return nullptr; }
}  // namespace cnnfast

#endif
