#include "optim.h"

#include <cmath>
#include <stdexcept>

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

namespace {

// Keras's decoupled weight decay, before the step: w -= w * weight_decay * lr.
inline void decay_weights(float* w, int64_t lo, int64_t hi, float wd, float lr) {
    if (wd == 0.0f) return;
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) w[i] = w[i] - w[i] * wd * lr;
}

}  // namespace

// w, g, velocity, mom, average_grad (n,).
void rmsprop_update(float* w, const float* g, float* velocity, float* mom, float* average_grad,
                    int64_t n, float lr, float rho, float momentum, float epsilon, bool centered,
                    float weight_decay) {
    const float one_rho = 1.0f - rho;
    const bool use_mom = momentum > 0.0f && mom;
    const bool use_avg = centered && average_grad;
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        decay_weights(w, lo, hi, weight_decay, lr);
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) {
            const float gi = g[i];
            const float vel = rho * velocity[i] + one_rho * (gi * gi);
            velocity[i] = vel;
            float denominator;
            if (use_avg) {
                const float avg = rho * average_grad[i] + one_rho * gi;
                average_grad[i] = avg;
                denominator = vel - avg * avg + epsilon;
            } else {
                denominator = vel + epsilon;
            }
            const float increment = (lr * gi) / std::sqrt(denominator);
            if (use_mom) {
                const float mo = momentum * mom[i] + increment;
                mom[i] = mo;
                w[i] = w[i] - mo;
            } else {
                w[i] = w[i] - increment;
            }
        }
    });
}

// w, g, accumulator (n,).
void adagrad_update(float* w, const float* g, float* accumulator, int64_t n, float lr,
                    float epsilon, float weight_decay) {
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        decay_weights(w, lo, hi, weight_decay, lr);
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) {
            const float gi = g[i];
            const float acc = accumulator[i] + gi * gi;
            accumulator[i] = acc;
            w[i] = w[i] - (lr * gi) / std::sqrt(acc + epsilon);
        }
    });
}

// w, g, accumulated_grad, accumulated_delta (n,).
void adadelta_update(float* w, const float* g, float* accumulated_grad, float* accumulated_delta,
                     int64_t n, float lr, float rho, float epsilon, float weight_decay) {
    const float one_rho = 1.0f - rho;
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        decay_weights(w, lo, hi, weight_decay, lr);
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) {
            const float gi = g[i];
            const float ag = rho * accumulated_grad[i] + one_rho * (gi * gi);
            accumulated_grad[i] = ag;
            const float delta =
                -((std::sqrt(accumulated_delta[i] + epsilon) * gi) / std::sqrt(ag + epsilon));
            accumulated_delta[i] = rho * accumulated_delta[i] + one_rho * (delta * delta);
            w[i] = w[i] + lr * delta;
        }
    });
}

// w, g, m, u (n,).
void adamax_update(float* w, const float* g, float* m, float* u, int64_t n, int64_t step,
                   float lr, float beta_1, float beta_2, float epsilon, float weight_decay) {
    const float one_b1 = 1.0f - beta_1;
    const float bias =
        static_cast<float>(1.0 - std::pow(static_cast<double>(beta_1), static_cast<double>(step)));
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        decay_weights(w, lo, hi, weight_decay, lr);
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) {
            const float gi = g[i];
            const float mi = m[i] + (gi - m[i]) * one_b1;
            const float decayed = beta_2 * u[i], ag = std::fabs(gi);
            const float ui = decayed > ag ? decayed : ag;
            m[i] = mi;
            u[i] = ui;
            w[i] = w[i] - (lr * mi) / (bias * (ui + epsilon));
        }
    });
}

double nadam_momentum(double beta_1, int64_t step) {
    return beta_1 * (1.0 - 0.5 * std::pow(0.96, static_cast<double>(step)));
}

// w, g, m, v (n,).
void nadam_update(float* w, const float* g, float* m, float* v, int64_t n, int64_t step,
                  double u_product, float lr, float beta_1, float beta_2, float epsilon,
                  float weight_decay) {
    const double u_t = nadam_momentum(beta_1, step), u_next = nadam_momentum(beta_1, step + 1);
    const float c_m = static_cast<float>(u_next / (1.0 - u_product * u_next));
    const float c_g = static_cast<float>((1.0 - u_t) / (1.0 - u_product));
    const float bias2 =
        static_cast<float>(1.0 - std::pow(static_cast<double>(beta_2), static_cast<double>(step)));
    const float one_b1 = 1.0f - beta_1, one_b2 = 1.0f - beta_2;
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        decay_weights(w, lo, hi, weight_decay, lr);
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) {
            const float gi = g[i];
            const float mi = m[i] + (gi - m[i]) * one_b1;
            const float vi = v[i] + (gi * gi - v[i]) * one_b2;
            m[i] = mi;
            v[i] = vi;
            const float m_hat = c_m * mi + c_g * gi;
            const float v_hat = vi / bias2;
            w[i] = w[i] - (m_hat * lr) / (std::sqrt(v_hat) + epsilon);
        }
    });
}

// w, g, m (n,).
void lion_update(float* w, const float* g, float* m, int64_t n, float lr, float beta_1,
                 float beta_2, float weight_decay) {
    const float one_b1 = 1.0f - beta_1, one_b2 = 1.0f - beta_2;
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        decay_weights(w, lo, hi, weight_decay, lr);
#pragma omp simd
        for (int64_t i = lo; i < hi; ++i) {
            const float gi = g[i];
            const float c = m[i] * beta_1 + gi * one_b1;
            const float sign = c > 0.0f ? 1.0f : (c < 0.0f ? -1.0f : (c == c ? 0.0f : c));
            w[i] = w[i] - lr * sign;
            m[i] = m[i] * beta_2 + gi * one_b2;
        }
    });
}

namespace {

double squared_norm(const float* g, int64_t n) {
    return detail::blocked_sum(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        double s = 0.0;
        for (int64_t i = lo; i < hi; ++i) s += static_cast<double>(g[i]) * g[i];
        return s;
    });
}

}  // namespace

// g (n,); bounds (count + 1,).
void clip_gradients(float* g, int64_t n, const int64_t* bounds, int64_t count, float clipnorm,
                    float clipvalue, float global_clipnorm) {
    if (clipnorm > 0.0f) {
        const int64_t whole[2] = {0, n};
        if (!bounds) bounds = whole, count = 1;
        for (int64_t k = 0; k < count; ++k) {
            float* gk = g + bounds[k];
            const int64_t size = bounds[k + 1] - bounds[k];
            const float norm = static_cast<float>(std::sqrt(squared_norm(gk, size)));
            // Keras: g * clipnorm / max(norm, clipnorm), in float32 in that order.
            const float denom = norm > clipnorm ? norm : clipnorm;
            detail::for_each_chunk(size, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
#pragma omp simd
                for (int64_t i = lo; i < hi; ++i) gk[i] = (gk[i] * clipnorm) / denom;
            });
        }
    } else if (global_clipnorm > 0.0f) {
        const double norm = std::sqrt(squared_norm(g, n));
        const double clip = global_clipnorm;
        // Keras: clip * min(1 / norm, 1 / clip), plus (norm - norm) to make it NaN when the
        // norm is not finite.
        const float scale = static_cast<float>(clip * std::min(1.0 / norm, 1.0 / clip) +
                                               (norm - norm));
        detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
#pragma omp simd
            for (int64_t i = lo; i < hi; ++i) g[i] = g[i] * scale;
        });
    } else if (clipvalue > 0.0f) {
        const float v = clipvalue;
        detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
#pragma omp simd
            for (int64_t i = lo; i < hi; ++i) g[i] = g[i] < -v ? -v : (g[i] > v ? v : g[i]);
        });
    }
}

OptimizerKind optimizer_kind(const std::string& name) {
    static const char* const names[] = {"sgd",      "adam",   "rmsprop", "adagrad",
                                        "adadelta", "adamax", "nadam",   "lion"};
    for (int k = 0; k < 8; ++k)
        if (name == names[k]) return static_cast<OptimizerKind>(k);
    throw std::invalid_argument("unknown optimizer '" + name +
                                "'; known: sgd, adam, rmsprop, adagrad, adadelta, adamax, nadam, "
                                "lion");
}

const char* optimizer_missing_slot(const OptimizerSettings& s, const float* slot0,
                                   const float* slot1, const float* slot2) {
    switch (s.kind) {
        case OptimizerKind::sgd: return s.momentum != 0.0f && !slot0 ? "velocity" : nullptr;
        case OptimizerKind::rmsprop:
            if (!slot0) return "velocity";
            if (s.momentum > 0.0f && !slot1) return "momentum";
            return s.centered && !slot2 ? "average_gradient" : nullptr;
        case OptimizerKind::adagrad: return slot0 ? nullptr : "accumulator";
        case OptimizerKind::lion: return slot0 ? nullptr : "momentum";
        default: return !slot0 ? "slot0" : (!slot1 ? "slot1" : nullptr);
    }
}

// w, g, slot0..2 (n,); bounds (count + 1,) or null.
void optimizer_update(float* w, float* g, float* slot0, float* slot1, float* slot2, int64_t n,
                      const int64_t* bounds, int64_t count, const OptimizerSettings& s) {
    clip_gradients(g, n, bounds, count, s.clipnorm, s.clipvalue, s.global_clipnorm);
    switch (s.kind) {
        case OptimizerKind::sgd:
            sgd_update(w, g, slot0, n, s.lr, s.momentum, s.nesterov, s.weight_decay);
            break;
        case OptimizerKind::adam:
            adam_update(w, g, slot0, slot1, n, s.iteration, s.lr, s.beta_1, s.beta_2, s.epsilon,
                        s.weight_decay);
            break;
        case OptimizerKind::rmsprop:
            rmsprop_update(w, g, slot0, slot1, slot2, n, s.lr, s.rho, s.momentum, s.epsilon,
                           s.centered, s.weight_decay);
            break;
        case OptimizerKind::adagrad:
            adagrad_update(w, g, slot0, n, s.lr, s.epsilon, s.weight_decay);
            break;
        case OptimizerKind::adadelta:
            adadelta_update(w, g, slot0, slot1, n, s.lr, s.rho, s.epsilon, s.weight_decay);
            break;
        case OptimizerKind::adamax:
            adamax_update(w, g, slot0, slot1, n, s.iteration, s.lr, s.beta_1, s.beta_2,
                          s.epsilon, s.weight_decay);
            break;
        case OptimizerKind::nadam:
            nadam_update(w, g, slot0, slot1, n, s.iteration, s.u_product, s.lr, s.beta_1,
                         s.beta_2, s.epsilon, s.weight_decay);
            break;
        case OptimizerKind::lion:
            lion_update(w, g, slot0, n, s.lr, s.beta_1, s.beta_2, s.weight_decay);
            break;
    }
}

}  // namespace cnnfast
