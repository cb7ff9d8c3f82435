#include "random_affine.h"

#include <algorithm>
#include <cmath>

#include "elementwise_simd.h"
#include "parallel.h"

namespace cnnfast {

namespace {

// Uniform in [lo, hi) from hash i of the stream.
float uniform_at(uint64_t key, int64_t i, float lo, float hi) {
    const uint64_t h =
        detail::splitmix64_mix(key + static_cast<uint64_t>(i + 1) * detail::kGoldenGamma);
    const double u = static_cast<double>(h >> 40) * 0x1p-24;
    return static_cast<float>(lo + (static_cast<double>(hi) - lo) * u);
}

// TensorFlow's MapCoordinate: a source coordinate folded into [0, len - 1] by the fill mode
// (constant leaves it, and out-of-image reads give the fill value).
float map_coordinate(float in, int64_t len, FillMode fill) {
    const float top = static_cast<float>(len - 1);
    switch (fill) {
        case FillMode::constant: return in;
        case FillMode::nearest: return std::min(std::max(in, 0.0f), top);
        case FillMode::reflect: {
            if (len <= 1) return 0.0f;
            const int64_t sz2 = 2 * len;
            if (in < 0) {
                if (in < sz2) in = static_cast<float>(sz2 * static_cast<int64_t>(-in / sz2)) + in;
                in = in < -len ? in + sz2 : -in - 1;
            } else if (in > top) {
                in -= static_cast<float>(sz2 * static_cast<int64_t>(in / sz2));
                if (in >= len) in = sz2 - in - 1;
            }
            return std::min(std::max(in, 0.0f), top);
        }
        case FillMode::wrap: {
            if (len <= 1) return 0.0f;
            // Periodic: folded modulo len (TensorFlow's fold, by len - 1, leaves shifts of more
            // than a period clamped to the edge; Keras documents the periodic extension).
            const float flen = static_cast<float>(len);
            in -= flen * std::floor(in / flen);
            return std::min(std::max(in, 0.0f), top);
        }
    }
    return in;
}

// The up to four input pixels output (r, c) reads and their weights; -1 for an out-of-image
// (constant-filled) read.
struct Taps {
    int64_t at[4];
    float w[4];
    int count;
};

Taps taps_of(const float* t, int64_t r, int64_t c, const AffineDims& d, FillMode fill,
             bool bilinear) {
    const float fc = static_cast<float>(c), fr = static_cast<float>(r);
    const float k = t[6] * fc + t[7] * fr + 1.0f;
    const float in_x = map_coordinate((t[0] * fc + t[1] * fr + t[2]) / k, d.W, fill);
    const float in_y = map_coordinate((t[3] * fc + t[4] * fr + t[5]) / k, d.H, fill);
    auto index = [&](float y, float x) -> int64_t {
        if (y < 0 || y >= d.H || x < 0 || x >= d.W) return -1;
        return static_cast<int64_t>(y) * d.W + static_cast<int64_t>(x);
    };
    Taps taps{};
    if (!bilinear) {
        taps.count = 1;
        taps.at[0] = index(std::round(in_y), std::round(in_x));
        taps.w[0] = 1.0f;
        return taps;
    }
    const float y0 = std::floor(in_y), x0 = std::floor(in_x), y1 = y0 + 1, x1 = x0 + 1;
    taps.count = 4;
    taps.at[0] = index(y0, x0);
    taps.w[0] = (y1 - in_y) * (x1 - in_x);
    taps.at[1] = index(y0, x1);
    taps.w[1] = (y1 - in_y) * (in_x - x0);
    taps.at[2] = index(y1, x0);
    taps.w[2] = (in_y - y0) * (x1 - in_x);
    taps.at[3] = index(y1, x1);
    taps.w[3] = (in_y - y0) * (in_x - x0);
    return taps;
}

}  // namespace

void random_translation_transforms(float* transforms, const AffineDims& d, float h_lo,
                                   float h_hi, float w_lo, float w_hi, uint64_t seed) {
    const uint64_t key = detail::splitmix64_mix(seed);
    for (int64_t n = 0; n < d.N; ++n) {
        const float dy = uniform_at(key, n, h_lo, h_hi) * static_cast<float>(d.H);
        const float dx = uniform_at(key, d.N + n, w_lo, w_hi) * static_cast<float>(d.W);
        float* t = transforms + n * 8;
        t[0] = 1, t[1] = 0, t[2] = -dx, t[3] = 0, t[4] = 1, t[5] = -dy, t[6] = 0, t[7] = 0;
    }
}

void random_rotation_transforms(float* transforms, const AffineDims& d, float lo, float hi,
                                uint64_t seed) {
    const uint64_t key = detail::splitmix64_mix(seed);
    const float two_pi = 6.283185307179586f, w1 = static_cast<float>(d.W - 1),
                h1 = static_cast<float>(d.H - 1);
    for (int64_t n = 0; n < d.N; ++n) {
        const float angle = uniform_at(key, n, lo * two_pi, hi * two_pi);
        const float c = std::cos(angle), s = std::sin(angle);
        float* t = transforms + n * 8;
        t[0] = c, t[1] = -s, t[2] = (w1 - (c * w1 - s * h1)) / 2.0f;
        t[3] = s, t[4] = c, t[5] = (h1 - (s * w1 + c * h1)) / 2.0f;
        t[6] = 0, t[7] = 0;
    }
}

// x, y (N,H,W,C); transforms (N,8).
void affine_transform_forward(float* y, const float* x, const float* transforms,
                              const AffineDims& d, FillMode fill, bool bilinear,
                              float fill_value) {
    const int64_t rows = d.N * d.H, C = d.C;
    parallel_for(threads_for(rows * d.W * C * 8 / 32768), rows, [&](int64_t row) {
        const int64_t n = row / d.H, r = row % d.H;
        const float* img = x + n * d.H * d.W * C;
        for (int64_t c = 0; c < d.W; ++c) {
            const Taps taps = taps_of(transforms + n * 8, r, c, d, fill, bilinear);
            float* out = y + (row * d.W + c) * C;
            for (int64_t k = 0; k < C; ++k) {
                // The four weighted reads (TensorFlow's two lerps, reassociated).
                float v[4];
                for (int j = 0; j < taps.count; ++j)
                    v[j] = taps.at[j] >= 0 ? img[taps.at[j] * C + k] : fill_value;
                out[k] = bilinear ? taps.w[0] * v[0] + taps.w[1] * v[1] + taps.w[2] * v[2] +
                                        taps.w[3] * v[3]
                                  : v[0];
            }
        }
    });
}

// dy, dx (N,H,W,C); transforms (N,8).
void affine_transform_backward(float* dx, const float* dy, const float* transforms,
                               const AffineDims& d, FillMode fill, bool bilinear) {
    const int64_t C = d.C;
    parallel_for(threads_for(d.N * d.H * d.W * C * 8 / 32768), d.N, [&](int64_t n) {
        float* img = dx + n * d.H * d.W * C;
        std::fill(img, img + d.H * d.W * C, 0.0f);
        for (int64_t r = 0; r < d.H; ++r)
            for (int64_t c = 0; c < d.W; ++c) {
                const Taps taps = taps_of(transforms + n * 8, r, c, d, fill, bilinear);
                const float* g = dy + ((n * d.H + r) * d.W + c) * C;
                for (int j = 0; j < taps.count; ++j) {
                    if (taps.at[j] < 0) continue;
                    float* dst = img + taps.at[j] * C;
                    const float w = taps.w[j];
#pragma omp simd
                    for (int64_t k = 0; k < C; ++k) dst[k] += w * g[k];
                }
            }
    });
}

}  // namespace cnnfast
