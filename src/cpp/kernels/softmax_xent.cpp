#include "softmax_xent.h"

#include <algorithm>
#include <cmath>

#include "elementwise_common.h"
#include "elementwise_simd.h"

namespace cnnfast {

namespace {

using detail::kXentClipHi, detail::kXentClipLo;

// Rows per parallel block: ~32K elements.
inline int64_t row_grain(int64_t cols) {
    return std::max<int64_t>(1, detail::kElementwiseGrain / std::max<int64_t>(cols, 1));
}

}  // namespace

// x, y (rows, cols). y may alias x.
void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols) {
    if (cols <= 0) return;
    const auto& k = detail::elementwise_simd();
    detail::for_each_chunk(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        k.softmax_rows(y + r0 * cols, x + r0 * cols, r1 - r0, cols);
    });
}

// x, y (rows, cols).
void softmax_forward_naive(float* y, const float* x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        float m = xr[0];
        for (int64_t j = 1; j < cols; ++j) m = std::max(m, xr[j]);
        double s = 0.0;
        for (int64_t j = 0; j < cols; ++j) s += std::exp(static_cast<double>(xr[j]) - m);
        for (int64_t j = 0; j < cols; ++j)
            yr[j] = static_cast<float>(std::exp(static_cast<double>(xr[j]) - m) / s);
    }
}

// y, dy, dx (rows, cols). dx may alias dy.
void softmax_backward(float* dx, const float* y, const float* dy, int64_t rows, int64_t cols) {
    detail::for_each_chunk(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* yr = y + r * cols;
            const float* gr = dy + r * cols;
            float* dr = dx + r * cols;
            double dot = 0.0;
#pragma omp simd reduction(+ : dot)
            for (int64_t j = 0; j < cols; ++j)
                dot += static_cast<double>(gr[j]) * static_cast<double>(yr[j]);
            const float d = static_cast<float>(dot);
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) dr[j] = yr[j] * (gr[j] - d);
        }
    });
}

namespace {

// Fused softmax cross-entropy with float labels (rows, C) or, if labels is null, int_labels.
double softmax_xent_mean(float* dlogits, float* probs, const float* logits, const float* labels,
                         const int32_t* int_labels, int64_t rows, int64_t C) {
    if (rows <= 0 || C <= 0) return 0.0;
    const auto& k = detail::elementwise_simd();
    const float inv_rows = static_cast<float>(1.0 / static_cast<double>(rows));
    const double total = detail::blocked_sum(rows, row_grain(C), [&](int64_t r0, int64_t r1) {
        const int64_t o = r0 * C;
        return k.softmax_xent_rows(dlogits ? dlogits + o : nullptr, probs ? probs + o : nullptr,
                                   logits + o, labels ? labels + o : nullptr,
                                   int_labels ? int_labels + r0 : nullptr, r1 - r0, C, inv_rows);
    });
    return total / static_cast<double>(rows);
}

}  // namespace

// logits, labels, dlogits, probs (rows, C).
double softmax_xent_forward_backward(float* dlogits, float* probs, const float* logits,
                                     const float* labels, int64_t rows, int64_t C) {
    return softmax_xent_mean(dlogits, probs, logits, labels, nullptr, rows, C);
}

// logits, dlogits, probs (rows, C); labels (rows,) in [0, C).
double softmax_xent_sparse_forward_backward(float* dlogits, float* probs, const float* logits,
                                            const int32_t* labels, int64_t rows, int64_t C) {
    return softmax_xent_mean(dlogits, probs, logits, nullptr, labels, rows, C);
}

// probs, labels, dprobs (rows, C).
double categorical_xent(float* dprobs, const float* probs, const float* labels, int64_t rows,
                        int64_t C) {
    if (rows <= 0 || C <= 0) return 0.0;
    const double inv_rows = 1.0 / static_cast<double>(rows);
    const double total = detail::blocked_sum(rows, row_grain(C), [&](int64_t r0, int64_t r1) {
        double loss = 0.0;
        for (int64_t r = r0; r < r1; ++r) {
            const float* p = probs + r * C;
            const float* y = labels + r * C;
            double s = 0.0;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < C; ++j) s += static_cast<double>(p[j]);
            const double inv_s = 1.0 / s;
            // Loss and sum_j g_j q_j, with g_j = dloss/dq_j (zero outside the clip range).
            double l = 0.0, gq = 0.0;
            for (int64_t j = 0; j < C; ++j) {
                const double yj = static_cast<double>(y[j]);
                if (yj == 0.0) continue;
                const double q = static_cast<double>(p[j]) * inv_s;
                const double c = std::min(std::max(q, kXentClipLo), kXentClipHi);
                l -= yj * std::log(c);
                if (q >= kXentClipLo && q <= kXentClipHi) gq -= yj * inv_rows;  // g_j * q_j
            }
            loss += l;
            if (!dprobs) continue;
            float* d = dprobs + r * C;
            for (int64_t j = 0; j < C; ++j) {
                const double yj = static_cast<double>(y[j]);
                const double q = static_cast<double>(p[j]) * inv_s;
                const double g =
                    (yj != 0.0 && q >= kXentClipLo && q <= kXentClipHi) ? -yj * inv_rows / q : 0.0;
                d[j] = static_cast<float>((g - gq) * inv_s);
            }
        }
        return loss;
    });
    return total * inv_rows;
}

// pred, target, dpred (n,).
double mse(float* dpred, const float* pred, const float* target, int64_t n) {
    if (n <= 0) return 0.0;
    const float scale = static_cast<float>(2.0 / static_cast<double>(n));
    const double total = detail::blocked_sum(n, detail::kElementwiseGrain, [&](int64_t lo,
                                                                                int64_t hi) {
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = lo; i < hi; ++i) {
            const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
            s += d * d;
        }
        if (dpred) {
#pragma omp simd
            for (int64_t i = lo; i < hi; ++i) dpred[i] = (pred[i] - target[i]) * scale;
        }
        return s;
    });
    return total / static_cast<double>(n);
}

}  // namespace cnnfast
