#pragma once
// Keras RandomFlip in training: each image flipped left-right and/or upside down, each with
// probability 1/2, drawn per image from a counter-based hash of (seed, image). The identity at
// inference.
#include <cstdint>

namespace cnnfast {

// Which flips a RandomFlip may draw (Keras mode "horizontal", "vertical" or
// "horizontal_and_vertical").
enum RandomFlipMode : int { kFlipHorizontal = 1, kFlipVertical = 2 };

// x, y (N,H,W,C); flips (N,): bit 0 left-right, bit 1 upside down, drawn for the modes set in
// `mode` (bits 63 and 62 of hash n). y[n,h,w] = x[n, v ? H-1-h : h, f ? W-1-w : w].
// y must not alias x.
void random_flip_forward(float* y, uint8_t* flips, const float* x, int64_t N, int64_t H,
                         int64_t W, int64_t C, int mode, uint64_t seed);
// dy, dx (N,H,W,C); flips (N,) from the forward: each flip is its own inverse, so dx is dy
// flipped the same way. dx must not alias dy.
void random_flip_backward(float* dx, const float* dy, const uint8_t* flips, int64_t N, int64_t H,
                          int64_t W, int64_t C);

}  // namespace cnnfast
