#pragma once
// Keras RandomTranslation and RandomRotation in training: every image resampled through its own
// projective transform (keras.ops.image.affine_transform, TensorFlow's ImageProjectiveTransform
// semantics), the transforms drawn per image from a counter-based hash of (seed, image). The
// identity at inference. The backward is the adjoint of the resampling for fixed transforms.
#include <cstdint>

namespace cnnfast {

// x, y (N,H,W,C); transforms (N,8) float32 [a0 a1 a2 b0 b1 b2 c0 c1]: output pixel (row r,
// column c) reads input (row (b0 c + b1 r + b2) / k, column (a0 c + a1 r + a2) / k),
// k = c0 c + c1 r + 1.
struct AffineDims {
    int64_t N, H, W, C;
};

// How a source coordinate outside the image is mapped (TensorFlow's fill modes, folded into
// [0, len - 1] before interpolating): reflect (dcba|abcd|dcba), wrap (abcd|abcd|abcd, modulo
// the size), nearest (aaaa|abcd|dddd), or constant (out-of-image reads give fill_value).
enum class FillMode : int { reflect = 0, wrap, constant, nearest };

// Per-image transforms from the seed (uniform u_n from hash n, v_n from hash N + n):
// translation by (u in [h_lo, h_hi]) * H rows and (v in [w_lo, w_hi]) * W columns, i.e.
// [1, 0, -dx, 0, 1, -dy, 0, 0]; rotation by angle (u in [lo, hi]) * 2 pi about the image centre
// ([cos, -sin, x_off, sin, cos, y_off, 0, 0], Keras' RandomRotation).
void random_translation_transforms(float* transforms, const AffineDims& d, float h_lo,
                                   float h_hi, float w_lo, float w_hi, uint64_t seed);
void random_rotation_transforms(float* transforms, const AffineDims& d, float lo, float hi,
                                uint64_t seed);

// y = x resampled through the transforms, bilinear (or nearest: the coordinate rounded half
// away from zero). y must not alias x.
void affine_transform_forward(float* y, const float* x, const float* transforms,
                              const AffineDims& d, FillMode fill, bool bilinear,
                              float fill_value);
// dx (N,H,W,C) overwritten with the adjoint applied to dy: each output's gradient added to the
// input pixels it read, with the same weights (constant-filled reads carry none). Each image is
// one unit, so results do not depend on the thread count. dx must not alias dy.
void affine_transform_backward(float* dx, const float* dy, const float* transforms,
                               const AffineDims& d, FillMode fill, bool bilinear);

}  // namespace cnnfast
