#pragma once
// A network's first block fused: "valid" stride-1 Conv2D + ReLU + 2x2 stride-2 max pooling on
// NHWC float32 buffers, as in the Keras MNIST CNN and most classic convnets. The convolution's
// full-resolution output is never stored: the forward writes only the pooled maps and which
// window position won, and the backward computes dw and db straight from the pooled gradient
// (the first layer needs no dx). That removes four passes over the largest tensor of such
// networks (conv write, pool read, pool-backward write, dw read).
#include <cstdint>

#include "conv2d.h"

namespace cnnfast {

// True when the fused kernels run here (AVX-512 direct micro-kernels) and d is a convolution they
// take: one group, stride 1, no padding, OH and OW >= 2. Otherwise run the layers unfused.
bool conv2d_relu_maxpool_supported(const Conv2dDims& d);

// x (N,H,W,C); w (KH,KW,C,K); bias (K,) or null; d.OH/OW the convolution's output size.
// y (N,OH/2,OW/2,K) = max over each 2x2 window of relu(conv(x, w) + bias) (rows and columns past
// an even size are dropped, as "valid" pooling does); which (N,OH/2,OW/2,K) = the winning window
// position 2*row + column, the first in row-major order on ties. NaN propagates.
void conv2d_relu_maxpool_forward(float* y, int32_t* which, const float* x, const float* w,
                                 const float* bias, const Conv2dDims& d);

// dy (N,OH/2,OW/2,K): gradient of the pooled output y; y and which from the forward. dw
// (KH,KW,C,K) and db (K,) (may be null) are overwritten with the gradients of the convolution's
// weights: the pooled gradient reaches the winning position where y > 0 (ReLU), nowhere else.
void conv2d_relu_maxpool_backward_weights(float* dw, float* db, const float* x, const float* dy,
                                          const float* y, const int32_t* which,
                                          const Conv2dDims& d);

}  // namespace cnnfast
