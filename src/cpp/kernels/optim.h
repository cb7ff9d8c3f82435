#pragma once
// Keras 3 optimizer update steps, in place on flat float32 parameter buffers. Arithmetic is in
// float32 in the order Keras writes it. Threaded over fixed chunks above 32K elements.
#include <cstdint>
#include <string>

namespace cnnfast {

// w, g, velocity (n,). Keras SGD, one step:
//   weight_decay != 0: w -= w * weight_decay * lr          (decoupled, before the step)
//   momentum == 0:     w -= lr * g                         (velocity unused, may be null)
//   else:              velocity = momentum * velocity - lr * g
//                      w += velocity
//                      (nesterov instead: w += momentum * velocity - lr * g, new velocity)
void sgd_update(float* w, const float* g, float* velocity, int64_t n, float lr, float momentum,
                bool nesterov, float weight_decay);

// w, g, m, v (n,). Keras Adam, step t (1-based, the update's own iteration number):
//   weight_decay != 0: w -= w * weight_decay * lr          (decoupled, before the step)
//   m += (g - m) * (1 - beta_1); v += (g^2 - v) * (1 - beta_2)
//   w -= (m * a) / (sqrt(v) + epsilon),  a = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
// (a computed in double, rounded to float once).
void adam_update(float* w, const float* g, float* m, float* v, int64_t n, int64_t step, float lr,
                 float beta_1, float beta_2, float epsilon, float weight_decay);

// w, g, velocity, mom, average_grad (n,). Keras RMSprop (epsilon inside the square root):
//   velocity = rho * velocity + (1 - rho) * g^2
//   centered: average_grad = rho * average_grad + (1 - rho) * g
//             denominator = velocity - average_grad^2 + epsilon    (else velocity + epsilon)
//   increment = lr * g / sqrt(denominator)
//   momentum > 0: mom = momentum * mom + increment; w -= mom   (else w -= increment)
// mom may be null when momentum == 0, average_grad when not centered.
void rmsprop_update(float* w, const float* g, float* velocity, float* mom, float* average_grad,
                    int64_t n, float lr, float rho, float momentum, float epsilon, bool centered,
                    float weight_decay);

// w, g, accumulator (n,). Keras Adagrad (accumulator starts at initial_accumulator_value):
//   accumulator += g^2;  w -= lr * g / sqrt(accumulator + epsilon)
void adagrad_update(float* w, const float* g, float* accumulator, int64_t n, float lr,
                    float epsilon, float weight_decay);

// w, g, accumulated_grad, accumulated_delta (n,). Keras Adadelta, rms(x) = sqrt(x + epsilon):
//   accumulated_grad = rho * accumulated_grad + (1 - rho) * g^2
//   delta = -rms(accumulated_delta) * g / rms(accumulated_grad)
//   accumulated_delta = rho * accumulated_delta + (1 - rho) * delta^2
//   w += lr * delta
void adadelta_update(float* w, const float* g, float* accumulated_grad, float* accumulated_delta,
                     int64_t n, float lr, float rho, float epsilon, float weight_decay);

// w, g, m, u (n,). Keras Adamax, step t (1-based):
//   m += (g - m) * (1 - beta_1);  u = max(beta_2 * u, |g|)
//   w -= lr * m / ((1 - beta_1^t) * (u + epsilon))
void adamax_update(float* w, const float* g, float* m, float* u, int64_t n, int64_t step,
                   float lr, float beta_1, float beta_2, float epsilon, float weight_decay);

// The Nadam momentum schedule of step t (1-based): beta_1 * (1 - 0.5 * 0.96^t).
double nadam_momentum(double beta_1, int64_t step);

// w, g, m, v (n,). Keras Nadam, step t (1-based); u_product = prod_{k<=t} nadam_momentum(k)
// (the optimizer's running product, already including step t):
//   m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
//   m_hat = u_{t+1} m / (1 - u_product u_{t+1}) + (1 - u_t) g / (1 - u_product)
//   v_hat = v / (1 - beta_2^t);  w -= m_hat * lr / (sqrt(v_hat) + epsilon)
// (the two m_hat coefficients computed in double, rounded to float once).
void nadam_update(float* w, const float* g, float* m, float* v, int64_t n, int64_t step,
                  double u_product, float lr, float beta_1, float beta_2, float epsilon,
                  float weight_decay);

// w, g, m (n,). Keras Lion:
//   w -= lr * sign(beta_1 * m + (1 - beta_1) * g);  m = beta_2 * m + (1 - beta_2) * g
void lion_update(float* w, const float* g, float* m, int64_t n, float lr, float beta_1,
                 float beta_2, float weight_decay);

// g (n,), the gradients of `count` variables, variable k at [bounds[k], bounds[k+1]).
// Keras's clipping, at most one of the three set (> 0; 0 turns it off):
//   clipnorm: each variable's g = g * clipnorm / max(||g||, clipnorm)
//   global_clipnorm: every g *= clip * min(1 / ||all g||, 1 / clip) (NaN when that is not finite)
//   clipvalue: g = clip(g, -clipvalue, clipvalue)
// Norms are summed in double, in order (the same result at every thread count).
void clip_gradients(float* g, int64_t n, const int64_t* bounds, int64_t count, float clipnorm,
                    float clipvalue, float global_clipnorm);

// -- one update of any optimizer, for the model's flat arenas ----------------------------------

enum class OptimizerKind : int { sgd, adam, rmsprop, adagrad, adadelta, adamax, nadam, lion };

// "sgd", "adam" (AdamW too: adam with weight decay), "rmsprop", "adagrad", "adadelta", "adamax",
// "nadam", "lion"; throws std::invalid_argument naming the others.
OptimizerKind optimizer_kind(const std::string& name);

// The settings of one update (callbacks and schedules change them between steps).
struct OptimizerSettings {
    OptimizerKind kind = OptimizerKind::sgd;
    float lr = 0.0f, weight_decay = 0.0f;
    float momentum = 0.0f;  // sgd, rmsprop
    bool nesterov = false;  // sgd
    bool centered = false;  // rmsprop
    float beta_1 = 0.9f, beta_2 = 0.999f, epsilon = 1e-7f;  // adam, adamax, nadam, lion
    float rho = 0.9f;                                       // rmsprop, adadelta
    int64_t iteration = 1;                                  // step t (1-based)
    double u_product = 1.0;                                 // nadam
    float clipnorm = 0.0f, clipvalue = 0.0f, global_clipnorm = 0.0f;  // 0: off
};

// The name of a slot arena an update of these settings needs but was not given; null when
// none is missing. Slots: sgd (velocity, only with momentum); rmsprop (velocity, momentum when
// momentum > 0, average_gradient when centered); adagrad (accumulator); lion (momentum);
// adam, nadam (m, v); adamax (m, u); adadelta (accumulated_grad, accumulated_delta).
const char* optimizer_missing_slot(const OptimizerSettings& s, const float* slot0,
                                   const float* slot1, const float* slot2);

// w, g, slot0..2 (n,); bounds (count + 1,) the variables' offsets, for clipnorm (may be null
// when clipnorm is 0, then the whole arena is one variable). Clips g in place, then runs the
// kind's update with slots in the order the *_update functions above name them.
void optimizer_update(float* w, float* g, float* slot0, float* slot1, float* slot2, int64_t n,
                      const int64_t* bounds, int64_t count, const OptimizerSettings& s);

}  // namespace cnnfast
