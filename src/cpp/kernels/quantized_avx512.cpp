// The int8 element-wise loops (quantized_simd.h) on AVX-512: 16 values per instruction, masked
// tails. Compiled with -mavx512f -mavx512bw ...; chosen at run time only on CPUs that have them.
#include "quantized_simd.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "avx512_util.h"

namespace cnnfast {

namespace {

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

void quantize_avx512(uint8_t* q, const float* x, int64_t n, float inv, float lo, float hi,
                     float zp) {
    const __m512 vinv = _mm512_set1_ps(inv), vlo = _mm512_set1_ps(lo);
    const __m512 vhi = _mm512_set1_ps(hi), vzp = _mm512_set1_ps(zp);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i v = quantize16(_mm512_loadu_ps(x + i), vinv, vlo, vhi, vzp);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(v));
    }
    if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
        const __m512i v = quantize16(_mm512_maskz_loadu_ps(m, x + i), vinv, vlo, vhi, vzp);
        _mm512_mask_cvtepi32_storeu_epi8(q + i, m, v);
    }
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

// f(bias, relu) with the two flags as compile-time constants (std::bool_constant), so that each
// row kernel below is instantiated for the four combinations and picked once per call.
template <class F>
void with_bias_relu(bool bias, bool relu, const F& f) {
    if (bias) {
        if (relu) f(std::true_type{}, std::true_type{});
        else f(std::true_type{}, std::false_type{});
    } else {
        if (relu) f(std::false_type{}, std::true_type{});
        else f(std::false_type{}, std::false_type{});
    }
}

// Rows narrower than a vector (LeNet-5's 6 and 16 - 6 filters) written back to back
// (ld == K): the rows before `whole_rows` may store all 16 lanes, the lanes past K landing on
// the next rows, which are written after them; the rest are stored lane-masked (masked stores
// cost several plain ones on AMD Zen). Needs sum rows of 16 readable lanes (ldacc >= 16).
inline bool back_to_back(int64_t K, int64_t ld, int64_t ldacc) {
    return K < 16 && ld == K && ldacc >= 16;
}
inline int64_t whole_rows(int64_t M, int64_t K) {  // rows m with m K + 16 <= M K
    return std::max<int64_t>(0, M - (16 + K - 1) / K + 1);
}

// store(m, v, whole) for each back-to-back row m: v its 16 requantized lanes (the per-channel
// factors loaded once, lanes past K zero), whole whether all 16 may be stored.
template <bool kBias, bool kRelu, class Store>
void back_to_back_rows(const int32_t* acc, int64_t ldacc, int64_t M, int64_t K, const float* mult,
                       const int32_t* shift, const float* bias, const Store& store) {
    const __mmask16 mk = lanes(K);
    const __m512i vs = _mm512_maskz_loadu_epi32(mk, shift);
    const __m512 vm = _mm512_maskz_loadu_ps(mk, mult);
    const __m512 vb = kBias ? _mm512_maskz_loadu_ps(mk, bias) : _mm512_setzero_ps();
    const int64_t whole = std::min(M, whole_rows(M, K));
    for (int64_t m = 0; m < M; ++m)
        store(m, requantize16<kBias, kRelu>(_mm512_loadu_si512(acc + m * ldacc), vs, vm, vb),
              m < whole);
}

template <bool kBias, bool kRelu>
void requantize_rows(float* y, int64_t ldy, const int32_t* acc, int64_t ldacc, int64_t M,
                     int64_t K, const float* mult, const int32_t* shift, const float* bias) {
    const __m512 zero = _mm512_setzero_ps();
    if (back_to_back(K, ldy, ldacc))
        return back_to_back_rows<kBias, kRelu>(
            acc, ldacc, M, K, mult, shift, bias, [&](int64_t m, __m512 v, bool whole) {
                if (whole)
                    _mm512_storeu_ps(y + m * K, v);
                else
                    _mm512_mask_storeu_ps(y + m * K, lanes(K), v);
            });
    for (int64_t m = 0; m < M; ++m) {
        const int32_t* a = acc + m * ldacc;
        float* out = y + m * ldy;
        int64_t k = 0;
        // Whole vectors unmasked (masked stores are slower), the tail masked.
        for (; k + 16 <= K; k += 16)
            _mm512_storeu_ps(out + k, requantize16<kBias, kRelu>(
                                          _mm512_loadu_si512(a + k), _mm512_loadu_si512(shift + k),
                                          _mm512_loadu_ps(mult + k),
                                          kBias ? _mm512_loadu_ps(bias + k) : zero));
        if (k < K) {
            const __mmask16 mk = static_cast<__mmask16>((1u << (K - k)) - 1);
            _mm512_mask_storeu_ps(
                out + k, mk,
                requantize16<kBias, kRelu>(_mm512_maskz_loadu_epi32(mk, a + k),
                                           _mm512_maskz_loadu_epi32(mk, shift + k),
                                           _mm512_maskz_loadu_ps(mk, mult + k),
                                           kBias ? _mm512_maskz_loadu_ps(mk, bias + k) : zero));
        }
    }
}

void requantize_avx512(float* y, int64_t ldy, const int32_t* acc, int64_t ldacc, int64_t M,
                       int64_t K, const float* mult, const int32_t* shift, const float* bias,
                       bool relu) {
    with_bias_relu(bias, relu, [&](auto b, auto r) {
        requantize_rows<b, r>(y, ldy, acc, ldacc, M, K, mult, shift, bias);
    });
}

template <bool kBias, bool kRelu>
void requantize_u8_rows(uint8_t* q, int64_t ldq, const int32_t* acc, int64_t ldacc, int64_t M,
                        int64_t K, const float* mult, const int32_t* shift, const float* bias,
                        float inv, float lo, float hi, float zp) {
    const __m512 zero = _mm512_setzero_ps(), vinv = _mm512_set1_ps(inv);
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), vzp = _mm512_set1_ps(zp);
    if (back_to_back(K, ldq, ldacc))
        return back_to_back_rows<kBias, kRelu>(
            acc, ldacc, M, K, mult, shift, bias, [&](int64_t m, __m512 y, bool whole) {
                const __m512i v = quantize16(y, vinv, vlo, vhi, vzp);
                if (whole)
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + m * K),
                                     _mm512_cvtepi32_epi8(v));
                else
                    _mm512_mask_cvtepi32_storeu_epi8(q + m * K, lanes(K), v);
            });
    for (int64_t m = 0; m < M; ++m) {
        const int32_t* a = acc + m * ldacc;
        uint8_t* out = q + m * ldq;
        int64_t k = 0;
        // Whole vectors unmasked (masked stores are slower), the tail masked.
        for (; k + 16 <= K; k += 16) {
            const __m512 y = requantize16<kBias, kRelu>(
                _mm512_loadu_si512(a + k), _mm512_loadu_si512(shift + k),
                _mm512_loadu_ps(mult + k), kBias ? _mm512_loadu_ps(bias + k) : zero);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k),
                             _mm512_cvtepi32_epi8(quantize16(y, vinv, vlo, vhi, vzp)));
        }
        if (k < K) {
            const __mmask16 mk = static_cast<__mmask16>((1u << (K - k)) - 1);
            const __m512 y = requantize16<kBias, kRelu>(
                _mm512_maskz_loadu_epi32(mk, a + k), _mm512_maskz_loadu_epi32(mk, shift + k),
                _mm512_maskz_loadu_ps(mk, mult + k),
                kBias ? _mm512_maskz_loadu_ps(mk, bias + k) : zero);
            _mm512_mask_cvtepi32_storeu_epi8(out + k, mk, quantize16(y, vinv, vlo, vhi, vzp));
        }
    }
}

void requantize_u8_avx512(uint8_t* q, int64_t ldq, const int32_t* acc, int64_t ldacc, int64_t M,
                          int64_t K, const float* mult, const int32_t* shift, const float* bias,
                          bool relu, float inv, float lo, float hi, float zp) {
    with_bias_relu(bias, relu, [&](auto b, auto r) {
        requantize_u8_rows<b, r>(q, ldq, acc, ldacc, M, K, mult, shift, bias, inv, lo, hi, zp);
    });
}

// 16 columns' pooled sums: the largest of four rows, the smallest where decreasing (mult < 0).
inline __m512i pool4(const int32_t* r, int64_t ld, __mmask16 m, __mmask16 decreasing) {
    const __m512i a = _mm512_maskz_loadu_epi32(m, r), b = _mm512_maskz_loadu_epi32(m, r + ld);
    const __m512i c = _mm512_maskz_loadu_epi32(m, r + 2 * ld);
    const __m512i d = _mm512_maskz_loadu_epi32(m, r + 3 * ld);
    const __m512i hi = _mm512_max_epi32(_mm512_max_epi32(a, b), _mm512_max_epi32(c, d));
    const __m512i lo = _mm512_min_epi32(_mm512_min_epi32(a, b), _mm512_min_epi32(c, d));
    return _mm512_mask_blend_epi32(decreasing, hi, lo);
}

template <bool kBias, bool kRelu>
void requantize_u8_pool4_rows(uint8_t* q, int64_t ldq, const int32_t* acc, int64_t ldacc,
                              int64_t windows, int64_t K, const float* mult, const int32_t* shift,
                              const float* bias, float inv, float lo, float hi, float zp) {
    const __m512 zero = _mm512_setzero_ps(), vinv = _mm512_set1_ps(inv);
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), vzp = _mm512_set1_ps(zp);
    for (int64_t k = 0; k < K; k += 16) {
        const __mmask16 m = lanes(K - k);
        const __m512 vm = _mm512_maskz_loadu_ps(m, mult + k);
        const __mmask16 decreasing = _mm512_cmp_ps_mask(vm, zero, _CMP_LT_OQ);
        const __m512i vs = _mm512_maskz_loadu_epi32(m, shift + k);
        const __m512 vb = kBias ? _mm512_maskz_loadu_ps(m, bias + k) : zero;
        for (int64_t i = 0; i < windows; ++i) {
            const __m512 y = requantize16<kBias, kRelu>(
                pool4(acc + 4 * i * ldacc + k, ldacc, m, decreasing), vs, vm, vb);
            _mm512_mask_cvtepi32_storeu_epi8(q + i * ldq + k, m,
                                             quantize16(y, vinv, vlo, vhi, vzp));
        }
    }
}

void requantize_u8_pool4_avx512(uint8_t* q, int64_t ldq, const int32_t* acc, int64_t ldacc,
                                int64_t windows, int64_t K, const float* mult,
                                const int32_t* shift, const float* bias, bool relu, float inv,
                                float lo, float hi, float zp) {
    with_bias_relu(bias, relu, [&](auto b, auto r) {
        requantize_u8_pool4_rows<b, r>(q, ldq, acc, ldacc, windows, K, mult, shift, bias, inv, lo,
                                       hi, zp);
    });
}

const Int8Elementwise kTable{"avx512", quantize_avx512, requantize_avx512, requantize_u8_avx512,
                             requantize_u8_pool4_avx512};

}  // namespace

const Int8Elementwise* int8_elementwise_avx512() { return &kTable; }

}  // namespace cnnfast

#else

namespace cnnfast {
const Int8Elementwise* int8_elementwise_avx512() { return nullptr; }
}  // namespace cnnfast

#endif
