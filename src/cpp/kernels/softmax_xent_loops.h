// Internal, included only by activation_loops.h inside its per-ISA namespace, after the vector
// helpers (vf, vload, exp_nonpos_v, ...): the softmax and fused softmax cross-entropy rows,
// compiled once per ISA with the rest of the element-wise table. Each call is single-threaded
// over the rows it is given; softmax_xent.cpp splits the rows into fixed blocks.
//
// A row takes four short passes that stay in L1 for rows up to several thousand classes: max,
// exp(x - max) into a scratch row with its sum, the loss (dense labels), and one pass writing
// the outputs. softmax_forward and the fused loss share the first two and the scaling, so the
// fused path's probs equal softmax_forward's bit for bit.

// Keras' probability clip (elementwise_simd.h) on log p: log(clip(p)) = clamp(log p).
const double kXentLogClipLo = std::log(kXentClipLo);
const double kXentLogClipHi = std::log(kXentClipHi);

// max over x (n,), n >= 1, as the scan m = x > m ? x : m from m = x[0] (a NaN counts only as
// x[0]). Two accumulators, lanes combined in a fixed order.
CNNFAST_INLINE float row_max_v(const float* x, int64_t n) {
    vf m0 = splat(x[0]), m1 = m0;
    int64_t i = 0;
    for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
        const vf a = vload(x + i), b = vload(x + i + kLanes);
        m0 = a > m0 ? a : m0;
        m1 = b > m1 ? b : m1;
    }
    if (i + kLanes <= n) {
        const vf a = vload(x + i);
        m0 = a > m0 ? a : m0;
        i += kLanes;
    }
    if (i < n) {
        const vf a = vload_part(x + i, n - i, x[0]);
        m1 = a > m1 ? a : m1;
    }
    m0 = m1 > m0 ? m1 : m0;
    float m = m0[0];
    for (int64_t l = 1; l < kLanes; ++l) m = m0[l] > m ? m0[l] : m;
    return m;
}

// Rows the exp pass prefetches while it computes (null: none): the memory a row's other passes
// touch first would otherwise be fetched only on demand, in bursts between compute-bound
// stretches that leave the memory bus idle.
struct RowPrefetch {
    const float* read0 = nullptr;
    const float* read1 = nullptr;
    float* write = nullptr;
};

// Prefetches the 2 * kLanes floats at offset i of each row of pf.
CNNFAST_INLINE void prefetch_rows(const RowPrefetch& pf, int64_t i) {
    for (int64_t q = 0; q < 2 * kLanes; q += 16) {  // one 64-byte line per 16 floats
        if (pf.read0) __builtin_prefetch(pf.read0 + i + q, 0, 3);
        if (pf.read1) __builtin_prefetch(pf.read1 + i + q, 0, 3);
        if (pf.write) __builtin_prefetch(pf.write + i + q, 1, 3);
    }
}

// e (n,) = exp(x - m), m >= max(x); returns sum(e) from two vector accumulators whose lanes are
// added in a fixed order. The partial vector is padded with -inf, whose exp is 0. e may alias x.
CNNFAST_INLINE float row_exp_sum_v(float* e, const float* x, int64_t n, float m,
                                   const RowPrefetch& pf) {
    const vf mv = splat(m);
    vf s0 = {}, s1 = {};
    int64_t i = 0;
    for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
        prefetch_rows(pf, i);
        const vf a = exp_nonpos_v(vload(x + i) - mv);
        const vf b = exp_nonpos_v(vload(x + i + kLanes) - mv);
        vstore(e + i, a);
        vstore(e + i + kLanes, b);
        s0 += a;
        s1 += b;
    }
    if (i + kLanes <= n) {
        const vf a = exp_nonpos_v(vload(x + i) - mv);
        vstore(e + i, a);
        s0 += a;
        i += kLanes;
    }
    if (i < n) {
        const vf a = exp_nonpos_v(vload_part(x + i, n - i, -INFINITY) - mv);
        vstore_part(e + i, a, n - i);
        s1 += a;
    }
    s0 += s1;
    float s = 0.0f;
    for (int64_t l = 0; l < kLanes; ++l) s += s0[l];
    return s;
}

// True if some lane of v is not +-0.
CNNFAST_INLINE bool any_nonzero(vf v) {
    const vi bits = as_vi(v) & 0x7FFFFFFF;
#if defined(__AVX512F__)
    const __m512i b = reinterpret_cast<__m512i>(bits);
    return _mm512_test_epi32_mask(b, b) != 0;
#else
    int32_t any = 0;
    for (int64_t l = 0; l < kLanes; ++l) any |= bits[l];
    return any != 0;
#endif
}

// v unchanged, but GCC may not fuse the product that made it into a later FMA: the fused
// path's dlogits must not depend on whether probs is written too (a stored product is never
// contracted, an unstored one would be).
CNNFAST_INLINE vf as_rounded(vf v) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__("" : "+v"(v));
#endif
    return v;
}

// x, y (rows, C): y = softmax(x) row by row. y may alias x.
void softmax_rows(float* y, const float* x, int64_t rows, int64_t C) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        const float m = row_max_v(xr, C);
        RowPrefetch pf;
        if (r + 1 < rows) pf.read0 = xr + C;  // the next row's max pass
        const float inv_s = 1.0f / row_exp_sum_v(yr, xr, C, m, pf);
        map_v(yr, yr, C, [inv_s](vf e) { return e * inv_s; });
    }
}

// The output pass of one row: p = e * inv_s into probs, (p - label) * inv_rows into dlogits,
// labels from y (kDense) or the one-hot of `label`. Elementwise, so probs or dlogits may be
// the logits row the loss pass has already read.
template <bool kDense, bool kProbs, bool kDlogits>
CNNFAST_INLINE void xent_row_outputs(float* dl, float* probs, const float* e, const float* y,
                                     int32_t label, int64_t n, float inv_s, float inv_rows) {
    vi lane;
    for (int32_t l = 0; l < kLanes; ++l) lane[l] = l;
    auto out = [&](int64_t i, vf ev, vf yv, int64_t len) {
        const vf p = as_rounded(ev * inv_s);
        const vf d = (p - yv) * inv_rows;
        if (len == kLanes) {
            if (kProbs) vstore(probs + i, p);
            if (kDlogits) vstore(dl + i, d);
        } else {
            if (kProbs) vstore_part(probs + i, p, len);
            if (kDlogits) vstore_part(dl + i, d, len);
        }
    };
    auto onehot = [&](int64_t i) {
        return (lane + static_cast<int32_t>(i)) == label ? splat(1.0f) : vf{};
    };
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        out(i, vload(e + i), kDense ? vload(y + i) : onehot(i), kLanes);
    if (i < n)
        out(i, vload_part(e + i, n - i, 0.0f), kDense ? vload_part(y + i, n - i, 0.0f) : onehot(i),
            n - i);
}

template <bool kDense, bool kProbs, bool kDlogits>
double xent_rows_impl(float* dlogits, float* probs, const float* logits, const float* labels,
                      const int32_t* int_labels, int64_t rows, int64_t C, float inv_rows) {
    float* e = workspace(Scratch::softmax_row, C);  // one row of exp(x - max)
    double loss = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
        const float* x = logits + r * C;
        const float m = row_max_v(x, C);
        // While exp runs: this row's labels and output, and the next row's logits.
        RowPrefetch pf;
        if (r + 1 < rows) pf.read0 = x + C;
        if (kDense) pf.read1 = labels + r * C;
        if (kDlogits) pf.write = dlogits + r * C;
        else if (kProbs) pf.write = probs + r * C;
        const float s = row_exp_sum_v(e, x, C, m, pf);
        // log p_j = x_j - m - log(s), in double; the logits are still intact here.
        const double shift = static_cast<double>(m) + std::log(static_cast<double>(s));
        const int32_t label = kDense ? 0 : int_labels[r];
        if (kDense) {
            // Vectors of labels that are all zero add exact zeros: skipped, so a one-hot row
            // costs one vector of double arithmetic (shift is NaN, hence the loss too, whenever
            // a logit is NaN or +inf, skipped or not).
            const float* y = labels + r * C;
            double l = 0.0;
            for (int64_t j0 = 0; j0 < C; j0 += kLanes) {
                const int64_t len = std::min<int64_t>(kLanes, C - j0);
                if (!any_nonzero(len == kLanes ? vload(y + j0) : vload_part(y + j0, len, 0.0f)))
                    continue;
                double part = 0.0;
#pragma omp simd reduction(+ : part)
                for (int64_t j = j0; j < j0 + len; ++j) {
                    double lp = static_cast<double>(x[j]) - shift;
                    lp = lp < kXentLogClipLo ? kXentLogClipLo
                                             : (lp > kXentLogClipHi ? kXentLogClipHi : lp);
                    part -= static_cast<double>(y[j]) * lp;
                }
                l += part;
            }
            loss += l;
        } else {
            // Same rounding as the dense sum (whose zero labels add exact zeros), so one-hot
            // and integer labels agree exactly.
            const double lp = static_cast<double>(x[label]) - shift;
            loss -= std::min(std::max(lp, kXentLogClipLo), kXentLogClipHi);
        }
        if (kProbs || kDlogits)
            xent_row_outputs<kDense, kProbs, kDlogits>(
                kDlogits ? dlogits + r * C : nullptr, kProbs ? probs + r * C : nullptr, e,
                kDense ? labels + r * C : nullptr, label, C, 1.0f / s, inv_rows);
    }
    return loss;
}

double softmax_xent_rows(float* dlogits, float* probs, const float* logits, const float* labels,
                         const int32_t* int_labels, int64_t rows, int64_t C, float inv_rows) {
    using Fn = double (*)(float*, float*, const float*, const float*, const int32_t*, int64_t,
                          int64_t, float);
    static constexpr Fn fns[8] = {
        &xent_rows_impl<false, false, false>, &xent_rows_impl<false, false, true>,
        &xent_rows_impl<false, true, false>,  &xent_rows_impl<false, true, true>,
        &xent_rows_impl<true, false, false>,  &xent_rows_impl<true, false, true>,
        &xent_rows_impl<true, true, false>,   &xent_rows_impl<true, true, true>};
    const int which = (labels ? 4 : 0) + (probs ? 2 : 0) + (dlogits ? 1 : 0);
    return fns[which](dlogits, probs, logits, labels, int_labels, rows, C, inv_rows);
}
