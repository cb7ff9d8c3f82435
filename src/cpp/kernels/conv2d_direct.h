#pragma once
// Internal to conv2d: the micro-kernels of the direct (implicit-GEMM) convolution, which reads the
// NHWC input in place instead of building im2col columns. Nothing here is part of conv2d.h.
//
// A convolution is a GEMM whose reduction index q = (kh, kw, c) runs over the receptive field:
// pixel p's operand is src_p[off(q)] with off(q) = kh*rs + kw*C + c, where src_p points at the
// top-left of p's receptive field and rs is the row stride of the source. In NHWC the KW*C values
// of one kernel row are contiguous ("a segment"), whatever the stride.
//   forward:          y[p][k]      = sum_q src_p[off(q)] * w[q][k]     (vectorised over k)
//   backward-weights: dw[q][k]    += sum_p src_p[off(q)] * dy[p][k]    (vectorised over k)
//   backward-data:    dst_p[off(q)] += sum_k dy[p][k] * wT[k][q]      (vectorised over q)
// Micro-kernels are single-threaded; the drivers (conv2d_direct.cpp) hand each thread whole bands.
#include <algorithm>
#include <cstdint>

#include "conv2d.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

// The pixels of one band, row-major over a band OW pixels wide: pixel i's receptive field starts
// at base + (i / OW) * row_step + (i % OW) * col_step (floats).
struct ConvPixels {
    float* base;
    int64_t row_step, col_step, OW;
};

// Pixels [p0, p1): y[p*ldy + j] = act(bias[j] + sum_q src_p[off(q)] * w[q*ldw + j]) for j < nc,
// nc <= 64, q over KH segments of seg floats, segment kh at kh*rs. bias may be null.
using ConvFwdUkernel = void (*)(float* y, int64_t ldy, const ConvPixels& px, int64_t p0,
                                int64_t p1, int64_t KH, int64_t rs, int64_t seg, const float* w,
                                int64_t ldw, const float* bias, bool relu, int64_t nc);
// Pixels [0, npix): dw[r*lddw + j] += sum_p src_p[off[r]] * dy[p*ldy + j], r < R, j < nc <= 64,
// R <= conv_bwdw_max_rows(nc).
using ConvBwdWUkernel = void (*)(float* dw, int64_t lddw, const ConvPixels& px, int64_t npix,
                                 const int64_t* off, int64_t R, const float* dy, int64_t ldy,
                                 int64_t nc);
// Pixels [p0, p1): dst_p[off[j]] += sum_k dy[p*ldy + k] * wt[k*ldwt + j], j < nq <= 64, k < nk.
// dy points at pixel 0's row.
using ConvBwdDUkernel = void (*)(const ConvPixels& px, int64_t p0, int64_t p1, const int64_t* off,
                                 int64_t nq, const float* dy, int64_t ldy, int64_t nk,
                                 const float* wt, int64_t ldwt);

// Single input channel, stride 1, K <= kConvC1MaxK output channels (LeNet C1): vectorised over
// 16 output columns instead of over K, whose few lanes would leave most of each FMA idle.
// Output rows [0, rows) of one band, each OW pixels; src row r at px.base + r * px.row_step,
// column ow of the field at + ow (col_step 1), tap (kh, kw) at + kh*rs + kw.
constexpr int64_t kConvC1MaxK = 8;
// y (rows*OW, K) = act(bias + sum_taps src * w[tap][k]); w (KH*KW, K); bias may be null.
using ConvFwdC1Ukernel = void (*)(float* y, const ConvPixels& px, int64_t rows, int64_t KH,
                                  int64_t KW, int64_t rs, const float* w, const float* bias,
                                  bool relu, int64_t K);
// accv (KH*KW*K + K, 16) += lane partials of dw[tap][k] = sum_p src_p[tap] * dy[p][k] and, in the
// last K rows, of db[k] = sum_p dy[p][k]. dy (rows*OW, K); dyt is scratch of K*rows*OWp floats,
// OWp = OW rounded up to 16.
using ConvBwdWC1Ukernel = void (*)(float* accv, const ConvPixels& px, int64_t rows, int64_t KH,
                                   int64_t KW, int64_t rs, const float* dy, float* dyt, int64_t K);

// Few output channels (a multiple of 8, at most kConvNarrowK; the kernel takes 8 at a time):
// vectorised over the field instead of over K, whose single vector left the broadcast form one
// load per FMA. Pixels [0, npix):
// dw[q*K + k] += sum_p src_p[q / seg * rs + q % seg] * dy[p*ldy + k] for q < KH*seg, k < K;
// seg a multiple of 16. Each dw value is an FMA per pixel from zero, in pixel order, then one add
// into dw, as in the broadcast form.
constexpr int64_t kConvNarrowK = 16;
using ConvBwdWNarrowUkernel = void (*)(float* dw, int64_t K, const ConvPixels& px, int64_t npix,
                                       int64_t KH, int64_t rs, int64_t seg, const float* dy,
                                       int64_t ldy);

// Weight streaming (conv2d_streamed.cpp): for g < G <= kConvStreamPixels and j < nc <= 64,
// y[g][j] += sum_{r < R} a[g][r] * w[r*ldw + j], issuing pf's prefetches spread over the R rows.
// The G accumulator rows are read from y and written back, so the driver can walk a kernel
// whose weights come from memory a few rows at a time, each row read once.
constexpr int64_t kConvStreamPixels = 6;
// The lines a streaming tile prefetches (its share of the next chunk's rows, in address order),
// issued a few after each of its rows of multiply-adds: `left` lines from `row + 16 * col`,
// per_row lines to a row, rows ldw floats apart. The state carries from tile to tile. Into L2
// (prefetcht1), not L1: a chunk (64 KB of a 512-channel kernel) is larger than a 32 KB L1, and
// filling L1 with it evicted the accumulators and inputs of the tiles still running. On an AMD
// EPYC Zen 4 (python dev/vgg_batch1_layers.py, one thread, weights from memory) prefetcht0 gave
// VGG16-CIFAR's 4x4 512 -> 512 layer 0.86-0.94 ms and its 2x2 layer 0.64-0.72 ms, prefetcht1
// 0.58-0.61 and 0.35-0.39, prefetcht2 0.66 and 0.53, none 1.29 and 1.53.
struct StreamPrefetch {
    const float* row = nullptr;
    int64_t ldw = 0, per_row = 0, col = 0, left = 0;
    void issue(int64_t n) {
        for (; n > 0 && left > 0; --n, --left) {
            __builtin_prefetch(row + 16 * col, 0, 2);
            if (++col == per_row) {
                col = 0;
                row += ldw;
            }
        }
    }
};
using ConvFwdStreamUkernel = void (*)(float* const* y, const float* const* a, int64_t G,
                                      const float* w, int64_t ldw, int64_t R, int64_t nc,
                                      StreamPrefetch& pf);

struct ConvDirectUkernels {
    const char* path;
    ConvFwdUkernel forward;
    ConvBwdWUkernel backward_weights;
    ConvBwdDUkernel backward_data;
    ConvFwdC1Ukernel forward_c1;
    ConvBwdWC1Ukernel backward_weights_c1;
    ConvBwdWNarrowUkernel backward_weights_narrow;
    ConvFwdStreamUkernel forward_streamed;
};

// Rows of dw one backward-weights call accumulates at most, for nc columns.
inline int64_t conv_bwdw_max_rows(int64_t nc) {
    const int64_t kv = (nc + 15) / 16;
    return kv >= 4 ? 6 : kv == 3 ? 8 : 12;
}

// Helpers the direct-kernel drivers share (conv2d_direct.cpp, conv2d_winograd_avx512.cpp,
// conv2d_pool_avx512.cpp).

// The stride-1 backward-data of d as a forward convolution: input dy (N,OH,OW,K) zero-padded by
// KH-1-pad_top rows and KW-1-pad_left columns, K -> C channels, output (N,H,W,C); its kernel is
// w flipped in both spatial axes with C and K swapped.
Conv2dDims backward_data_as_forward_dims(const Conv2dDims& d);

// off[q] for q = (kh, kw, c) of d's kernel: where q sits in a receptive field of a source with row
// stride rs (floats). In the calling thread's Scratch::conv_offsets.
const int64_t* conv_field_offsets(const Conv2dDims& d, int64_t rs);

// w (Q, K) with 64-byte-aligned rows of *ldw floats (a load straddling two cache lines costs two)
// and zeros past K: w itself when it already is (K a multiple of 16 in an aligned buffer, as the
// layers allocate it), else a copy in the calling thread's `slot` scratch.
const float* aligned_weight_rows(const float* w, int64_t Q, int64_t K, int64_t* ldw,
                                 Scratch slot);

// f(q0, R) for the dw row ranges one backward-weights micro-kernel call accumulates (R <= rmax)
// over a field of KH segments of seg values: within one segment (contiguous offsets, one base
// register) when segments hold at least rmax rows, else across segments; balanced sizes.
template <class F>
void for_each_dw_tile(int64_t KH, int64_t seg, int64_t rmax, const F& f) {
    const bool by_segment = seg >= rmax;
    const int64_t span = by_segment ? seg : KH * seg, spans = by_segment ? KH : 1;
    const int64_t tiles = (span + rmax - 1) / rmax;
    for (int64_t s = 0; s < spans; ++s)
        for (int64_t i = 0; i < tiles; ++i) {
            const int64_t q0 = s * span + span * i / tiles;
            const int64_t q1 = s * span + span * (i + 1) / tiles;
            f(q0, q1 - q0);
        }
}

// The finish step of a weight-gradient reduce_over_threads whose partials hold DW dw values then
// the db values, each as `lanes` consecutive lane partials: item i is dw[i] for i < DW, else
// db[i - DW] (skipped when db is null) = the sum over the `used` threads, in thread order, of the
// sum of its lanes.
inline void write_summed_gradient(float* dw, float* db, int64_t DW, const float* parts,
                                  int64_t part_floats, int lanes, int used, int64_t i) {
    float s = 0.0f;
    for (int v = 0; v < used; ++v) {
        const float* lane = parts + v * part_floats + i * lanes;
        float t = 0.0f;
        for (int l = 0; l < lanes; ++l) t += lane[l];
        s += t;
    }
    if (i < DW)
        dw[i] = s;
    else if (db)
        db[i - DW] = s;
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

// The direct drivers (conv2d_direct.cpp), on the micro-kernels uk; groups == 1. Same contracts as
// conv2d_forward / conv2d_backward_data / conv2d_backward_weights (conv2d.h); forward applies
// act to each band after relu.
void conv2d_forward_direct(const ConvDirectUkernels& uk, float* y, const float* x, const float* w,
                           const float* bias, const Conv2dDims& d, bool relu,
                           const BandActivation& act = {});
void conv2d_backward_weights_direct(const ConvDirectUkernels& uk, float* dw, float* db,
                                    const float* x, const float* dy, const Conv2dDims& d);
// Backward-data as a scatter-add: every pixel's products added into its receptive field of dx.
void conv2d_backward_data_direct(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                 const float* w, const Conv2dDims& d);
// Weight streaming's core (conv2d_streamed.cpp), for products whose weights come from memory:
// taps t (K columns, ldw floats between rows; tap t's rows start t * tap_stride floats into w),
// each read by a few readers, reader i of tap t (begin[t] <= i < begin[t + 1]) adding
// y[y_at[i] + k] += sum_{c < C} x[x_at[i] + c] * w[t * tap_stride + c * ldw + k] for k < K.
// The used taps' rows are read once, a chunk of rows at a time in address order, every reader
// of the chunk served while it is in L2, the next chunk prefetched meanwhile. Each y element
// adds its products in tap order, then c order, in one FMA chain from the value it held: the
// same bits at any thread count (threads split the columns).
struct StreamReaders {
    const int64_t *begin, *y_at, *x_at;
    const int64_t* used;  // the taps with readers, in order
    int64_t n_used;
};
void streamed_products(const ConvDirectUkernels& uk, float* y, const float* x, const float* w,
                       int64_t tap_stride, int64_t ldw, int64_t C, int64_t K,
                       const StreamReaders& readers);
// Forward for a few output pixels whose weights come from memory (conv2d_streamed.cpp): the
// kernel read once, in address order, instead of once per 64-channel block. Any stride, padding
// and dilation; groups == 1.
void conv2d_forward_streamed(const ConvDirectUkernels& uk, float* y, const float* x,
                             const float* w, const float* bias, const Conv2dDims& d, bool relu,
                             const BandActivation& act = {});
// Stride-1 backward-data as a forward convolution (a gather): dx = conv(dy zero-padded by
// KH-1-pad_top rows and KW-1-pad_left columns, wf), wf[kh][kw][k][c] = w[KH-1-kh][KW-1-kw][c][k].
// Needs stride 1, pad_top < KH and pad_left < KW.
void conv2d_backward_data_flipped(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                  const float* w, const Conv2dDims& d);

// The micro-kernels this CPU runs (chosen once, capped by CNNFAST_SIMD), or null without AVX-512.
const ConvDirectUkernels* conv2d_direct_ukernels();

// The AVX-512 micro-kernels (conv2d_direct_avx512.cpp); null when the build lacks AVX-512.
const ConvDirectUkernels* conv2d_direct_avx512();

}  // namespace cnnfast
