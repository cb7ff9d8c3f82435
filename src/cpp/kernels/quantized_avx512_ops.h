#pragma once
// Internal to the AVX-512 int8 kernels (quantized_avx512.cpp, conv2d_int8_narrow_avx512vnni.cpp):
// 16 values of the int8 epilogue (quantized.h) and of quantize_u8, in the float operations of
// the portable loops (quantized.cpp), so every kernel that fuses them gives the same bits.
// Include only in files compiled with AVX-512 flags.
#include <immintrin.h>

namespace cnnfast::int8_avx512 {

constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// min(hi, t) then max(., lo), operands in this order: a NaN t passes the min (the second
// operand is returned when one is NaN) and becomes lo at the max, as the portable loop does.
inline __m512i quantize16(__m512 x, __m512 inv, __m512 lo, __m512 hi, __m512 zp) {
    __m512 t = _mm512_mul_round_ps(x, inv, kNearest);
    t = _mm512_max_ps(_mm512_min_ps(hi, t), lo);
    // Round half to even (the default rounding mode), as std::nearbyint.
    t = _mm512_roundscale_ps(t, kNearest);
    return _mm512_cvttps_epi32(_mm512_add_round_ps(t, zp, kNearest));
}

// 16 outputs: float(acc - shift) * mult (+ bias), then max(., 0) when relu. The _round_ forms:
// GCC would contract a plain _mm512_mul_ps + _mm512_add_ps into one FMA (one rounding instead
// of the portable loop's two).
template <bool kBias, bool kRelu>
inline __m512 requantize16(__m512i acc, __m512i shift, __m512 mult, __m512 bias) {
    __m512 v = _mm512_mul_round_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, shift)), mult,
                                   kNearest);
    if (kBias) v = _mm512_add_round_ps(v, bias, kNearest);
    if (kRelu) v = _mm512_max_ps(v, _mm512_setzero_ps());
    return v;
}

}  // namespace cnnfast::int8_avx512
