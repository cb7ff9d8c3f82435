#pragma once
// Local response normalization across channels (Krizhevsky et al. 2012, Sec. 3.3), with
// TensorFlow's tf.nn.local_response_normalization parametrisation on channels-last buffers:
//   scale_c = bias + alpha * sum_{c' = max(0, c-r)}^{min(C-1, c+r)} x_{c'}^2
//   y_c     = x_c * scale_c^(-beta)
// alpha is NOT divided by the window size 2r+1 (TensorFlow and the paper; PyTorch and Caffe
// use alpha / n). Every position (n, h, w) is an independent row of C contiguous channels.
#include <cstdint>

namespace cnnfast {

// rows = N*H*W (any product of the leading axes); C = channels (last, contiguous axis).
struct LrnDims {
    int64_t rows, C;
    int64_t depth_radius;  // r: the window is [c - r, c + r], clipped to [0, C)
    float bias, alpha, beta;
};

// x (rows,C); y (rows,C) overwritten; scale (rows,C) overwritten with bias + alpha*window sum,
// or null when no backward pass will follow. y must not alias x.
void lrn_forward(float* y, float* scale, const float* x, const LrnDims& d);
// x, y, scale (rows,C) from lrn_forward; dy (rows,C); dx (rows,C) overwritten (may alias dy):
//   dx_c = dy_c * scale_c^(-beta) - 2*alpha*beta * x_c * sum_{|j-c|<=r} dy_j * y_j / scale_j
void lrn_backward(float* dx, const float* x, const float* y, const float* scale, const float* dy,
                  const LrnDims& d);

// Direct loops over each window, single-threaded: the readable spec and oracle. Same contracts.
void lrn_forward_naive(float* y, float* scale, const float* x, const LrnDims& d);
void lrn_backward_naive(float* dx, const float* x, const float* y, const float* scale,
                        const float* dy, const LrnDims& d);

}  // namespace cnnfast
