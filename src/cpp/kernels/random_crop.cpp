#include "random_crop.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "elementwise_simd.h"
#include "parallel.h"

namespace cnnfast {

namespace {

// Keras' window when no random offset applies (RandomCrop.get_random_transformation).
void centred_window(int32_t* offsets, const CropDims& d) {
    const int64_t crop_h = std::max<int64_t>(std::min<int64_t>(d.H, d.W * d.OH / d.OW), 1);
    const int64_t crop_w = std::max<int64_t>(std::min<int64_t>(d.W, d.H * d.OW / d.OH), 1);
    offsets[0] = static_cast<int32_t>((d.H - crop_h) / 2);
    offsets[1] = static_cast<int32_t>((d.W - crop_w) / 2);
}

// One axis of the bilinear map: the two source indices and the weight of the second.
struct Tap {
    int64_t lo, hi;
    float frac;
};
Tap tap_at(int64_t o, int64_t in, int64_t out) {
    const double src = (static_cast<double>(o) + 0.5) * static_cast<double>(in) /
                           static_cast<double>(out) - 0.5;
    const double f = std::floor(src);
    Tap t;
    t.lo = std::max<int64_t>(static_cast<int64_t>(f), 0);
    t.hi = std::min<int64_t>(static_cast<int64_t>(std::ceil(src)), in - 1);
    t.lo = std::min(t.lo, in - 1);
    t.hi = std::max<int64_t>(t.hi, 0);
    t.frac = static_cast<float>(src - f);
    return t;
}

}  // namespace

// x (N,H,W,C); y (N,OH,OW,C); offsets (2,).
void random_crop_forward(float* y, int32_t* offsets, const float* x, const CropDims& d,
                         uint64_t seed) {
    if (d.H > d.OH && d.W > d.OW) {
        const uint64_t key = detail::splitmix64_mix(seed);
        for (int axis = 0; axis < 2; ++axis) {
            const uint64_t h = detail::splitmix64_mix(
                key + static_cast<uint64_t>(axis + 1) * detail::kGoldenGamma);
            const uint64_t range = static_cast<uint64_t>(axis ? d.W - d.OW + 1 : d.H - d.OH + 1);
            offsets[axis] = static_cast<int32_t>(((h >> 32) * range) >> 32);
        }
    } else {
        centred_window(offsets, d);
    }
    const int64_t top = offsets[0], left = offsets[1], rows = d.N * d.OH;
    parallel_for(threads_for(rows * d.OW * d.C / 32768), rows, [&](int64_t r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        std::memcpy(y + r * d.OW * d.C, x + ((n * d.H + top + oh) * d.W + left) * d.C,
                    sizeof(float) * d.OW * d.C);
    });
}

// dy (N,OH,OW,C); dx (N,H,W,C).
void random_crop_backward(float* dx, const float* dy, const int32_t* offsets, const CropDims& d) {
    const int64_t top = offsets[0], left = offsets[1], rows = d.N * d.H;
    parallel_for(threads_for(rows * d.W * d.C / 32768), rows, [&](int64_t r) {
        const int64_t n = r / d.H, h = r % d.H;
        float* row = dx + r * d.W * d.C;
        std::fill(row, row + d.W * d.C, 0.0f);
        if (h < top || h >= top + d.OH) return;
        std::memcpy(row + left * d.C, dy + ((n * d.OH + h - top) * d.OW) * d.C,
                    sizeof(float) * d.OW * d.C);
    });
}

// x (N,H,W,C); y (N,OH,OW,C).
void resize_bilinear_forward(float* y, const float* x, const CropDims& d) {
    const int64_t rows = d.N * d.OH, C = d.C;
    parallel_for(threads_for(rows * d.OW * C * 4 / 32768), rows, [&](int64_t r) {
        const int64_t n = r / d.OH;
        const Tap th = tap_at(r % d.OH, d.H, d.OH);
        const float* top = x + (n * d.H + th.lo) * d.W * C;
        const float* bottom = x + (n * d.H + th.hi) * d.W * C;
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            const Tap tw = tap_at(ow, d.W, d.OW);
            const float *a = top + tw.lo * C, *b = top + tw.hi * C;
            const float *c = bottom + tw.lo * C, *e = bottom + tw.hi * C;
            float* out = y + (r * d.OW + ow) * C;
#pragma omp simd
            for (int64_t k = 0; k < C; ++k) {
                const float upper = a[k] + (b[k] - a[k]) * tw.frac;
                const float lower = c[k] + (e[k] - c[k]) * tw.frac;
                out[k] = upper + (lower - upper) * th.frac;
            }
        }
    });
}

void resize_bilinear_forward_naive(float* y, const float* x, const CropDims& d) {
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow) {
                const Tap th = tap_at(oh, d.H, d.OH), tw = tap_at(ow, d.W, d.OW);
                for (int64_t k = 0; k < d.C; ++k) {
                    auto at = [&](int64_t h, int64_t w) {
                        return static_cast<double>(x[((n * d.H + h) * d.W + w) * d.C + k]);
                    };
                    const double u = at(th.lo, tw.lo) * (1 - tw.frac) + at(th.lo, tw.hi) * tw.frac;
                    const double l = at(th.hi, tw.lo) * (1 - tw.frac) + at(th.hi, tw.hi) * tw.frac;
                    y[((n * d.OH + oh) * d.OW + ow) * d.C + k] =
                        static_cast<float>(u * (1 - th.frac) + l * th.frac);
                }
            }
}

}  // namespace cnnfast
