// Winograd F(2x2, 3x3) convolution on AVX-512 (contracts and the algebra in conv2d_winograd.h).
//
// Work is split into blocks of tiles. A thread transforms one block's input patches into
// V (16, tiles, C), runs the 16 position GEMMs into M (16, tiles, K) and transforms M back into
// the output, while V and M stay in its L2 cache. Wide layers' forward passes (and backward-data
// as one) go position by position instead (forward_position_major). The matrices of F(2x2, 3x3):
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   (input, 4x4 -> 4x4)
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] (kernel, 3x3 -> 4x4)
//   A^T = [1 1 1 0; 0 1 -1 -1]                       (output, 4x4 -> 2x2)
#include "conv2d_winograd.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "avx512_util.h"
#include "gemm.h"
#include "parallel.h"

namespace cnnfast {
namespace {

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The 2x2 output tiles of an OH x OW output, numbered image by image, row by row.
struct TileGrid {
    int64_t TH, TW, per_image, total;
};

TileGrid tile_grid(const Conv2dDims& d) {
    const int64_t TH = (d.OH + 1) / 2, TW = (d.OW + 1) / 2;
    return {TH, TW, TH * TW, d.N * TH * TW};
}

// V and M of one block together fill about this many floats (1 MiB), half a core's L2 here.
constexpr int64_t kBlockFloats = int64_t(1) << 18;

// Blocks of `tiles` tiles on T threads; the block count is a multiple of T so that the static
// schedule balances.
struct BlockPlan {
    int T;
    int64_t tiles, blocks;
};

BlockPlan block_plan(const TileGrid& g, int64_t C, int64_t Kp) {
    // Multiples of 24 tiles fill the micro-kernels' 6-, 8- and 12-row register tiles.
    const int64_t most = std::max<int64_t>(24, kBlockFloats / (16 * (C + Kp)) / 24 * 24);
    const int64_t macs = g.total * 16 * C * Kp;
    int64_t blocks = (g.total + most - 1) / most;
    const int T = static_cast<int>(std::min<int64_t>(threads_for(macs / kMacsPerThread), blocks));
    blocks = round_up(blocks, T);
    const int64_t tiles = round_up((g.total + blocks - 1) / blocks, 12);
    return {T, tiles, (g.total + tiles - 1) / tiles};
}

// U (16, Cin, ldu) = G g G^T for every (input channel ci, output channel co), where tap (i, j) of
// g is w[tap(i, j) * taps + ci * s_ci + co * s_co]; ldu is a multiple of 16, and lanes
// co >= Cout are zeroed. Vectorised over 16 output channels: the 16 positions' rows lie
// Cin * ldu floats apart, a multiple of 4 KiB for 64 or more channels, so they share one L1 set,
// and a scalar loop's one-float stores to them missed the L1 nearly every time (about 50 ns per
// (ci, co) pair: 0.25 ms per call at 64x64 channels, 3.5 ms at 256x256).
void transform_kernel(float* U, int64_t ldu, const float* w, int64_t Cin, int64_t Cout,
                      bool flipped, int64_t taps, int64_t s_ci, int64_t s_co) {
    const __m512 half = _mm512_set1_ps(0.5f);
    // Output channels s_co floats apart (backward-data's transposed kernels) are gathered; with
    // ci inner, a block of 16 channels' cache lines serves 16 consecutive ci from L1.
    const __m512i gather_index = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(static_cast<int>(s_co)));
    auto transform = [&](int64_t ci, int64_t co) {
        float* u = U + ci * ldu;
        const __mmask16 m = lanes(Cout - co);
        __m512 g[3][3], t[4][3];
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) {
                const int tap = flipped ? 8 - (3 * i + j) : 3 * i + j;
                const float* src = w + tap * taps + ci * s_ci + co * s_co;
                g[i][j] = s_co == 1 ? _mm512_maskz_loadu_ps(m, src)
                                    : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m,
                                                               gather_index, src, 4);
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
            const __m512 r[4] = {t[a][0], _mm512_mul_ps(half, _mm512_add_ps(outer, t[a][1])),
                                 _mm512_mul_ps(half, _mm512_sub_ps(outer, t[a][1])), t[a][2]};
            for (int b = 0; b < 4; ++b) _mm512_storeu_ps(u + (4 * a + b) * Cin * ldu + co, r[b]);
        }
    };
    const int T = threads_for(Cin * ldu / 16384);
    if (s_co == 1) {  // rows of w and of U[pos] read and written in order
#pragma omp parallel for num_threads(T) schedule(static)
        for (int64_t ci = 0; ci < Cin; ++ci)
            for (int64_t co = 0; co < ldu; co += 16) transform(ci, co);
    } else {
#pragma omp parallel for num_threads(T) schedule(static)
        for (int64_t co = 0; co < ldu; co += 16)
            for (int64_t ci = 0; ci < Cin; ++ci) transform(ci, co);
    }
}

// V[pos][i][c] = (B^T d B)[pos] for tiles t0 + i, i < nt, of x (N,H,W,C); V's positions are
// ldpos floats apart, its tiles C floats. Patch pixels outside the input read as zero.
void transform_input(float* V, int64_t ldpos, const float* x, int64_t t0, int64_t nt,
                     const Conv2dDims& d, const TileGrid& g) {
    const int64_t C = d.C;
    for (int64_t i = 0; i < nt; ++i) {
        const int64_t tile = t0 + i, n = tile / g.per_image, r = tile % g.per_image;
        const int64_t ih0 = 2 * (r / g.TW) - d.pad_top, iw0 = 2 * (r % g.TW) - d.pad_left;
        const float* src[16];
        bool in[16];
        for (int a = 0; a < 4; ++a)
            for (int b = 0; b < 4; ++b) {
                const int64_t ih = ih0 + a, iw = iw0 + b;
                in[4 * a + b] = ih >= 0 && ih < d.H && iw >= 0 && iw < d.W;
                // Masked-off loads never touch memory, so outside pixels may point anywhere.
                src[4 * a + b] = in[4 * a + b] ? x + ((n * d.H + ih) * d.W + iw) * C : x;
            }
        float* v = V + i * C;
        for (int64_t c = 0; c < C; c += 16) {
            const __mmask16 m = lanes(C - c);
            __m512 p[4][4], t[4][4];
            for (int a = 0; a < 4; ++a)
                for (int b = 0; b < 4; ++b)
                    p[a][b] = _mm512_maskz_loadu_ps(in[4 * a + b] ? m : __mmask16(0),
                                                    src[4 * a + b] + c);
            for (int b = 0; b < 4; ++b) {  // B^T d
                t[0][b] = _mm512_sub_ps(p[0][b], p[2][b]);
                t[1][b] = _mm512_add_ps(p[1][b], p[2][b]);
                t[2][b] = _mm512_sub_ps(p[2][b], p[1][b]);
                t[3][b] = _mm512_sub_ps(p[1][b], p[3][b]);
            }
            for (int a = 0; a < 4; ++a) {  // (B^T d) B
                float* row = v + 4 * a * ldpos + c;
                _mm512_mask_storeu_ps(row, m, _mm512_sub_ps(t[a][0], t[a][2]));
                _mm512_mask_storeu_ps(row + ldpos, m, _mm512_add_ps(t[a][1], t[a][2]));
                _mm512_mask_storeu_ps(row + 2 * ldpos, m, _mm512_sub_ps(t[a][2], t[a][1]));
                _mm512_mask_storeu_ps(row + 3 * ldpos, m, _mm512_sub_ps(t[a][1], t[a][3]));
            }
        }
    }
}

// y (N,OH,OW,K) for tiles t0 + i, i < nt: act(bias + A^T M A), M[pos][i][k] with positions ldpos
// and tiles ldk floats apart. Tile outputs beyond OH or OW are dropped.
void transform_output(float* y, const float* M, int64_t ldpos, int64_t ldk, int64_t t0,
                      int64_t nt, const float* bias, bool relu, const Conv2dDims& d,
                      const TileGrid& g) {
    const int64_t K = d.K;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < nt; ++i) {
        const int64_t tile = t0 + i, n = tile / g.per_image, r = tile % g.per_image;
        const int64_t oh0 = 2 * (r / g.TW), ow0 = 2 * (r % g.TW);
        const int rows = d.OH - oh0 >= 2 ? 2 : 1, cols = d.OW - ow0 >= 2 ? 2 : 1;
        float* out = y + ((n * d.OH + oh0) * d.OW + ow0) * K;
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

// Wide layers: U (16 C Kp floats) above this many floats (1 MiB, 128 -> 128 channels) no longer
// stays in a core's L2 beside a block's V and M, and the tile-block schedule below would read it
// again for every block of tiles: for 512 -> 512 channels that is 16 MiB per 24 tiles.
constexpr int64_t kWideKernelFloats = int64_t(1) << 18;
bool is_wide(int64_t C, int64_t Kp) { return 16 * C * Kp > kWideKernelFloats; }
// V and M of one pass of the position-major schedule together hold at most this many floats.
constexpr int64_t kPassFloats = int64_t(1) << 22;

// Runs of tiles for the position-major schedules below: f(t0, nt, V, M) for tiles t0 .. t0+nt,
// with the calling thread's V (16, nt, C) and M (16, nt, Kp) scratch holding together at most
// kPassFloats.
template <class F>
void for_each_pass(const TileGrid& g, int64_t C, int64_t Kp, const F& f) {
    const int64_t per_pass = std::max<int64_t>(12, kPassFloats / (16 * (C + Kp)) / 12 * 12);
    for (int64_t t0 = 0; t0 < g.total; t0 += per_pass) {
        const int64_t nt = std::min(per_pass, g.total - t0);
        f(t0, nt, workspace(Scratch::winograd_inputs, 16 * nt * C),
          workspace(Scratch::winograd_products, 16 * nt * Kp));
    }
}
// The threads each pass runs on.
int pass_threads(const TileGrid& g, int64_t C, int64_t Kp) {
    return threads_for(g.total * 16 * C * Kp / kMacsPerThread);
}

// The forward pass of a wide layer, position by position: each pass transforms a run of tiles
// into V, then runs each position's GEMM over all of them (the threads take whole positions, as
// packed single-thread sgemm calls whose blocks of U[pos] stay in L2 while every tile streams
// past), then transforms M back. Each product is one call whatever the thread count.
void forward_position_major(float* y, const float* x, const float* U, int64_t Kp,
                            const float* bias, const Conv2dDims& d, bool relu) {
    const TileGrid g = tile_grid(d);
    const int64_t C = d.C;
    const int T = pass_threads(g, C, Kp);
    for_each_pass(g, C, Kp, [&](int64_t t0, int64_t nt, float* V, float* M) {
        const int64_t ldv = nt * C, ldm = nt * Kp;
#pragma omp parallel num_threads(T)
        {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nt; i += 12)
                transform_input(V + i * C, ldv, x, t0 + i, std::min<int64_t>(12, nt - i), d, g);
#pragma omp for schedule(static)
            for (int64_t pos = 0; pos < 16; ++pos)
                sgemm_single_thread(false, false, nt, d.K, C, 1.0f, V + pos * ldv, C,
                                    U + pos * C * Kp, Kp, 0.0f, M + pos * ldm, Kp);
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nt; i += 12)
                transform_output(y, M + i * Kp, ldm, Kp, t0 + i, std::min<int64_t>(12, nt - i),
                                 bias, relu, d, g);
        }
    });
}

// The forward pass with the kernel already transformed: U (16, C, Kp).
void forward_transformed(const ConvDirectUkernels& uk, float* y, const float* x, const float* U,
                         int64_t Kp, const float* bias, const Conv2dDims& d, bool relu) {
    if (is_wide(d.C, Kp)) return forward_position_major(y, x, U, Kp, bias, d, relu);
    const TileGrid g = tile_grid(d);
    const BlockPlan plan = block_plan(g, d.C, Kp);
    const int64_t C = d.C, ldv = plan.tiles * C, ldm = plan.tiles * Kp;
    parallel_for(plan.T, plan.blocks, [&](int64_t b) {
        const int64_t t0 = b * plan.tiles, nt = std::min(plan.tiles, g.total - t0);
        float* V = workspace(Scratch::winograd_inputs, 16 * ldv);
        float* M = workspace(Scratch::winograd_products, 16 * ldm);
        transform_input(V, ldv, x, t0, nt, d, g);
        for (int pos = 0; pos < 16; ++pos) {
            // Tile i of the GEMM's A operand is row i of V[pos]: one "pixel" per tile.
            const ConvPixels px{V + pos * ldv, 0, C, plan.tiles};
            for (int64_t k0 = 0; k0 < d.K; k0 += 64)
                uk.forward(M + pos * ldm + k0, Kp, px, 0, nt, 1, 0, C, U + pos * C * Kp + k0, Kp,
                           nullptr, false, std::min<int64_t>(64, d.K - k0));
        }
        transform_output(y, M, ldm, Kp, t0, nt, bias, relu, d, g);
    });
}

}  // namespace

bool winograd_computes(const Conv2dDims& d) {
    return d.groups == 1 && d.KH == 3 && d.KW == 3 && d.stride_h == 1 && d.stride_w == 1 &&
           d.pad_top >= 0 && d.pad_top <= 2 && d.pad_left >= 0 && d.pad_left <= 2 && d.N > 0 &&
           d.OH > 0 && d.OW > 0 && d.C > 0 && d.K > 0;
}

void conv2d_forward_winograd(const ConvDirectUkernels& uk, float* y, const float* x,
                             const float* w, const float* bias, const Conv2dDims& d, bool relu) {
    const int64_t Kp = round_up(d.K, 16);
    float* U = workspace(Scratch::winograd_weights, 16 * d.C * Kp);
    transform_kernel(U, Kp, w, d.C, d.K, false, d.C * d.K, d.K, 1);
    forward_transformed(uk, y, x, U, Kp, bias, d, relu);
}

// Backward-data over the forward's own tiles: per tile, dV = (A dy A^T) x U^T per position,
// then dx += B dV B^T on the tile's 4x4 input patch. Patches of neighbouring tiles overlap, so a
// block holds whole images (one thread writes each image).
void backward_data_transposed(const ConvDirectUkernels& uk, float* dx, const float* dy,
                              const float* w, const Conv2dDims& d) {
    const TileGrid g = tile_grid(d);
    const int64_t C = d.C, K = d.K, Cp = round_up(C, 16), Kp = round_up(K, 16);
    float* UT = workspace(Scratch::winograd_weights, 16 * K * Cp);
    transform_kernel(UT, Cp, w, K, C, false, C * K, 1, K);  // UT[pos][k][c]
    const int64_t images = std::max<int64_t>(1, kBlockFloats / (16 * (Cp + Kp)) / g.per_image);
    BlockPlan plan{1, images * g.per_image, (d.N + images - 1) / images};
    plan.T = static_cast<int>(std::min<int64_t>(
        threads_for(g.total * 16 * C * Kp / kMacsPerThread), plan.blocks));
    const int64_t ldd = plan.tiles * Kp, ldv = plan.tiles * Cp;
    parallel_for(plan.T, plan.blocks, [&](int64_t b) {
        const int64_t n0 = b * images, t0 = n0 * g.per_image;
        const int64_t nt = std::min(plan.tiles, g.total - t0);
        std::memset(dx + n0 * d.H * d.W * C, 0, sizeof(float) * (nt / g.per_image) * d.H * d.W * C);
        float* D = workspace(Scratch::winograd_inputs, 16 * ldd);
        float* dV = workspace(Scratch::winograd_products, 16 * ldv);
        transform_gradient(D, ldd, Kp, nullptr, dy, t0, nt, d, g);
        for (int pos = 0; pos < 16; ++pos) {
            const ConvPixels px{D + pos * ldd, 0, Kp, plan.tiles};
            for (int64_t c0 = 0; c0 < C; c0 += 64)
                uk.forward(dV + pos * ldv + c0, Cp, px, 0, nt, 1, 0, K, UT + pos * K * Cp + c0, Cp,
                           nullptr, false, std::min<int64_t>(64, C - c0));
        }
        scatter_input_gradient(dx, dV, ldv, Cp, t0, nt, d, g);
    });
}

// Stride-1 backward-data is also the forward convolution of dy, zero-padded by 2 - pad_top rows
// and 2 - pad_left columns, with wf[i][j][k][c] = w[2-i][2-j][c][k]: a gather, taken unless the
// forward's tiling has fewer tiles ("valid" padding: the flipped convolution's output is larger).
void conv2d_backward_data_winograd(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                   const float* w, const Conv2dDims& d) {
    if (tile_grid(d).per_image < ((d.H + 1) / 2) * ((d.W + 1) / 2))
        return backward_data_transposed(uk, dx, dy, w, d);
    const Conv2dDims f = backward_data_as_forward_dims(d);
    const int64_t Cp = round_up(d.C, 16);
    float* U = workspace(Scratch::winograd_weights, 16 * d.K * Cp);
    transform_kernel(U, Cp, w, d.K, d.C, true, d.C * d.K, 1, d.K);
    forward_transformed(uk, dx, dy, U, Cp, nullptr, f, false);
}

namespace {

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

// Backward-weights of a wide layer (see forward_position_major), position by position: the
// threads take whole positions of dU and accumulate each over every tile of every pass, so no
// thread keeps a partial of all of dU (16 C Kp floats; 16 MiB at 512 channels, zeroed and summed
// per thread by the tile-block schedule) and the result does not depend on the thread count.
// db sums dy pixel by pixel, 16 channels per work item.
void backward_weights_position_major(float* dw, float* db, const float* x, const float* dy,
                                     const Conv2dDims& d) {
    const TileGrid g = tile_grid(d);
    const int64_t C = d.C, K = d.K, Kp = round_up(K, 16);
    const int T = pass_threads(g, C, Kp);
    float* dU = workspace(Scratch::conv_shared, 16 * C * Kp);
    for_each_pass(g, C, Kp, [&](int64_t t0, int64_t nt, float* V, float* D) {
        const int64_t ldv = nt * C, ldm = nt * Kp;
#pragma omp parallel num_threads(T)
        {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nt; i += 12) {
                const int64_t n = std::min<int64_t>(12, nt - i);
                transform_input(V + i * C, ldv, x, t0 + i, n, d, g);
                transform_gradient(D + i * Kp, ldm, Kp, nullptr, dy, t0 + i, n, d, g);
            }
#pragma omp for schedule(static)
            for (int64_t pos = 0; pos < 16; ++pos)  // dU[pos] (+)= V[pos]^T D[pos]
                sgemm_single_thread(true, false, C, K, nt, 1.0f, V + pos * ldv, C, D + pos * ldm,
                                    Kp, t0 == 0 ? 0.0f : 1.0f, dU + pos * C * Kp, Kp);
        }
    });
    const int64_t pixels = d.N * d.OH * d.OW;
#pragma omp parallel num_threads(T)
    {
#pragma omp for schedule(static) nowait
        for (int64_t c = 0; c < C; ++c) weight_gradient_row(dw, dU, 0, 1, C, K, Kp, c);
        if (db) {
#pragma omp for schedule(static)
            for (int64_t k = 0; k < K; k += 16) {
                const __mmask16 m = lanes(K - k);
                __m512 sum = _mm512_setzero_ps();
                for (int64_t p = 0; p < pixels; ++p)
                    sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(m, dy + p * K + k));
                _mm512_mask_storeu_ps(db + k, m, sum);
            }
        }
    }
}

}  // namespace

void conv2d_backward_weights_winograd(const ConvDirectUkernels& uk, float* dw, float* db,
                                      const float* x, const float* dy, const Conv2dDims& d) {
    const int64_t C = d.C, K = d.K, Kp = round_up(K, 16);
    if (is_wide(C, Kp)) return backward_weights_position_major(dw, db, x, dy, d);
    const TileGrid g = tile_grid(d);
    const BlockPlan plan = block_plan(g, C, Kp);
    const int64_t ldv = plan.tiles * C, ldm = plan.tiles * Kp;
    // Per thread: dU (16, C, Kp) then db (Kp), summed over threads in thread order at the end,
    // so the result depends on the thread count only, not on timing.
    const int64_t UF = 16 * C * Kp, part_floats = UF + Kp;
    float* parts = workspace(Scratch::conv_shared, std::max(plan.T, 1) * part_floats);
    int64_t* off = workspace<int64_t>(Scratch::conv_offsets, C);
    for (int64_t c = 0; c < C; ++c) off[c] = c;
    auto accumulate = [&](float* part, int64_t b) {
        const int64_t t0 = b * plan.tiles, nt = std::min(plan.tiles, g.total - t0);
        float* V = workspace(Scratch::winograd_inputs, 16 * ldv);
        float* D = workspace(Scratch::winograd_products, 16 * ldm);
        transform_input(V, ldv, x, t0, nt, d, g);
        transform_gradient(D, ldm, Kp, part + UF, dy, t0, nt, d, g);
        for (int pos = 0; pos < 16; ++pos) {
            const ConvPixels px{V + pos * ldv, 0, C, plan.tiles};
            for (int64_t k0 = 0; k0 < K; k0 += 64) {
                const int64_t nc = std::min<int64_t>(64, K - k0), R = conv_bwdw_max_rows(nc);
                for (int64_t c0 = 0; c0 < C; c0 += R)
                    uk.backward_weights(part + pos * C * Kp + c0 * Kp + k0, Kp, px, nt, off + c0,
                                        std::min(R, C - c0), D + pos * ldm + k0, Kp, nc);
            }
        }
    };
    // Items: the C dw rows, then the K db values (each partial's db starts at UF).
    reduce_over_threads(plan.T, plan.blocks, parts, part_floats, accumulate, C + K,
                        [&](int used, int64_t i) {
                            if (i < C)
                                return weight_gradient_row(dw, parts, part_floats, used, C, K,
                                                           Kp, i);
                            write_summed_gradient(nullptr, db, 0, parts + UF, part_floats, 1,
                                                  used, i - C);
                        });
}

bool conv2d_winograd_built() { return true; }

}  // namespace cnnfast

#else

namespace cnnfast {
bool winograd_computes(const Conv2dDims&) { return false; }
void conv2d_forward_winograd(const ConvDirectUkernels&, float*, const float*, const float*,
                             const float*, const Conv2dDims&, bool) {}
void conv2d_backward_data_winograd(const ConvDirectUkernels&, float*, const float*, const float*,
                                   const Conv2dDims&) {}
void conv2d_backward_weights_winograd(const ConvDirectUkernels&, float*, float*, const float*,
                                      const float*, const Conv2dDims&) {}
bool conv2d_winograd_built() { return false; }
}  // namespace cnnfast

#endif
