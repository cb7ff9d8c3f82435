#include "conv2d.h"
#include "cpu_features.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include <omp.h>

#include "activation.h"
#include "conv2d_direct.h"
#include "conv2d_winograd.h"
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

// Convolutions whose column matrix is the input itself, read in place with row stride KH*KW*C:
// 1x1 stride-1 unpadded convolutions (any groups) and, with one group, kernels covering the
// whole unpadded input (one output pixel).
bool input_is_columns(const Conv2dDims& d) {
    bool pointwise = d.KH == 1 && d.KW == 1 && d.stride_h == 1 && d.stride_w == 1 &&
                     d.pad_top == 0 && d.pad_left == 0 && d.OH == d.H && d.OW == d.W;
    bool full = d.groups == 1 && d.KH == d.H && d.KW == d.W && d.OH == 1 && d.OW == 1 &&
                d.pad_top == 0 && d.pad_left == 0;
    return pointwise || full;
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
            const int64_t kw_lo = std::max<int64_t>(0, -iw0);
            const int64_t kw_hi = std::min<int64_t>(d.KW, d.W - iw0);
            for (int64_t kh = 0; kh < d.KH; ++kh) {
                const int64_t ih = oh * d.stride_h - d.pad_top + kh;
                const bool row_in = ih >= 0 && ih < d.H;
                if (d.groups == 1) {
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
                    const float* src = in ? xn + (ih * d.W + iw0 + kw) * d.C : nullptr;
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
            const int64_t s = ih + d.pad_top - kh;  // = oh * stride_h for the output row using ih
            if (s < 0) break;
            if (s % d.stride_h) continue;
            const int64_t oh = s / d.stride_h;
            if (oh >= d.OH) continue;
            const int64_t r = n * d.OH + oh - r0;
            if (r < 0 || r >= rows) continue;
            for (int64_t ow = 0; ow < d.OW; ++ow) {
                const float* src_px = dcols + (r * d.OW + ow) * CKK;
                const int64_t iw0 = ow * d.stride_w - d.pad_left;
                const int64_t kw_lo = std::max<int64_t>(0, -iw0);
                const int64_t kw_hi = std::min<int64_t>(d.KW, d.W - iw0);
                for (int64_t kw = kw_lo; kw < kw_hi; ++kw) {
                    float* dst = dx_row + (iw0 + kw) * d.C;
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

int64_t conv2d_workspace_size(const Conv2dDims& d) {
    if (input_is_columns(d) || d.N == 0) return 0;
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
    if (input_is_columns(d)) {
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
    if (input_is_columns(d)) {
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
    if (input_is_columns(d)) {
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

const int64_t* conv_field_offsets(const Conv2dDims& d, int64_t rs) {
    const int64_t seg = d.KW * d.C, Q = d.KH * seg;
    int64_t* off = workspace<int64_t>(Scratch::conv_offsets, Q);
    for (int64_t q = 0; q < Q; ++q) off[q] = q / seg * rs + q % seg;
    return off;
}

const float* aligned_weight_rows(const float* w, int64_t Q, int64_t K, int64_t* ldw, Scratch slot) {
    *ldw = (K + 15) / 16 * 16;
    if (reinterpret_cast<uintptr_t>(w) % 64 == 0 && K == *ldw) return w;
    float* copy = workspace(slot, Q * *ldw);
    for (int64_t q = 0; q < Q; ++q) {
        std::memcpy(copy + q * *ldw, w + q * K, sizeof(float) * K);
        std::fill(copy + q * *ldw + K, copy + (q + 1) * *ldw, 0.0f);
    }
    return copy;
}

Conv2dDims backward_data_as_forward_dims(const Conv2dDims& d) {
    Conv2dDims f{};
    f.N = d.N, f.H = d.OH, f.W = d.OW, f.C = d.K;
    f.KH = d.KH, f.KW = d.KW, f.K = d.C;
    f.OH = d.H, f.OW = d.W;
    f.stride_h = f.stride_w = 1;
    f.pad_top = d.KH - 1 - d.pad_top, f.pad_left = d.KW - 1 - d.pad_left;
    f.groups = 1;
    return f;
}

const ConvDirectUkernels* conv2d_direct_ukernels() {
    static const ConvDirectUkernels* uk = []() -> const ConvDirectUkernels* {
        static ConvDirectUkernels k{};
        if (simd_level() != SimdLevel::avx512) return nullptr;
        return conv2d_direct_ukernels_avx512(&k) ? &k : nullptr;
    }();
    return uk;
}

// ---- direct (implicit-GEMM) path ------------------------------------------------------------
// No column matrix: the micro-kernels (conv2d_direct.h) read the input in place (or a zero-padded
// copy of one band of it, which stays in L2) and scatter backward-data products straight into dx.
// Each thread takes whole units - an image or a band of output rows - so no output element is
// written by two threads; dw goes to per-thread partials added at the end. Work below
// kMacsPerThread (parallel.h) runs on the calling thread without entering an OpenMP region.

namespace {

std::atomic<int> g_conv_algorithm{0};  // 0 auto, 1 im2col, 2 direct, 3 winograd

int64_t winograd_tiles(const Conv2dDims& d) { return d.N * ((d.OH + 1) / 2) * ((d.OW + 1) / 2); }

// Maps of at most 16 outputs that Winograd still computes faster than im2col (direct_for): even
// sizes, whose 2x2 tiles hold no cropped outputs, of 32 or more input channels (measured from 64
// to 512), over at least 64 tiles (VGG16-CIFAR's 4x4 and 2x2 blocks at batch 64). At 2 threads,
// 512 -> 512 channels, forward / backward-data / backward-weights took 0.63x / 0.94x / 0.67x
// im2col's time on 4x4 maps at batch 16 (64 tiles) and 0.63x / 0.94x / 0.65x on 2x2 maps at
// batch 64, but 1.25x / 1.85x / 1.13x on 2x2 maps at batch 16, where the per-call kernel
// transform (16 C K floats) outweighs the saved multiplies (python -m bench.bench_conv_algorithms;
// at 1 thread backward-data took 1.3x im2col's time on the first two).
bool winograd_on_small_map(const Conv2dDims& d) {
    return d.OH % 2 == 0 && d.OW % 2 == 0 && d.C >= 32 && winograd_tiles(d) >= 64;
}

// Whether Winograd F(2x2, 3x3) (conv2d_winograd.h) computes this pass of a convolution: always
// where it can when forced ("winograd"); under "auto" only where it measured faster than the
// direct kernels (1 and 2 threads): both channel counts >= 16 (fewer leave the GEMMs' vectors
// mostly idle), maps of more than 16 outputs (smaller ones go to im2col, see direct_for, unless
// winograd_on_small_map) and at least 32 output tiles in the batch, over which the per-call
// kernel transform (16 C K floats) is spread: a single Keras-CNN image (13x13 64->64, 36 tiles)
// ran 0.8x the direct time forward, while 16 tiles of 16->16 or 32->64 channels ran 1.15-1.5x
// (python -m bench.bench_conv_algorithms). Backward-data's GEMMs produce C channels: at C = 16
// it was level with the direct scatter (1.06x), from 32 faster (0.7-0.8x for 32->64 at b128).
enum class ConvPass { forward, backward_data, backward_weights };
bool use_winograd(const Conv2dDims& d, ConvPass pass) {
    const int algorithm = g_conv_algorithm.load(std::memory_order_relaxed);
    if (algorithm == 3) return winograd_computes(d);
    return algorithm == 0 && winograd_computes(d) && d.C >= 16 && d.K >= 16 &&
           (d.OH * d.OW > 16 || winograd_on_small_map(d)) && winograd_tiles(d) >= 32 &&
           (pass != ConvPass::backward_data || d.C >= 32);
}

// The direct kernels (which Winograd's GEMMs also run on) for this pass of a convolution, or
// null for im2col + GEMM: grouped convolutions and those whose column matrix is the input
// itself (plain GEMMs) take the GEMM path.
const ConvDirectUkernels* direct_for(const Conv2dDims& d, ConvPass pass) {
    const int algorithm = g_conv_algorithm.load(std::memory_order_relaxed);
    if (algorithm == 1) return nullptr;
    if (d.groups != 1 || d.N == 0 || input_is_columns(d)) return nullptr;
    // Maps of at most 4x4 outputs (VGG's last blocks) are mostly padding for the direct kernels'
    // tiles, while their im2col GEMM over the batch is large and efficient (measured 3-4x faster
    // on VGG16-CIFAR block5), unless Winograd computes this pass. Forcing "direct" still takes
    // the direct path.
    if (algorithm == 0 && d.OH * d.OW <= 16 && d.N * d.OH * d.OW >= 64 && !use_winograd(d, pass))
        return nullptr;
    return conv2d_direct_ukernels();
}

// Where receptive fields are read from (or, for backward-data, accumulated into): the image
// itself (row stride W*C) when every field lies inside it, else a zero-padded copy of a band
// of it, Wp = (OW-1)*stride_w + KW columns wide, whose origin is input (oh0*sh - pt, -pl).
struct DirectGeometry {
    bool padded;
    int64_t Wp, rs;
};

DirectGeometry direct_geometry(const Conv2dDims& d) {
    const bool padded = d.pad_top > 0 || d.pad_left > 0 ||
                        (d.OH - 1) * d.stride_h + d.KH > d.H ||
                        (d.OW - 1) * d.stride_w + d.KW > d.W;
    const int64_t Wp = padded ? (d.OW - 1) * d.stride_w + d.KW : d.W;
    return {padded, Wp, Wp * d.C};
}

// Input rows the output rows of a band of `rows` rows read.
int64_t band_input_rows(const Conv2dDims& d, int64_t rows) { return (rows - 1) * d.stride_h + d.KH; }

// Units of work: N images x `bands` bands of `band_rows` output rows, on T threads.
struct DirectPlan {
    int T;
    int64_t band_rows, bands;
};

DirectPlan direct_plan(const Conv2dDims& d, bool whole_images) {
    const int64_t macs = d.N * d.OH * d.OW * d.K * d.KH * d.KW * d.C;
    const int Tmax = threads_for(macs / kMacsPerThread);
    int64_t bands = 1;
    // Too few images to balance the threads: split images into bands of output rows.
    if (!whole_images && Tmax > 1 && d.N < 4 * Tmax)
        bands = std::min<int64_t>(d.OH, (4 * Tmax + d.N - 1) / d.N);
    const int64_t band_rows = (d.OH + bands - 1) / bands;
    bands = (d.OH + band_rows - 1) / band_rows;
    const int T = static_cast<int>(std::min<int64_t>(Tmax, d.N * bands));
    return {T, band_rows, bands};
}

// f(thread, unit) for every unit, on T threads (dynamic schedule) or inline when T == 1.
template <class F>
void run_units(int T, int64_t units, const F& f) {
    if (T <= 1) {
        for (int64_t u = 0; u < units; ++u) f(0, u);
        return;
    }
#pragma omp parallel num_threads(T)
    {
        const int t = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; ++u) f(t, u);
    }
}

// The pixels of output rows [oh0, oh0+rows) of image n of x, reading x in place or from a
// zero-padded copy made in this thread's band scratch.
ConvPixels band_pixels(const Conv2dDims& d, const DirectGeometry& g, const float* x, int64_t n,
                       int64_t oh0, int64_t rows) {
    const float* img = x + n * d.H * d.W * d.C;
    if (!g.padded)
        return {const_cast<float*>(img + oh0 * d.stride_h * g.rs), d.stride_h * g.rs,
                d.stride_w * d.C, d.OW};
    const int64_t in_rows = band_input_rows(d, rows);
    float* band = workspace(Scratch::conv_band, in_rows * g.rs);
    const int64_t cols = std::min(d.W, g.Wp - d.pad_left);  // input columns inside the band
    for (int64_t r = 0; r < in_rows; ++r) {
        const int64_t ih = oh0 * d.stride_h - d.pad_top + r;
        float* row = band + r * g.rs;
        if (ih < 0 || ih >= d.H) {
            std::memset(row, 0, sizeof(float) * g.rs);
            continue;
        }
        std::memset(row, 0, sizeof(float) * d.pad_left * d.C);
        std::memcpy(row + d.pad_left * d.C, img + ih * d.W * d.C, sizeof(float) * cols * d.C);
        std::memset(row + (d.pad_left + cols) * d.C, 0,
                    sizeof(float) * (g.Wp - d.pad_left - cols) * d.C);
    }
    return {band, d.stride_h * g.rs, d.stride_w * d.C, d.OW};
}

// Convolutions the single-input-channel kernels (vectorised over output columns) take.
bool single_channel(const ConvDirectUkernels& uk, const Conv2dDims& d) {
    return d.C == 1 && d.K <= kConvC1MaxK && d.stride_h == 1 && d.stride_w == 1 &&
           uk.forward_c1 != nullptr;
}

// An activation other than ReLU (which the micro-kernels apply) run on each band of output right
// after the band is computed, while it is still in cache, instead of in a pass of its own.
struct BandActivation {
    Activation kind = Activation::linear;
    float alpha = 0.0f;
    void operator()(float* y, int64_t n) const {
        if (kind != Activation::linear) activation_forward(y, y, n, kind, alpha);
    }
};

// x (N,H,W,1); w (KH,KW,1,K); bias (K,) or null; y (N,OH,OW,K) overwritten.
void conv2d_forward_c1(const ConvDirectUkernels& uk, float* y, const float* x, const float* w,
                       const float* bias, const Conv2dDims& d, bool relu,
                       const BandActivation& act = {}) {
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, false);
    run_units(plan.T, d.N * plan.bands, [&](int, int64_t u) {
        const int64_t n = u / plan.bands, oh0 = u % plan.bands * plan.band_rows;
        const int64_t rows = std::min(plan.band_rows, d.OH - oh0);
        const ConvPixels px = band_pixels(d, g, x, n, oh0, rows);
        float* yb = y + (n * d.OH + oh0) * d.OW * d.K;
        uk.forward_c1(yb, px, rows, d.KH, d.KW, g.rs, w, bias, relu, d.K);
        act(yb, rows * d.OW * d.K);
    });
}

// x (N,H,W,1); dy (N,OH,OW,K); dw (KH,KW,1,K), db (K,) or null: overwritten. Each thread's
// partial holds 16 lane partials per dw/db value (the micro-kernel's accumulators); they are
// summed lane by lane, then over threads in thread order.
void conv2d_backward_weights_c1(const ConvDirectUkernels& uk, float* dw, float* db,
                                const float* x, const float* dy, const Conv2dDims& d) {
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, false);
    const int64_t DW = d.KH * d.KW * d.K, items = DW + d.K, part_floats = items * 16;
    const int64_t OWp = (d.OW + 15) / 16 * 16;
    float* parts = workspace(Scratch::conv_lane_partials, std::max(plan.T, 1) * part_floats);
    reduce_over_threads(
        plan.T, d.N * plan.bands, parts, part_floats,
        [&](float* accv, int64_t u) {
            const int64_t n = u / plan.bands, oh0 = u % plan.bands * plan.band_rows;
            const int64_t rows = std::min(plan.band_rows, d.OH - oh0);
            const ConvPixels px = band_pixels(d, g, x, n, oh0, rows);
            float* dyt = workspace(Scratch::conv_columns, d.K * rows * OWp);
            uk.backward_weights_c1(accv, px, rows, d.KH, d.KW, g.rs,
                                   dy + (n * d.OH + oh0) * d.OW * d.K, dyt, d.K);
        },
        items,
        [&](int used, int64_t i) {
            write_summed_gradient(dw, db, DW, parts, part_floats, 16, used, i);
        });
}

// x (N,H,W,C); w (KH,KW,C,K); bias (K,) or null; y (N,OH,OW,K) overwritten.
void conv2d_forward_direct(const ConvDirectUkernels& uk, float* y, const float* x, const float* w,
                           const float* bias, const Conv2dDims& d, bool relu,
                           const BandActivation& act = {}) {
    if (single_channel(uk, d)) return conv2d_forward_c1(uk, y, x, w, bias, d, relu, act);
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, false);
    int64_t ldw;
    const float* wp = aligned_weight_rows(w, d.KH * d.KW * d.C, d.K, &ldw, Scratch::conv_shared);
    run_units(plan.T, d.N * plan.bands, [&](int, int64_t u) {
        const int64_t n = u / plan.bands, oh0 = u % plan.bands * plan.band_rows;
        const int64_t rows = std::min(plan.band_rows, d.OH - oh0);
        const ConvPixels px = band_pixels(d, g, x, n, oh0, rows);
        float* yb = y + (n * d.OH + oh0) * d.OW * d.K;
        for (int64_t k0 = 0; k0 < d.K; k0 += 64)
            uk.forward(yb + k0, d.K, px, 0, rows * d.OW, d.KH, g.rs, d.KW * d.C, wp + k0, ldw,
                       bias ? bias + k0 : nullptr, relu, std::min<int64_t>(64, d.K - k0));
        act(yb, rows * d.OW * d.K);
    });
}

// x (N,H,W,C); dy (N,OH,OW,K); dw (KH,KW,C,K), db (K,) or null: overwritten.
void conv2d_backward_weights_direct(const ConvDirectUkernels& uk, float* dw, float* db,
                                    const float* x, const float* dy, const Conv2dDims& d) {
    if (single_channel(uk, d)) return conv2d_backward_weights_c1(uk, dw, db, x, dy, d);
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, false);
    const int64_t seg = d.KW * d.C, Q = d.KH * seg, DW = Q * d.K, part_floats = DW + d.K;
    const int64_t ldk = (d.K + 15) / 16 * 16;
    const int64_t* off = conv_field_offsets(d, g.rs);
    float* parts = workspace(Scratch::conv_shared, std::max(plan.T, 1) * part_floats);
    auto unit = [&](float* part, float* dbp, int64_t u) {
        const int64_t n = u / plan.bands, oh0 = u % plan.bands * plan.band_rows;
        const int64_t rows = std::min(plan.band_rows, d.OH - oh0), npix = rows * d.OW;
        const ConvPixels px = band_pixels(d, g, x, n, oh0, rows);
        const float* dyb = dy + (n * d.OH + oh0) * d.OW * d.K;
        // Blocks of whole output rows whose dy (about 16 KiB) stays in L1 while every dw tile
        // sweeps it.
        const int64_t block_rows = std::max<int64_t>(1, 4096 / std::min<int64_t>(64, d.K) / d.OW);
        for (int64_t r0 = 0; r0 < rows; r0 += block_rows) {
            ConvPixels pb = px;
            pb.base += r0 * px.row_step;
            const int64_t np = (std::min(rows, r0 + block_rows) - r0) * d.OW;
            // The block's dy, copied to 64-byte-aligned rows: every tile reloads it.
            float* dyp = workspace(Scratch::conv_columns, np * ldk);
            for (int64_t p = 0; p < np; ++p)
                std::memcpy(dyp + p * ldk, dyb + (r0 * d.OW + p) * d.K, sizeof(float) * d.K);
            for (int64_t k0 = 0; k0 < d.K; k0 += 64) {
                const int64_t nc = std::min<int64_t>(64, d.K - k0);
                for_each_dw_tile(d.KH, seg, conv_bwdw_max_rows(nc), [&](int64_t q0, int64_t R) {
                    uk.backward_weights(part + q0 * d.K + k0, d.K, pb, np, off + q0, R, dyp + k0,
                                        ldk, nc);
                });
            }
        }
        if (dbp) {
            // The band's dy is in cache: sum it here rather than in a second pass over dy.
            for (int64_t p = 0; p < npix; ++p) {
                const float* row = dyb + p * d.K;
                for (int64_t k = 0; k < d.K; ++k) dbp[k] += row[k];
            }
        }
    };
    // Static, for run-to-run reproducible sums (see conv2d_backward_weights_im2col).
    reduce_over_threads(
        plan.T, d.N * plan.bands, parts, part_floats,
        [&](float* part, int64_t u) { unit(part, db ? part + DW : nullptr, u); }, part_floats,
        [&](int used, int64_t i) {
            write_summed_gradient(dw, db, DW, parts, part_floats, 1, used, i);
        });
}

// Stride-1 backward-data as a forward convolution: dx = conv(dy zero-padded by KH-1-pad_top
// rows and KW-1-pad_left columns, wf) with wf[kh][kw][k][c] = w[KH-1-kh][KW-1-kw][c][k].
// A gather (each dx element written once, from registers) instead of the scatter-add of
// conv2d_backward_data_direct. Measured (Xeon AVX-512, 1 thread): 13% faster for VGG's
// 128->128 3x3 16x16, equal for 64->64 32x32 and 256->256 8x8, but 1.2x slower for 32->64 3x3
// 13x13 and 5x slower for LeNet's 6->16 5x5 (the forward kernel uses C/16 of its lanes and
// falls off a cliff on some widths), so it is taken only for wide inputs.
bool backward_data_as_forward(const Conv2dDims& d) {
    return d.stride_h == 1 && d.stride_w == 1 && d.pad_top < d.KH && d.pad_left < d.KW &&
           d.C >= 64 && d.C % 16 == 0;
}

// dy (N,OH,OW,K); w (KH,KW,C,K); dx (N,H,W,C) overwritten. Needs backward_data_as_forward(d).
void conv2d_backward_data_flipped(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                  const float* w, const Conv2dDims& d) {
    const int64_t KK = d.KH * d.KW;
    float* wf = workspace(Scratch::conv_weights, KK * d.K * d.C);
    for (int64_t t = 0; t < KK; ++t) {
        const float* src = w + (KK - 1 - t) * d.C * d.K;  // (C, K) block of tap KK-1-t
        float* dst = wf + t * d.K * d.C;                    // (K, C) block of tap t
        for (int64_t c = 0; c < d.C; ++c)
            for (int64_t k = 0; k < d.K; ++k) dst[k * d.C + c] = src[c * d.K + k];
    }
    conv2d_forward_direct(uk, dx, dy, wf, nullptr, backward_data_as_forward_dims(d), false);
}

// dy (N,OH,OW,K); w (KH,KW,C,K); dx (N,H,W,C) overwritten. Whole images per thread.
void conv2d_backward_data_direct(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                 const float* w, const Conv2dDims& d) {
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, true);
    const int64_t Q = d.KH * d.KW * d.C, image_floats = d.H * d.W * d.C;
    const int64_t* off = conv_field_offsets(d, g.rs);
    // wT (K, Q): the micro-kernel's operand, vectorised over q.
    const int64_t ldq = (Q + 15) / 16 * 16;  // 64-byte-aligned rows
    float* wt = workspace(Scratch::conv_shared, ldq * d.K);
    for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < d.K; ++k) wt[k * ldq + q] = w[q * d.K + k];
    const int64_t in_rows = band_input_rows(d, d.OH);
    run_units(plan.T, d.N, [&](int, int64_t n) {
        float* img = dx + n * image_floats;
        float* dst = g.padded ? workspace(Scratch::conv_band, in_rows * g.rs) : img;
        std::memset(dst, 0, sizeof(float) * (g.padded ? in_rows * g.rs : image_floats));
        const float* dyn = dy + n * d.OH * d.OW * d.K;
        // Chunks of q within one kernel row (a contiguous segment of the field) make every
        // vector one masked read-modify-write; a vector straddling two segments is added lane
        // by lane (LeNet C3, 6->16 5x5: 1.9x slower). Segments shorter than a vector are
        // chunked across rows instead, to keep the lanes busy.
        const int64_t seg = d.KW * d.C;
        const int64_t span = seg >= 16 ? seg : Q;
        // The fields of two pixels of a row less than `apart` columns apart overlap, and a
        // masked load cannot take its data from an overlapping masked store still in flight:
        // a tile of neighbouring pixels would wait on each read-modify-write of the one before
        // (measured 3x slower on LeNet C3). So the pixels go in `apart` groups of columns
        // cm, cm + apart, ..., whose fields in one kernel row are disjoint, each with its dy
        // rows gathered contiguous.
        const int64_t apart = std::min(d.OW, (d.KW + d.stride_w - 1) / d.stride_w);
        const int64_t group_cols = (d.OW + apart - 1) / apart;  // the widest group, cm = 0
        float* dyg = apart > 1 ? workspace(Scratch::conv_columns, d.OH * group_cols * d.K) : nullptr;
        for (int64_t cm = 0; cm < apart; ++cm) {
            const int64_t cols = (d.OW - cm + apart - 1) / apart, npix = d.OH * cols;
            ConvPixels px{dst + cm * d.stride_w * d.C, d.stride_h * g.rs, apart * d.stride_w * d.C,
                          cols};
            const float* dys = dyn;
            if (dyg) {  // this group's dy rows, consumed before the next group gathers its own
                for (int64_t r = 0; r < d.OH; ++r)
                    for (int64_t j = 0; j < cols; ++j)
                        std::memcpy(dyg + (r * cols + j) * d.K,
                                    dyn + (r * d.OW + cm + j * apart) * d.K, sizeof(float) * d.K);
                dys = dyg;
            }
            for (int64_t s0 = 0; s0 < Q; s0 += span)
                for (int64_t q0 = s0; q0 < s0 + span; q0 += 64)
                    uk.backward_data(px, 0, npix, off + q0, std::min<int64_t>(64, s0 + span - q0),
                                     dys, d.K, d.K, wt + q0, ldq);
        }
        if (!g.padded) return;
        // Back from the padded image; rows and columns no window reaches get zeros.
        const int64_t cols = std::min(d.W, g.Wp - d.pad_left);
        for (int64_t ih = 0; ih < d.H; ++ih) {
            float* row = img + ih * d.W * d.C;
            const int64_t r = ih + d.pad_top;
            if (r >= in_rows) {
                std::memset(row, 0, sizeof(float) * d.W * d.C);
                continue;
            }
            std::memcpy(row, dst + r * g.rs + d.pad_left * d.C, sizeof(float) * cols * d.C);
            std::memset(row + cols * d.C, 0, sizeof(float) * (d.W - cols) * d.C);
        }
    });
}

}  // namespace

bool set_conv2d_algorithm(const char* name) {
    int a = -1;
    if (std::strcmp(name, "auto") == 0) a = 0;
    if (std::strcmp(name, "im2col") == 0) a = 1;
    if (std::strcmp(name, "direct") == 0 && conv2d_direct_ukernels()) a = 2;
    if (std::strcmp(name, "winograd") == 0 && conv2d_direct_ukernels() && conv2d_winograd_built())
        a = 3;
    if (a < 0) return false;
    g_conv_algorithm.store(a, std::memory_order_relaxed);
    return true;
}

const char* conv2d_algorithm() {
    const int a = g_conv_algorithm.load(std::memory_order_relaxed);
    if (a == 1 || !conv2d_direct_ukernels()) return "im2col";
    return a == 2 ? "direct" : a == 3 ? "winograd" : "auto";
}

void conv2d_forward(float* y, const float* x, const float* w, const float* bias,
                    const Conv2dDims& d, bool relu) {
    conv2d_forward(y, x, w, bias, d, relu ? Activation::relu : Activation::linear, 0.0f);
}

void conv2d_forward(float* y, const float* x, const float* w, const float* bias,
                    const Conv2dDims& d, Activation act, float alpha) {
    const bool relu = act == Activation::relu;
    const BandActivation band{relu ? Activation::linear : act, alpha};
    if (const ConvDirectUkernels* uk = direct_for(d, ConvPass::forward)) {
        if (!use_winograd(d, ConvPass::forward))
            return conv2d_forward_direct(*uk, y, x, w, bias, d, relu, band);
        conv2d_forward_winograd(*uk, y, x, w, bias, d, relu);
    } else {
        conv2d_forward_im2col(y, x, w, bias, d, relu);
    }
    band(y, d.N * d.OH * d.OW * d.K);
}

void conv2d_backward_data(float* dx, const float* dy, const float* w, const Conv2dDims& d) {
    if (const ConvDirectUkernels* uk = direct_for(d, ConvPass::backward_data)) {
        if (use_winograd(d, ConvPass::backward_data))
            return conv2d_backward_data_winograd(*uk, dx, dy, w, d);
        if (backward_data_as_forward(d)) return conv2d_backward_data_flipped(*uk, dx, dy, w, d);
        return conv2d_backward_data_direct(*uk, dx, dy, w, d);
    }
    conv2d_backward_data_im2col(dx, dy, w, d);
}

void conv2d_backward_weights(float* dw, float* db, const float* x, const float* dy,
                             const Conv2dDims& d) {
    if (const ConvDirectUkernels* uk = direct_for(d, ConvPass::backward_weights)) {
        if (use_winograd(d, ConvPass::backward_weights))
            return conv2d_backward_weights_winograd(*uk, dw, db, x, dy, d);
        return conv2d_backward_weights_direct(*uk, dw, db, x, dy, d);
    }
    conv2d_backward_weights_im2col(dw, db, x, dy, d);
}

// ---- naive direct loops ------------------------------------------------------------------

void conv2d_forward_naive(float* y, const float* x, const float* w, const float* bias,
                          const Conv2dDims& d, bool relu) {
    const int64_t Cg = d.C / d.groups, Kg = d.K / d.groups;
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t k = 0; k < d.K; ++k) {
                    const int64_t g = k / Kg;
                    float acc = bias ? bias[k] : 0.0f;
                    for (int64_t kh = 0; kh < d.KH; ++kh) {
                        const int64_t ih = oh * d.stride_h - d.pad_top + kh;
                        if (ih < 0 || ih >= d.H) continue;
                        for (int64_t kw = 0; kw < d.KW; ++kw) {
                            const int64_t iw = ow * d.stride_w - d.pad_left + kw;
                            if (iw < 0 || iw >= d.W) continue;
                            const float* xp = x + ((n * d.H + ih) * d.W + iw) * d.C + g * Cg;
                            const float* wp = w + (kh * d.KW + kw) * Cg * d.K + k;
                            for (int64_t c = 0; c < Cg; ++c) acc += xp[c] * wp[c * d.K];
                        }
                    }
                    y[((n * d.OH + oh) * d.OW + ow) * d.K + k] = relu && acc < 0.0f ? 0.0f : acc;
                }
}

void conv2d_backward_data_naive(float* dx, const float* dy, const float* w, const Conv2dDims& d) {
    const int64_t Cg = d.C / d.groups, Kg = d.K / d.groups;
    std::fill(dx, dx + d.N * d.H * d.W * d.C, 0.0f);
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t k = 0; k < d.K; ++k) {
                    const int64_t g = k / Kg;
                    const float gy = dy[((n * d.OH + oh) * d.OW + ow) * d.K + k];
                    for (int64_t kh = 0; kh < d.KH; ++kh) {
                        const int64_t ih = oh * d.stride_h - d.pad_top + kh;
                        if (ih < 0 || ih >= d.H) continue;
                        for (int64_t kw = 0; kw < d.KW; ++kw) {
                            const int64_t iw = ow * d.stride_w - d.pad_left + kw;
                            if (iw < 0 || iw >= d.W) continue;
                            float* xp = dx + ((n * d.H + ih) * d.W + iw) * d.C + g * Cg;
                            const float* wp = w + (kh * d.KW + kw) * Cg * d.K + k;
                            for (int64_t c = 0; c < Cg; ++c) xp[c] += gy * wp[c * d.K];
                        }
                    }
                }
}

void conv2d_backward_weights_naive(float* dw, float* db, const float* x, const float* dy,
                                   const Conv2dDims& d) {
    const int64_t Cg = d.C / d.groups, Kg = d.K / d.groups;
    std::fill(dw, dw + d.KH * d.KW * Cg * d.K, 0.0f);
    if (db) std::fill(db, db + d.K, 0.0f);
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t k = 0; k < d.K; ++k) {
                    const int64_t g = k / Kg;
                    const float gy = dy[((n * d.OH + oh) * d.OW + ow) * d.K + k];
                    if (db) db[k] += gy;
                    for (int64_t kh = 0; kh < d.KH; ++kh) {
                        const int64_t ih = oh * d.stride_h - d.pad_top + kh;
                        if (ih < 0 || ih >= d.H) continue;
                        for (int64_t kw = 0; kw < d.KW; ++kw) {
                            const int64_t iw = ow * d.stride_w - d.pad_left + kw;
                            if (iw < 0 || iw >= d.W) continue;
                            const float* xp = x + ((n * d.H + ih) * d.W + iw) * d.C + g * Cg;
                            float* wp = dw + (kh * d.KW + kw) * Cg * d.K + k;
                            for (int64_t c = 0; c < Cg; ++c) wp[c * d.K] += gy * xp[c];
                        }
                    }
                }
}

}  // namespace cnnfast
