// AVX-512 micro-kernels of the direct convolution (contracts in conv2d_direct.h).
// Register tiles: P pixels (or R dw rows) x KV vectors of 16 output channels, P*KV <= 24
// accumulators, so each reduction step is KV vector loads + P broadcasts for P*KV FMAs. The last
// vector of a tile is masked, so any channel count works (K = 6 uses 6 of 16 lanes).
#include "conv2d_direct.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "avx512_util.h"

namespace cnnfast {
namespace {

// Pixels per tile for KV vectors of output channels.
constexpr int tile_pixels(int kv) { return kv >= 4 ? 6 : kv == 3 ? 8 : 12; }

// src[p] = the receptive field of pixel i + p for p < np, the last of them repeated up to P.
// One division per tile, then row/column stepping: two divisions per pixel cost more than a
// small convolution's (C * KH * KW <= 32) multiply-adds for that pixel.
template <int P, class T>
inline void tile_pixels_from(T** src, const ConvPixels& px, int64_t i, int64_t np) {
    int64_t oh = i / px.OW, ow = i - oh * px.OW;
    float* row = px.base + oh * px.row_step;
#pragma GCC unroll 32
    for (int p = 0; p < P; ++p) {
        if (p == 0 || p < np) {  // np >= 1: pixel 0 is always one of them
            src[p] = row + ow * px.col_step;
            if (++ow == px.OW) ow = 0, row += px.row_step;
        } else {
            src[p] = src[p - 1];
        }
    }
}

// ---- forward ------------------------------------------------------------------------------

// np <= P pixels whose receptive fields start at src[p], reduction steps q in [q0, q1) of the KH
// segments. The tile computes all P (callers repeat the last pixel) and stores np. First block
// (q0 == 0): starts from the bias, else from y; last block (q1 == KH*seg): applies the ReLU.
// CS > 0: the P pixels are src[0] + p * CS (one row of a map with CS floats between
// columns, or the tiles of a Winograd GEMM), and the broadcasts address them from one pointer
// with constant displacements; the P pointers of the general case (CS == 0) took more registers
// than x86-64 has, and their spills and reloads sat in the inner loop (ResNet-20's 16-channel
// forward: 9% of a training step).
template <int P, int KV, int CS = 0>
void fwd_tile(float* y, int64_t ldy, const float* const* src, int64_t np, int64_t q0, int64_t q1,
              int64_t KH, int64_t rs, int64_t seg, const float* w, int64_t ldw, const float* bias,
              bool relu, __mmask16 ml) {
    __m512 acc[P][KV];
    if (q0 == 0) {
        __m512 bv[KV];
#pragma GCC unroll 32
        for (int v = 0; v < KV; ++v)
            bv[v] = bias ? _mm512_maskz_loadu_ps(v == KV - 1 ? ml : __mmask16(0xFFFF), bias + 16 * v)
                         : _mm512_setzero_ps();
#pragma GCC unroll 32
        for (int p = 0; p < P; ++p)
#pragma GCC unroll 32
            for (int v = 0; v < KV; ++v) acc[p][v] = bv[v];
    } else {
#pragma GCC unroll 32
        for (int p = 0; p < P; ++p)
#pragma GCC unroll 32
            for (int v = 0; v < KV; ++v)
                acc[p][v] = _mm512_maskz_loadu_ps(v == KV - 1 ? ml : __mmask16(0xFFFF),
                                                  y + (p < np ? p : 0) * ldy + 16 * v);
    }
    for (int64_t kh = q0 / seg; kh < KH && kh * seg < q1; ++kh) {
        const int64_t j0 = q0 > kh * seg ? q0 - kh * seg : 0;
        const int64_t j1 = q1 - kh * seg < seg ? q1 - kh * seg : seg;
        const float* s[P];
#pragma GCC unroll 32
        for (int p = 0; p < P; ++p) s[p] = src[CS ? 0 : p] + kh * rs;
        const float* wk = w + (kh * seg + j0) * ldw;
        // avx512_util.h's masked rank1_update written out: through it, GCC 12 kept more of the
        // one-vector row tiles' loop state on the stack (objdump of fwd_range<1>), the
        // register pressure the one-pointer tiles above exist to relieve.
        for (int64_t j = j0; j < j1; ++j, wk += ldw) {
            __m512 wv[KV];
#pragma GCC unroll 32
            for (int v = 0; v < KV - 1; ++v) wv[v] = _mm512_loadu_ps(wk + 16 * v);
            wv[KV - 1] = _mm512_maskz_loadu_ps(ml, wk + 16 * (KV - 1));
#pragma GCC unroll 32
            for (int p = 0; p < P; ++p) {
                const __m512 a = _mm512_set1_ps(CS ? s[0][p * CS + j] : s[p][j]);
#pragma GCC unroll 32
                for (int v = 0; v < KV; ++v) acc[p][v] = _mm512_fmadd_ps(a, wv[v], acc[p][v]);
            }
        }
    }
    const bool do_relu = relu && q1 == KH * seg;
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 32
    for (int p = 0; p < P; ++p) {
        if (p >= np) break;
        float* yp = y + p * ldy;
#pragma GCC unroll 32
        for (int v = 0; v < KV; ++v) {
            __m512 r = acc[p][v];
            // vmaxps returns its second operand when either is NaN: NaN must survive ReLU.
            if (do_relu) r = _mm512_max_ps(zero, r);
            if (v < KV - 1)
                _mm512_storeu_ps(yp + 16 * v, r);
            else
                _mm512_mask_storeu_ps(yp + 16 * v, ml, r);
        }
    }
}

// Reduction steps per block: the block's weights (kc x 64 floats) stay in L1 while every pixel
// tile of the range sweeps them; y tiles are re-read once per block.
constexpr int64_t kFwdBlockFloats = 5120;

// Pixels per tile along one row (the one-pointer tiles): with one vector of output channels,
// 16 rather than 12, so a 32-wide row of ResNet's 16-channel maps is two tiles, not 12 + 12 + 8,
// and each weight vector serves 16 broadcasts (17 loads per 16 FMAs instead of 13 per 12; the
// 8-pixel remainder tile took 9 per 8). 16 accumulators and the weight vector fit the 32
// registers; the general tile's 16 pointers would not.
constexpr int row_tile_pixels(int kv) { return kv == 1 ? 16 : tile_pixels(kv); }

// t pixels from src[0], t in {P, 12, 8, 4} (12 only for P = 16; 8 and 4 only below P) or, for
// the last pixels of a range, 1-3, at a column step of cs floats.
template <int P, int KV, int CS>
void fwd_row_tile_cs(int64_t t, float* y, int64_t ldy, const float* const* src, int64_t q0,
                     int64_t q1, int64_t KH, int64_t rs, int64_t seg, const float* w, int64_t ldw,
                     const float* bias, bool relu, __mmask16 ml) {
    static_assert(P > 4, "the 1-3 pixel tiles below are narrower than P");
    if (t == P)
        fwd_tile<P, KV, CS>(y, ldy, src, P, q0, q1, KH, rs, seg, w, ldw, bias, relu, ml);
    else if (P > 12 && t == 12)
        fwd_tile<(P > 12 ? 12 : P), KV, CS>(y, ldy, src, t, q0, q1, KH, rs, seg, w, ldw, bias,
                                             relu, ml);
    else if (P > 8 && t == 8)
        fwd_tile<(P > 8 ? 8 : P), KV, CS>(y, ldy, src, t, q0, q1, KH, rs, seg, w, ldw, bias, relu,
                                           ml);
    else if (t == 4)
        fwd_tile<4, KV, CS>(y, ldy, src, t, q0, q1, KH, rs, seg, w, ldw, bias, relu, ml);
    else if (t == 3)
        fwd_tile<3, KV, CS>(y, ldy, src, t, q0, q1, KH, rs, seg, w, ldw, bias, relu, ml);
    else if (t == 2)
        fwd_tile<2, KV, CS>(y, ldy, src, t, q0, q1, KH, rs, seg, w, ldw, bias, relu, ml);
    else
        fwd_tile<1, KV, CS>(y, ldy, src, t, q0, q1, KH, rs, seg, w, ldw, bias, relu, ml);
}

template <int P, int KV>
void fwd_row_tile(int64_t t, int cs, float* y, int64_t ldy, const float* const* src, int64_t q0,
                  int64_t q1, int64_t KH, int64_t rs, int64_t seg, const float* w, int64_t ldw,
                  const float* bias, bool relu, __mmask16 ml) {
    if (cs == 16)
        fwd_row_tile_cs<P, KV, 16>(t, y, ldy, src, q0, q1, KH, rs, seg, w, ldw, bias, relu, ml);
    else if (cs == 32)
        fwd_row_tile_cs<P, KV, 32>(t, y, ldy, src, q0, q1, KH, rs, seg, w, ldw, bias, relu, ml);
    else
        fwd_row_tile_cs<P, KV, 64>(t, y, ldy, src, q0, q1, KH, rs, seg, w, ldw, bias, relu, ml);
}

template <int KV>
void fwd_range(float* y, int64_t ldy, const ConvPixels& px, int64_t p0, int64_t p1, int64_t KH,
               int64_t rs, int64_t seg, const float* w, int64_t ldw, const float* bias, bool relu,
               int64_t nc) {
    constexpr int P = tile_pixels(KV), PR = row_tile_pixels(KV);
    const __mmask16 ml = lanes(nc - 16 * (KV - 1));
    const int64_t Q = KH * seg;
    const int64_t blocks = (Q * 16 * KV + kFwdBlockFloats - 1) / kFwdBlockFloats;
    const float* src[P];
    // Tiles stay within one row when the column step is one the one-pointer tile is built for
    // (16, 32 or 64 floats: 16-64 channels at stride 1, and Winograd's GEMMs, one long row):
    // P pixels, or at a row's end 8 or 4 (a 32-wide row is 12 + 12 + 8), the last few through
    // the general tile. Other layouts take P pixels at a time across rows.
    const int cs = px.col_step == 16 ? 16 : px.col_step == 32 ? 32 : px.col_step == 64 ? 64 : 0;
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t q0 = Q * b / blocks, q1 = Q * (b + 1) / blocks;
        for (int64_t i = p0; i < p1;) {
            float* yt = y + i * ldy;
            if (cs) {
                const int64_t oh = i / px.OW, ow = i - oh * px.OW;
                const int64_t nr = std::min<int64_t>({p1 - i, px.OW - ow, PR});
                src[0] = px.base + oh * px.row_step + ow * px.col_step;
                // The range's last 1-3 pixels, when they lie in one row, take a tile of just
                // them: the general tile computes all P rows (Winograd F(4x4)'s 9 tiles of a
                // batch-1 Keras MNIST CNN were 6 + a 6-row tile for 3).
                const int64_t t = nr == PR                 ? PR
                                  : nr >= 12 && PR > 12    ? 12
                                  : nr >= 8 && PR > 8      ? 8
                                  : nr >= 4 && PR > 4      ? 4
                                  : nr == p1 - i           ? nr
                                                           : 0;
                if (t) {
                    fwd_row_tile<PR, KV>(t, cs, yt, ldy, src, q0, q1, KH, rs, seg, w, ldw, bias,
                                         relu, ml);
                    i += t;
                    continue;
                }
            }
            // The general tile, which steps across row ends: a row's last few pixels share it
            // with the next row's first (3x3 maps: 6 + 3 pixels, not 3 tiles of 3).
            const int64_t np = p1 - i < P ? p1 - i : P;
            tile_pixels_from<P>(src, px, i, np);
            fwd_tile<P, KV>(yt, ldy, src, np, q0, q1, KH, rs, seg, w, ldw, bias, relu, ml);
            i += np;
        }
    }
}

void forward(float* y, int64_t ldy, const ConvPixels& px, int64_t p0, int64_t p1, int64_t KH,
             int64_t rs, int64_t seg, const float* w, int64_t ldw, const float* bias, bool relu,
             int64_t nc) {
    switch ((nc + 15) / 16) {
        case 1: return fwd_range<1>(y, ldy, px, p0, p1, KH, rs, seg, w, ldw, bias, relu, nc);
        case 2: return fwd_range<2>(y, ldy, px, p0, p1, KH, rs, seg, w, ldw, bias, relu, nc);
        case 3: return fwd_range<3>(y, ldy, px, p0, p1, KH, rs, seg, w, ldw, bias, relu, nc);
        default: return fwd_range<4>(y, ldy, px, p0, p1, KH, rs, seg, w, ldw, bias, relu, nc);
    }
}

// ---- backward-weights ---------------------------------------------------------------------

// R dw rows x KV vectors accumulated over every pixel of the band. Contiguous: the rows' offsets
// are off[0] + r (one base register); otherwise each row keeps its own offset.
template <int R, int KV, bool Contiguous>
void bwdw_tile(float* dw, int64_t lddw, const ConvPixels& px, int64_t npix, const int64_t* off,
               const float* dy, int64_t ldy, __mmask16 ml) {
    __m512 acc[R][KV];
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r)
        #pragma GCC unroll 32
        for (int v = 0; v < KV; ++v) acc[r][v] = _mm512_setzero_ps();
    int64_t o[R];
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r) o[r] = Contiguous ? off[0] : off[r];
    const int64_t rows = (npix + px.OW - 1) / px.OW;
    for (int64_t oh = 0; oh < rows; ++oh) {
        const int64_t n_ow = npix - oh * px.OW < px.OW ? npix - oh * px.OW : px.OW;
        // Contiguous: s points at the rows' first value, so the broadcasts address s + r with
        // constant displacements (indexing s[o[0] + r] kept R invariant index registers, which
        // spilled: 28% of the loop's samples sat on a reload).
        const float* s = px.base + oh * px.row_step + (Contiguous ? o[0] : 0);
        const float* g = dy + oh * px.OW * ldy;
        for (int64_t ow = 0; ow < n_ow; ++ow, s += px.col_step, g += ldy) {
            __m512 gv[KV];
            #pragma GCC unroll 32
            for (int v = 0; v < KV - 1; ++v) gv[v] = _mm512_loadu_ps(g + 16 * v);
            gv[KV - 1] = _mm512_maskz_loadu_ps(ml, g + 16 * (KV - 1));
            #pragma GCC unroll 32
            for (int r = 0; r < R; ++r) {
                const __m512 a = _mm512_set1_ps(Contiguous ? s[r] : s[o[r]]);
                #pragma GCC unroll 32
                for (int v = 0; v < KV; ++v) acc[r][v] = _mm512_fmadd_ps(a, gv[v], acc[r][v]);
            }
        }
    }
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
        float* d = dw + r * lddw;
        #pragma GCC unroll 32
        for (int v = 0; v < KV; ++v) {
            const __mmask16 m = v == KV - 1 ? ml : __mmask16(0xFFFF);
            _mm512_mask_storeu_ps(d + 16 * v, m,
                                  _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + 16 * v), acc[r][v]));
        }
    }
}

using BwdWTile = void (*)(float*, int64_t, const ConvPixels&, int64_t, const int64_t*,
                          const float*, int64_t, __mmask16);

template <int KV, bool C, int... Rs>
constexpr auto bwdw_table(std::integer_sequence<int, Rs...>) {
    struct Table {
        BwdWTile fn[sizeof...(Rs)];
    };
    return Table{{&bwdw_tile<Rs + 1, KV, C>...}};
}

template <int KV>
void bwdw_dispatch(float* dw, int64_t lddw, const ConvPixels& px, int64_t npix,
                   const int64_t* off, int64_t R, const float* dy, int64_t ldy, int64_t nc) {
    constexpr int RMAX = tile_pixels(KV);
    static constexpr auto contiguous = bwdw_table<KV, true>(std::make_integer_sequence<int, RMAX>{});
    static constexpr auto general = bwdw_table<KV, false>(std::make_integer_sequence<int, RMAX>{});
    const __mmask16 ml = lanes(nc - 16 * (KV - 1));
    const bool contig = off[R - 1] - off[0] == R - 1;
    const BwdWTile fn = contig ? contiguous.fn[R - 1] : general.fn[R - 1];
    fn(dw, lddw, px, npix, off, dy, ldy, ml);
}

void backward_weights(float* dw, int64_t lddw, const ConvPixels& px, int64_t npix,
                      const int64_t* off, int64_t R, const float* dy, int64_t ldy, int64_t nc) {
    if (npix <= 0 || R <= 0) return;
    switch ((nc + 15) / 16) {
        case 1: return bwdw_dispatch<1>(dw, lddw, px, npix, off, R, dy, ldy, nc);
        case 2: return bwdw_dispatch<2>(dw, lddw, px, npix, off, R, dy, ldy, nc);
        case 3: return bwdw_dispatch<3>(dw, lddw, px, npix, off, R, dy, ldy, nc);
        default: return bwdw_dispatch<4>(dw, lddw, px, npix, off, R, dy, ldy, nc);
    }
}

// ---- backward-weights, few output channels ------------------------------------------------

// dw rows [q0, q0 + 16 VQ) x channels [k0, k0 + 8): 8 broadcasts of dy and VQ vectors of the
// field per pixel for 8 VQ FMAs (the broadcast form: 13 loads per 12). The field's q0 is at
// src_p + o; q0 and o lie in one segment.
template <int VQ>
void bwdw_narrow_tile(float* dw, int64_t K, const ConvPixels& px, int64_t npix, int64_t o,
                      int64_t q0, const float* dy, int64_t ldy, int64_t k0) {
    constexpr int RK = 8;
    __m512 acc[RK][VQ];
#pragma GCC unroll 32
    for (int r = 0; r < RK; ++r)
#pragma GCC unroll 32
        for (int v = 0; v < VQ; ++v) acc[r][v] = _mm512_setzero_ps();
    const int64_t rows = (npix + px.OW - 1) / px.OW;
    for (int64_t oh = 0; oh < rows; ++oh) {
        const int64_t n_ow = npix - oh * px.OW < px.OW ? npix - oh * px.OW : px.OW;
        const float* s = px.base + oh * px.row_step + o;
        const float* g = dy + oh * px.OW * ldy + k0;
        for (int64_t ow = 0; ow < n_ow; ++ow, s += px.col_step, g += ldy)
            rank1_update<RK, VQ>(acc, g, s);
    }
    // Transposed into dw (q, k): 8 x 16 VQ values, once per call.
    alignas(64) float t[RK][16 * VQ];
#pragma GCC unroll 32
    for (int r = 0; r < RK; ++r)
#pragma GCC unroll 32
        for (int v = 0; v < VQ; ++v) _mm512_store_ps(t[r] + 16 * v, acc[r][v]);
    for (int j = 0; j < 16 * VQ; ++j) {
        float* d = dw + (q0 + j) * K + k0;
        for (int r = 0; r < RK; ++r) d[r] += t[r][j];
    }
}

void backward_weights_narrow(float* dw, int64_t K, const ConvPixels& px, int64_t npix,
                             int64_t KH, int64_t rs, int64_t seg, const float* dy, int64_t ldy) {
    if (npix <= 0) return;
    for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t k0 = 0; k0 < K; k0 += 8)
            for (int64_t j = 0; j < seg;) {
                const int64_t vq = std::min<int64_t>(3, (seg - j) / 16);
                const int64_t o = kh * rs + j, q0 = kh * seg + j;
                if (vq == 3)
                    bwdw_narrow_tile<3>(dw, K, px, npix, o, q0, dy, ldy, k0);
                else if (vq == 2)
                    bwdw_narrow_tile<2>(dw, K, px, npix, o, q0, dy, ldy, k0);
                else
                    bwdw_narrow_tile<1>(dw, K, px, npix, o, q0, dy, ldy, k0);
                j += 16 * vq;
            }
}

// ---- backward-data ------------------------------------------------------------------------

// P pixels x QV vectors of q; the products are scatter-added into the pixels' receptive fields:
// a vector of 16 q with contiguous offsets is one masked read-modify-write, others go lane by lane.
template <int P, int QV>
void bwdd_tile(float* const* dst, int64_t np, const int64_t* off, int64_t nq, const float* dy,
               int64_t ldy, int64_t nk, const float* wt, int64_t ldwt, __mmask16 ml) {
    __m512 acc[P][QV];
    #pragma GCC unroll 32
    for (int p = 0; p < P; ++p)
        #pragma GCC unroll 32
        for (int v = 0; v < QV; ++v) acc[p][v] = _mm512_setzero_ps();
    const float* g[P];
    #pragma GCC unroll 32
    for (int p = 0; p < P; ++p) g[p] = dy + (p < np ? p : np - 1) * ldy;
    for (int64_t k = 0; k < nk; ++k, wt += ldwt)
        rank1_update(acc, [&](int p) { return g[p][k]; }, wt, ml);
    #pragma GCC unroll 32
    for (int v = 0; v < QV; ++v) {
        const int64_t n = nq - 16 * v < 16 ? nq - 16 * v : 16;
        const int64_t* o = off + 16 * v;
        const __mmask16 m = v == QV - 1 ? ml : __mmask16(0xFFFF);
        if (o[n - 1] - o[0] == n - 1) {
            #pragma GCC unroll 32
            for (int p = 0; p < P; ++p) {
                if (p >= np) break;
                float* d = dst[p] + o[0];
                _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), acc[p][v]));
            }
        } else {
            alignas(64) float t[16];
            #pragma GCC unroll 32
            for (int p = 0; p < P; ++p) {
                if (p >= np) break;
                _mm512_store_ps(t, acc[p][v]);
                float* d = dst[p];
                for (int64_t l = 0; l < n; ++l) d[o[l]] += t[l];
            }
        }
    }
}

template <int QV>
void bwdd_range(const ConvPixels& px, int64_t p0, int64_t p1, const int64_t* off, int64_t nq,
                const float* dy, int64_t ldy, int64_t nk, const float* wt, int64_t ldwt) {
    constexpr int P = tile_pixels(QV);
    const __mmask16 ml = lanes(nq - 16 * (QV - 1));
    float* dst[P];
    for (int64_t i = p0; i < p1; i += P) {
        const int64_t np = p1 - i < P ? p1 - i : P;
        tile_pixels_from<P>(dst, px, i, np);
        bwdd_tile<P, QV>(dst, np, off, nq, dy + i * ldy, ldy, nk, wt, ldwt, ml);
    }
}

void backward_data(const ConvPixels& px, int64_t p0, int64_t p1, const int64_t* off, int64_t nq,
                   const float* dy, int64_t ldy, int64_t nk, const float* wt, int64_t ldwt) {
    switch ((nq + 15) / 16) {
        case 1: return bwdd_range<1>(px, p0, p1, off, nq, dy, ldy, nk, wt, ldwt);
        case 2: return bwdd_range<2>(px, p0, p1, off, nq, dy, ldy, nk, wt, ldwt);
        case 3: return bwdd_range<3>(px, p0, p1, off, nq, dy, ldy, nk, wt, ldwt);
        default: return bwdd_range<4>(px, p0, p1, off, nq, dy, ldy, nk, wt, ldwt);
    }
}

// ---- one input channel, vectorised over output columns ------------------------------------

// Lane l of a 16-column strip: column ow0 + l, masked off beyond OW.
inline __mmask16 strip_mask(int64_t ow0, int64_t OW) { return lanes(OW - ow0); }

// K channel vectors of one 16-column strip -> the strip's 16 * K floats in NHWC order (pixel
// major): NHWC vector j holds the floats [16j, 16j + 16), float e = 16j + t being pixel e / K,
// channel e % K. Done with K x K masked in-register permutes per strip rather than K scatters
// (one memory access per lane). The reverse for backward-weights measured no faster than its
// gathers, so it kept them.
template <int K>
struct ChannelInterleave {
    __m512i pixel_of[K];   // NHWC vector j, lane t: the pixel (channel-vector lane) it holds
    __mmask16 from[K][K];  // NHWC vector j: the lanes that hold channel c
    ChannelInterleave() {
        for (int j = 0; j < K; ++j) {
            alignas(64) int32_t pix[16];
            for (int c = 0; c < K; ++c) from[j][c] = 0;
            for (int t = 0; t < 16; ++t) {
                const int e = 16 * j + t;
                pix[t] = e / K;
                from[j][e % K] = static_cast<__mmask16>(from[j][e % K] | (1u << t));
            }
            pixel_of[j] = _mm512_load_si512(pix);
        }
    }
    // Stores the first np pixels of the strip (np <= 16) to dst, NHWC.
    void store(float* dst, const __m512 (&ch)[K], int64_t np) const {
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) {
            __m512 o = _mm512_setzero_ps();
#pragma GCC unroll 8
            for (int c = 0; c < K; ++c)
                o = _mm512_mask_permutexvar_ps(o, from[j][c], pixel_of[j], ch[c]);
            _mm512_mask_storeu_ps(dst + 16 * j, lanes(np * K - 16 * j), o);
        }
    }
};

template <int K>
const ChannelInterleave<K>& channel_interleave() {
    static const ChannelInterleave<K> table;
    return table;
}

// R output rows at once: the K weight broadcasts of a tap serve R rows, and R * K independent
// accumulators keep both FMA pipes busy (K = 6 alone left them waiting on FMA latency).
template <int K, int R>
void fwd_c1_rows(float* y, const float* src, int64_t row_step, int64_t OW, int64_t KH, int64_t KW,
                 int64_t rs, const float* w, const float* bias, bool relu,
                 const ChannelInterleave<K>& il) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
        const __mmask16 m = strip_mask(ow0, OW);
        __m512 acc[R][K];
#pragma GCC unroll 8
        for (int k = 0; k < K; ++k) {
            const __m512 b = bias ? _mm512_set1_ps(bias[k]) : zero;
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r) acc[r][k] = b;
        }
        for (int64_t kh = 0; kh < KH; ++kh) {
            const float* s = src + kh * rs + ow0;
            const float* wk = w + kh * KW * K;
            for (int64_t kw = 0; kw < KW; ++kw, wk += K) {
                __m512 xv[R];
#pragma GCC unroll 4
                for (int r = 0; r < R; ++r) xv[r] = _mm512_maskz_loadu_ps(m, s + r * row_step + kw);
#pragma GCC unroll 8
                for (int k = 0; k < K; ++k) {
                    const __m512 wv = _mm512_set1_ps(wk[k]);
#pragma GCC unroll 4
                    for (int r = 0; r < R; ++r) acc[r][k] = _mm512_fmadd_ps(xv[r], wv, acc[r][k]);
                }
            }
        }
        const int64_t np = OW - ow0 < 16 ? OW - ow0 : 16;
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
            // vmaxps returns its second operand when either is NaN: NaN must survive ReLU.
            if (relu)
#pragma GCC unroll 8
                for (int k = 0; k < K; ++k) acc[r][k] = _mm512_max_ps(zero, acc[r][k]);
            il.store(y + (r * OW + ow0) * K, acc[r], np);
        }
    }
}

template <int K>
void fwd_c1(float* y, const ConvPixels& px, int64_t rows, int64_t KH, int64_t KW, int64_t rs,
            const float* w, const float* bias, bool relu) {
    const ChannelInterleave<K>& il = channel_interleave<K>();
    constexpr int R = K <= 4 ? 4 : 2;
    const int64_t OW = px.OW;
    int64_t oh = 0;
    for (; oh + R <= rows; oh += R)
        fwd_c1_rows<K, R>(y + oh * OW * K, px.base + oh * px.row_step, px.row_step, OW, KH, KW, rs,
                          w, bias, relu, il);
    for (; oh < rows; ++oh)
        fwd_c1_rows<K, 1>(y + oh * OW * K, px.base + oh * px.row_step, px.row_step, OW, KH, KW, rs,
                          w, bias, relu, il);
}

void forward_c1(float* y, const ConvPixels& px, int64_t rows, int64_t KH, int64_t KW, int64_t rs,
                const float* w, const float* bias, bool relu, int64_t K) {
    switch (K) {
        case 1: return fwd_c1<1>(y, px, rows, KH, KW, rs, w, bias, relu);
        case 2: return fwd_c1<2>(y, px, rows, KH, KW, rs, w, bias, relu);
        case 3: return fwd_c1<3>(y, px, rows, KH, KW, rs, w, bias, relu);
        case 4: return fwd_c1<4>(y, px, rows, KH, KW, rs, w, bias, relu);
        case 5: return fwd_c1<5>(y, px, rows, KH, KW, rs, w, bias, relu);
        case 6: return fwd_c1<6>(y, px, rows, KH, KW, rs, w, bias, relu);
        case 7: return fwd_c1<7>(y, px, rows, KH, KW, rs, w, bias, relu);
        default: return fwd_c1<8>(y, px, rows, KH, KW, rs, w, bias, relu);
    }
}

// Taps per pass: G taps x K channels of accumulators plus K dy vectors fit 32 registers.
constexpr int bwdw_c1_taps(int K) { return K <= 2 ? 8 : K <= 4 ? 5 : K <= 6 ? 4 : 3; }

template <int K>
void bwdw_c1(float* accv, const ConvPixels& px, int64_t rows, int64_t KH, int64_t KW, int64_t rs,
             const float* dy, float* dyt) {
    constexpr int G = bwdw_c1_taps(K);
    const int64_t OW = px.OW, OWp = (OW + 15) / 16 * 16, plane = rows * OWp;
    // dy transposed to (K, rows, OWp), zero past OW so masked-off lanes add nothing.
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6,
                                                            5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(K));
    for (int64_t oh = 0; oh < rows; ++oh)
        for (int64_t ow0 = 0; ow0 < OWp; ow0 += 16) {
            const __mmask16 m = strip_mask(ow0, OW);
            const float* g = dy + (oh * OW + ow0) * K;
#pragma GCC unroll 8
            for (int k = 0; k < K; ++k)
                _mm512_store_ps(dyt + k * plane + oh * OWp + ow0,
                                _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, g + k, 4));
        }
    const int64_t taps = KH * KW;
    // db lane partials.
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) {
        __m512 s = _mm512_load_ps(accv + (taps * K + k) * 16);
        const float* t = dyt + k * plane;
        for (int64_t i = 0; i < plane; i += 16) s = _mm512_add_ps(s, _mm512_load_ps(t + i));
        _mm512_store_ps(accv + (taps * K + k) * 16, s);
    }
    for (int64_t t0 = 0; t0 < taps; t0 += G) {
        const int ng = taps - t0 < G ? static_cast<int>(taps - t0) : G;
        int64_t off[G];
#pragma GCC unroll 8
        for (int j = 0; j < G; ++j) {
            const int64_t t = t0 + (j < ng ? j : 0);
            off[j] = t / KW * rs + t % KW;
        }
        __m512 acc[G][K];
#pragma GCC unroll 8
        for (int j = 0; j < G; ++j)
#pragma GCC unroll 8
            for (int k = 0; k < K; ++k) acc[j][k] = _mm512_setzero_ps();
        for (int64_t oh = 0; oh < rows; ++oh) {
            const float* src = px.base + oh * px.row_step;
            const float* g = dyt + oh * OWp;
            for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
                const __mmask16 m = strip_mask(ow0, OW);
                __m512 gv[K];
#pragma GCC unroll 8
                for (int k = 0; k < K; ++k) gv[k] = _mm512_load_ps(g + k * plane + ow0);
#pragma GCC unroll 8
                for (int j = 0; j < G; ++j) {
                    const __m512 xv = _mm512_maskz_loadu_ps(m, src + off[j] + ow0);
#pragma GCC unroll 8
                    for (int k = 0; k < K; ++k) acc[j][k] = _mm512_fmadd_ps(xv, gv[k], acc[j][k]);
                }
            }
        }
        // Unrolled with a constant bound: a runtime-bounded loop over acc made GCC keep acc in
        // memory and store all G*K accumulators after every FMA of the loop above (2x slower).
#pragma GCC unroll 8
        for (int j = 0; j < G; ++j)
#pragma GCC unroll 8
            for (int k = 0; k < K; ++k) {
                if (j >= ng) break;
                float* a = accv + ((t0 + j) * K + k) * 16;
                _mm512_store_ps(a, _mm512_add_ps(_mm512_load_ps(a), acc[j][k]));
            }
    }
}

void backward_weights_c1(float* accv, const ConvPixels& px, int64_t rows, int64_t KH, int64_t KW,
                         int64_t rs, const float* dy, float* dyt, int64_t K) {
    switch (K) {
        case 1: return bwdw_c1<1>(accv, px, rows, KH, KW, rs, dy, dyt);
        case 2: return bwdw_c1<2>(accv, px, rows, KH, KW, rs, dy, dyt);
        case 3: return bwdw_c1<3>(accv, px, rows, KH, KW, rs, dy, dyt);
        case 4: return bwdw_c1<4>(accv, px, rows, KH, KW, rs, dy, dyt);
        case 5: return bwdw_c1<5>(accv, px, rows, KH, KW, rs, dy, dyt);
        case 6: return bwdw_c1<6>(accv, px, rows, KH, KW, rs, dy, dyt);
        case 7: return bwdw_c1<7>(accv, px, rows, KH, KW, rs, dy, dyt);
        default: return bwdw_c1<8>(accv, px, rows, KH, KW, rs, dy, dyt);
    }
}

// G pixels x KV vectors over R weight rows, the accumulators from and back to y: each row's KV
// weight vectors serve G broadcasts (KV + G loads per G * KV FMAs, as the direct tile does).
template <int G, int KV>
void stream_tile(float* const* y, const float* const* a, const float* w, int64_t ldw, int64_t R,
                 __mmask16 ml, StreamPrefetch& pf) {
    __m512 acc[G][KV];
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v)
            acc[g][v] = v < KV - 1 ? _mm512_loadu_ps(y[g] + 16 * v)
                                   : _mm512_maskz_loadu_ps(ml, y[g] + 16 * v);
    const int64_t per_row = (pf.left + R - 1) / R;
    for (int64_t r = 0; r < R; ++r) {
        rank1_update(acc, [&](int g) { return a[g][r]; }, w + r * ldw, ml);
        pf.issue(per_row);
    }
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
        for (int v = 0; v < KV; ++v) {
            if (v < KV - 1)
                _mm512_storeu_ps(y[g] + 16 * v, acc[g][v]);
            else
                _mm512_mask_storeu_ps(y[g] + 16 * v, ml, acc[g][v]);
        }
}

using StreamTileFn = void (*)(float* const*, const float* const*, const float*, int64_t, int64_t,
                              __mmask16, StreamPrefetch&);

template <int... Gs>
constexpr std::array<std::array<StreamTileFn, 4>, sizeof...(Gs)> stream_table(
    std::integer_sequence<int, Gs...>) {
    return {{{&stream_tile<Gs + 1, 1>, &stream_tile<Gs + 1, 2>, &stream_tile<Gs + 1, 3>,
              &stream_tile<Gs + 1, 4>}...}};
}

void forward_streamed(float* const* y, const float* const* a, int64_t G, const float* w,
                      int64_t ldw, int64_t R, int64_t nc, StreamPrefetch& pf) {
    static constexpr auto table =
        stream_table(std::make_integer_sequence<int, kConvStreamPixels>());
    const int64_t kv = (nc + 15) / 16;
    table[G - 1][kv - 1](y, a, w, ldw, R, lanes(nc - 16 * (kv - 1)), pf);
}

}  // namespace

const ConvDirectUkernels* conv2d_direct_avx512() {
    static const ConvDirectUkernels table = {
        "avx512",           &forward,    &backward_weights,       &backward_data,
        &forward_c1,        &backward_weights_c1, &backward_weights_narrow, &forward_streamed};
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const ConvDirectUkernels* conv2d_direct_avx512() { return nullptr; }
}  // namespace cnnfast

#endif
