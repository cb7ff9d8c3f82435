// Depthwise convolution (groups == C: each input channel convolved with its own M = K / C
// filters, Keras DepthwiseConv2D's depth_multiplier): direct loops over NHWC vectorised along the
// channels, where im2col would run C GEMMs of width M. Any stride, padding and dilation. The
// kernel (KH,KW,1,K) is the depthwise kernel (KH,KW,C,M) itself: output channel c*M + m reads
// input channel c. Each output (and each dx, dw element) is written by one thread, so results
// do not depend on the thread count.
#include <algorithm>
#include <cstring>

#include "conv2d.h"
#include "parallel.h"

namespace cnnfast {

namespace {

// acc[c*M + m] += a[c] * b[c*M + m] over the C input channels.
inline void multiply_add_channels(float* acc, const float* a, const float* b, int64_t C,
                                  int64_t M) {
    if (M == 1) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) acc[c] += a[c] * b[c];
        return;
    }
    for (int64_t c = 0; c < C; ++c) {
        const float v = a[c];
#pragma omp simd
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

}  // namespace

bool conv2d_is_depthwise(const Conv2dDims& d) { return d.groups > 1 && d.groups == d.C; }

// x (N,H,W,C); w (KH,KW,1,K); bias (K,) or null; y (N,OH,OW,K) overwritten.
void conv2d_forward_depthwise(float* y, const float* x, const float* w, const float* bias,
                              const Conv2dDims& d, bool relu) {
    const int64_t C = d.C, K = d.K, M = K / C, rows = d.N * d.OH;
    const int T = threads_for(d.N * d.OH * d.OW * K * d.KH * d.KW / kMacsPerThread);
    parallel_for(std::min<int64_t>(T, rows), rows, [&](int64_t r) {
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
    });
}

// dy (N,OH,OW,K); w (KH,KW,1,K); dx (N,H,W,C) overwritten: gathered per input row, so no two
// threads write one element.
void conv2d_backward_data_depthwise(float* dx, const float* dy, const float* w,
                                    const Conv2dDims& d) {
    const int64_t C = d.C, K = d.K, M = K / C, rows = d.N * d.H;
    const int T = threads_for(d.N * d.OH * d.OW * K * d.KH * d.KW / kMacsPerThread);
    parallel_for(std::min<int64_t>(T, rows), rows, [&](int64_t r) {
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
    });
}

// x (N,H,W,C); dy (N,OH,OW,K); dw (KH,KW,1,K) and db (K,) or null overwritten. Threads take
// blocks of input channels (with their M outputs each); every element sums over (n, oh, ow) in
// the same order whatever the split.
void conv2d_backward_weights_depthwise(float* dw, float* db, const float* x, const float* dy,
                                       const Conv2dDims& d) {
    const int64_t C = d.C, K = d.K, M = K / C;
    constexpr int64_t kBlock = 16;  // channels per unit: one AVX-512 vector
    const int64_t blocks = (C + kBlock - 1) / kBlock;
    const int T = threads_for(d.N * d.OH * d.OW * K * d.KH * d.KW / kMacsPerThread);
    parallel_for(std::min<int64_t>(T, blocks), blocks, [&](int64_t b) {
        const int64_t c0 = b * kBlock, nc = std::min(kBlock, C - c0);
        for (int64_t t = 0; t < d.KH * d.KW; ++t) std::fill(dw + t * K + c0 * M,
                                                            dw + t * K + (c0 + nc) * M, 0.0f);
        if (db) std::fill(db + c0 * M, db + (c0 + nc) * M, 0.0f);
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
    });
}

}  // namespace cnnfast
