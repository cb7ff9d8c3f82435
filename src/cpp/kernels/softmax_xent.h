#pragma once
// Softmax and the losses of classic CNN training on row-major float32 buffers, Keras semantics.
// Threaded over fixed row blocks above ~32K elements; loss sums are accumulated in double and
// added in a fixed block order, so every result is bit-identical for any thread count.
#include <cstdint>

namespace cnnfast {

// x, y (rows, cols): row-wise softmax, max-subtracted (no overflow for any finite x).
// y may alias x.
void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols);
// Readable spec with std::exp, double row sums, single-threaded: fallback and test oracle.
void softmax_forward_naive(float* y, const float* x, int64_t rows, int64_t cols);

// y, dy, dx (rows, cols): dx = y * (dy - sum_j dy_j y_j) per row (y the softmax output).
// dx may alias dy.
void softmax_backward(float* dx, const float* y, const float* dy, int64_t rows, int64_t cols);

// logits, labels, dlogits, probs (rows, classes); labels one-hot or soft (rows of a distribution).
// Returns mean over rows of -sum_j labels_j * log(clip(softmax_j, 1e-7, 1 - 1e-7)) (Keras'
// categorical_crossentropy on softmax outputs; log-softmax via log-sum-exp, in double).
// If non-null: probs = softmax(logits), dlogits = (softmax - labels) / rows (the clip is ignored
// in the gradient, as for Keras' softmax + crossentropy fused path).
// dlogits may alias logits; probs may alias logits; probs and dlogits must differ.
double softmax_xent_forward_backward(float* dlogits, float* probs, const float* logits,
                                     const float* labels, int64_t rows, int64_t classes);

// As above with integer class labels (rows,), each in [0, classes) (the caller checks).
double softmax_xent_sparse_forward_backward(float* dlogits, float* probs, const float* logits,
                                            const int32_t* labels, int64_t rows, int64_t classes);

// probs, labels, dprobs (rows, classes). Keras 3 categorical_crossentropy(from_logits=False):
// q = probs / sum(probs, row), c = clip(q, 1e-7, 1 - 1e-7), loss = mean over rows of
// -sum_j labels_j log c_j (computed in double). If dprobs is non-null it receives the exact
// gradient of that loss through the renormalisation: with g_j = -labels_j / (q_j * rows) where q_j
// is inside the clip range (0 where clipped), dprobs_k = (g_k - sum_j g_j q_j) / sum(probs).
// For rows that already sum to 1 this is -labels/(p rows) plus a per-row constant, which a
// preceding softmax's backward removes exactly. dprobs may alias probs. Rows must have a
// positive sum (Keras yields NaN otherwise, and so does this).
double categorical_xent(float* dprobs, const float* probs, const float* labels, int64_t rows,
                        int64_t classes);

// pred, target, dpred (n,). Returns mean((pred - target)^2) (double accumulation);
// if non-null dpred = 2 (pred - target) / n. dpred may alias pred or target.
double mse(float* dpred, const float* pred, const float* target, int64_t n);

}  // namespace cnnfast
