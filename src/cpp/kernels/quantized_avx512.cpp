// The int8 element-wise loops (quantized_simd.h) on AVX-512: 16 values per instruction, masked
// tails. Compiled with -mavx512f -mavx512bw ...; chosen at run time only on CPUs that have them.
#include "quantized_simd.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "avx512_util.h"
#include "quantized_avx512_ops.h"

namespace cnnfast {

namespace {

using namespace int8_avx512;

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


// Row by row: whole vectors stored unmasked (masked stores cost several plain ones on AMD Zen).
void quantize_rows_avx512(uint8_t* q, int64_t ldq, const float* x, int64_t ldx, int64_t rows,
                          int64_t n, float inv, float lo, float hi, float zp) {
    for (int64_t r = 0; r < rows; ++r)
        quantize_avx512(q + r * ldq, x + r * ldx, n, inv, lo, hi, zp);
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

// Windows side by side (step 2K, rows of K < 16 values back to back: the narrow convolutions'
// output rows, LeNet-5's 6 channels): a vector covers parts of several windows, so the rows are
// added as flat arrays, each lane with the lane K on (the window's right column), and the lanes
// that start a window's channels - flat index mod 2K below K - are compressed out (the narrow
// average pooling's way, pool2d_narrow_avx512.cpp). Lane l's index mod 2K is kept in a vector,
// stepped by 16 each round.
void avgpool2_u8_flat(uint8_t* q, const float* top, const float* bottom, int64_t windows,
                      int64_t K, __m512 inv, __m512 lo, __m512 hi, __m512 zp) {
    const int64_t L = 2 * K * windows;
    const __m512i two_k = _mm512_set1_epi32(static_cast<int>(2 * K));
    const __m512i k_lanes = _mm512_set1_epi32(static_cast<int>(K));
    const __m512i advance = _mm512_set1_epi32(static_cast<int>(16 % (2 * K)));
    __m512i place = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int i = 0; i < 3; ++i)  // lane l mod 2K: l < 16, 2K >= 4 (K = 1 takes the other loop)
        place = _mm512_mask_sub_epi32(place, _mm512_cmpge_epi32_mask(place, two_k), place, two_k);
    const __m512 quarter = _mm512_set1_ps(0.25f);
    for (int64_t i0 = 0; i0 < L; i0 += 16) {
        const __mmask16 lead = lanes(L - i0) & _mm512_cmplt_epi32_mask(place, k_lanes);
        // The right column sits K floats on, inside the row for every lead lane.
        const __m512 left = _mm512_add_ps(_mm512_maskz_loadu_ps(lead, top + i0),
                                          _mm512_maskz_loadu_ps(lead, bottom + i0));
        const __m512 right = _mm512_add_ps(_mm512_maskz_loadu_ps(lead, top + i0 + K),
                                           _mm512_maskz_loadu_ps(lead, bottom + i0 + K));
        const __m512i v = quantize16(_mm512_mul_ps(_mm512_add_ps(left, right), quarter), inv, lo,
                                     hi, zp);
        const int kept = __builtin_popcount(lead);
        _mm512_mask_cvtepi32_storeu_epi8(q, lanes(kept), _mm512_maskz_compress_epi32(lead, v));
        q += kept;
        place = _mm512_add_epi32(place, advance);
        place = _mm512_mask_sub_epi32(place, _mm512_cmpge_epi32_mask(place, two_k), place, two_k);
    }
}

void avgpool2_u8_avx512(uint8_t* q, int64_t ldq, const float* top, const float* bottom,
                        int64_t step, int64_t windows, int64_t K, float inv, float lo, float hi,
                        float zp) {
    const __m512 vinv = _mm512_set1_ps(inv), vlo = _mm512_set1_ps(lo);
    const __m512 vhi = _mm512_set1_ps(hi), vzp = _mm512_set1_ps(zp);
    if (K > 1 && K < 16 && step == 2 * K && ldq == K)
        return avgpool2_u8_flat(q, top, bottom, windows, K, vinv, vlo, vhi, vzp);
    const __m512 quarter = _mm512_set1_ps(0.25f);
    for (int64_t i = 0; i < windows; ++i) {
        const float* t = top + i * step;
        const float* b = bottom + i * step;
        for (int64_t k = 0; k < K; k += 16) {
            const __mmask16 m = lanes(K - k);
            const __m512 left = _mm512_add_ps(_mm512_maskz_loadu_ps(m, t + k),
                                              _mm512_maskz_loadu_ps(m, b + k));
            const __m512 right = _mm512_add_ps(_mm512_maskz_loadu_ps(m, t + K + k),
                                               _mm512_maskz_loadu_ps(m, b + K + k));
            const __m512i v = quantize16(_mm512_mul_ps(_mm512_add_ps(left, right), quarter), vinv,
                                         vlo, vhi, vzp);
            _mm512_mask_cvtepi32_storeu_epi8(q + i * ldq + k, m, v);
        }
    }
}

const Int8Elementwise kTable{"avx512",
                             quantize_avx512,
                             quantize_rows_avx512,
                             requantize_avx512,
                             requantize_u8_avx512,
                             requantize_u8_pool4_avx512,
                             avgpool2_u8_avx512};

}  // namespace

const Int8Elementwise* int8_elementwise_avx512() { return &kTable; }

}  // namespace cnnfast

#else

namespace cnnfast {
const Int8Elementwise* int8_elementwise_avx512() { return nullptr; }
}  // namespace cnnfast

#endif
