#pragma once
// Internal to conv2d: 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3)
// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016). Nothing here
// is part of conv2d.h.
//
// Each 2x2 block of outputs (a "tile") reads a 4x4 input patch d. With the fixed matrices B, G, A
//   y_tile = A^T [ (G g G^T) (.) (B^T d B) ] A          ((.) elementwise over the 16 positions)
// so a layer becomes 16 independent GEMMs over channels, one per position, of 16 multiplies per
// 2x2 outputs where the direct convolution needs 36: 2.25x fewer on even-sized maps.
//   forward:          M[pos] (tiles, K) = V[pos] (tiles, C) x U[pos] (C, K), U = G g G^T
//   backward-data:    the forward of dy with the flipped, transposed kernel (stride 1)
//   backward-weights: dU[pos] (C, K) = sum over tiles V[pos]^T x (A dy_tile A^T)[pos], then
//                     dw = G^T dU G - the exact gradient of the forward formula above.
// The transforms add and halve only, so the rounding error stays within a few ulp of the direct
// sums' (the tests hold both to the same bound). The GEMMs run on the direct convolution's
// AVX-512 micro-kernels (conv2d_direct.h), or on sgemm for wide layers, and this path exists
// where those micro-kernels do.
#include <cstdint>

#include "conv2d.h"
#include "conv2d_direct.h"

namespace cnnfast {

// True for the convolutions the kernels below compute: one group, 3x3, stride 1, padding of at
// most 2 on the top and left. Whether it pays is the caller's choice (conv2d.cpp).
bool winograd_computes(const Conv2dDims& d);

// Same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weights (conv2d.h);
// each needs winograd_computes(d) and the AVX-512 micro-kernels uk.
void conv2d_forward_winograd(const ConvDirectUkernels& uk, float* y, const float* x,
                             const float* w, const float* bias, const Conv2dDims& d, bool relu);
void conv2d_backward_data_winograd(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                   const float* w, const Conv2dDims& d);
void conv2d_backward_weights_winograd(const ConvDirectUkernels& uk, float* dw, float* db,
                                      const float* x, const float* dy, const Conv2dDims& d);

// False when this build has no AVX-512 Winograd transforms.
bool conv2d_winograd_built();

}  // namespace cnnfast
