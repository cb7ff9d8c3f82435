#include "rescaling.h"

#include "elementwise_common.h"

// Keras computes x * scale and then + offset in two float32 operations; a contracted FMA would
// round once and differ in the last bit from the Python reference and from Keras.
#pragma GCC optimize("fp-contract=off")

namespace cnnfast {

namespace {

// Rows of `period` elements in [lo, hi) (chunk bounds are multiples of period).
void rescale_rows(float* y, const float* x, const float* scale, const float* offset, int64_t lo,
                  int64_t hi, int64_t period) {
    if (period == 1) {
        const float s = scale[0], o = offset[0];
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) y[i] = x[i] * s + o;
        return;
    }
    for (int64_t r = lo; r < hi; r += period) {
#pragma omp simd
        for (int64_t c = 0; c < period; ++c) y[r + c] = x[r + c] * scale[c] + offset[c];
    }
}

void unscale_rows(float* dx, const float* dy, const float* scale, int64_t lo, int64_t hi,
                  int64_t period) {
    if (period == 1) {
        const float s = scale[0];
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * s;
        return;
    }
    for (int64_t r = lo; r < hi; r += period) {
#pragma omp simd
        for (int64_t c = 0; c < period; ++c) dx[r + c] = dy[r + c] * scale[c];
    }
}

// Chunks of whole rows, about kElementwiseGrain elements each.
int64_t row_grain(int64_t period) {
    return std::max<int64_t>(1, detail::kElementwiseGrain / period) * period;
}

}  // namespace

// x, y (n,); scale, offset (period,).
void rescaling_forward(float* y, const float* x, const float* scale, const float* offset,
                       int64_t n, int64_t period) {
    detail::for_each_chunk(n, row_grain(period), [&](int64_t lo, int64_t hi) {
        rescale_rows(y, x, scale, offset, lo, hi, period);
    });
}

// dy, dx (n,); scale (period,).
void rescaling_backward(float* dx, const float* dy, const float* scale, int64_t n,
                        int64_t period) {
    detail::for_each_chunk(n, row_grain(period), [&](int64_t lo, int64_t hi) {
        unscale_rows(dx, dy, scale, lo, hi, period);
    });
}

void rescaling_forward_naive(float* y, const float* x, const float* scale, const float* offset,
                             int64_t n, int64_t period) {
    for (int64_t i = 0; i < n; ++i) {
        const float product = x[i] * scale[i % period];
        y[i] = product + offset[i % period];
    }
}

void rescaling_backward_naive(float* dx, const float* dy, const float* scale, int64_t n,
                              int64_t period) {
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * scale[i % period];
}

}  // namespace cnnfast
