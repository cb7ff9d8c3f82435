#pragma once
// Internal to the narrow int8 convolutions' fused epilogues (conv2d_int8_narrow_avx512vnni.cpp,
// conv2d_int8_narrow_amx.cpp; Int8NarrowAvgPoolFn, conv2d_int8_narrow.h), compiled with AVX-512
// flags: requantization, activation, 2x2 average pooling and quantization on sums in registers,
// in the float operations of the steps apart - requantize16 (quantized_avx512_ops.h), the
// activation's vector code as activation_forward runs it (activation_vec.h), ((top-left +
// bottom-left) + (top-right + bottom-right)) * 0.25f as the average pooling kernels, quantize16.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "quantized_avx512_ops.h"

// The vector tanh and sigmoid of the activation kernels, compiled here the way
// activation_loops.h compiles them (its trapping-math option included).
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
namespace cnnfast::detail::simd_int8 {
namespace {
#define CNNFAST_INLINE inline __attribute__((always_inline))
#include "activation_vec.h"
#undef CNNFAST_INLINE
}  // namespace
}  // namespace cnnfast::detail::simd_int8
#pragma GCC pop_options

namespace cnnfast {
namespace {

using namespace int8_avx512;

// The activations fused: the identity, ReLU (after the bias, as requantize16), tanh, sigmoid.
struct ActLinear {
    static __m512 apply(__m512 v) { return v; }
};
struct ActRelu {
    static __m512 apply(__m512 v) { return _mm512_max_ps(v, _mm512_setzero_ps()); }
};
struct ActTanh {
    static __m512 apply(__m512 v) {
        using detail::simd_int8::vf;
        return reinterpret_cast<__m512>(detail::simd_int8::tanh_v(reinterpret_cast<vf>(v)));
    }
};
struct ActSigmoid {
    static __m512 apply(__m512 v) {
        using detail::simd_int8::vf;
        return reinterpret_cast<__m512>(detail::simd_int8::sigmoid_v(reinterpret_cast<vf>(v)));
    }
};

// One vector of sums (a filter's pixels, or a pixel's filters) through requantize16 with its
// factors (bias 0 when absent: -0 becomes +0 there, which every activation and quantization
// here treats alike), then the activation.
template <class Act>
inline __m512 epilogue16(__m512i acc, __m512i shift, __m512 mult, __m512 bias) {
    return Act::apply(requantize16<true, false>(acc, shift, mult, bias));
}

// One 2x2 window of pixels whose filters lie in lanes: its quantized average, as int32 lanes.
template <class Act>
inline __m512i pooled_window(__m512i tl, __m512i tr, __m512i bl, __m512i br, __m512i shift,
                             __m512 mult, __m512 bias, __m512 quarter, __m512 inv, __m512 lo,
                             __m512 hi, __m512 zp) {
    const __m512 left = _mm512_add_ps(epilogue16<Act>(tl, shift, mult, bias),
                                      epilogue16<Act>(bl, shift, mult, bias));
    const __m512 right = _mm512_add_ps(epilogue16<Act>(tr, shift, mult, bias),
                                       epilogue16<Act>(br, shift, mult, bias));
    return quantize16(_mm512_mul_ps(_mm512_add_ps(left, right), quarter), inv, lo, hi, zp);
}

// f(Act{}) for the fused activation e_act (int8_narrow_fuses).
template <class F>
inline void with_activation(Activation act, const F& f) {
    switch (act) {
        case Activation::relu: return f(ActRelu{});
        case Activation::tanh: return f(ActTanh{});
        case Activation::sigmoid: return f(ActSigmoid{});
        default: return f(ActLinear{});
    }
}

}  // namespace
}  // namespace cnnfast
