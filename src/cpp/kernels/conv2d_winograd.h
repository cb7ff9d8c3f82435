#pragma once
// Internal to conv2d: 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3)
// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016). Nothing here
// is part of conv2d.h.
//
// Each 2x2 block of outputs (a "tile") reads a 4x4 input patch d. With the fixed matrices B, G, A
//   y_tile = A^T [ (G g G^T) (.) (B^T d B) ] A          ((.) elementwise over the 16 positions)
// so a layer becomes 16 independent GEMMs over channels, one per position, of 16 multiplies per
// 2x2 outputs where the direct convolution needs 36: 2.25x fewer on even-sized maps.
//   forward:          M[pos] (tiles, K) = V[pos] (tiles, C) x U[pos] (C, K), U = G g G^T
//   backward-data:    the forward of dy with the flipped, transposed kernel (stride 1)
//   backward-weights: dU[pos] (C, K) = sum over tiles V[pos]^T x (A dy_tile A^T)[pos], then
//                     dw = G^T dU G - the exact gradient of the forward formula above.
// The transforms add and halve only, so the rounding error stays within a few ulp of the direct
// sums' (the tests hold both to the same bound). The drivers (conv2d_winograd.cpp) run the GEMMs
// on the direct convolution's AVX-512 micro-kernels (conv2d_direct.h), or on sgemm for wide
// layers, and the transforms of this CPU's table (conv2d_winograd_avx512.cpp); this path exists
// where both do.
#include <cstdint>
#include <vector>

#include "conv2d.h"
#include "conv2d_direct.h"

namespace cnnfast {

// True for the convolutions the kernels below compute, on a CPU that has the transforms: one
// group, 3x3, stride 1, padding of at most 2 on the top and left. Whether it pays is the caller's
// choice (conv2d.cpp).
bool winograd_computes(const Conv2dDims& d);

// Same contracts as conv2d_forward / conv2d_backward_data / conv2d_backward_weights (conv2d.h);
// each needs winograd_computes(d) and the AVX-512 micro-kernels uk.
void conv2d_forward_winograd(const ConvDirectUkernels& uk, float* y, const float* x,
                             const float* w, const float* bias, const Conv2dDims& d, bool relu);
void conv2d_backward_data_winograd(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                   const float* w, const Conv2dDims& d);
void conv2d_backward_weights_winograd(const ConvDirectUkernels& uk, float* dw, float* db,
                                      const float* x, const float* dy, const Conv2dDims& d);

// A kernel's float32 transform U kept for many forward calls (inference on fixed weights,
// conv2d.h's conv2d_winograd_kernel): U (16, C, Kp) of F(2x2, 3x3), or, where U (36, C, Kp) of
// F(4x4, 3x3) fits in a core's L2 (up to 64 -> 64 channels), that: 36 multiplies per 4x4 outputs
// instead of 64 (1.78x fewer), for transforms of 6x6 patches whose coefficients (up to 8, and
// 1/6, 1/24 in G) cost more rounding: against sum |x||w| its float32 error reached 44 u over
// 200 random shapes where the per-call F(2x2) or direct sums reached 5 u (u = 2^-24;
// dev/winograd_error_sweep.py; the bound it is tested to: tests/test_network.py), far below
// what a classifier can tell. Made by conv2d.h's conv2d_winograd_kernel.
struct WinogradKernel {
    int tile = 2;  // outputs per tile side: F(2x2, 3x3), 16 positions, or F(4x4, 3x3), 36
    int64_t C = 0, K = 0, Kp = 0;
    std::vector<float> storage;  // U at the first 64-byte boundary in it
    const float* U() const;
    // Floats between U's positions (winograd_kernel_stride).
    int64_t position_stride() const;
};
// conv2d_forward_winograd on a kept U (made from d's C and K).
void conv2d_forward_winograd(const ConvDirectUkernels& uk, float* y, const float* x,
                             const WinogradKernel& U, const float* bias, const Conv2dDims& d,
                             bool relu);
// Whether U (16 C Kp floats) is small enough to keep: at most the 1 MiB (128 -> 128 channels)
// that stays in a core's L2 beside a block's tiles (wider kernels take the position-major
// schedule, whose transform the batches big enough for Winograd amortise).
bool winograd_kernel_fits_l2(int64_t C, int64_t K);
// Whether a kept U too large for that pays anyway: a single image's forward of 9-16 tiles on a U
// of more than 1 MiB, which then comes from memory on every call: F(4x4, 3x3)'s where its tiles
// are that many (16x16 maps, VGG16-CIFAR's second block: 4x fewer multiplies than direct, 36/9
// more bytes), else F(2x2, 3x3)'s (8x8 maps, its third block: 2.25x fewer than direct, 1.89x
// fewer than the weight-streaming forward, which skips padding, for 16/9 more bytes).
// conv2d_forward_winograd streams it (conv2d_direct.h's streamed_products: U read once in
// address order, every tile of a chunk of rows served while it is in L2).
bool winograd_streams_kept_kernel(const Conv2dDims& d);

// The m x m output tiles (F(2x2, 3x3)'s 2, F(4x4, 3x3)'s 4) of an OH x OW output, numbered image
// by image, row by row.
struct TileGrid {
    int64_t TH, TW, per_image, total;
};

inline TileGrid winograd_tile_grid(const Conv2dDims& d, int64_t m = 2) {
    const int64_t TH = (d.OH + m - 1) / m, TW = (d.OW + m - 1) / m;
    return {TH, TW, TH * TW, d.N * TH * TW};
}

// Input rows ih0 .. ih0 + rows of image n of x (N,H,W,C), zero-padded: each Wp pixels wide
// from column -pad_left, rows outside the image zeros, in the calling thread's scratch
// (Scratch::winograd_padded_image). What the input transforms read where tiles reach past x.
const float* winograd_padded_rows(const float* x, int64_t n, int64_t ih0, int64_t rows,
                                  int64_t Wp, const Conv2dDims& d);

// Floats between the 16 positions of a transformed kernel U of `rows` rows of ld floats: one
// vector more than the rows, so that the positions' rows do not all fall in one L1 set (at
// 64x64 channels they were 16 KiB apart, and the kernel transform's 16 stores per pair of
// channels missed the L1).
inline int64_t winograd_kernel_stride(int64_t rows, int64_t ld) { return rows * ld + 16; }

// The ISA-specific half of the algorithm: the transforms, each single-threaded (the drivers split
// the work). Positions of V, M, D and dV lie ldpos floats apart; within a position, tile i's row
// starts at i * (its channel count, or the padded ldk / ldc).
struct WinogradTransforms {
    const char* path;
    // U (16, Cin, ldu), positions winograd_kernel_stride(Cin, ldu) floats apart, = G g G^T for
    // input channels [ci0, ci1) x output channels [co0, co1)
    // (multiples of 16), tap (i, j) of g at w[tap * taps + ci * s_ci + co * s_co], tap = 3i + j
    // (8 - that when flipped); lanes co >= Cout zeroed.
    void (*kernel)(float* U, int64_t ldu, const float* w, int64_t Cin, int64_t Cout, bool flipped,
                   int64_t taps, int64_t s_ci, int64_t s_co, int64_t ci0, int64_t ci1, int64_t co0,
                   int64_t co1);
    // The same U for mixed-precision training, written as the bfloat16 GEMM's packed B
    // (sgemm_bf16_pack_b of each U[pos], Cin x Cout; positions pos_size uint32 apart) for input
    // channels [ci0, ci1), ci0 even, and output channels [co0, co1), multiples of 16.
    void (*kernel_bf16)(uint32_t* P, int64_t pos_size, const float* w, int64_t Cin, int64_t Cout,
                        bool flipped, int64_t taps, int64_t s_ci, int64_t s_co, int64_t ci0,
                        int64_t ci1, int64_t co0, int64_t co1);
    // V[pos][i][c] = (B^T d B)[pos] for tiles t0 + i, i < nt, of x (N,H,W,C).
    void (*input)(float* V, int64_t ldpos, const float* x, int64_t t0, int64_t nt,
                  const Conv2dDims& d, const TileGrid& g);
    // The same V in bfloat16 (gemm_bf16.h's rounding), for mixed-precision training: with C
    // even, each tile's row is C / 2 pairs of channels, the bfloat16 GEMM's A rows in place.
    void (*input_bf16)(uint16_t* V, int64_t ldpos, const float* x, int64_t t0, int64_t nt,
                       const Conv2dDims& d, const TileGrid& g);
    // y (N,OH,OW,K) of tiles t0 + i = act(bias + A^T M A), M's tiles ldk floats apart.
    void (*output)(float* y, const float* M, int64_t ldpos, int64_t ldk, int64_t t0, int64_t nt,
                   const float* bias, bool relu, const Conv2dDims& d, const TileGrid& g);
    // D[pos][i][k] = (A e A^T)[pos] for the 2x2 dy tiles e of tiles t0 + i; db (ldk) += their
    // sums unless null.
    void (*gradient)(float* D, int64_t ldpos, int64_t ldk, float* db, const float* dy, int64_t t0,
                     int64_t nt, const Conv2dDims& d, const TileGrid& g);
    // dx (N,H,W,C) += B dV B^T on the input patches of tiles t0 + i.
    void (*scatter_input_gradient)(float* dx, const float* dV, int64_t ldpos, int64_t ldc,
                                   int64_t t0, int64_t nt, const Conv2dDims& d, const TileGrid& g);
    // Row c of dw (3,3,C,K) = G^T S G, S = the sum of the `used` partials dU (16, C, Kp) lying
    // part_floats apart.
    void (*weight_gradient_row)(float* dw, const float* parts, int64_t part_floats, int used,
                                int64_t C, int64_t K, int64_t Kp, int64_t c);
    // db[k, k + 16) (below K) = the sum of the `pixels` rows of dy (pixels, K).
    void (*bias_gradient_block)(float* db, const float* dy, int64_t pixels, int64_t K, int64_t k);

    // F(4x4, 3x3), the forward pass on a kept kernel (WinogradKernel): 36 positions.
    // U (36, Cin, ldu), positions winograd_kernel_stride(Cin, ldu) apart, = G g G^T of w
    // (3,3,Cin,Cout) for input channels [ci0, ci1); lanes co >= Cout zeroed.
    void (*kernel_f4)(float* U, int64_t ldu, const float* w, int64_t Cin, int64_t Cout,
                      int64_t ci0, int64_t ci1);
    // V[pos][i][c] = (B^T d B)[pos] for the nt 6x6 patches d at patch0 + i * step (rows
    // row_floats apart, C channels per pixel, all inside the buffer); tiles C floats apart.
    void (*input_f4)(float* V, int64_t ldpos, const float* patch0, int64_t row_floats,
                     int64_t step, int64_t nt, int64_t C);
    // y (N,OH,OW,K) of the 4x4-output tiles t0 + i (grid g) = act(bias + A^T M A).
    void (*output_f4)(float* y, const float* M, int64_t ldpos, int64_t ldk, int64_t t0,
                      int64_t nt, const float* bias, bool relu, const Conv2dDims& d,
                      const TileGrid& g);
};

// The transforms this CPU runs (chosen once, capped by CNNFAST_SIMD), or null without AVX-512.
const WinogradTransforms* conv2d_winograd_transforms();
// The AVX-512 table (conv2d_winograd_avx512.cpp); null when the build lacks AVX-512.
const WinogradTransforms* conv2d_winograd_avx512();
// WinogradTransforms::input_bf16 on AVX512-BF16's own rounding (conv2d_winograd_avx512bf16.cpp),
// the same bits; null when the build lacks it. The drivers take it where the bfloat16 GEMM runs
// its AVX512-BF16 kernel (which only CPUs with the instructions select).
using WinogradInputBf16 = void (*)(uint16_t* V, int64_t ldpos, const float* x, int64_t t0,
                                   int64_t nt, const Conv2dDims& d, const TileGrid& g);
WinogradInputBf16 conv2d_winograd_input_avx512bf16();

}  // namespace cnnfast
