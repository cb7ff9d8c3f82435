// Internal, included only by pool2d.cpp, pool2d_avx2.cpp and pool2d_avx512.cpp, each defining
// CNNFAST_POOL_NS (and CNNFAST_POOL_NAME) first: the same pooling loops compiled for three ISAs,
// one table chosen at run time (pool2d_simd.h). Plain scalar code that GCC vectorises over the
// contiguous channel axis under `omp simd`; each entry is single-threaded over a range of output
// rows [r0, r1) of the N*OH rows, pool2d.cpp splits the rows between threads.
//
// Every window is handled by one of two loop shapes:
//  - a full 2x2 or 3x3 window (the common Keras/AlexNet pools): the window positions are
//    unrolled inside the channel loop, so the running max (or sum) and its argmax stay in
//    registers and each output is written once;
//  - any other window (other sizes, windows clipped by padding): the window loop runs outside a
//    channel loop that updates the output row in L1.
#if !defined(CNNFAST_POOL_NS) || !defined(CNNFAST_POOL_VBYTES)
#error "define CNNFAST_POOL_NS, CNNFAST_POOL_NAME and CNNFAST_POOL_VBYTES before including pool2d_loops.h"
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "pool2d.h"
#include "pool2d_simd.h"

// The float selects below only vectorise on pre-AVX-512 ISAs when GCC may evaluate both arms
// unconditionally, which strict trapping-math forbids; nothing here reads FP flags.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

namespace cnnfast::detail::CNNFAST_POOL_NS {
namespace {

#define CNNFAST_INLINE inline __attribute__((always_inline))

struct Span {
    int64_t lo, hi;
};
CNNFAST_INLINE Span window(int64_t o, int64_t stride, int64_t pad, int64_t size, int64_t n) {
    const int64_t start = o * stride - pad;
    return {std::max<int64_t>(start, 0), std::min<int64_t>(start + size, n)};
}

// v replaces the running max m when v > m, or when v is the first NaN (m not NaN yet): the
// first maximum in row-major window order wins ties, a NaN wins once and stays.
CNNFAST_INLINE bool takes(float v, float m) { return !(v <= m) & (m == m); }

// GCC vector extensions of the ISA's width (16 bytes baseline SSE2, 32 AVX2, 64 AVX-512): the
// window kernels below select floats and int32 indices by comparison masks, which the
// auto-vectoriser does not manage through the chain of dependent selects.
typedef float vf __attribute__((vector_size(CNNFAST_POOL_VBYTES)));
typedef int32_t vi __attribute__((vector_size(CNNFAST_POOL_VBYTES)));
constexpr int32_t kLanes = CNNFAST_POOL_VBYTES / 4;

CNNFAST_INLINE vf load(const float* p) {
    vf v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
CNNFAST_INLINE void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
CNNFAST_INLINE void store(int32_t* p, vi v) { std::memcpy(p, &v, sizeof v); }
CNNFAST_INLINE vi iota() {
    vi v;
    for (int32_t i = 0; i < kLanes; ++i) v[i] = i;
    return v;
}

// One full N x N window (2x2 or 3x3): y, idx (C,); the window's top-left input is xs[base],
// rows `row` floats apart. idx[c] = base + c + offset of the chosen position (null: values
// only). Positions in row-major order, running max and offset in registers.
template <int N>
CNNFAST_INLINE void max_window_fixed(float* __restrict y, int32_t* __restrict idx,
                                     const float* __restrict xs, int32_t base, int32_t row,
                                     int32_t C) {
    static_assert(N == 2 || N == 3, "2x2 and 3x3 windows only");
    const float* __restrict p = xs + base;
    int32_t off[N * N];
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) off[i * N + j] = i * row + j * C;
    int32_t c = 0;
    const vi zero = {};
    vi lane = iota() + base;
    for (; c + kLanes <= C; c += kLanes, lane += kLanes) {
        vf m = load(p + c);
        vi k = zero;
#pragma GCC unroll 9
        for (int j = 1; j < N * N; ++j) {
            const vf v = load(p + off[j] + c);
            const vi t = ~(v <= m) & (m == m);
            m = t ? v : m;
            k = t ? zero + off[j] : k;
        }
        store(y + c, m);
        if (idx) store(idx + c, lane + k);
    }
    for (; c < C; ++c) {
        float m = p[c];
        int32_t k = 0;
        for (int j = 1; j < N * N; ++j) {
            const float v = p[off[j] + c];
            if (takes(v, m)) {
                m = v;
                k = off[j];
            }
        }
        y[c] = m;
        if (idx) idx[c] = base + c + k;
    }
}

// Any window (clipped or of any size): rows sh, columns sw of sample xs.
CNNFAST_INLINE void max_window_any(float* __restrict y, int32_t* __restrict idx,
                                   const float* __restrict xs, Span sh, Span sw, int64_t W,
                                   int32_t C) {
    const int32_t first = static_cast<int32_t>((sh.lo * W + sw.lo) * C);
    std::memcpy(y, xs + first, sizeof(float) * C);
    if (idx) {
#pragma omp simd
        for (int32_t c = 0; c < C; ++c) idx[c] = first + c;
    }
    for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
        for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
            const int32_t base = static_cast<int32_t>((ih * W + iw) * C);
            if (base == first) continue;
            const float* __restrict src = xs + base;
            if (idx) {
#pragma omp simd
                for (int32_t c = 0; c < C; ++c) {
                    const float v = src[c], m = y[c];
                    const bool t = takes(v, m);
                    y[c] = t ? v : m;
                    idx[c] = t ? base + c : idx[c];
                }
            } else {
#pragma omp simd
                for (int32_t c = 0; c < C; ++c) {
                    const float v = src[c], m = y[c];
                    y[c] = takes(v, m) ? v : m;
                }
            }
        }
}

void max_forward_rows(float* y, int32_t* argmax, const float* x, const Pool2dDims& d, int64_t r0,
                      int64_t r1) {
    const int32_t C = static_cast<int32_t>(d.C), row = static_cast<int32_t>(d.W * d.C);
    const bool is2 = d.PH == 2 && d.PW == 2, is3 = d.PH == 3 && d.PW == 3;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        const float* xs = x + n * d.H * d.W * d.C;
        const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
        const bool full_h = sh.hi - sh.lo == d.PH;
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
            const int64_t o = (r * d.OW + ow) * d.C;
            float* yo = y + o;
            int32_t* io = argmax ? argmax + o : nullptr;
            const bool full = full_h && sw.hi - sw.lo == d.PW;
            const int32_t base = static_cast<int32_t>((sh.lo * d.W + sw.lo) * d.C);
            if (full && is2)
                max_window_fixed<2>(yo, io, xs, base, row, C);
            else if (full && is3)
                max_window_fixed<3>(yo, io, xs, base, row, C);
            else
                max_window_any(yo, io, xs, sh, sw, d.W, C);
        }
    }
}

// A full window's average. 2x2 windows add their columns' pairs first, (top-left + bottom-left)
// + (top-right + bottom-right), the order of the narrow-channel kernel (pool2d_narrow_avx512.cpp)
// and of the int8 convolution's fused pooling (quantized_simd.h's avgpool2_u8), so all three
// give the same bits.
template <int N>
CNNFAST_INLINE void avg_window_fixed(float* __restrict y, const float* __restrict xs,
                                     int32_t base, int32_t row, int32_t C) {
    static_assert(N == 2 || N == 3, "2x2 and 3x3 windows only");
    const float* __restrict p = xs + base;
    int32_t off[N * N];
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) off[i * N + j] = i * row + j * C;
    const float scale = 1.0f / static_cast<float>(N * N);
    int32_t c = 0;
    for (; c + kLanes <= C; c += kLanes) {
        vf s;
        if constexpr (N == 2) {
            s = (load(p + c) + load(p + row + c)) + (load(p + C + c) + load(p + row + C + c));
        } else {
            s = load(p + c);
#pragma GCC unroll 9
            for (int j = 1; j < N * N; ++j) s += load(p + off[j] + c);
        }
        store(y + c, s * scale);
    }
    for (; c < C; ++c) {
        float s;
        if constexpr (N == 2) {
            s = (p[c] + p[row + c]) + (p[C + c] + p[row + C + c]);
        } else {
            s = p[c];
            for (int j = 1; j < N * N; ++j) s += p[off[j] + c];
        }
        y[c] = s * scale;
    }
}

void avg_forward_rows(float* y, const float* x, const Pool2dDims& d, int64_t r0, int64_t r1) {
    const int32_t C = static_cast<int32_t>(d.C), row = static_cast<int32_t>(d.W * d.C);
    const bool is2 = d.PH == 2 && d.PW == 2, is3 = d.PH == 3 && d.PW == 3;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        const float* xs = x + n * d.H * d.W * d.C;
        const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
        const bool full_h = sh.hi - sh.lo == d.PH;
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
            float* __restrict yo = y + (r * d.OW + ow) * d.C;
            const bool full = full_h && sw.hi - sw.lo == d.PW;
            const int32_t base = static_cast<int32_t>((sh.lo * d.W + sw.lo) * d.C);
            if (full && is2) {
                avg_window_fixed<2>(yo, xs, base, row, C);
                continue;
            }
            if (full && is3) {
                avg_window_fixed<3>(yo, xs, base, row, C);
                continue;
            }
            std::fill(yo, yo + C, 0.0f);
            for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
                for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
                    const float* __restrict src = xs + (ih * d.W + iw) * d.C;
#pragma omp simd
                    for (int32_t c = 0; c < C; ++c) yo[c] += src[c];
                }
            const float scale = 1.0f / static_cast<float>((sh.hi - sh.lo) * (sw.hi - sw.lo));
#pragma omp simd
            for (int32_t c = 0; c < C; ++c) yo[c] *= scale;
        }
    }
}

// Input rows that output row oh owns when windows do not overlap (stride >= pool): from its
// window's first row (row 0 for oh = 0) to the next window's first row (H for the last).
// Every input row belongs to exactly one output row, so threads split dx without overlap.
CNNFAST_INLINE Span owned_rows(int64_t oh, const Pool2dDims& d) {
    const int64_t lo = oh == 0 ? 0 : std::max<int64_t>(oh * d.stride_h - d.pad_top, 0);
    const int64_t hi = oh + 1 == d.OH ? d.H
                                      : std::max<int64_t>((oh + 1) * d.stride_h - d.pad_top, 0);
    return {lo, hi};
}

// Zeroes, in window rows [sh.lo, sh.hi) of sample dxs, the columns between the previous window's
// end `col_end` and this window's start, and after the last window: the positions no window
// of a disjoint pooling covers.
CNNFAST_INLINE void zero_column_gaps(float* dxs, Span sh, Span sw, int64_t col_end, bool last,
                                     const Pool2dDims& d) {
    const int64_t rowf = d.W * d.C;
    if (sw.lo > col_end)
        for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
            std::memset(dxs + ih * rowf + col_end * d.C, 0, sizeof(float) * (sw.lo - col_end) * d.C);
    if (last && sw.hi < d.W)
        for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
            std::memset(dxs + ih * rowf + sw.hi * d.C, 0, sizeof(float) * (d.W - sw.hi) * d.C);
}

// Zeroes the input rows output row oh owns outside its window (skipped and trailing rows).
CNNFAST_INLINE void zero_row_gaps(float* dxs, int64_t oh, Span sh, const Pool2dDims& d) {
    const int64_t rowf = d.W * d.C;
    const Span own = owned_rows(oh, d);
    for (int64_t ih = own.lo; ih < own.hi; ++ih)
        if (ih < sh.lo || ih >= sh.hi) std::memset(dxs + ih * rowf, 0, sizeof(float) * rowf);
}

// One full N x N window of a disjoint max pooling: dx at base + off[j] + c gets g[c] where
// idx[c] == base + c + off[j], else 0. Returns false if some idx[c] is no window position.
template <int N>
CNNFAST_INLINE bool max_backward_window_fixed(float* __restrict dxs, const float* __restrict g,
                                              const int32_t* __restrict idx, int32_t base,
                                              int32_t row, int32_t C) {
    int32_t off[N * N];
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) off[i * N + j] = i * row + j * C;
    float* __restrict p = dxs + base;
    const vi zero = {};
    const vf fzero = {};
    vi lane = iota() + base;
    vi missed = zero;
    int32_t c = 0;
    for (; c + kLanes <= C; c += kLanes, lane += kLanes) {
        vi k;
        std::memcpy(&k, idx + c, sizeof k);
        k -= lane;
        const vf gv = load(g + c);
        vi hit_any = zero;
#pragma GCC unroll 9
        for (int j = 0; j < N * N; ++j) {
            const vi hit = k == off[j];
            hit_any |= hit;
            store(p + off[j] + c, hit ? gv : fzero);
        }
        missed |= ~hit_any;
    }
    bool ok = true;
    for (int32_t l = 0; l < kLanes; ++l) ok &= missed[l] == 0;
    for (; c < C; ++c) {
        const int32_t k = idx[c] - base - c;
        bool hit_any = false;
        for (int j = 0; j < N * N; ++j) {
            p[off[j] + c] = k == off[j] ? g[c] : 0.0f;
            hit_any |= k == off[j];
        }
        ok &= hit_any;
    }
    return ok;
}

// How far ahead the backward sweeps prefetch dx for writing, in floats (4 KiB).
constexpr int64_t kPrefetchAhead = 1024;

// True if every window of every output row lies inside the input horizontally.
CNNFAST_INLINE bool windows_full_w(const Pool2dDims& d) {
    return d.pad_left == 0 && (d.OW - 1) * d.stride_w + d.PW <= d.W;
}

// The PH input rows from ih0 under output row g, idx (OW, C) of a disjoint pooling whose
// windows are all full: each input row is written left to right in one sequential sweep
// (window by window, zeros in the column gaps), rather than window by window across the PH
// rows, which interleaves PH store streams (10-30% slower for 2x2 on intel-xeon-2c). Max pooling
// (idx non-null): dx = g where idx points at the position, else 0; returns how many of the
// OW*C idx entries point at no position of their window. Average (idx null): dx = g * scale.
CNNFAST_INLINE int64_t backward_rows_full(float* __restrict dxs, const float* __restrict g,
                                          const int32_t* __restrict idx, int64_t ih0,
                                          float scale, const Pool2dDims& d) {
    const int32_t C = static_cast<int32_t>(d.C);
    const vf fzero = {};
    vi hitv = {};
    int64_t hits = 0;
    for (int64_t ih = ih0; ih < ih0 + d.PH; ++ih) {
        float* __restrict out = dxs + ih * d.W * C;
        int64_t col = 0;  // first column not written yet
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            const int64_t iw0 = ow * d.stride_w;
            if (iw0 > col) std::memset(out + col * C, 0, sizeof(float) * (iw0 - col) * C);
            col = iw0 + d.PW;
            const float* __restrict go = g + ow * C;
            const int32_t* __restrict ko = idx ? idx + ow * C : nullptr;
            if (ih == ih0) {  // the next output row's dy and argmax
                const int64_t next = d.OW * C;
                for (int64_t q = 0; q < C; q += 16) {
                    __builtin_prefetch(go + next + q, 0, 3);
                    if (ko) __builtin_prefetch(ko + next + q, 0, 3);
                }
            }
            for (int64_t iw = iw0; iw < iw0 + d.PW; ++iw) {
                float* __restrict p = out + iw * C;
                const int32_t at = static_cast<int32_t>((ih * d.W + iw) * C);
                for (int64_t q = 0; q < C; q += 16)
                    __builtin_prefetch(p + q + kPrefetchAhead, 1, 3);
                int32_t c = 0;
                if (ko) {
                    vi want = iota() + at;
                    for (; c + kLanes <= C; c += kLanes, want += kLanes) {
                        vi k;
                        std::memcpy(&k, ko + c, sizeof k);
                        const vi hit = k == want;
                        hitv -= hit;  // true is -1
                        store(p + c, hit ? load(go + c) : fzero);
                    }
                    for (; c < C; ++c) {
                        const bool hit = ko[c] == at + c;
                        hits += hit;
                        p[c] = hit ? go[c] : 0.0f;
                    }
                } else {
                    for (; c + kLanes <= C; c += kLanes) store(p + c, load(go + c) * scale);
                    for (; c < C; ++c) p[c] = go[c] * scale;
                }
            }
        }
        if (col < d.W) std::memset(out + col * C, 0, sizeof(float) * (d.W - col) * C);
    }
    for (int32_t l = 0; l < kLanes; ++l) hits += hitv[l];
    return idx ? d.OW * d.C - hits : 0;
}

// dx rows owned by output rows [r0, r1) overwritten: dx at argmax = dy, 0 elsewhere. Windows
// must not overlap (stride >= pool on both axes). Returns 0 when every argmax entry lies in its
// window (always, when argmax comes from max_forward_rows), else a positive count of windows (or
// output rows) with an entry outside; the caller then redoes the whole pass with a plain scatter.
int64_t max_backward_rows_disjoint(float* dx, const float* dy, const int32_t* argmax,
                                   const Pool2dDims& d, int64_t r0, int64_t r1) {
    const int32_t C = static_cast<int32_t>(d.C), row = static_cast<int32_t>(d.W * d.C);
    const bool is2 = d.PH == 2 && d.PW == 2, is3 = d.PH == 3 && d.PW == 3;
    const bool full_w = windows_full_w(d);
    int64_t missing = 0;
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        float* dxs = dx + n * d.H * d.W * d.C;
        const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
        const bool full_h = sh.hi - sh.lo == d.PH;
        zero_row_gaps(dxs, oh, sh, d);
        if (full_h && full_w) {
            const int64_t o = r * d.OW * d.C;
            missing += backward_rows_full(dxs, dy + o, argmax + o, sh.lo, 1.0f, d) != 0;
            continue;
        }
        int64_t col_end = 0;
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
            zero_column_gaps(dxs, sh, sw, col_end, ow + 1 == d.OW, d);
            col_end = sw.hi;
            const int64_t o = (r * d.OW + ow) * d.C;
            const float* __restrict g = dy + o;
            const int32_t* __restrict idx = argmax + o;
            const bool full = full_h && sw.hi - sw.lo == d.PW;
            const int32_t base = static_cast<int32_t>((sh.lo * d.W + sw.lo) * d.C);
            if (full && is2) {
                missing += !max_backward_window_fixed<2>(dxs, g, idx, base, row, C);
                continue;
            }
            if (full && is3) {
                missing += !max_backward_window_fixed<3>(dxs, g, idx, base, row, C);
                continue;
            }
            int32_t hits = 0;
            for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
                for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
                    const int32_t at = static_cast<int32_t>((ih * d.W + iw) * d.C);
                    float* __restrict out = dxs + at;
#pragma omp simd reduction(+ : hits)
                    for (int32_t c = 0; c < C; ++c) {
                        const bool hit = idx[c] == at + c;
                        out[c] = hit ? g[c] : 0.0f;
                        hits += hit;
                    }
                }
            missing += hits != C;
        }
    }
    return missing;
}

// dx rows owned by output rows [r0, r1) overwritten with dy / window count spread over each
// window; windows must not overlap.
void avg_backward_rows_disjoint(float* dx, const float* dy, const Pool2dDims& d, int64_t r0,
                                int64_t r1) {
    const int32_t C = static_cast<int32_t>(d.C);
    const bool full_w = windows_full_w(d);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        float* dxs = dx + n * d.H * d.W * d.C;
        const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
        zero_row_gaps(dxs, oh, sh, d);
        if (sh.hi - sh.lo == d.PH && full_w) {
            const float scale = 1.0f / static_cast<float>(d.PH * d.PW);
            backward_rows_full(dxs, dy + r * d.OW * d.C, nullptr, sh.lo, scale, d);
            continue;
        }
        int64_t col_end = 0;
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
            zero_column_gaps(dxs, sh, sw, col_end, ow + 1 == d.OW, d);
            col_end = sw.hi;
            const float* __restrict g = dy + (r * d.OW + ow) * d.C;
            const float scale = 1.0f / static_cast<float>((sh.hi - sh.lo) * (sw.hi - sw.lo));
            for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
                for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
                    float* __restrict out = dxs + (ih * d.W + iw) * d.C;
#pragma omp simd
                    for (int32_t c = 0; c < C; ++c) out[c] = g[c] * scale;
                }
        }
    }
}

#undef CNNFAST_INLINE

}  // namespace

#if !defined(CNNFAST_POOL_NARROW)
#define CNNFAST_POOL_NARROW nullptr
#endif
const PoolSimd kPoolTable = {CNNFAST_POOL_NAME,          max_forward_rows,
                             avg_forward_rows,           max_backward_rows_disjoint,
                             avg_backward_rows_disjoint, CNNFAST_POOL_NARROW};
#undef CNNFAST_POOL_NARROW

}  // namespace cnnfast::detail::CNNFAST_POOL_NS

#pragma GCC pop_options
