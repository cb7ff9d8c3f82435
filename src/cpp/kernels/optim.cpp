#include "optim.h"

#include <cmath>

#include "elementwise_common.h"

namespace cnnfast {

// w, g, velocity (n,).
void sgd_update(float* w, const float* g, float* velocity, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay) {
    const float wd = weight_decay;
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        if (wd != 0.0f) {
#pragma omp simd
            for (int64_t i = lo; i < hi; ++i) w[i] = w[i] - w[i] * wd * lr;
        }
        if (momentum == 0.0f || !velocity) {
#pragma omp simd
            for (int64_t i = lo; i < hi; ++i) w[i] = w[i] - g[i] * lr;
        } else if (nesterov) {
#pragma omp simd
            for (int64_t i = lo; i < hi; ++i) {
                const float vel = -g[i] * lr + velocity[i] * momentum;
                velocity[i] = vel;
                w[i] = w[i] + (-g[i] * lr + vel * momentum);
            }
        } else {
#pragma omp simd
            for (int64_t i = lo; i < hi; ++i) {
                const float vel = -g[i] * lr + velocity[i] * momentum;
                velocity[i] = vel;
                w[i] = w[i] + vel;
            }
        }
    });
}

// w, g, m, v (n,).
void adam_update(float* w, const float* g, float* m, float* v, int64_t n, int64_t step, float lr,
                 float beta_1, float beta_2, float epsilon, float weight_decay) {
    const double t = static_cast<double>(step);
    const float a = static_cast<float>(static_cast<double>(lr) *
                                       std::sqrt(1.0 - std::pow(static_cast<double>(beta_2), t)) /
                                       (1.0 - std::pow(static_cast<double>(beta_1), t)));
    const float one_b1 = 1.0f - beta_1, one_b2 = 1.0f - beta_2, wd = weight_decay;
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        if (wd != 0.0f) {
#pragma omp simd
            for (int64_t i = lo; i < hi; ++i) w[i] = w[i] - w[i] * wd * lr;
        }
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) {
            const float gi = g[i];
            const float mi = m[i] + (gi - m[i]) * one_b1;
            const float vi = v[i] + (gi * gi - v[i]) * one_b2;
            m[i] = mi;
            v[i] = vi;
            w[i] = w[i] - (mi * a) / (std::sqrt(vi) + epsilon);
        }
    });
}

}  // namespace cnnfast
