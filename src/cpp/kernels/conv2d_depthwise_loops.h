// Internal, included only by conv2d_depthwise.cpp, conv2d_depthwise_avx2.cpp and
// conv2d_depthwise_avx512.cpp, each defining CNNFAST_DW_NS and CNNFAST_DW_NAME first: the same
// loops compiled for three ISAs (see conv2d_depthwise_simd.h). The channel loops are plain
// code that the compiler vectorises under `omp simd` at the including file's vector width.
#ifndef CNNFAST_DW_NS
#error "define CNNFAST_DW_NS before including conv2d_depthwise_loops.h"
#endif

#include <algorithm>
#include <cstring>

#include "conv2d_depthwise_simd.h"

namespace cnnfast::detail::CNNFAST_DW_NS {
namespace {

// acc[c*M + m] += a[c] * b[c*M + m] over the C input channels.
inline void multiply_add_channels(float* acc, const float* a, const float* b, int64_t C,
                                  int64_t M) {
    if (M == 1) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) acc[c] += a[c] * b[c];
        return;
    }
    // A multiplier is a handful of outputs per channel: `omp simd` on loops of that length cost
    // more in peeling and masking than they save (measured 1.5x slower at M = 2 on AVX-512),
    // so these are left to the compiler.
    for (int64_t c = 0; c < C; ++c) {
        const float v = a[c];
        for (int64_t m = 0; m < M; ++m) acc[c * M + m] += v * b[c * M + m];
    }
}

// The output position (oh or ow) whose tap k reads input position i, or -1.
inline int64_t output_at(int64_t i, int64_t k, int64_t pad, int64_t dilation, int64_t stride,
                         int64_t out) {
    const int64_t s = i + pad - k * dilation;
    if (s < 0 || s % stride) return -1;
    const int64_t o = s / stride;
    return o < out ? o : -1;
}

void forward_rows(float* y, const float* x, const float* w, const float* bias,
                  const Conv2dDims& d, bool relu, int64_t r0, int64_t r1) {
    const int64_t C = d.C, K = d.K, M = K / C;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            float* yp = y + (r * d.OW + ow) * K;
            if (bias)
                std::memcpy(yp, bias, sizeof(float) * K);
            else
                std::fill(yp, yp + K, 0.0f);
            for (int64_t kh = 0; kh < d.KH; ++kh) {
                const int64_t ih = oh * d.stride_h - d.pad_top + kh * d.dilation_h;
                if (ih < 0 || ih >= d.H) continue;
                for (int64_t kw = 0; kw < d.KW; ++kw) {
                    const int64_t iw = ow * d.stride_w - d.pad_left + kw * d.dilation_w;
                    if (iw < 0 || iw >= d.W) continue;
                    multiply_add_channels(yp, x + ((n * d.H + ih) * d.W + iw) * C,
                                          w + (kh * d.KW + kw) * K, C, M);
                }
            }
            if (relu)
#pragma omp simd
                for (int64_t k = 0; k < K; ++k) yp[k] = yp[k] < 0.0f ? 0.0f : yp[k];
        }
    }
}

void backward_data_rows(float* dx, const float* dy, const float* w, const Conv2dDims& d,
                        int64_t r0, int64_t r1) {
    const int64_t C = d.C, K = d.K, M = K / C;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / d.H, ih = r % d.H;
        float* row = dx + r * d.W * C;
        std::fill(row, row + d.W * C, 0.0f);
        for (int64_t kh = 0; kh < d.KH; ++kh) {
            const int64_t oh = output_at(ih, kh, d.pad_top, d.dilation_h, d.stride_h, d.OH);
            if (oh < 0) continue;
            for (int64_t iw = 0; iw < d.W; ++iw) {
                float* dxp = row + iw * C;
                for (int64_t kw = 0; kw < d.KW; ++kw) {
                    const int64_t ow = output_at(iw, kw, d.pad_left, d.dilation_w, d.stride_w,
                                                 d.OW);
                    if (ow < 0) continue;
                    const float* dyp = dy + ((n * d.OH + oh) * d.OW + ow) * K;
                    const float* wp = w + (kh * d.KW + kw) * K;
                    if (M == 1) {
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) dxp[c] += dyp[c] * wp[c];
                    } else {
                        for (int64_t c = 0; c < C; ++c) {
                            float acc = 0.0f;
                            for (int64_t m = 0; m < M; ++m) acc += dyp[c * M + m] * wp[c * M + m];
                            dxp[c] += acc;
                        }
                    }
                }
            }
        }
    }
}

void backward_weights_channels(float* dw, float* db, const float* x, const float* dy,
                               const Conv2dDims& d, int64_t c0, int64_t c1) {
    const int64_t C = d.C, K = d.K, M = K / C, nc = c1 - c0;
    for (int64_t t = 0; t < d.KH * d.KW; ++t)
        std::fill(dw + t * K + c0 * M, dw + t * K + c1 * M, 0.0f);
    if (db) std::fill(db + c0 * M, db + c1 * M, 0.0f);
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow) {
                const float* dyp = dy + ((n * d.OH + oh) * d.OW + ow) * K + c0 * M;
                if (db)
#pragma omp simd
                    for (int64_t k = 0; k < nc * M; ++k) db[c0 * M + k] += dyp[k];
                for (int64_t kh = 0; kh < d.KH; ++kh) {
                    const int64_t ih = oh * d.stride_h - d.pad_top + kh * d.dilation_h;
                    if (ih < 0 || ih >= d.H) continue;
                    for (int64_t kw = 0; kw < d.KW; ++kw) {
                        const int64_t iw = ow * d.stride_w - d.pad_left + kw * d.dilation_w;
                        if (iw < 0 || iw >= d.W) continue;
                        multiply_add_channels(dw + (kh * d.KW + kw) * K + c0 * M,
                                              x + ((n * d.H + ih) * d.W + iw) * C + c0, dyp,
                                              nc, M);
                    }
                }
            }
}

}  // namespace

const DepthwiseSimd kDepthwiseTable{CNNFAST_DW_NAME, &forward_rows, &backward_data_rows,
                                    &backward_weights_channels};

}  // namespace cnnfast::detail::CNNFAST_DW_NS
