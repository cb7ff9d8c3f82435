// Convolution as im2col + sgemm (Chellapilla et al., 2006): each output pixel's receptive field is
// copied into one row of a column matrix, making the convolution one GEMM with the (KH*KW*C/g, K)
// kernel; backward-data scatters the column gradients back into dx (col2im). Every CPU has this
// path: grouped convolutions and plain GEMMs take it under any algorithm (conv2d.cpp chooses).
#include "conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "dense.h"
#include "gemm.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

namespace {

// Column buffers are bounded to about this many bytes per call: big enough that each GEMM has
// thousands of rows, small enough to stay in the last-level cache between im2col and the GEMM.
constexpr int64_t kColumnBytes = 8 << 20;
// Per-thread column blocks are bounded to about this many bytes, to stay in a core's L2 cache
// next to sgemm's packed panels.
constexpr int64_t kThreadColumnBytes = 1 << 20;

// Row length of the column matrix: one output pixel's receptive field, ordered
// (group, kh, kw, c within group) so that each group's columns are one contiguous block.
int64_t column_width(const Conv2dDims& d) { return d.KH * d.KW * d.C; }

// The kernel columns kw with iw0 + kw * dilation inside [0, W): [taps_from, taps_to).
int64_t taps_from(int64_t iw0, int64_t dilation) {
    return iw0 >= 0 ? 0 : (-iw0 + dilation - 1) / dilation;
}
int64_t taps_to(int64_t iw0, int64_t dilation, int64_t KW, int64_t W) {
    return W <= iw0 ? 0 : std::min<int64_t>(KW, (W - iw0 + dilation - 1) / dilation);
}

// Output rows (n, oh), each of OW pixels, per column chunk (at least one).
int64_t rows_per_chunk(const Conv2dDims& d) {
    int64_t row_floats = d.OW * column_width(d);
    return std::max<int64_t>(1, std::min<int64_t>(d.N * d.OH,
                                                  kColumnBytes / 4 / std::max<int64_t>(row_floats, 1)));
}

// cols (rows*OW, KH*KW*C) for output rows [r0, r0+rows) of x (N,H,W,C); zero outside the input.
void im2col(float* cols, const float* x, int64_t r0, int64_t rows, const Conv2dDims& d) {
    const int64_t CKK = column_width(d), Cg = d.C / d.groups, KKg = d.KH * d.KW * Cg;
#pragma omp parallel for num_threads(threads_for(rows)) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t n = (r0 + r) / d.OH, oh = (r0 + r) % d.OH;
        const float* xn = x + n * d.H * d.W * d.C;
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            float* dst = cols + (r * d.OW + ow) * CKK;
            const int64_t iw0 = ow * d.stride_w - d.pad_left;
            // Kernel columns kw in [kw_lo, kw_hi) fall inside the input.
            const int64_t kw_lo = taps_from(iw0, d.dilation_w);
            const int64_t kw_hi = taps_to(iw0, d.dilation_w, d.KW, d.W);
            for (int64_t kh = 0; kh < d.KH; ++kh) {
                const int64_t ih = oh * d.stride_h - d.pad_top + kh * d.dilation_h;
                const bool row_in = ih >= 0 && ih < d.H;
                if (d.groups == 1 && d.dilation_w == 1) {
                    // One group: the in-range part of the kernel row is one contiguous span of x.
                    float* out = dst + kh * d.KW * d.C;
                    if (!row_in || kw_hi <= kw_lo) {
                        std::memset(out, 0, sizeof(float) * d.KW * d.C);
                        continue;
                    }
                    std::memset(out, 0, sizeof(float) * kw_lo * d.C);
                    std::memcpy(out + kw_lo * d.C, xn + (ih * d.W + iw0 + kw_lo) * d.C,
                                sizeof(float) * (kw_hi - kw_lo) * d.C);
                    std::memset(out + kw_hi * d.C, 0, sizeof(float) * (d.KW - kw_hi) * d.C);
                    continue;
                }
                for (int64_t kw = 0; kw < d.KW; ++kw) {
                    const bool in = row_in && kw >= kw_lo && kw < kw_hi;
                    const float* src = in ? xn + (ih * d.W + iw0 + kw * d.dilation_w) * d.C
                                          : nullptr;
                    for (int64_t g = 0; g < d.groups; ++g) {
                        float* out = dst + g * KKg + (kh * d.KW + kw) * Cg;
                        if (in)
                            std::memcpy(out, src + g * Cg, sizeof(float) * Cg);
                        else
                            std::memset(out, 0, sizeof(float) * Cg);
                    }
                }
            }
        }
    }
}

// dx (N,H,W,C) += the column gradients dcols (rows*OW, KH*KW*C) of output rows [r0, r0+rows).
// Gathers per input row (n, ih) so that threads never write the same element.
void col2im_add(float* dx, const float* dcols, int64_t r0, int64_t rows, const Conv2dDims& d) {
    const int64_t CKK = column_width(d), Cg = d.C / d.groups, KKg = d.KH * d.KW * Cg;
    const int64_t n_first = r0 / d.OH, n_last = (r0 + rows - 1) / d.OH;
    const int64_t work = (n_last - n_first + 1) * d.H;
#pragma omp parallel for num_threads(threads_for(work)) schedule(static)
    for (int64_t t = 0; t < work; ++t) {
        const int64_t n = n_first + t / d.H, ih = t % d.H;
        float* dx_row = dx + (n * d.H + ih) * d.W * d.C;
        for (int64_t kh = 0; kh < d.KH; ++kh) {
            // = oh * stride_h for the output row using ih
            const int64_t s = ih + d.pad_top - kh * d.dilation_h;
            if (s < 0) break;
            if (s % d.stride_h) continue;
            const int64_t oh = s / d.stride_h;
            if (oh >= d.OH) continue;
            const int64_t r = n * d.OH + oh - r0;
            if (r < 0 || r >= rows) continue;
            for (int64_t ow = 0; ow < d.OW; ++ow) {
                const float* src_px = dcols + (r * d.OW + ow) * CKK;
                const int64_t iw0 = ow * d.stride_w - d.pad_left;
                const int64_t kw_lo = taps_from(iw0, d.dilation_w);
                const int64_t kw_hi = taps_to(iw0, d.dilation_w, d.KW, d.W);
                for (int64_t kw = kw_lo; kw < kw_hi; ++kw) {
                    float* dst = dx_row + (iw0 + kw * d.dilation_w) * d.C;
                    for (int64_t g = 0; g < d.groups; ++g) {
                        const float* src = src_px + g * KKg + (kh * d.KW + kw) * Cg;
                        float* out = dst + g * Cg;
                        for (int64_t c = 0; c < Cg; ++c) out[c] += src[c];
                    }
                }
            }
        }
    }
}

// Two ways to spread a convolution over T threads:
//  - per-thread blocks (preferred): each thread takes blocks of output rows small enough that
//    their columns stay in its L2 cache, runs im2col and a single-threaded sgemm on them, and
//    writes outputs no other thread touches (dw goes to per-thread partials summed at the end;
//    backward-data hands out whole images so col2im never races);
//  - shared chunks (when there are too few blocks or images to balance T threads): one
//    bounded chunk at a time, im2col/col2im threaded over rows, sgemm threaded internally.
int64_t thread_block_rows(const Conv2dDims& d) {
    const int64_t rows = kThreadColumnBytes / 4 / std::max<int64_t>(d.OW * column_width(d), 1);
    return std::max<int64_t>(1, std::min(rows, d.N * d.OH));
}

// Threads for per-thread blocks over `units` independent units, or 0 to use shared chunks.
int per_thread_split(int64_t units) {
    const int T = threads_for(units);
    if (T <= 1) return get_num_threads() == 1 || units == 1 ? 1 : 0;
    return units >= 4 * static_cast<int64_t>(T) ? T : 0;
}

int64_t dw_size(const Conv2dDims& d) { return d.KH * d.KW * (d.C / d.groups) * d.K; }

// Per-thread blocks only pay when each block's GEMM has enough rows: below this, every block
// re-streams the whole weight matrix (VGG's 4x4 and 2x2 maps: 9 MB of weights per 56 rows), and
// one shared, internally threaded GEMM over the batch is several times faster.
constexpr int64_t kMinBlockGemmRows = 256;

}  // namespace

// Convolutions whose column matrix is the input itself, read in place with row stride KH*KW*C:
// 1x1 stride-1 unpadded convolutions (any groups) and, with one group, kernels covering the
// whole unpadded input (one output pixel).
bool conv2d_input_is_columns(const Conv2dDims& d) {
    bool pointwise = d.KH == 1 && d.KW == 1 && d.stride_h == 1 && d.stride_w == 1 &&
                     d.pad_top == 0 && d.pad_left == 0 && d.OH == d.H && d.OW == d.W;
    bool full = d.groups == 1 && d.KH == d.H && d.KW == d.W && d.OH == 1 && d.OW == 1 &&
                d.pad_top == 0 && d.pad_left == 0 && !conv2d_dilated(d);
    return pointwise || full;
}

int64_t conv2d_workspace_size(const Conv2dDims& d) {
    if (conv2d_input_is_columns(d) || d.N == 0) return 0;
    const int64_t block = thread_block_rows(d) * d.OW * column_width(d);
    const int T = get_num_threads();
    // The largest of the strategies' needs: shared chunk, per-thread blocks (+ dw partials).
    return std::max(rows_per_chunk(d) * d.OW * column_width(d), T * (block + dw_size(d)));
}

// x (N,H,W,C); w (KH,KW,C/g,K); bias (K,) or null; y (N,OH,OW,K) overwritten.
// Per group g: y[:, g-block] = cols[:, g-block] @ w[:, g-block] (strided sub-GEMMs, no copies).
// Bias and ReLU are fused into the GEMM epilogue.
void conv2d_forward_im2col(float* y, const float* x, const float* w, const float* bias,
                           const Conv2dDims& d, bool relu) {
    const int64_t G = d.groups, Kg = d.K / G, CKK = column_width(d), KKg = CKK / G;
    if (d.N == 0) return;
    if (conv2d_input_is_columns(d)) {
        const int64_t M = d.N * d.OH * d.OW;
        for (int64_t g = 0; g < G; ++g)
            sgemm_bias_relu(false, false, M, Kg, KKg, 1.0f, x + g * KKg, CKK, w + g * Kg, d.K,
                            0.0f, y + g * Kg, d.K, bias ? bias + g * Kg : nullptr, relu);
        return;
    }
    // Columns of output rows [r0, r0+rows) -> y rows.
    auto rows_to_y = [&](float* cols, int64_t r0, int64_t rows) {
        const int64_t M = rows * d.OW;
        float* y_rows = y + r0 * d.OW * d.K;
        im2col(cols, x, r0, rows, d);
        for (int64_t g = 0; g < G; ++g)
            sgemm_bias_relu(false, false, M, Kg, KKg, 1.0f, cols + g * KKg, CKK, w + g * Kg, d.K,
                            0.0f, y_rows + g * Kg, d.K, bias ? bias + g * Kg : nullptr, relu);
    };
    const int64_t R = d.N * d.OH, rb = thread_block_rows(d), blocks = (R + rb - 1) / rb;
    if (const int T = rb * d.OW >= kMinBlockGemmRows ? per_thread_split(blocks) : 0) {
        const int64_t block_floats = rb * d.OW * CKK;
        float* scratch = workspace(Scratch::conv_columns, T * block_floats);
#pragma omp parallel num_threads(T)
        {
            float* cols = scratch + omp_get_thread_num() * block_floats;
#pragma omp for schedule(dynamic, 1)
            for (int64_t b = 0; b < blocks; ++b)
                rows_to_y(cols, b * rb, std::min(rb, R - b * rb));
        }
        return;
    }
    const int64_t chunk = rows_per_chunk(d);
    float* cols = workspace(Scratch::conv_columns, chunk * d.OW * CKK);
    for (int64_t r0 = 0; r0 < R; r0 += chunk) rows_to_y(cols, r0, std::min(chunk, R - r0));
}

// dy (N,OH,OW,K); w (KH,KW,C/g,K); dx (N,H,W,C) overwritten.
// Per group: dcols[:, g-block] = dy[:, g-block] @ w[:, g-block]^T, then col2im scatter-add.
void conv2d_backward_data_im2col(float* dx, const float* dy, const float* w,
                                 const Conv2dDims& d) {
    const int64_t G = d.groups, Kg = d.K / G, CKK = column_width(d), KKg = CKK / G;
    if (d.N == 0) return;
    if (conv2d_input_is_columns(d)) {
        const int64_t M = d.N * d.OH * d.OW;
        for (int64_t g = 0; g < G; ++g)
            sgemm(false, true, M, KKg, Kg, 1.0f, dy + g * Kg, d.K, w + g * Kg, d.K, 0.0f,
                  dx + g * KKg, CKK);
        return;
    }
    // dx += contributions of output rows [r0, r0+rows).
    auto rows_to_dx = [&](float* dcols, int64_t r0, int64_t rows) {
        const int64_t M = rows * d.OW;
        const float* dy_rows = dy + r0 * d.OW * d.K;
        for (int64_t g = 0; g < G; ++g)
            sgemm(false, true, M, KKg, Kg, 1.0f, dy_rows + g * Kg, d.K, w + g * Kg, d.K, 0.0f,
                  dcols + g * KKg, CKK);
        col2im_add(dx, dcols, r0, rows, d);
    };
    const int64_t image_floats = d.H * d.W * d.C;
    const int64_t rb = std::min(thread_block_rows(d), d.OH);
    if (const int T = d.OH * d.OW >= kMinBlockGemmRows / 4 ? per_thread_split(d.N) : 0) {
        // Whole images per thread: an image's dx is touched by its own thread only.
        const int64_t block_floats = rb * d.OW * CKK;
        float* scratch = workspace(Scratch::conv_columns, T * block_floats);
#pragma omp parallel num_threads(T)
        {
            float* dcols = scratch + omp_get_thread_num() * block_floats;
#pragma omp for schedule(dynamic, 1)
            for (int64_t n = 0; n < d.N; ++n) {
                std::memset(dx + n * image_floats, 0, sizeof(float) * image_floats);
                for (int64_t oh = 0; oh < d.OH; oh += rb)
                    rows_to_dx(dcols, n * d.OH + oh, std::min(rb, d.OH - oh));
            }
        }
        return;
    }
    // Every input element either receives contributions below or lies where no window reaches.
    const int64_t image_rows = d.N * d.H, row_floats = d.W * d.C;
#pragma omp parallel for num_threads(threads_for(image_rows * row_floats / 4096 + 1)) schedule(static)
    for (int64_t i = 0; i < image_rows; ++i)
        std::memset(dx + i * row_floats, 0, sizeof(float) * row_floats);
    const int64_t R = d.N * d.OH, chunk = rows_per_chunk(d);
    float* dcols = workspace(Scratch::conv_columns, chunk * d.OW * CKK);
    for (int64_t r0 = 0; r0 < R; r0 += chunk) rows_to_dx(dcols, r0, std::min(chunk, R - r0));
}

// x (N,H,W,C); dy (N,OH,OW,K); dw (KH,KW,C/g,K), db (K,) or null: overwritten.
// Per group: dw[:, g-block] = cols[:, g-block]^T @ dy[:, g-block], accumulated over row blocks.
void conv2d_backward_weights_im2col(float* dw, float* db, const float* x, const float* dy,
                                    const Conv2dDims& d) {
    const int64_t G = d.groups, Kg = d.K / G, CKK = column_width(d), KKg = CKK / G;
    const int64_t M_all = d.N * d.OH * d.OW, DW = dw_size(d);
    if (db) dense_bias_grad(db, dy, M_all, d.K);
    if (d.N == 0) {
        std::fill(dw, dw + DW, 0.0f);
        return;
    }
    if (conv2d_input_is_columns(d)) {
        for (int64_t g = 0; g < G; ++g)
            sgemm(true, false, KKg, Kg, M_all, 1.0f, x + g * KKg, CKK, dy + g * Kg, d.K, 0.0f,
                  dw + g * Kg, d.K);
        return;
    }
    // out (KH,KW,C/g,K) = beta * out + the weight gradient of output rows [r0, r0+rows).
    auto rows_to_dw = [&](float* out, float beta, float* cols, int64_t r0, int64_t rows) {
        const int64_t M = rows * d.OW;
        const float* dy_rows = dy + r0 * d.OW * d.K;
        im2col(cols, x, r0, rows, d);
        for (int64_t g = 0; g < G; ++g)
            sgemm(true, false, KKg, Kg, M, 1.0f, cols + g * KKg, CKK, dy_rows + g * Kg, d.K,
                  beta, out + g * Kg, d.K);
    };
    const int64_t R = d.N * d.OH, rb = thread_block_rows(d), blocks = (R + rb - 1) / rb;
    if (const int T = rb * d.OW >= kMinBlockGemmRows ? per_thread_split(blocks) : 0) {
        // Each thread sums its blocks into its own partial dw; the partials are added at the end.
        const int64_t block_floats = rb * d.OW * CKK;
        float* scratch = workspace(Scratch::conv_columns, T * (block_floats + DW));
        float* partials = scratch + T * block_floats;
#pragma omp parallel num_threads(T)
        {
            const int t = omp_get_thread_num();
            float* cols = scratch + t * block_floats;
            float* part = partials + t * DW;
            std::fill(part, part + DW, 0.0f);
            // A static split fixes which blocks each partial sums, so dw is bit-identical from
            // run to run at a given thread count (a dynamic schedule would reorder the sums).
#pragma omp for schedule(static)
            for (int64_t b = 0; b < blocks; ++b)
                rows_to_dw(part, 1.0f, cols, b * rb, std::min(rb, R - b * rb));
            // The implicit barrier above makes every partial complete.
#pragma omp for schedule(static)
            for (int64_t i = 0; i < DW; ++i) {
                float s = 0.0f;
                for (int u = 0; u < T; ++u) s += partials[u * DW + i];
                dw[i] = s;
            }
        }
        return;
    }
    const int64_t chunk = rows_per_chunk(d);
    float* cols = workspace(Scratch::conv_columns, chunk * d.OW * CKK);
    for (int64_t r0 = 0; r0 < R; r0 += chunk)
        rows_to_dw(dw, r0 == 0 ? 0.0f : 1.0f, cols, r0, std::min(chunk, R - r0));
}


}  // namespace cnnfast
