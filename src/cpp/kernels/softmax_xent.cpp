#include "softmax_xent.h"

#include <algorithm>
#include <cmath>

#include "elementwise_common.h"
#include "elementwise_simd.h"

namespace cnnfast {

namespace {

// Keras clips probabilities to [epsilon, 1 - epsilon] with epsilon = 1e-7 applied to float32
// tensors, so the bounds are the float32 values of those numbers.
const double kClipLo = static_cast<double>(1e-7f);
const double kClipHi = static_cast<double>(static_cast<float>(1.0 - 1e-7));
const double kLogClipLo = std::log(kClipLo);
const double kLogClipHi = std::log(kClipHi);

// Rows per parallel block: ~32K elements.
inline int64_t row_grain(int64_t cols) {
    return std::max<int64_t>(1, detail::kElementwiseGrain / std::max<int64_t>(cols, 1));
}

// Rows with at most this many classes go through softmax in batches of whole rows of at most
// kBatch elements, so exp runs as one long vectorised loop instead of one short loop per row
// (10-class rows would otherwise run exp in the scalar epilogue). Wider rows use the per-row
// primitives, which vectorise on their own.
constexpr int64_t kBatch = 2048;

// Rows [r0, r1) of x (rows, C), C <= kBatch, one batch at a time: e = exp(x - rowmax) for the
// batch's rows, then row_done(r, e_row, rowmax, sum(e_row)). e is `out + r*C` when out_is_rows
// (the caller's (rows, C) buffer, which may alias x) else `out` reused per batch (kBatch floats).
template <class F>
inline void softmax_exp_batched(const detail::ElementwiseSimd& k, float* out, bool out_is_rows,
                                const float* x, int64_t r0, int64_t r1, int64_t C, F&& row_done) {
    const int64_t per = std::max<int64_t>(1, kBatch / C);
    float maxes[kBatch];
    for (int64_t b0 = r0; b0 < r1; b0 += per) {
        const int64_t b1 = std::min(r1, b0 + per);
        float* eb = out_is_rows ? out + b0 * C : out;
        for (int64_t r = b0; r < b1; ++r) {
            const float* xr = x + r * C;
            float* er = eb + (r - b0) * C;
            const float m = k.row_max(xr, C);
            maxes[r - b0] = m;
#pragma omp simd
            for (int64_t j = 0; j < C; ++j) er[j] = xr[j] - m;
        }
        k.row_exp_scale(eb, eb, (b1 - b0) * C, 0.0f, 1.0f);  // exp(t - 0) * 1 == exp(t) exactly
        for (int64_t r = b0; r < b1; ++r) {
            float* er = eb + (r - b0) * C;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < C; ++j) sum += er[j];
            row_done(r, er, maxes[r - b0], sum);
        }
    }
}

// dl (C) = (p - y) * inv_rows where y_j = labels[j] or, if labels is null, [j == label].
inline void write_dlogits(float* dl, const float* p, const float* labels, int32_t label, int64_t C,
                          float inv_rows) {
    if (labels) {
#pragma omp simd
        for (int64_t j = 0; j < C; ++j) dl[j] = (p[j] - labels[j]) * inv_rows;
    } else {
        const float p_label = p[label];  // p may be dl itself
#pragma omp simd
        for (int64_t j = 0; j < C; ++j) dl[j] = p[j] * inv_rows;
        dl[label] = (p_label - 1.0f) * inv_rows;
    }
}

// Fused softmax cross-entropy over rows [r0, r1): returns the summed row losses and writes the
// optional outputs. labels (rows, C) float or, if null, int_labels (rows,).
double softmax_xent_rows(const detail::ElementwiseSimd& k, float* dlogits, float* probs,
                         const float* logits, const float* labels, const int32_t* int_labels,
                         int64_t r0, int64_t r1, int64_t C, float inv_rows) {
    // Loss of row r from its max m and s = sum exp(x - m), reading the logits (still intact).
    auto row_loss = [&](int64_t r, float m, float s) -> double {
        const float* x = logits + r * C;
        // log p_j = x_j - m - log(s); log(clip(p)) = clamp(log p) since log is monotone.
        const double shift = static_cast<double>(m) + std::log(static_cast<double>(s));
        if (!labels) {
            // Same rounding as the dense path, so one-hot and int labels agree exactly.
            const double lp = static_cast<double>(x[int_labels[r]]) - shift;
            return -std::min(std::max(lp, kLogClipLo), kLogClipHi);
        }
        const float* y = labels + r * C;
        double l = 0.0;
#pragma omp simd reduction(+ : l)
        for (int64_t j = 0; j < C; ++j) {
            double lp = static_cast<double>(x[j]) - shift;
            lp = lp < kLogClipLo ? kLogClipLo : (lp > kLogClipHi ? kLogClipHi : lp);
            l -= static_cast<double>(y[j]) * lp;
        }
        return l;
    };
    auto row_dlogits = [&](int64_t r, const float* p) {
        if (dlogits)
            write_dlogits(dlogits + r * C, p, labels ? labels + r * C : nullptr,
                          int_labels ? int_labels[r] : 0, C, inv_rows);
    };
    double loss = 0.0;
    if (C <= kBatch) {
        float scratch[kBatch];
        softmax_exp_batched(k, scratch, false, logits, r0, r1, C,
                            [&](int64_t r, const float* e, float m, float s) {
                                loss += row_loss(r, m, s);
                                if (!probs && !dlogits) return;
                                // Outputs may overwrite this row of logits now.
                                float* p = probs ? probs + r * C : dlogits + r * C;
                                const float inv_s = 1.0f / s;
#pragma omp simd
                                for (int64_t j = 0; j < C; ++j) p[j] = e[j] * inv_s;
                                row_dlogits(r, p);
                            });
        return loss;
    }
    for (int64_t r = r0; r < r1; ++r) {
        const float* xr = logits + r * C;
        const float m = k.row_max(xr, C);
        const float s = k.row_sum_exp(xr, C, m);
        loss += row_loss(r, m, s);
        if (!probs && !dlogits) continue;
        float* p = probs ? probs + r * C : dlogits + r * C;
        k.row_exp_scale(p, xr, C, m, 1.0f / s);
        row_dlogits(r, p);
    }
    return loss;
}

}  // namespace

// x, y (rows, cols). y may alias x.
void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols) {
    if (cols <= 0) return;
    const auto& k = detail::elementwise_simd();
    detail::for_each_chunk(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        if (cols <= kBatch) {
            // exp lands in y directly; then each row is scaled by 1 / sum.
            auto scale_row = [&](int64_t, float* e, float, float s) {
                const float inv_s = 1.0f / s;
#pragma omp simd
                for (int64_t j = 0; j < cols; ++j) e[j] = e[j] * inv_s;
            };
            softmax_exp_batched(k, y, true, x, r0, r1, cols, scale_row);
            return;
        }
        for (int64_t r = r0; r < r1; ++r) {
            const float* xr = x + r * cols;
            const float m = k.row_max(xr, cols);
            const float s = k.row_sum_exp(xr, cols, m);
            k.row_exp_scale(y + r * cols, xr, cols, m, 1.0f / s);
        }
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

// logits, labels, dlogits, probs (rows, C).
double softmax_xent_forward_backward(float* dlogits, float* probs, const float* logits,
                                     const float* labels, int64_t rows, int64_t C) {
    if (rows <= 0 || C <= 0) return 0.0;
    const auto& k = detail::elementwise_simd();
    const float inv_rows = static_cast<float>(1.0 / static_cast<double>(rows));
    const double total = detail::blocked_sum(rows, row_grain(C), [&](int64_t r0, int64_t r1) {
        return softmax_xent_rows(k, dlogits, probs, logits, labels, nullptr, r0, r1, C, inv_rows);
    });
    return total / static_cast<double>(rows);
}

// logits, dlogits, probs (rows, C); labels (rows,) in [0, C).
double softmax_xent_sparse_forward_backward(float* dlogits, float* probs, const float* logits,
                                            const int32_t* labels, int64_t rows, int64_t C) {
    if (rows <= 0 || C <= 0) return 0.0;
    const auto& k = detail::elementwise_simd();
    const float inv_rows = static_cast<float>(1.0 / static_cast<double>(rows));
    const double total = detail::blocked_sum(rows, row_grain(C), [&](int64_t r0, int64_t r1) {
        return softmax_xent_rows(k, dlogits, probs, logits, nullptr, labels, r0, r1, C, inv_rows);
    });
    return total / static_cast<double>(rows);
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
                const double c = std::min(std::max(q, kClipLo), kClipHi);
                l -= yj * std::log(c);
                if (q >= kClipLo && q <= kClipHi) gq -= yj * inv_rows;  // g_j * q_j
            }
            loss += l;
            if (!dprobs) continue;
            float* d = dprobs + r * C;
            for (int64_t j = 0; j < C; ++j) {
                const double yj = static_cast<double>(y[j]);
                const double q = static_cast<double>(p[j]) * inv_s;
                const double g =
                    (yj != 0.0 && q >= kClipLo && q <= kClipHi) ? -yj * inv_rows / q : 0.0;
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
