#pragma once
// The Keras 3 losses beyond softmax cross-entropy and MSE, on row-major float32 buffers: each
// returns the batch loss (the mean over rows of the per-row loss, accumulated in double) and, if
// its gradient output is non-null, writes d(batch loss)/d(input). Element-wise losses are means
// over all n elements (Keras: mean over the last axis, then over the batch); row losses take
// (rows, cols) with cols the last axis. Sums are added in a fixed block order, so results are
// bit-identical for any thread count. Every gradient output may alias its input.
#include <cstdint>

namespace cnnfast {

// Keras's backend epsilon: probabilities are clipped to [eps, 1 - eps] (binary) or [eps, 1] (KL).
constexpr double kLossEpsilon = 1e-7;

// pred, target, dpred (n,). Keras binary_crossentropy(from_logits=False): t = target (1 - s) +
// s / 2 with s = label_smoothing, p = clip(pred, 1e-7, 1 - 1e-7), loss = mean of
// -(t log p + (1 - t) log(1 - p)). dpred = (p - t) / (p (1 - p) n) where pred lies inside
// [1e-7, 1 - 1e-7] (bounds included, as for TF's and torch's clip), 0 outside.
double binary_xent(float* dpred, const float* pred, const float* target, int64_t n,
                   double label_smoothing);

// logits, target, dlogits (n,). Binary cross-entropy of sigmoid(logits), with t as above.
// clip_probabilities false (Keras from_logits=True): loss = mean of
// max(z, 0) - z t + log(1 + exp(-|z|)), exact for any finite z.
// clip_probabilities true (a sigmoid output fused with the loss): the value is that of
// binary_xent on p = sigmoid(z) (computed in double), as Keras reports it from probabilities.
// Either way dlogits = (sigmoid(z) - t) / n (the clip is ignored in the gradient, as for the
// fused softmax + cross-entropy).
double binary_xent_logits(float* dlogits, const float* logits, const float* target, int64_t n,
                          double label_smoothing, bool clip_probabilities);

// pred, target, dpred (n,). Keras mean_absolute_error: mean |pred - target|;
// dpred = sign(pred - target) / n (0 where they are equal, as TF's and torch's abs).
double mean_absolute_error(float* dpred, const float* pred, const float* target, int64_t n);

// pred, target, dpred (n,). Keras huber: with e = pred - target, mean of 0.5 e^2 where
// |e| <= delta, else delta (|e| - 0.5 delta). dpred = clamp(e, -delta, delta) / n. delta > 0.
double huber(float* dpred, const float* pred, const float* target, int64_t n, double delta);

// pred, target, dpred (rows, cols). Keras kl_divergence: t = clip(target, 1e-7, 1),
// p = clip(pred, 1e-7, 1), loss = mean over rows of sum_j t_j log(t_j / p_j).
// dpred = -t / (p rows) where pred lies inside [1e-7, 1], 0 outside.
double kl_divergence(float* dpred, const float* pred, const float* target, int64_t rows,
                     int64_t cols);

// pred, target, dpred (rows, cols). Keras categorical_hinge: pos = sum_j t_j p_j,
// neg = max_j (1 - t_j) p_j, loss = mean over rows of max(neg - pos + 1, 0). Where
// neg - pos + 1 >= 0 (TF's maximum passes the gradient at the tie): dpred_j = (-t_j +
// (1 - t_j) [j attains neg] / count) / rows, the max's gradient shared by the positions
// attaining it (TF's reduce_max); 0 elsewhere.
double categorical_hinge(float* dpred, const float* pred, const float* target, int64_t rows,
                         int64_t cols);

}  // namespace cnnfast
