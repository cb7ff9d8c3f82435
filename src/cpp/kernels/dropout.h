#pragma once
// Inverted dropout (Keras Dropout in training) on flat float32 buffers.
// Randomness is a counter-based hash of (seed, element index), so the mask depends only on
// (seed, n) - never on the thread count or chunking.
#include <cstdint>

namespace cnnfast {

// x, y, mask (n,). Element i is kept (mask[i] = 1, y[i] = x[i] / keep) iff u_i >= rate, where
// u_i = (i-th output of a splitmix64 stream seeded with mix(seed)) >> 32, / 2^32, is uniform on
// [0, 1); dropped elements get mask 0, y 0. keep = float(1 - rate) and the division are exactly
// Keras' `where(mask, x / keep_prob, 0)`. rate in [0, 1]: 0 keeps everything (y = x), 1 drops
// everything. y may alias x.
void dropout_forward(float* y, uint8_t* mask, const float* x, int64_t n, double rate,
                     uint64_t seed);

// dy, mask, dx (n,): dx = mask ? dy / float(1 - rate) : 0. dx may alias dy.
void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, double rate);

}  // namespace cnnfast
