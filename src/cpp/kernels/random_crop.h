#pragma once
// Keras RandomCrop(height, width): in training one window of the target size, at a random
// offset drawn once per batch (Keras draws one per call), cut from every image; at inference
// the whole image resized bilinearly to the target size (Keras 3 resizes; equal sizes are the
// identity and need no step).
#include <cstdint>

namespace cnnfast {

// x (N,H,W,C); y (N,OH,OW,C) with OH <= H, OW <= W.
struct CropDims {
    int64_t N, H, W, C;
    int64_t OH, OW;
};

// offsets (2,) int32 written: the window's top row and left column. When H > OH and W > OW,
// uniform integers in [0, H - OH] and [0, W - OW] from the seed (splitmix64 hashes 0 and 1,
// upper halves scaled); otherwise Keras' centred window: top = (H - min(H, max(1, W*OH/OW)))/2,
// left = (W - min(W, max(1, H*OW/OH)))/2 in integer arithmetic as Keras' int(float(...)).
// y = x[:, top:top+OH, left:left+OW, :]. y must not alias x.
void random_crop_forward(float* y, int32_t* offsets, const float* x, const CropDims& d,
                         uint64_t seed);
// dy (N,OH,OW,C); offsets from the forward; dx (N,H,W,C) overwritten: dy inside the window,
// 0 elsewhere.
void random_crop_backward(float* dx, const float* dy, const int32_t* offsets, const CropDims& d);

// x (N,H,W,C) -> y (N,OH,OW,C) bilinear with half-pixel centres and no antialiasing
// (tf.image.resize / keras.ops.image.resize "bilinear", PyTorch align_corners=False): source
// coordinate (o + 0.5) * in / out - 0.5, rows and columns clamped to the image.
void resize_bilinear_forward(float* y, const float* x, const CropDims& d);
// The textbook loops, single-threaded, in double: the oracle in tests.
void resize_bilinear_forward_naive(float* y, const float* x, const CropDims& d);

}  // namespace cnnfast
