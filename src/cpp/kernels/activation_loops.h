// Internal, included only by activation.cpp, activation_avx2.cpp and activation_avx512.cpp, each
// defining CNNFAST_SIMD_NS first: the same loops compiled for three ISAs (see elementwise_simd.h).
// The first part is plain scalar code that GCC vectorises under `omp simd` (its float math -
// exp, tanh, expm1, sigmoid - is branch-free polynomial code so it vectorises too); the hot
// loops (relu, tanh, sigmoid forward, softmax rows in softmax_xent_loops.h) are written on
// explicit vectors.
#ifndef CNNFAST_SIMD_NS
#error "define CNNFAST_SIMD_NS before including activation_loops.h"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__SSE__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__)
#include "avx512_util.h"
#endif

#include "activation.h"
#include "elementwise_simd.h"
#include "workspace.h"

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

// ---- explicit vectors: relu, tanh, sigmoid and the softmax rows ---------------------------
#include "activation_vec.h"

// The first n < kLanes floats at p with the other lanes set to `fill`, and the partial store
// of the first n lanes of v (AVX-512: masked moves; else lane by lane).
CNNFAST_INLINE vf vload_part(const float* p, int64_t n, float fill) {
#if defined(__AVX512F__)
    return reinterpret_cast<vf>(
        _mm512_mask_loadu_ps(reinterpret_cast<__m512>(splat(fill)), lanes(n), p));
#else
    vf v = splat(fill);
    for (int64_t l = 0; l < n; ++l) v[l] = p[l];
    return v;
#endif
}
CNNFAST_INLINE void vstore_part(float* p, vf v, int64_t n) {
#if defined(__AVX512F__)
    _mm512_mask_storeu_ps(p, lanes(n), reinterpret_cast<__m512>(v));
#else
    for (int64_t l = 0; l < n; ++l) p[l] = v[l];
#endif
}

// How far ahead the streaming loops prefetch, in floats (4 KiB). The hardware prefetchers run
// only as far ahead as the demand loads, which compute-heavy loops issue slowly: on the 2-core
// Xeon VM, 22 MB of tanh went from 17.6 to 22.2 GB/s and sigmoid from 22 to 28 GB/s with it.
constexpr int64_t kPrefetchAhead = 1024;

// y (n,) = f(x) vector by vector; the last partial vector is padded with zeros. y may alias x.
// Short arrays (the int8 epilogue's tiles in L1) are not prefetched: every prefetch would fall
// past their end.
template <class F>
CNNFAST_INLINE void map_v(float* y, const float* x, int64_t n, F f) {
    int64_t i = 0;
    const int64_t prefetch_end = n - kPrefetchAhead;
    for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
        if (i < prefetch_end)
            for (int64_t q = 0; q < 2 * kLanes; q += 16) {
                __builtin_prefetch(x + i + q + kPrefetchAhead, 0, 3);
                __builtin_prefetch(y + i + q + kPrefetchAhead, 1, 3);
            }
        vstore(y + i, f(vload(x + i)));
        vstore(y + i + kLanes, f(vload(x + i + kLanes)));
    }
    for (; i + kLanes <= n; i += kLanes) vstore(y + i, f(vload(x + i)));
    if (i < n) vstore_part(y + i, f(vload_part(x + i, n - i, 0.0f)), n - i);
}

void act_forward(float* y, const float* x, int64_t n, int kind, float alpha) {
    switch (static_cast<Activation>(kind)) {
        case Activation::linear:
            if (y != x) std::memmove(y, x, static_cast<size_t>(n) * sizeof(float));
            break;
        case Activation::relu:
            map_v(y, x, n, [](vf v) { return v < 0.0f ? vf{} : v; });  // NaN propagates
            break;
        case Activation::sigmoid:
            map_v(y, x, n, [](vf v) { return sigmoid_v(v); });
            break;
        case Activation::tanh:
            map_v(y, x, n, [](vf v) { return tanh_v(v); });
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
        case Activation::leaky_relu:  // x > 0 keeps x; NaN goes to alpha * NaN = NaN
            map_v(y, x, n, [alpha](vf v) { return v > 0.0f ? v : v * alpha; });
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
        case Activation::leaky_relu:  // uses x
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * alpha;
            break;
    }
}

#include "softmax_xent_loops.h"

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

void dropout_backward_span(float* dx, const float* dy, const uint8_t* mask, int64_t lo,
                           int64_t hi, float keep) {
    // The quotient is formed for every element and then selected: with the division inside the
    // condition GCC kept the loop scalar (one divss per element, 1.7 ns each).
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) {
        const float g = dy[i] / keep;
        dx[i] = mask[i] ? g : 0.0f;
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
    &act_forward, &act_backward, &softmax_rows, &softmax_xent_rows, &dropout_span,
    &dropout_backward_span,
};

}  // namespace cnnfast::detail::CNNFAST_SIMD_NS

#pragma GCC pop_options
