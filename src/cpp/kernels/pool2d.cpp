#include "pool2d.h"

#include <algorithm>
#include <cstring>

#include "parallel.h"

namespace cnnfast {

namespace {

// Input index range [lo, hi) of window `o` along one axis, clipped to the input.
struct Span {
    int64_t lo, hi;
};
inline Span window(int64_t o, int64_t stride, int64_t pad, int64_t size, int64_t n) {
    const int64_t start = o * stride - pad;
    return {std::max<int64_t>(start, 0), std::min<int64_t>(start + size, n)};
}

// Threads for a loop of `units` items touching `floats` floats in all.
int pool_threads(int64_t units, int64_t floats) {
    return threads_for(std::min<int64_t>(units, floats / 4096 + 1));
}

}  // namespace

// x (N,H,W,C); y, argmax (N,OH,OW,C).
void max_pool2d_forward(float* y, int32_t* argmax, const float* x, const Pool2dDims& d) {
    const int64_t C = d.C, rows = d.N * d.OH;
#pragma omp parallel for num_threads(pool_threads(rows, rows * d.OW * C * d.PH * d.PW)) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        const float* xn = x + n * d.H * d.W * C;
        const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
            float* out = y + (r * d.OW + ow) * C;
            // Start from the window's first position, then scan the rest in row-major order;
            // strict '>' keeps the first maximum, the NaN test makes a NaN win once and stay.
            const int64_t first = (sh.lo * d.W + sw.lo) * C;
            std::memcpy(out, xn + first, sizeof(float) * C);
            if (argmax) {
                int32_t* idx = argmax + (r * d.OW + ow) * C;
                for (int64_t c = 0; c < C; ++c) idx[c] = static_cast<int32_t>(first + c);
                for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
                    for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
                        const int64_t base = (ih * d.W + iw) * C;
                        if (base == first) continue;
                        const float* src = xn + base;
                        for (int64_t c = 0; c < C; ++c) {
                            const float v = src[c], m = out[c];
                            const bool take = v > m || (v != v && m == m);
                            out[c] = take ? v : m;
                            idx[c] = take ? static_cast<int32_t>(base + c) : idx[c];
                        }
                    }
            } else {
                for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
                    for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
                        const float* src = xn + (ih * d.W + iw) * C;
                        for (int64_t c = 0; c < C; ++c) {
                            const float v = src[c], m = out[c];
                            out[c] = (v > m || v != v) ? v : m;
                        }
                    }
            }
        }
    }
}

// dy, argmax (N,OH,OW,C); dx (N,H,W,C).
int64_t max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax,
                            const Pool2dDims& d) {
    const int64_t sample = d.H * d.W * d.C, per_row = d.OW * d.C;
#pragma omp parallel for num_threads(pool_threads(d.N, d.N * sample)) schedule(static)
    for (int64_t n = 0; n < d.N; ++n) std::memset(dx + n * sample, 0, sizeof(float) * sample);
    // Windows of different output rows share input rows only when stride_h < PH; then a sample
    // is the unit of work, else an output row is.
    const bool rows_disjoint = d.stride_h >= d.PH;
    const int64_t units = rows_disjoint ? d.N * d.OH : d.N;
    const int64_t unit_len = rows_disjoint ? per_row : d.OH * per_row;
    int64_t bad = 0;
#pragma omp parallel for num_threads(pool_threads(units, units * unit_len)) schedule(static) reduction(+ : bad)
    for (int64_t u = 0; u < units; ++u) {
        const int64_t n = rows_disjoint ? u / d.OH : u;
        float* dxn = dx + n * sample;
        const float* g = dy + u * unit_len;
        const int32_t* idx = argmax + u * unit_len;
        for (int64_t i = 0; i < unit_len; ++i) {
            const int64_t j = idx[i];
            if (j < 0 || j >= sample) {
                ++bad;
                continue;
            }
            dxn[j] += g[i];
        }
    }
    return bad;
}

// x (N,H,W,C); y (N,OH,OW,C).
void avg_pool2d_forward(float* y, const float* x, const Pool2dDims& d) {
    const int64_t C = d.C, rows = d.N * d.OH;
#pragma omp parallel for num_threads(pool_threads(rows, rows * d.OW * C * d.PH * d.PW)) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        const float* xn = x + n * d.H * d.W * C;
        const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
            float* out = y + (r * d.OW + ow) * C;
            std::fill(out, out + C, 0.0f);
            for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
                for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
                    const float* src = xn + (ih * d.W + iw) * C;
                    for (int64_t c = 0; c < C; ++c) out[c] += src[c];
                }
            const float scale = 1.0f / static_cast<float>((sh.hi - sh.lo) * (sw.hi - sw.lo));
            for (int64_t c = 0; c < C; ++c) out[c] *= scale;
        }
    }
}

// dy (N,OH,OW,C); dx (N,H,W,C). Gathers per input row (n, ih): no two threads write one element.
void avg_pool2d_backward(float* dx, const float* dy, const Pool2dDims& d) {
    const int64_t C = d.C, rows = d.N * d.H;
#pragma omp parallel for num_threads(pool_threads(rows, rows * d.W * C)) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t n = r / d.H, ih = r % d.H;
        float* dx_row = dx + r * d.W * C;
        std::fill(dx_row, dx_row + d.W * C, 0.0f);
        // Output rows whose window contains ih: oh*stride_h - pad_top in (ih - PH, ih].
        const int64_t t = ih + d.pad_top;
        const int64_t oh_lo = t - d.PH + 1 <= 0 ? 0 : (t - d.PH + d.stride_h) / d.stride_h;
        const int64_t oh_hi = std::min<int64_t>(d.OH - 1, t / d.stride_h);
        for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
            const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
            const float* g_row = dy + (n * d.OH + oh) * d.OW * C;
            for (int64_t ow = 0; ow < d.OW; ++ow) {
                const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
                const float scale = 1.0f / static_cast<float>((sh.hi - sh.lo) * (sw.hi - sw.lo));
                const float* g = g_row + ow * C;
                for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
                    float* out = dx_row + iw * C;
                    for (int64_t c = 0; c < C; ++c) out[c] += g[c] * scale;
                }
            }
        }
    }
}

// ---- naive loops -------------------------------------------------------------------------

void max_pool2d_forward_naive(float* y, int32_t* argmax, const float* x, const Pool2dDims& d) {
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t c = 0; c < d.C; ++c) {
                    const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
                    const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
                    float best = 0.0f;
                    int64_t best_i = -1;
                    for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
                        for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
                            const int64_t i = (ih * d.W + iw) * d.C + c;
                            const float v = x[n * d.H * d.W * d.C + i];
                            if (best_i < 0 || v > best || (v != v && best == best)) {
                                best = v;
                                best_i = i;
                            }
                        }
                    const int64_t o = ((n * d.OH + oh) * d.OW + ow) * d.C + c;
                    y[o] = best;
                    if (argmax) argmax[o] = static_cast<int32_t>(best_i);
                }
}

int64_t max_pool2d_backward_naive(float* dx, const float* dy, const int32_t* argmax,
                                  const Pool2dDims& d) {
    const int64_t sample = d.H * d.W * d.C, per_sample = d.OH * d.OW * d.C;
    std::fill(dx, dx + d.N * sample, 0.0f);
    int64_t bad = 0;
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t i = 0; i < per_sample; ++i) {
            const int64_t j = argmax[n * per_sample + i];
            if (j < 0 || j >= sample) {
                ++bad;
                continue;
            }
            dx[n * sample + j] += dy[n * per_sample + i];
        }
    return bad;
}

void avg_pool2d_forward_naive(float* y, const float* x, const Pool2dDims& d) {
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t c = 0; c < d.C; ++c) {
                    const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
                    const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
                    float acc = 0.0f;
                    for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
                        for (int64_t iw = sw.lo; iw < sw.hi; ++iw)
                            acc += x[((n * d.H + ih) * d.W + iw) * d.C + c];
                    const int64_t count = (sh.hi - sh.lo) * (sw.hi - sw.lo);
                    y[((n * d.OH + oh) * d.OW + ow) * d.C + c] = acc / static_cast<float>(count);
                }
}

void avg_pool2d_backward_naive(float* dx, const float* dy, const Pool2dDims& d) {
    std::fill(dx, dx + d.N * d.H * d.W * d.C, 0.0f);
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t c = 0; c < d.C; ++c) {
                    const Span sh = window(oh, d.stride_h, d.pad_top, d.PH, d.H);
                    const Span sw = window(ow, d.stride_w, d.pad_left, d.PW, d.W);
                    const int64_t count = (sh.hi - sh.lo) * (sw.hi - sw.lo);
                    const float g = dy[((n * d.OH + oh) * d.OW + ow) * d.C + c] /
                                    static_cast<float>(count);
                    for (int64_t ih = sh.lo; ih < sh.hi; ++ih)
                        for (int64_t iw = sw.lo; iw < sw.hi; ++iw)
                            dx[((n * d.H + ih) * d.W + iw) * d.C + c] += g;
                }
}

}  // namespace cnnfast
