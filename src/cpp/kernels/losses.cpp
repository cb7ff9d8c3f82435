// Keras 3 losses: binary cross-entropy (from probabilities, from logits, fused with a sigmoid),
// mean absolute error, Huber, KL divergence and categorical hinge. Plain loops in double: the
// losses are a negligible share of a training step, so each kernel is its own readable spec.
#include "losses.h"

#include <algorithm>
#include <cmath>

#include "elementwise_common.h"

namespace cnnfast {

namespace {

double smoothed(float target, double label_smoothing) {
    return static_cast<double>(target) * (1.0 - label_smoothing) + 0.5 * label_smoothing;
}

// -(t log p + (1 - t) log(1 - p)) with p clipped to [eps, 1 - eps].
double clipped_bce(double p, double t) {
    const double c = std::min(std::max(p, kLossEpsilon), 1.0 - kLossEpsilon);
    return -(t * std::log(c) + (1.0 - t) * std::log(1.0 - c));
}

// Rows per block of a row loss: about kElementwiseGrain elements.
int64_t row_grain(int64_t cols) {
    return std::max<int64_t>(1, detail::kElementwiseGrain / std::max<int64_t>(cols, 1));
}

}  // namespace

double binary_xent(float* dpred, const float* pred, const float* target, int64_t n,
                   double label_smoothing) {
    if (n <= 0) return 0.0;
    const double inv_n = 1.0 / static_cast<double>(n);
    const double total = detail::blocked_sum(n, detail::kElementwiseGrain, [&](int64_t lo,
                                                                                int64_t hi) {
        double s = 0.0;
        for (int64_t i = lo; i < hi; ++i) {
            const double p = pred[i], t = smoothed(target[i], label_smoothing);
            s += clipped_bce(p, t);
            if (dpred) {
                const bool inside = p >= kLossEpsilon && p <= 1.0 - kLossEpsilon;
                dpred[i] = inside ? static_cast<float>((p - t) / (p * (1.0 - p)) * inv_n) : 0.0f;
            }
        }
        return s;
    });
    return total * inv_n;
}

double binary_xent_logits(float* dlogits, const float* logits, const float* target, int64_t n,
                          double label_smoothing, bool clip_probabilities) {
    if (n <= 0) return 0.0;
    const double inv_n = 1.0 / static_cast<double>(n);
    const double total = detail::blocked_sum(n, detail::kElementwiseGrain, [&](int64_t lo,
                                                                                int64_t hi) {
        double s = 0.0;
        for (int64_t i = lo; i < hi; ++i) {
            const double z = logits[i], t = smoothed(target[i], label_smoothing);
            // sigmoid without overflow: exp of a non-positive number only.
            const double e = std::exp(-std::fabs(z));
            const double p = z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
            s += clip_probabilities ? clipped_bce(p, t)
                                    : std::max(z, 0.0) - z * t + std::log1p(e);
            if (dlogits) dlogits[i] = static_cast<float>((p - t) * inv_n);
        }
        return s;
    });
    return total * inv_n;
}

double mean_absolute_error(float* dpred, const float* pred, const float* target, int64_t n) {
    if (n <= 0) return 0.0;
    const double inv_n = 1.0 / static_cast<double>(n);
    const float step = static_cast<float>(inv_n);
    const double total = detail::blocked_sum(n, detail::kElementwiseGrain, [&](int64_t lo,
                                                                                int64_t hi) {
        double s = 0.0;
        for (int64_t i = lo; i < hi; ++i) {
            const double e = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
            s += std::fabs(e);
            if (dpred) dpred[i] = e > 0 ? step : (e < 0 ? -step : 0.0f);
        }
        return s;
    });
    return total * inv_n;
}

double huber(float* dpred, const float* pred, const float* target, int64_t n, double delta) {
    if (n <= 0) return 0.0;
    const double inv_n = 1.0 / static_cast<double>(n);
    const double total = detail::blocked_sum(n, detail::kElementwiseGrain, [&](int64_t lo,
                                                                                int64_t hi) {
        double s = 0.0;
        for (int64_t i = lo; i < hi; ++i) {
            const double e = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
            const double a = std::fabs(e);
            s += a <= delta ? 0.5 * e * e : delta * (a - 0.5 * delta);
            if (dpred) dpred[i] = static_cast<float>(std::min(std::max(e, -delta), delta) * inv_n);
        }
        return s;
    });
    return total * inv_n;
}

double kl_divergence(float* dpred, const float* pred, const float* target, int64_t rows,
                     int64_t cols) {
    if (rows <= 0 || cols <= 0) return 0.0;
    const double inv_rows = 1.0 / static_cast<double>(rows);
    const int64_t n = rows * cols;
    const double total = detail::blocked_sum(n, detail::kElementwiseGrain, [&](int64_t lo,
                                                                                int64_t hi) {
        double s = 0.0;
        for (int64_t i = lo; i < hi; ++i) {
            const double p = pred[i];
            const double t = std::min(std::max(static_cast<double>(target[i]), kLossEpsilon), 1.0);
            const double c = std::min(std::max(p, kLossEpsilon), 1.0);
            s += t * std::log(t / c);
            if (dpred) {
                const bool inside = p >= kLossEpsilon && p <= 1.0;
                dpred[i] = inside ? static_cast<float>(-t / c * inv_rows) : 0.0f;
            }
        }
        return s;
    });
    return total * inv_rows;
}

double categorical_hinge(float* dpred, const float* pred, const float* target, int64_t rows,
                         int64_t cols) {
    if (rows <= 0 || cols <= 0) return 0.0;
    const double inv_rows = 1.0 / static_cast<double>(rows);
    const double total = detail::blocked_sum(rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
        double s = 0.0;
        for (int64_t r = lo; r < hi; ++r) {
            const float* p = pred + r * cols;
            const float* t = target + r * cols;
            // pos = sum t p; neg = max (1 - t) p and how many positions attain it.
            double pos = 0.0, neg = -INFINITY;
            int64_t ties = 0;
            for (int64_t j = 0; j < cols; ++j) {
                const double tj = t[j], pj = p[j];
                pos += tj * pj;
                const double x = (1.0 - tj) * pj;
                if (x > neg) {
                    neg = x;
                    ties = 1;
                } else if (x == neg) {
                    ++ties;
                }
            }
            const double margin = neg - pos + 1.0;
            s += std::max(margin, 0.0);
            if (!dpred) continue;
            float* d = dpred + r * cols;
            // The margin is read before d is written: d may alias pred.
            for (int64_t j = 0; j < cols; ++j) {
                const double tj = t[j];
                const double x = (1.0 - tj) * static_cast<double>(p[j]);
                const double g = margin >= 0.0 ? -tj + (x == neg ? (1.0 - tj) / ties : 0.0) : 0.0;
                d[j] = static_cast<float>(g * inv_rows);
            }
        }
        return s;
    });
    return total * inv_rows;
}

}  // namespace cnnfast
