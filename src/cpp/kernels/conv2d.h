#pragma once
// 2-D convolution (cross-correlation, as Keras and PyTorch define it) on NHWC float32 buffers.
// conv2d.cpp chooses an algorithm per call and pass (see below); each lives in its own file, with
// the naive loops (conv2d_naive.cpp) kept beside as the spec and test oracle.
#include <cstdint>
#include <memory>

#include "activation.h"

namespace cnnfast {

// x (N,H,W,C); w (KH,KW,C/groups,K) (Keras layout); bias (K,); y (N,OH,OW,K).
// Positions outside the input read as zero. OH/OW are given (cnnfast.shapes.conv_padding), so
// the bottom/right padding is implied and input rows/columns a stride never reaches are ignored.
// With groups, output channels come in `groups` contiguous blocks of K/groups, block g seeing
// input channels [g*C/groups, (g+1)*C/groups). With dilation, kernel tap (kh, kw) reads input
// (oh*stride_h - pad_top + kh*dilation_h, ow*stride_w - pad_left + kw*dilation_w): the window
// spans (KH-1)*dilation_h + 1 rows. Dilated convolutions run on im2col (or the naive loops).
struct Conv2dDims {
    int64_t N, H, W, C;
    int64_t KH, KW, K;
    int64_t OH, OW;
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_left;
    int64_t groups;
    int64_t dilation_h = 1, dilation_w = 1;
};

// Whether d has a dilation other than 1 (the paths that do not handle one check this).
inline bool conv2d_dilated(const Conv2dDims& d) { return d.dilation_h != 1 || d.dilation_w != 1; }

// Floats of im2col scratch one call uses at most (0 for convolutions that need no columns).
// The kernels take it from the calling thread's workspace (workspace.h); exposed for tests and
// memory planning.
int64_t conv2d_workspace_size(const Conv2dDims& d);

// x (N,H,W,C); w (KH,KW,C/g,K); bias (K,) or null; y (N,OH,OW,K) is overwritten, with
// y = max(y, 0) applied when relu (fused: no second pass over y).
void conv2d_forward(float* y, const float* x, const float* w, const float* bias,
                    const Conv2dDims& d, bool relu = false);
// The same followed by any activation (alpha: ELU's), applied to each band of output while it is
// in cache (ReLU inside the micro-kernels).
void conv2d_forward(float* y, const float* x, const float* w, const float* bias,
                    const Conv2dDims& d, Activation act, float alpha);

// Inference on fixed weights (network.h) keeps a kernel in the form its algorithm reads instead
// of transforming it on every call: Winograd's float32 U (conv2d_winograd.h), which the Keras
// MNIST CNN's second convolution (64 -> 64 channels) spent a tenth of its batch-1 forward
// making; kept, it is F(4x4, 3x3)'s where that fits in L2 (1.78x fewer multiplies) or where the
// forward streams it (below).
// conv2d_forward_reads_winograd_kernel(d): whether conv2d_forward of d (N the batch) runs
// Winograd on a float32 kernel (auto's choice, not in mixed-precision training) whose U is small
// enough to keep (winograd_kernel_fits_l2), or whose U the forward streams from memory
// (winograd_streams_kept_kernel: a single image's 8x8 and 16x16 maps of wide layers). Then
// conv2d_winograd_kernel(w, d) makes U, of the tile size conv2d_winograd_kernel_tile(d) (2 or 4:
// it may differ with N), and the forward below runs on it; U must come from w's current values
// and have that tile size.
struct WinogradKernel;
bool conv2d_forward_reads_winograd_kernel(const Conv2dDims& d);
int conv2d_winograd_kernel_tile(const Conv2dDims& d);
std::shared_ptr<const WinogradKernel> conv2d_winograd_kernel(const float* w, const Conv2dDims& d);
void conv2d_forward(float* y, const float* x, const WinogradKernel& U, const float* bias,
                    const Conv2dDims& d, Activation act, float alpha);
// dy (N,OH,OW,K); w (KH,KW,C/g,K); dx (N,H,W,C) is overwritten.
void conv2d_backward_data(float* dx, const float* dy, const float* w, const Conv2dDims& d);
// x (N,H,W,C); dy (N,OH,OW,K); dw (KH,KW,C/g,K) and db (K,) (may be null) are overwritten.
void conv2d_backward_weights(float* dw, float* db, const float* x, const float* dy,
                             const Conv2dDims& d);

// The algorithms behind the three kernels above, chosen per call (choose_algorithm, conv2d.cpp):
//  - Winograd F(2x2, 3x3) (conv2d_winograd.h; drivers in conv2d_winograd.cpp): 3x3 stride-1
//    convolutions of one group with at least 16 input and output channels on maps of more than
//    4x4 outputs; 2.25x fewer multiplies, run on the direct kernels' AVX-512 micro-kernels;
//  - direct (implicit GEMM, conv2d_direct.h; drivers in conv2d_direct.cpp, micro-kernels in
//    conv2d_direct_avx512.cpp): reads NHWC in place, for groups == 1 convolutions that are not
//    plain GEMMs; needs AVX-512 (and CNNFAST_SIMD unset or avx512);
//  - depthwise (conv2d_depthwise.cpp): groups == C > 1, unless "im2col" is forced;
//  - im2col + sgemm (+ col2im, conv2d_im2col.cpp): everything else, and every convolution on
//    other CPUs.
// In mixed-precision training (bf16_products(), gemm_bf16.h) the products take bfloat16 operands:
// Winograd's position GEMMs and im2col's GEMM run the bfloat16 GEMM, while the direct kernels'
// convolutions and those of fewer than 16 input channels per group (depthwise ones too) keep
// their float32 algorithm on operands rounded to bfloat16 (conv2d.cpp plan_pass).
// set_conv2d_algorithm("auto" | "im2col" | "direct" | "winograd" | "streamed") forces one for
// tests and benchmarks ("direct" never uses Winograd; "winograd" takes every 3x3 stride-1
// convolution of one group, whatever its size; "streamed" every forward of one group through the
// weight-streaming kernel, conv2d_streamed.cpp, and other passes as "direct"; all use im2col
// where direct does not apply); false if unknown or unavailable.
bool set_conv2d_algorithm(const char* name);
// "auto", "im2col" (forced, or direct unavailable), "direct", "winograd" or "streamed".
const char* conv2d_algorithm();

// The im2col + sgemm path (conv2d_im2col.cpp). Same contracts.
void conv2d_forward_im2col(float* y, const float* x, const float* w, const float* bias,
                           const Conv2dDims& d, bool relu);
void conv2d_backward_data_im2col(float* dx, const float* dy, const float* w, const Conv2dDims& d);
void conv2d_backward_weights_im2col(float* dw, float* db, const float* x, const float* dy,
                                    const Conv2dDims& d);
// Whether d's column matrix is the input itself, read in place (a plain GEMM): 1x1 stride-1
// unpadded convolutions (any groups) and, with one group, kernels covering the whole unpadded
// input (one output pixel).
bool conv2d_input_is_columns(const Conv2dDims& d);

// Depthwise convolutions (groups == C > 1, K = C * M; conv2d_depthwise.cpp): direct loops
// vectorised along the channels, which "auto" (and "direct", "winograd") choose for them; the
// kernel (KH,KW,1,K) is Keras' depthwise kernel (KH,KW,C,M). Same contracts.
bool conv2d_is_depthwise(const Conv2dDims& d);
void conv2d_forward_depthwise(float* y, const float* x, const float* w, const float* bias,
                              const Conv2dDims& d, bool relu);
void conv2d_backward_data_depthwise(float* dx, const float* dy, const float* w,
                                    const Conv2dDims& d);
void conv2d_backward_weights_depthwise(float* dw, float* db, const float* x, const float* dy,
                                       const Conv2dDims& d);

// Direct loops, single-threaded (conv2d_naive.cpp): the readable spec, fallback and oracle. Same
// contracts.
void conv2d_forward_naive(float* y, const float* x, const float* w, const float* bias,
                          const Conv2dDims& d, bool relu = false);
void conv2d_backward_data_naive(float* dx, const float* dy, const float* w, const Conv2dDims& d);
void conv2d_backward_weights_naive(float* dw, float* db, const float* x, const float* dy,
                                   const Conv2dDims& d);

}  // namespace cnnfast
