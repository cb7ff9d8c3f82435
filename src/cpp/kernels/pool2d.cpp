#include "pool2d.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "parallel.h"
#include "cpu_features.h"
#include "pool2d_simd.h"

// The baseline-ISA copy of the pooling loops.
#define CNNFAST_POOL_NS pool_base
#define CNNFAST_POOL_NAME "baseline"
#define CNNFAST_POOL_VBYTES 16
#include "pool2d_loops.h"
#undef CNNFAST_POOL_NS
#undef CNNFAST_POOL_NAME
#undef CNNFAST_POOL_VBYTES

namespace cnnfast {

namespace detail {

static SimdTables<PoolSimd>& pool_tables() {
    static SimdTables<PoolSimd> t(&pool_base::kPoolTable, pool_simd_avx2(), pool_simd_avx512());
    return t;
}

static const PoolSimd& pool_simd() { return *pool_tables().current(); }

}  // namespace detail

// The narrow-channel 2x2 average pooling kernels when they apply: the table in use has them
// (AVX-512), C < 16, 2x2 windows at stride 2 without padding (rows/columns past an even size
// ignored).
static const detail::PoolNarrow* narrow_avg_for(const Pool2dDims& d) {
    const detail::PoolNarrow* k = detail::pool_simd().narrow_avg;
    const bool fits = d.C < 16 && d.PH == 2 && d.PW == 2 && d.stride_h == 2 && d.stride_w == 2 &&
                      d.pad_top == 0 && d.pad_left == 0 && 2 * d.OH <= d.H && 2 * d.OW <= d.W;
    return fits ? k : nullptr;
}

const char* pool2d_simd_path() { return detail::pool_simd().name; }

bool set_pool2d_simd_path(const char* name) { return detail::pool_tables().select(name); }

namespace {

// Input index range [lo, hi) of window `o` along one axis, clipped to the input.
struct Span {
    int64_t lo, hi;
};
inline Span window(int64_t o, int64_t stride, int64_t pad, int64_t size, int64_t n) {
    const int64_t start = o * stride - pad;
    return {std::max<int64_t>(start, 0), std::min<int64_t>(start + size, n)};
}

// A thread is worth its fork/join (a few us) only with ~256 KB of memory traffic to itself.
constexpr int64_t kFloatsPerThread = int64_t{1} << 16;

// Threads for a loop of `units` items touching `floats` floats in all.
int pool_threads(int64_t units, int64_t floats) {
    return threads_for(std::min<int64_t>(units, floats / kFloatsPerThread));
}

// Windows of neighbouring outputs share no input (stride >= pool on both axes), so backward can
// write each dx element once from the window owning it. Below 16 channels the per-window loop
// overhead outweighs that and the plain scatter/gather is faster.
bool windows_disjoint(const Pool2dDims& d) {
    return d.stride_h >= d.PH && d.stride_w >= d.PW && d.C >= 16;
}

// Plain scatter for overlapping windows (or argmax not from forward): whole samples per unit.
int64_t max_backward_scatter(float* dx, const float* dy, const int32_t* argmax,
                             const Pool2dDims& d, int64_t n0, int64_t n1) {
    const int64_t sample = d.H * d.W * d.C, per_sample = d.OH * d.OW * d.C;
    int64_t bad = 0;
    for (int64_t n = n0; n < n1; ++n) {
        float* dxn = dx + n * sample;
        std::memset(dxn, 0, sizeof(float) * sample);
        const float* g = dy + n * per_sample;
        const int32_t* idx = argmax + n * per_sample;
        for (int64_t i = 0; i < per_sample; ++i) {
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

}  // namespace

// x (N,H,W,C); y, argmax (N,OH,OW,C).
void max_pool2d_forward(float* y, int32_t* argmax, const float* x, const Pool2dDims& d) {
    const int64_t rows = d.N * d.OH;
    const int64_t floats = d.N * d.H * d.W * d.C + rows * d.OW * d.C * (argmax ? 2 : 1);
    const auto fn = detail::pool_simd().max_forward_rows;
    parallel_blocks(rows, pool_threads(rows, floats), [&](int64_t r0, int64_t r1) {
        fn(y, argmax, x, d, r0, r1);
        return int64_t{0};
    });
}

// dy, argmax (N,OH,OW,C); dx (N,H,W,C).
int64_t max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax,
                            const Pool2dDims& d) {
    const int64_t floats = d.N * d.H * d.W * d.C + 2 * d.N * d.OH * d.OW * d.C;
    if (windows_disjoint(d)) {
        // Each dx element is written once, straight from the window that owns it: no separate
        // zeroing pass and no read-modify-write.
        const int64_t rows = d.N * d.OH;
        const auto fn = detail::pool_simd().max_backward_rows_disjoint;
        const int64_t missing =
            parallel_blocks(rows, pool_threads(rows, floats),
                       [&](int64_t r0, int64_t r1) { return fn(dx, dy, argmax, d, r0, r1); });
        if (missing == 0) return 0;
        // Some argmax entry points outside its window: honour the general contract below.
    }
    return parallel_blocks(d.N, pool_threads(d.N, floats), [&](int64_t n0, int64_t n1) {
        return max_backward_scatter(dx, dy, argmax, d, n0, n1);
    });
}

// x (N,H,W,C); y (N,OH,OW,C).
void avg_pool2d_forward(float* y, const float* x, const Pool2dDims& d) {
    const int64_t rows = d.N * d.OH;
    const int64_t floats = d.N * d.H * d.W * d.C + rows * d.OW * d.C;
    const detail::PoolNarrow* narrow = narrow_avg_for(d);
    const auto fn = narrow ? narrow->avg_forward_rows : detail::pool_simd().avg_forward_rows;
    parallel_blocks(rows, pool_threads(rows, floats), [&](int64_t r0, int64_t r1) {
        fn(y, x, d, r0, r1);
        return int64_t{0};
    });
}

// dy (N,OH,OW,C); dx (N,H,W,C).
void avg_pool2d_backward(float* dx, const float* dy, const Pool2dDims& d) {
    const int64_t C = d.C;
    const int64_t floats = d.N * d.H * d.W * C + d.N * d.OH * d.OW * C;
    const detail::PoolNarrow* narrow = narrow_avg_for(d);
    if (narrow || windows_disjoint(d)) {
        const int64_t rows = d.N * d.OH;
        const auto fn =
            narrow ? narrow->avg_backward_rows : detail::pool_simd().avg_backward_rows_disjoint;
        parallel_blocks(rows, pool_threads(rows, floats), [&](int64_t r0, int64_t r1) {
            fn(dx, dy, d, r0, r1);
            return int64_t{0};
        });
        return;
    }
    // Overlapping windows: gather per input row (n, ih), so no two threads write one element.
    const int64_t rows = d.N * d.H;
    parallel_blocks(rows, pool_threads(rows, floats), [&](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
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
                    const float scale =
                        1.0f / static_cast<float>((sh.hi - sh.lo) * (sw.hi - sw.lo));
                    const float* g = g_row + ow * C;
                    for (int64_t iw = sw.lo; iw < sw.hi; ++iw) {
                        float* out = dx_row + iw * C;
                        for (int64_t c = 0; c < C; ++c) out[c] += g[c] * scale;
                    }
                }
            }
        }
        return int64_t{0};
    });
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
