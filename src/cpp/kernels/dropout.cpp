#include "dropout.h"

#include <cmath>

#include "elementwise_common.h"
#include "elementwise_simd.h"

namespace cnnfast {

// x, y, mask (n,). y may alias x.
void dropout_forward(float* y, uint8_t* mask, const float* x, int64_t n, double rate,
                     uint64_t seed) {
    // keep iff (hash >> 32) >= threshold, i.e. P(drop) = threshold / 2^32 = rate to within 2^-33.
    const double r = std::fmin(std::fmax(rate, 0.0), 1.0);
    const uint64_t threshold = static_cast<uint64_t>(std::llround(r * 4294967296.0));
    const uint64_t key = detail::splitmix64_mix(seed);
    const float keep = static_cast<float>(1.0 - r);
    const auto& k = detail::elementwise_simd();
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        k.dropout_span(y, mask, x, lo, hi, key, threshold, keep);
    });
}

// dy, mask, dx (n,). dx may alias dy.
void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, double rate) {
    const float keep = static_cast<float>(1.0 - std::fmin(std::fmax(rate, 0.0), 1.0));
    const auto& k = detail::elementwise_simd();
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        k.dropout_backward_span(dx, dy, mask, lo, hi, keep);
    });
}

}  // namespace cnnfast
