#pragma once
// Keras Rescaling on flat float32 buffers: y = x * scale + offset, with scale and offset
// repeating over the flat index every `period` elements (1: scalars; C: one per channel of a
// channels-last layout). Threaded over fixed chunks above 32K elements; results are identical
// for any thread count.
#include <cstdint>

namespace cnnfast {

// x, y (n,); scale, offset (period,), n % period == 0. y[i] = x[i] * scale[i % period] +
// offset[i % period], the product rounded before the sum (no FMA, as Keras' two float32 ops).
// y may alias x.
void rescaling_forward(float* y, const float* x, const float* scale, const float* offset,
                       int64_t n, int64_t period);

// dy, dx (n,): dx[i] = dy[i] * scale[i % period]. dx may alias dy.
void rescaling_backward(float* dx, const float* dy, const float* scale, int64_t n,
                        int64_t period);

// The textbook loops, single-threaded: the oracle in tests.
void rescaling_forward_naive(float* y, const float* x, const float* scale, const float* offset,
                             int64_t n, int64_t period);
void rescaling_backward_naive(float* dx, const float* dy, const float* scale, int64_t n,
                              int64_t period);

}  // namespace cnnfast
