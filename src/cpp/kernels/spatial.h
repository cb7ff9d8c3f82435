#pragma once
// Spatial reshaping of channels-last feature maps: global pooling, zero padding, cropping and
// nearest-neighbour upsampling (Keras GlobalAveragePooling2D, GlobalMaxPooling2D,
// ZeroPadding2D, Cropping2D, UpSampling2D). Every kernel copies or reduces whole rows of C
// contiguous channels.
#include <cstdint>

namespace cnnfast {

// in (N,H,W,C).
struct GlobalPoolDims {
    int64_t N, H, W, C;
};

// x (N,H,W,C); y (N,C) overwritten with the mean over H*W (float64 sums).
void global_avg_pool2d_forward(float* y, const float* x, const GlobalPoolDims& d);
// dy (N,C); dx (N,H,W,C) overwritten with dy / (H*W) at every position.
void global_avg_pool2d_backward(float* dx, const float* dy, const GlobalPoolDims& d);
// x (N,H,W,C); y (N,C) the max over H*W (the first maximum; NaN if any is NaN); argmax (N,C)
// int32 position h*W + w of the one chosen, or null at inference.
void global_max_pool2d_forward(float* y, int32_t* argmax, const float* x, const GlobalPoolDims& d);
// dy, argmax (N,C); dx (N,H,W,C) overwritten: dy at the chosen position, 0 elsewhere.
void global_max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax,
                                const GlobalPoolDims& d);

// The small side (N,H,W,C) and the big one (N, H+top+bottom, W+left+right, C).
struct Pad2dDims {
    int64_t N, H, W, C;
    int64_t top, bottom, left, right;
};

// small (N,H,W,C); big (N,H+top+bottom,W+left+right,C) overwritten: small in the middle, zeros
// around (ZeroPadding2D forward, Cropping2D backward).
void zero_pad2d(float* big, const float* small, const Pad2dDims& d);
// big (N,H+top+bottom,W+left+right,C); small (N,H,W,C) overwritten with the middle
// (Cropping2D forward, ZeroPadding2D backward).
void crop2d(float* small, const float* big, const Pad2dDims& d);

// in (N,H,W,C); out (N,H*SH,W*SW,C).
struct Upsample2dDims {
    int64_t N, H, W, C, SH, SW;
};

// x (N,H,W,C); y (N,H*SH,W*SW,C) overwritten: y[n, h, w] = x[n, h / SH, w / SW].
void upsample2d_nearest_forward(float* y, const float* x, const Upsample2dDims& d);
// dy (N,H*SH,W*SW,C); dx (N,H,W,C) overwritten with the sum over each SH x SW block.
void upsample2d_nearest_backward(float* dx, const float* dy, const Upsample2dDims& d);

}  // namespace cnnfast
