// Fused Conv2D + ReLU + 2x2 max pooling (contracts in conv2d_pool.h), on AVX-512.
//
// Forward: a register tile holds the four convolution outputs of P pooled pixels (their 2x2
// windows) for KV vectors of output channels; the reduction runs as in the direct kernels
// (conv2d_direct.h: weight vectors x broadcast inputs), then the epilogue applies bias and ReLU,
// takes the window maximum and stores only it and the winning position.
// Backward-weights: the pooled gradient is expanded, per image, into four masked gradients, one
// per window position (nonzero where that position won and y > 0); each is then a plain
// backward-weights sweep over the positions' receptive fields, run on the direct micro-kernel.
#include "conv2d_pool.h"

#include "conv2d_direct.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "avx512_util.h"
#include "parallel.h"

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

}  // namespace

bool conv2d_relu_maxpool_supported(const Conv2dDims& d) {
    return conv2d_direct_ukernels() != nullptr && d.groups == 1 && d.stride_h == 1 &&
           d.stride_w == 1 && d.pad_top == 0 && d.pad_left == 0 && d.OH == d.H - d.KH + 1 &&
           d.OW == d.W - d.KW + 1 && d.OH >= 2 && d.OW >= 2 && d.N > 0 && d.C > 0 && d.K > 0;
}

void conv2d_relu_maxpool_forward(float* y, int32_t* which, const float* x, const float* w,
                                 const float* bias, const Conv2dDims& d) {
    const int64_t PH = d.OH / 2, PW = d.OW / 2, K = d.K, seg = d.KW * d.C, rs = d.W * d.C;
    int64_t ldw;
    const float* wp = aligned_weight_rows(w, d.KH * seg, K, &ldw, Scratch::conv_weights);
    const int64_t units = d.N * PH;  // one pooled row each
    const int T = threads_for(units * PW * 4 * K * d.KH * seg / kMacsPerThread);
    auto row = [&](int64_t u) {
        const int64_t n = u / PH, ph = u % PH;
        const float* img = x + n * d.H * rs;
        const int64_t i0 = ph * PW, i1 = i0 + PW;
        float* yn = y + n * PH * PW * K;
        int32_t* wn = which + n * PH * PW * K;
        for (int64_t k0 = 0; k0 < K; k0 += 64) {
            const int64_t nc = std::min<int64_t>(64, K - k0);
            kRowRange[(nc + 15) / 16 - 1](yn + k0, wn + k0, img, i0, i1, PW, K, d.KH, rs, d.C,
                                          seg, wp + k0, ldw, bias ? bias + k0 : nullptr, nc);
        }
    };
    if (T <= 1) {
        for (int64_t u = 0; u < units; ++u) row(u);
        return;
    }
#pragma omp parallel for num_threads(T) schedule(static)
    for (int64_t u = 0; u < units; ++u) row(u);
}

void conv2d_relu_maxpool_backward_weights(float* dw, float* db, const float* x, const float* dy,
                                          const float* y, const int32_t* which,
                                          const Conv2dDims& d) {
    const ConvDirectUkernels& uk = *conv2d_direct_ukernels();
    const int64_t PH = d.OH / 2, PW = d.OW / 2, K = d.K, ldk = (K + 15) / 16 * 16;
    const int64_t seg = d.KW * d.C, Q = d.KH * seg, rs = d.W * d.C, npix = PH * PW;
    const int64_t DW = Q * K, part_floats = DW + ldk;
    const int T = static_cast<int>(std::min<int64_t>(
        threads_for(d.N * npix * 4 * K * Q / kMacsPerThread), d.N));
    float* parts = workspace(Scratch::conv_shared, std::max(T, 1) * part_floats);
    const int64_t* off = conv_field_offsets(d, rs);
    auto image = [&](float* part, int64_t n) {
        // g[j] (npix, ldk): the pooled gradient where window position j won and y > 0.
        float* g = workspace(Scratch::winograd_products, 4 * npix * ldk);
        float* dbp = part + DW;
        const float* dyn = dy + n * npix * K;
        const float* yn = y + n * npix * K;
        const int32_t* wn = which + n * npix * K;
        const __m512 zero = _mm512_setzero_ps();
        for (int64_t p = 0; p < npix; ++p)
            for (int64_t k = 0; k < ldk; k += 16) {
                const __mmask16 m = lanes(K - k);
                const __m512 gv = _mm512_maskz_loadu_ps(m, dyn + p * K + k);
                const __m512 yv = _mm512_maskz_loadu_ps(m, yn + p * K + k);
                const __mmask16 live = m & _mm512_cmp_ps_mask(yv, zero, _CMP_GT_OQ);
                const __m512i pos = _mm512_maskz_loadu_epi32(m, wn + p * K + k);
                _mm512_storeu_ps(dbp + k, _mm512_add_ps(_mm512_loadu_ps(dbp + k),
                                                        _mm512_maskz_mov_ps(live, gv)));
                for (int j = 0; j < 4; ++j) {
                    const __mmask16 won =
                        live & _mm512_cmpeq_epi32_mask(pos, _mm512_set1_epi32(j));
                    _mm512_storeu_ps(g + (j * npix + p) * ldk + k, _mm512_maskz_mov_ps(won, gv));
                }
            }
        const float* img = x + n * d.H * rs;
        for (int j = 0; j < 4; ++j) {
            // Position j of every window: fields at (2 ph + j / 2, 2 pw + j % 2).
            const ConvPixels px{const_cast<float*>(img + (j / 2) * rs + (j % 2) * d.C), 2 * rs,
                                2 * d.C, PW};
            for (int64_t k0 = 0; k0 < K; k0 += 64) {
                const int64_t nc = std::min<int64_t>(64, K - k0);
                for_each_dw_tile(d.KH, seg, conv_bwdw_max_rows(nc), [&](int64_t q0, int64_t R) {
                    uk.backward_weights(part + q0 * K + k0, K, px, npix, off + q0, R,
                                        g + j * npix * ldk + k0, ldk, nc);
                });
            }
        }
    };
    // Static, so the sums depend on the thread count only.
    reduce_over_threads(T, d.N, parts, part_floats, image, DW + K, [&](int used, int64_t i) {
        write_summed_gradient(dw, db, DW, parts, part_floats, 1, used, i);
    });
}

}  // namespace cnnfast

#else

namespace cnnfast {
bool conv2d_relu_maxpool_supported(const Conv2dDims&) { return false; }
void conv2d_relu_maxpool_forward(float*, int32_t*, const float*, const float*, const float*,
                                 const Conv2dDims&) {}
void conv2d_relu_maxpool_backward_weights(float*, float*, const float*, const float*,
                                          const float*, const int32_t*, const Conv2dDims&) {}
}  // namespace cnnfast

#endif
