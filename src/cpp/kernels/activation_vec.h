// Internal, included inside a per-ISA namespace (cnnfast::detail::<ISA>, in an unnamed
// namespace, with CNNFAST_INLINE defined) by activation_loops.h and by the int8 narrow
// convolution's fused epilogue (conv2d_int8_narrow_avx512vnni.cpp): the vector math of tanh and
// sigmoid, so that both compile the same operations and give the same bits.
// GCC vector extensions of the ISA's width (16 bytes baseline, 32 AVX2, 64 AVX-512), so these
// loops can use the ISA's approximate reciprocal (AVX-512: one divide costs as much as the
// rest of tanh), prefetch, and never fall into a scalar epilogue: the last partial vector is
// loaded and stored lane-masked.
#if defined(__AVX512F__)
#define CNNFAST_VBYTES 64
#elif defined(__AVX__)
#define CNNFAST_VBYTES 32
#else
#define CNNFAST_VBYTES 16
#endif
typedef float vf __attribute__((vector_size(CNNFAST_VBYTES)));
typedef int32_t vi __attribute__((vector_size(CNNFAST_VBYTES)));
constexpr int64_t kLanes = CNNFAST_VBYTES / 4;
#undef CNNFAST_VBYTES

CNNFAST_INLINE vf vload(const float* p) {
    vf v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
CNNFAST_INLINE void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
CNNFAST_INLINE vf splat(float f) { return vf{} + f; }
CNNFAST_INLINE vf as_vf(vi v) { return reinterpret_cast<vf>(v); }
CNNFAST_INLINE vi as_vi(vf v) { return reinterpret_cast<vi>(v); }

// 1 / d for d in [1, 2]. AVX-512: vrcp14ps (relative error < 2^-14) and one Newton step
// (error ~2^-28 before rounding, so the result is within ~1 ulp). Narrower ISAs keep the true
// division: their 12-bit rcpps would need two Newton steps for the same accuracy.
CNNFAST_INLINE vf recip_1_2(vf d) {
#if defined(__AVX512F__)
    const vf r = reinterpret_cast<vf>(_mm512_rcp14_ps(reinterpret_cast<__m512>(d)));
    return r + r * (splat(1.0f) - d * r);
#else
    return splat(1.0f) / d;
#endif
}

// min(|v|, hi) for hi > 0, NaN staying NaN: x86 minps returns its second operand when either is
// NaN, so `hi` goes first.
CNNFAST_INLINE vf abs_min_keep_nan(vf v, float hi) {
    v = as_vf(as_vi(v) & 0x7FFFFFFF);
#if defined(__AVX512F__)
    return reinterpret_cast<vf>(_mm512_min_ps(reinterpret_cast<__m512>(splat(hi)),
                                              reinterpret_cast<__m512>(v)));
#elif defined(__AVX__)
    return reinterpret_cast<vf>(_mm256_min_ps(reinterpret_cast<__m256>(splat(hi)),
                                              reinterpret_cast<__m256>(v)));
#elif defined(__SSE__)
    return reinterpret_cast<vf>(_mm_min_ps(reinterpret_cast<__m128>(splat(hi)),
                                           reinterpret_cast<__m128>(v)));
#else
    return hi < v ? splat(hi) : v;
#endif
}

// Round-to-nearest of v * log2(e) by adding 1.5*2^23 + 127 (exp_f32's trick with the exponent
// bias folded in): the low bits of the sum hold n + 127, so 2^n is the sum's bits shifted into
// the exponent field, for n in [-126, 127].
constexpr float kRoundBias = 12582912.0f + 127.0f;
CNNFAST_INLINE vf pow2_from_biased(vf t) { return as_vf(as_vi(t) << 23); }

// Degree-6 minimax fit of expm1(r) = r + r^2 P(r) on |r| <= ln2/2 (relative error 1.7e-8 with
// these float coefficients, against 6e-8 for one float rounding).
constexpr float kExpP0 = 0.49999997f, kExpP1 = 0.16666543f, kExpP2 = 0.0416672f,
                kExpP3 = 0.008366514f, kExpP4 = 0.0013882522f;

// expm1(r) = r + r^2 P(r) for |r| <= ln2/2.
CNNFAST_INLINE vf expm1_poly(vf r) {
    vf p = splat(kExpP4);
    p = p * r + kExpP3;
    p = p * r + kExpP2;
    p = p * r + kExpP1;
    p = p * r + kExpP0;
    return p * (r * r) + r;
}

// tanh(|x|) from u = exp(-2|x|) and m = u - 1 = expm1(-2|x|), sharing rcp = 1 / (u + 1) (u + 1
// lies in [1, 2], the fast reciprocal's range): -m rcp below |x| = 0.55 keeps full relative
// accuracy near 0 (no cancellation), 1 - 2 u rcp above keeps the absolute error near 1 at
// ~ulp(1)/2, which tanh' = 1 - y^2 needs. With -2|x| = n ln2 - 2h, u = 2^n e^(-2h) and
// m = 2^n expm1(-2h) + (2^n - 1), exact in 2^n - 1 for the n >= -29 reached here: |x| is
// clamped at 10, where the result rounds to exactly 1. The polynomial runs on h = |x| + n ln2/2
// directly (expm1(-2h)'s coefficients are P's times powers of -2, exactly), and ln2/2 is one
// float constant: its error (1e-9 n) only reaches results that are ~2^n away from 1. The sign
// goes back last, so signed zeros keep theirs; NaN propagates.
CNNFAST_INLINE vf tanh_v(vf x) {
    const vf ax = abs_min_keep_nan(x, 10.0f);
    const vf t = ax * (-2.0f * 1.44269504088896341f) + kRoundBias;
    const vf fn = t - kRoundBias;
    const vf h = fn * 0.346573590279972655f + ax;
    vf q = splat(64.0f * kExpP4);  // q = expm1(-2h)
    q = q * h + -32.0f * kExpP3;
    q = q * h + 16.0f * kExpP2;
    q = q * h + -8.0f * kExpP1;
    q = q * h + 4.0f * kExpP0;
    q = q * h + -2.0f;
    q = q * h;
    const vf s = pow2_from_biased(t);
    const vf u = s * q + s;
    const vf m = s * q + (s - 1.0f);
    const vf rcp = recip_1_2(u + 1.0f);
    const vf neg_small = m * rcp;             // -tanh(|x|)
    const vf neg_big = (u + u) * rcp - 1.0f;  // -tanh(|x|)
    const vf neg = ax < 0.55f ? neg_small : neg_big;
    const int32_t mag = 0x7FFFFFFF;  // |neg| with x's sign, one bit-select
    return as_vf((as_vi(neg) & mag) | (as_vi(x) & ~mag));
}

// exp(x) for x <= 0 (or NaN) with exp_f32's flush to 0 below -87.3; two-constant ln2 (Cody-Waite)
// so that the reduction stays exact down to n = -126. (AVX-512's vscalefps would underflow
// gracefully without the flush, but measured ~7% slower here in the softmax rows.)
CNNFAST_INLINE vf exp_nonpos_v(vf x) {
    const vf lo = splat(-87.3f);
    const vf xc = x < lo ? lo : x;  // keeps NaN
    const vf t = xc * 1.44269504088896341f + kRoundBias;
    const vf fn = t - kRoundBias;
    vf r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    const vf s = pow2_from_biased(t);
    const vf e = expm1_poly(r) * s + s;
    return x < lo ? vf{} : e;
}

// sigmoid(x) from z = exp(-|x|) in (0, 1]: 1 / (1 + z) for x >= 0, z / (1 + z) below.
CNNFAST_INLINE vf sigmoid_v(vf x) {
    const vf z = exp_nonpos_v(as_vf(as_vi(x) | int32_t(0x80000000)));
    const vf r = recip_1_2(z + 1.0f);
    return x < 0.0f ? z * r : r;
}

