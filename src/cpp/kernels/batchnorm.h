#pragma once
// Batch normalization over the last (channel) axis of channels-last buffers, Keras 3's
// BatchNormalization(axis=-1): every position (n, h, w) is a row of C contiguous channels.
//   training:  mean_c, var_c over the batch's rows (var biased, divided by rows);
//              y = (x - mean_c) * gamma_c / sqrt(var_c + epsilon) + beta_c
//   inference: the same with the moving statistics in place of the batch's.
// gamma null means scale=False (1), beta null center=False (0).
#include <cstdint>

namespace cnnfast {

// rows = N*H*W (any product of the leading axes); C = channels (the last, contiguous axis).
struct BatchNormDims {
    int64_t rows, C;
    float epsilon;
};

// A ReLU right after the normalization can run inside it (the train plan's batchnorm + relu
// fusion): `relu` applies it to y in the forward pass, and the backward's `relu_y`, that
// ReLU's output (not null), masks dy where relu_y <= 0 before the normalization's backward:
// the same values as activation_forward and activation_backward apart, in one pass less.

// x (rows,C); gamma, beta (C,) or null; y (rows,C) overwritten (may alias x); mean, var (C,)
// overwritten with the batch's mean and biased variance (float64 sums, rounded once).
void batchnorm_forward_training(float* y, float* mean, float* var, const float* x,
                                const float* gamma, const float* beta, const BatchNormDims& d,
                                bool relu = false);
// x, y (rows,C); mean, var (C,) the moving statistics. y may alias x.
void batchnorm_forward_inference(float* y, const float* x, const float* gamma, const float* beta,
                                 const float* mean, const float* var, const BatchNormDims& d,
                                 bool relu = false);
// moving (C,) <- moving * momentum + batch * (1 - momentum), for the mean and the variance
// (Keras 3 updates the moving variance with the biased batch variance).
void batchnorm_update_moving(float* moving_mean, float* moving_var, const float* mean,
                             const float* var, int64_t C, float momentum);
// x, dy (rows,C); mean, var (C,) from batchnorm_forward_training; dx (rows,C) overwritten (may
// alias dy), or null; dgamma, dbeta (C,) overwritten, or null:
//   xhat = (x - mean) / sqrt(var + eps); dbeta = sum dy; dgamma = sum dy * xhat;
//   dx = gamma / sqrt(var + eps) * (dy - dbeta / rows - xhat * dgamma / rows)
void batchnorm_backward_training(float* dx, float* dgamma, float* dbeta, const float* x,
                                 const float* dy, const float* mean, const float* var,
                                 const float* gamma, const BatchNormDims& d,
                                 const float* relu_y = nullptr);
// Inference mode (a frozen layer): dx = dy * gamma / sqrt(var + eps). dx may alias dy.
void batchnorm_backward_inference(float* dx, const float* dy, const float* gamma,
                                  const float* var, const BatchNormDims& d,
                                  const float* relu_y = nullptr);
// The per-channel affine map of inference: scale = gamma / sqrt(var + eps),
// shift = beta - mean * scale (what a preceding convolution's weights fold in).
void batchnorm_scale_shift(float* scale, float* shift, const float* gamma, const float* beta,
                           const float* mean, const float* var, int64_t C, float epsilon);

// Direct single-threaded loops: the readable spec and oracle. Same contracts.
void batchnorm_forward_training_naive(float* y, float* mean, float* var, const float* x,
                                      const float* gamma, const float* beta,
                                      const BatchNormDims& d);
void batchnorm_backward_training_naive(float* dx, float* dgamma, float* dbeta, const float* x,
                                       const float* dy, const float* mean, const float* var,
                                       const float* gamma, const BatchNormDims& d);

}  // namespace cnnfast
