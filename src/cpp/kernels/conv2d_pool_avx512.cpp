// Fused Conv2D + ReLU + 2x2 max pooling on AVX-512: the kernels (contracts in
// conv2d_pool_ukernels.h; the drivers are in conv2d_pool.cpp).
//
// Forward: a register tile holds the four convolution outputs of P pooled pixels (their 2x2
// windows) for KV vectors of output channels; the reduction runs as in the direct kernels
// (conv2d_direct.h: weight vectors x broadcast inputs), then the epilogue applies bias and ReLU,
// takes the window maximum and stores only it and the winning position.
#include "conv2d_pool_ukernels.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include <algorithm>

#include "avx512_util.h"

namespace cnnfast {
namespace {

// Pooled pixels per tile for KV vectors of channels: 4 * P * KV <= 24 accumulators.
constexpr int pooled_per_tile(int kv) { return kv >= 4 ? 1 : kv == 3 ? 2 : kv == 2 ? 3 : 6; }

// Pooled pixels [i, i + np) of one image (row-major, PW wide): src[4p + j] = the receptive field
// of window position j of pooled pixel i + p (the last pixel repeated up to P).
template <int P>
void window_fields(const float** src, const float* img, int64_t i, int64_t np, int64_t PW,
                   int64_t rs, int64_t C) {
    for (int p = 0; p < P; ++p) {
        const int64_t q = i + (p < np ? p : np - 1), ph = q / PW, pw = q - ph * PW;
        const float* f = img + 2 * ph * rs + 2 * pw * C;
        src[4 * p + 0] = f;
        src[4 * p + 1] = f + C;
        src[4 * p + 2] = f + rs;
        src[4 * p + 3] = f + rs + C;
    }
}

template <int P, int KV>
void forward_tile(float* y, int32_t* which, int64_t K, const float* const* src, int64_t np,
                  int64_t KH, int64_t rs, int64_t seg, const float* w, int64_t ldw,
                  const float* bias, __mmask16 ml) {
    __m512 acc[4 * P][KV];
    for (int v = 0; v < KV; ++v) {
        const __m512 b = bias ? _mm512_maskz_loadu_ps(v == KV - 1 ? ml : __mmask16(0xFFFF),
                                                      bias + 16 * v)
                              : _mm512_setzero_ps();
#pragma GCC unroll 32
        for (int f = 0; f < 4 * P; ++f) acc[f][v] = b;
    }
    for (int64_t kh = 0; kh < KH; ++kh) {
        const float* s[4 * P];
#pragma GCC unroll 32
        for (int f = 0; f < 4 * P; ++f) s[f] = src[f] + kh * rs;
        const float* wk = w + kh * seg * ldw;
        for (int64_t j = 0; j < seg; ++j, wk += ldw) {
            __m512 wv[KV];
#pragma GCC unroll 8
            for (int v = 0; v < KV; ++v) wv[v] = _mm512_load_ps(wk + 16 * v);
#pragma GCC unroll 32
            for (int f = 0; f < 4 * P; ++f) {
                const __m512 a = _mm512_set1_ps(s[f][j]);
#pragma GCC unroll 8
                for (int v = 0; v < KV; ++v) acc[f][v] = _mm512_fmadd_ps(a, wv[v], acc[f][v]);
            }
        }
    }
    const __m512 zero = _mm512_setzero_ps();
    for (int p = 0; p < P && p < np; ++p)
        for (int v = 0; v < KV; ++v) {
            // vmaxps returns its second operand when either is NaN: NaN survives the ReLU.
            __m512 best = _mm512_max_ps(zero, acc[4 * p][v]);
            __m512i pos = _mm512_setzero_si512();
            for (int j = 1; j < 4; ++j) {
                const __m512 r = _mm512_max_ps(zero, acc[4 * p + j][v]);
                // Strictly greater (the first maximum wins ties), or a NaN over a number.
                const __mmask16 take = _mm512_cmp_ps_mask(r, best, _CMP_GT_OQ) |
                                       (_mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q) &
                                        _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
                best = _mm512_mask_mov_ps(best, take, r);
                pos = _mm512_mask_mov_epi32(pos, take, _mm512_set1_epi32(j));
            }
            const __mmask16 m = v == KV - 1 ? ml : __mmask16(0xFFFF);
            _mm512_mask_storeu_ps(y + p * K + 16 * v, m, best);
            _mm512_mask_storeu_epi32(which + p * K + 16 * v, m, pos);
        }
}

template <int KV>
void forward_row_range(float* y, int32_t* which, const float* img, int64_t i0, int64_t i1,
                       int64_t PW, int64_t K, int64_t KH, int64_t rs, int64_t C, int64_t seg,
                       const float* w, int64_t ldw, const float* bias, int64_t nc) {
    constexpr int P = pooled_per_tile(KV);
    const __mmask16 ml = lanes(nc - 16 * (KV - 1));
    const float* src[4 * P];
    for (int64_t i = i0; i < i1; i += P) {
        const int64_t np = std::min<int64_t>(P, i1 - i);
        window_fields<P>(src, img, i, np, PW, rs, C);
        forward_tile<P, KV>(y + i * K, which + i * K, K, src, np, KH, rs, seg, w, ldw, bias, ml);
    }
}

// forward_row_range for 1-4 vectors of channels (a block of nc <= 64), by vector count - 1.
constexpr decltype(&forward_row_range<1>) kRowRange[4] = {
    &forward_row_range<1>, &forward_row_range<2>, &forward_row_range<3>, &forward_row_range<4>};

void forward_rows(float* y, int32_t* which, const float* img, int64_t i0, int64_t i1, int64_t PW,
                  int64_t K, int64_t KH, int64_t rs, int64_t C, int64_t seg, const float* w,
                  int64_t ldw, const float* bias, int64_t nc) {
    kRowRange[(nc + 15) / 16 - 1](y, which, img, i0, i1, PW, K, KH, rs, C, seg, w, ldw, bias, nc);
}


// g[j] (npix, ldk), j < 4: the pooled gradient dy (npix, K) where window position j won (which)
// and y > 0, zero elsewhere and in lanes K..ldk, rounded to bfloat16 when bf16 (mixed-precision
// training: here, rather than in a pass over the four expanded copies, 3/4 of them zeros);
// db (ldk) += dy where y > 0.
void expand_gradient(float* g, float* db, const float* dy, const float* y, const int32_t* which,
                     int64_t npix, int64_t K, bool bf16) {
    const int64_t ldk = (K + 15) / 16 * 16;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t p = 0; p < npix; ++p)
        for (int64_t k = 0; k < ldk; k += 16) {
            const __mmask16 m = lanes(K - k);
            const __m512 gv = _mm512_maskz_loadu_ps(m, dy + p * K + k);
            const __m512 yv = _mm512_maskz_loadu_ps(m, y + p * K + k);
            const __mmask16 live = m & _mm512_cmp_ps_mask(yv, zero, _CMP_GT_OQ);
            const __m512i pos = _mm512_maskz_loadu_epi32(m, which + p * K + k);
            _mm512_storeu_ps(db + k,
                             _mm512_add_ps(_mm512_loadu_ps(db + k), _mm512_maskz_mov_ps(live, gv)));
            const __m512 gr = bf16 ? _mm512_castsi512_ps(bf16_upper(gv)) : gv;
            for (int j = 0; j < 4; ++j) {
                const __mmask16 won = live & _mm512_cmpeq_epi32_mask(pos, _mm512_set1_epi32(j));
                _mm512_storeu_ps(g + (j * npix + p) * ldk + k, _mm512_maskz_mov_ps(won, gr));
            }
        }
}

}  // namespace

const ConvPoolUkernels* conv2d_pool_avx512() {
    static const ConvPoolUkernels table = {"avx512", &forward_rows, &expand_gradient};
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const ConvPoolUkernels* conv2d_pool_avx512() { return nullptr; }
}  // namespace cnnfast

#endif
