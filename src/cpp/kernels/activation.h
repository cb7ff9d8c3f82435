#pragma once
// Element-wise activations and PReLU on flat float32 buffers (any layout: the op is per element,
// PReLU's alpha repeats over the flat index). Threaded over fixed chunks above 32K elements;
// results are bit-identical for any thread count.
#include <cstdint>

namespace cnnfast {

enum class Activation : int { linear = 0, relu, sigmoid, tanh, elu, swish, leaky_relu };

// Keras name ("linear", "relu", "sigmoid", "tanh", "elu", "swish", "leaky_relu") -> kind; false
// if unknown.
bool activation_from_name(const char* name, Activation* kind);

// x, y (n,). y = f(x); alpha is ELU's alpha or leaky ReLU's negative slope (ignored otherwise).
// y may alias x.
// sigmoid is computed from exp(-|x|) and never overflows; tanh saturates to +-1.
void activation_forward(float* y, const float* x, int64_t n, Activation kind, float alpha);

// x, y, dy, dx (n,): x the forward input, y the forward output, dx = f'(x) * dy.
// Reads: relu x; sigmoid y; tanh y; elu x and y; swish x; leaky_relu x; linear neither (copies
// dy).
// dx may alias dy (or x, y): each element is read before it is written.
void activation_backward(float* dx, const float* x, const float* y, const float* dy, int64_t n,
                         Activation kind, float alpha);

// Readable spec with <cmath> (tanh, exp, expm1), single-threaded: fallback and test oracle.
void activation_forward_naive(float* y, const float* x, int64_t n, Activation kind, float alpha);
void activation_backward_naive(float* dx, const float* x, const float* y, const float* dy,
                               int64_t n, Activation kind, float alpha);

// x, y (n,); alpha (alpha_size,) with n % alpha_size == 0, used at alpha[i % alpha_size]
// (Keras PReLU in NHWC: alpha (H,W,C), or (1,1,C) with shared_axes=[1,2]).
// y = x for x > 0, alpha * x otherwise. y may alias x.
void prelu_forward(float* y, const float* x, const float* alpha, int64_t n, int64_t alpha_size);

// dx (n,) = dy * (x > 0 ? 1 : alpha); dalpha (alpha_size,) is OVERWRITTEN with
// sum over the batch of dy * min(x, 0), accumulated in double in a fixed order (identical for any
// thread count). dx may alias dy. Scratch: at most 64 * alpha_size doubles of the
// calling thread's workspace (workspace.h), used only when alpha_size <= 1024 and n is large.
void prelu_backward(float* dx, float* dalpha, const float* x, const float* alpha, const float* dy,
                    int64_t n, int64_t alpha_size);

// Which compiled copy of the element-wise loops runs: "avx512", "avx2" or "baseline".
const char* elementwise_simd_path();
// Test hook: force "baseline", "avx2", "avx512" (only if built and supported) or "auto".
// False if refused. Not meant to be called while kernels run on other threads.
bool set_elementwise_simd_path(const char* name);

}  // namespace cnnfast
