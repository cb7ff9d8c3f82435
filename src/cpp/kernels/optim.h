#pragma once
// Keras 3 optimizer update steps, in place on flat float32 parameter buffers. Arithmetic is in
// float32 in the order Keras writes it. Threaded over fixed chunks above 32K elements.
#include <cstdint>

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

}  // namespace cnnfast
