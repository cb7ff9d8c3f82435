// Internal, included only by activation.cpp and activation_avx512.cpp, each defining
// CNNFAST_SIMD_NS first: the same loops compiled for two ISAs (see elementwise_simd.h).
// Everything here is plain scalar code that GCC vectorises under `omp simd`; the float math
// (exp, tanh, expm1, sigmoid) is branch-free polynomial code so it vectorises too.
#ifndef CNNFAST_SIMD_NS
#error "define CNNFAST_SIMD_NS before including activation_loops.h"
#endif

#include <cstdint>
#include <cstring>

#include "activation.h"
#include "elementwise_simd.h"

// The selects below (x < 0 ? a : b) only vectorise on pre-AVX-512 ISAs when GCC may evaluate
// both arms unconditionally, which strict trapping-math forbids; nothing here reads FP flags.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

namespace cnnfast::detail::CNNFAST_SIMD_NS {
namespace {

#define CNNFAST_INLINE inline __attribute__((always_inline))

CNNFAST_INLINE int32_t as_int(float f) {
    int32_t i;
    std::memcpy(&i, &f, sizeof i);
    return i;
}
CNNFAST_INLINE float as_float(int32_t i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}

// exp(x) for float x, Cephes expf (~1 ulp): x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-7
// polynomial, 2^n built in the exponent bits. Inputs below -87.3 give 0, above 88 give e^88
// (callers only pass x <= 0 or small x); NaN propagates.
CNNFAST_INLINE float exp_f32(float x) {
    const float lo = -87.3f, hi = 88.0f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    // Round x*log2(e) to nearest with the 1.5*2^23 trick (no SSE4.1 round needed).
    const float t = xc * 1.44269504088896341f + 12582912.0f;
    const float fn = t - 12582912.0f;
    const int32_t n = as_int(t) - 0x4B400000;
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    const float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    // 2^n from the exponent bits; shifting the unsigned value keeps lanes with n < -127 (whose
    // result the select below discards) free of undefined behaviour.
    const float res = p * as_float(static_cast<int32_t>(static_cast<uint32_t>(n + 127) << 23));
    return x < lo ? 0.0f : res;
}

// tanh(x): Cephes' odd polynomial for |x| < 0.625 (no cancellation near 0), else
// sign(x) * (1 - 2 / (exp(2|x|) + 1)), which saturates to +-1 without overflow.
CNNFAST_INLINE float tanh_f32(float x) {
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = x + x * z * p;
    const float ax = x < 0.0f ? -x : x;
    const float big = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
    const float sbig = x < 0.0f ? -big : big;
    return ax < 0.625f ? small : sbig;
}

// exp(x) - 1 with full relative accuracy near 0: expm1(x) = 2t / (1 - t), t = tanh(x/2).
CNNFAST_INLINE float expm1_f32(float x) {
    const float t = tanh_f32(0.5f * x);
    const float near0 = 2.0f * t / (1.0f - t);
    const float far = exp_f32(x) - 1.0f;
    const float ax = x < 0.0f ? -x : x;
    return ax < 1.25f ? near0 : far;
}

// 1 / (1 + exp(-x)) computed from z = exp(-|x|) <= 1, so nothing overflows for any x.
CNNFAST_INLINE float sigmoid_f32(float x) {
    const float ax = x < 0.0f ? -x : x;
    const float z = exp_f32(-ax);
    const float r = 1.0f / (1.0f + z);
    return x < 0.0f ? z * r : r;
}

void act_forward(float* y, const float* x, int64_t n, int kind, float alpha) {
    switch (static_cast<Activation>(kind)) {
        case Activation::linear:
            if (y != x) std::memmove(y, x, static_cast<size_t>(n) * sizeof(float));
            break;
        case Activation::relu:
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];  // NaN propagates
            break;
        case Activation::sigmoid:
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) y[i] = sigmoid_f32(x[i]);
            break;
        case Activation::tanh:
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) y[i] = tanh_f32(x[i]);
            break;
        case Activation::elu:
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) {
                const float v = x[i];
                y[i] = v > 0.0f ? v : alpha * expm1_f32(v);
            }
            break;
        case Activation::swish:
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid_f32(x[i]);
            break;
    }
}

void act_backward(float* dx, const float* x, const float* y, const float* dy, int64_t n, int kind,
                  float alpha) {
    switch (static_cast<Activation>(kind)) {
        case Activation::linear:
            if (dx != dy) std::memmove(dx, dy, static_cast<size_t>(n) * sizeof(float));
            break;
        case Activation::relu:  // uses x
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
            break;
        case Activation::sigmoid:  // uses y
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (y[i] * (1.0f - y[i]));
            break;
        case Activation::tanh:  // uses y
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
            break;
        case Activation::elu:  // uses x and y: y + alpha = alpha * exp(x) for x <= 0
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * (y[i] + alpha);
            break;
        case Activation::swish:  // uses x: d/dx x s(x) = s (1 + x (1 - s))
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) {
                const float s = sigmoid_f32(x[i]);
                dx[i] = dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
            }
            break;
    }
}

float row_max(const float* x, int64_t n) {
    float m = x[0];
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
}

float row_sum_exp(const float* x, int64_t n, float shift) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += exp_f32(x[i] - shift);
    return s;
}

void row_exp_scale(float* y, const float* x, int64_t n, float shift, float scale) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = exp_f32(x[i] - shift) * scale;
}

void dropout_span(float* y, uint8_t* mask, const float* x, int64_t lo, int64_t hi, uint64_t key,
                  uint64_t threshold, float keep) {
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) {
        const uint64_t h = splitmix64_mix(key + static_cast<uint64_t>(i + 1) * kGoldenGamma);
        const bool kept = (h >> 32) >= threshold;
        mask[i] = kept ? 1 : 0;
        y[i] = kept ? x[i] / keep : 0.0f;
    }
}

#undef CNNFAST_INLINE

}  // namespace

const ElementwiseSimd kTable = {
#if defined(CNNFAST_SIMD_NAME)
    CNNFAST_SIMD_NAME,
#else
    "baseline",
#endif
    &act_forward, &act_backward, &row_max, &row_sum_exp, &row_exp_scale, &dropout_span,
};

}  // namespace cnnfast::detail::CNNFAST_SIMD_NS

#pragma GCC pop_options
