// The convolution's naive loops: the readable spec that every faster path is tested against, and
// the fallback when nothing else applies. Single-threaded, one multiply-add at a time.
#include "conv2d.h"

#include <algorithm>
#include <cstdint>

namespace cnnfast {

void conv2d_forward_naive(float* y, const float* x, const float* w, const float* bias,
                          const Conv2dDims& d, bool relu) {
    const int64_t Cg = d.C / d.groups, Kg = d.K / d.groups;
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t k = 0; k < d.K; ++k) {
                    const int64_t g = k / Kg;
                    float acc = bias ? bias[k] : 0.0f;
                    for (int64_t kh = 0; kh < d.KH; ++kh) {
                        const int64_t ih = oh * d.stride_h - d.pad_top + kh * d.dilation_h;
                        if (ih < 0 || ih >= d.H) continue;
                        for (int64_t kw = 0; kw < d.KW; ++kw) {
                            const int64_t iw = ow * d.stride_w - d.pad_left + kw * d.dilation_w;
                            if (iw < 0 || iw >= d.W) continue;
                            const float* xp = x + ((n * d.H + ih) * d.W + iw) * d.C + g * Cg;
                            const float* wp = w + (kh * d.KW + kw) * Cg * d.K + k;
                            for (int64_t c = 0; c < Cg; ++c) acc += xp[c] * wp[c * d.K];
                        }
                    }
                    y[((n * d.OH + oh) * d.OW + ow) * d.K + k] = relu && acc < 0.0f ? 0.0f : acc;
                }
}

void conv2d_backward_data_naive(float* dx, const float* dy, const float* w, const Conv2dDims& d) {
    const int64_t Cg = d.C / d.groups, Kg = d.K / d.groups;
    std::fill(dx, dx + d.N * d.H * d.W * d.C, 0.0f);
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t k = 0; k < d.K; ++k) {
                    const int64_t g = k / Kg;
                    const float gy = dy[((n * d.OH + oh) * d.OW + ow) * d.K + k];
                    for (int64_t kh = 0; kh < d.KH; ++kh) {
                        const int64_t ih = oh * d.stride_h - d.pad_top + kh * d.dilation_h;
                        if (ih < 0 || ih >= d.H) continue;
                        for (int64_t kw = 0; kw < d.KW; ++kw) {
                            const int64_t iw = ow * d.stride_w - d.pad_left + kw * d.dilation_w;
                            if (iw < 0 || iw >= d.W) continue;
                            float* xp = dx + ((n * d.H + ih) * d.W + iw) * d.C + g * Cg;
                            const float* wp = w + (kh * d.KW + kw) * Cg * d.K + k;
                            for (int64_t c = 0; c < Cg; ++c) xp[c] += gy * wp[c * d.K];
                        }
                    }
                }
}

void conv2d_backward_weights_naive(float* dw, float* db, const float* x, const float* dy,
                                   const Conv2dDims& d) {
    const int64_t Cg = d.C / d.groups, Kg = d.K / d.groups;
    std::fill(dw, dw + d.KH * d.KW * Cg * d.K, 0.0f);
    if (db) std::fill(db, db + d.K, 0.0f);
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t k = 0; k < d.K; ++k) {
                    const int64_t g = k / Kg;
                    const float gy = dy[((n * d.OH + oh) * d.OW + ow) * d.K + k];
                    if (db) db[k] += gy;
                    for (int64_t kh = 0; kh < d.KH; ++kh) {
                        const int64_t ih = oh * d.stride_h - d.pad_top + kh * d.dilation_h;
                        if (ih < 0 || ih >= d.H) continue;
                        for (int64_t kw = 0; kw < d.KW; ++kw) {
                            const int64_t iw = ow * d.stride_w - d.pad_left + kw * d.dilation_w;
                            if (iw < 0 || iw >= d.W) continue;
                            const float* xp = x + ((n * d.H + ih) * d.W + iw) * d.C + g * Cg;
                            float* wp = dw + (kh * d.KW + kw) * Cg * d.K + k;
                            for (int64_t c = 0; c < Cg; ++c) wp[c * d.K] += gy * xp[c];
                        }
                    }
                }
}

}  // namespace cnnfast
