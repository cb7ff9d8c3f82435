#pragma once
// Training-time noise layers beside Dropout (dropout.h): Keras GaussianNoise and
// SpatialDropout2D. Randomness is a counter-based hash of (seed, index), so results depend only
// on the seed and the sizes, never on the thread count. At inference both are the identity.
#include <cstdint>

namespace cnnfast {

// x, y (n,). y[i] = x[i] + float(stddev * z_i), z_i standard normal (Box-Muller on the two
// halves of splitmix64 hash i of the seed). y may alias x. The backward is the identity.
void gaussian_noise_forward(float* y, const float* x, int64_t n, double stddev, uint64_t seed);

// x, y (N, HW, C) (NHWC with the spatial axes flattened); mask (N, C). Channel (n, c) is kept
// (mask 1, y = x / keep) iff hash (n*C + c) >> 32 >= round(rate * 2^32), else zeroed on every
// pixel: Keras Dropout's where(mask, x / keep, 0) with noise shape (N, 1, 1, C);
// keep = float(1 - rate). y may alias x.
void spatial_dropout_forward(float* y, uint8_t* mask, const float* x, int64_t N, int64_t HW,
                             int64_t C, double rate, uint64_t seed);
// dy, dx (N, HW, C); mask (N, C): dx = mask ? dy / keep : 0. dx may alias dy.
void spatial_dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t N,
                              int64_t HW, int64_t C, double rate);

// The textbook loops, single-threaded: the oracle in tests.
void gaussian_noise_forward_naive(float* y, const float* x, int64_t n, double stddev,
                                  uint64_t seed);
void spatial_dropout_forward_naive(float* y, uint8_t* mask, const float* x, int64_t N,
                                   int64_t HW, int64_t C, double rate, uint64_t seed);

}  // namespace cnnfast
