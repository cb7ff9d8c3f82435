#include "noise.h"

#include <cmath>

#include "elementwise_common.h"
#include "elementwise_simd.h"

namespace cnnfast {

namespace {

// Standard normal number i of the stream `key`: Box-Muller in double on the hash's halves,
// u1 in (0, 1] (never 0, so the log is finite) and u2 in [0, 1).
inline double normal_at(uint64_t key, int64_t i) {
    const uint64_t h =
        detail::splitmix64_mix(key + static_cast<uint64_t>(i + 1) * detail::kGoldenGamma);
    const double u1 = (static_cast<double>(h >> 32) + 1.0) * 0x1p-32;
    const double u2 = static_cast<double>(h & 0xFFFFFFFFu) * 0x1p-32;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// Kept iff the hash's upper half is >= threshold: P(drop) = rate to within 2^-33 (dropout.cpp).
inline bool kept_at(uint64_t key, int64_t i, uint64_t threshold) {
    const uint64_t h =
        detail::splitmix64_mix(key + static_cast<uint64_t>(i + 1) * detail::kGoldenGamma);
    return (h >> 32) >= threshold;
}

uint64_t threshold_of(double rate) {
    const double r = std::fmin(std::fmax(rate, 0.0), 1.0);
    return static_cast<uint64_t>(std::llround(r * 4294967296.0));
}

float keep_of(double rate) {
    return static_cast<float>(1.0 - std::fmin(std::fmax(rate, 0.0), 1.0));
}

}  // namespace

// x, y (n,).
void gaussian_noise_forward(float* y, const float* x, int64_t n, double stddev, uint64_t seed) {
    const uint64_t key = detail::splitmix64_mix(seed);
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
            y[i] = x[i] + static_cast<float>(stddev * normal_at(key, i));
    });
}

// x, y (N, HW, C); mask (N, C).
void spatial_dropout_forward(float* y, uint8_t* mask, const float* x, int64_t N, int64_t HW,
                             int64_t C, double rate, uint64_t seed) {
    const uint64_t key = detail::splitmix64_mix(seed), threshold = threshold_of(rate);
    const float keep = keep_of(rate);
    for (int64_t i = 0; i < N * C; ++i) mask[i] = kept_at(key, i, threshold) ? 1 : 0;
    // One unit per image and pixel row of C channels; the mask is read per channel.
    detail::for_each_chunk(N * HW, std::max<int64_t>(1, detail::kElementwiseGrain / C),
                           [&](int64_t lo, int64_t hi) {
        for (int64_t p = lo; p < hi; ++p) {
            const uint8_t* m = mask + (p / HW) * C;
            const float* xp = x + p * C;
            float* yp = y + p * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) yp[c] = m[c] ? xp[c] / keep : 0.0f;
        }
    });
}

// dy, dx (N, HW, C); mask (N, C).
void spatial_dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t N,
                              int64_t HW, int64_t C, double rate) {
    const float keep = keep_of(rate);
    detail::for_each_chunk(N * HW, std::max<int64_t>(1, detail::kElementwiseGrain / C),
                           [&](int64_t lo, int64_t hi) {
        for (int64_t p = lo; p < hi; ++p) {
            const uint8_t* m = mask + (p / HW) * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) dx[p * C + c] = m[c] ? dy[p * C + c] / keep : 0.0f;
        }
    });
}

void gaussian_noise_forward_naive(float* y, const float* x, int64_t n, double stddev,
                                  uint64_t seed) {
    const uint64_t key = detail::splitmix64_mix(seed);
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] + static_cast<float>(stddev * normal_at(key, i));
}

void spatial_dropout_forward_naive(float* y, uint8_t* mask, const float* x, int64_t N,
                                   int64_t HW, int64_t C, double rate, uint64_t seed) {
    const uint64_t key = detail::splitmix64_mix(seed), threshold = threshold_of(rate);
    const float keep = keep_of(rate);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c) {
            const bool kept = kept_at(key, n * C + c, threshold);
            mask[n * C + c] = kept ? 1 : 0;
            for (int64_t p = 0; p < HW; ++p) {
                const int64_t i = (n * HW + p) * C + c;
                y[i] = kept ? x[i] / keep : 0.0f;
            }
        }
}

}  // namespace cnnfast
