#pragma once
// 2-D max and average pooling on NHWC float32 buffers. Vectorised over C (contiguous in NHWC)
// with the window loop outside (full 2x2 and 3x3 windows unrolled in registers), compiled for the
// baseline ISA, AVX2 and AVX-512 and chosen at run time; threaded over the N*OH output rows only
// when the problem is large enough (small ones run on the calling thread, no OpenMP region).
// Naive loops kept beside as the spec and test oracle.
#include <cstdint>

namespace cnnfast {

// x (N,H,W,C); y (N,OH,OW,C). Window (oh, ow) covers input rows oh*stride_h - pad_top + [0, PH)
// and columns ow*stride_w - pad_left + [0, PW); only the positions inside the input take part
// (OH/OW are given, the bottom/right padding is implied). Every window must overlap the input.
struct Pool2dDims {
    int64_t N, H, W, C;
    int64_t PH, PW;
    int64_t OH, OW;
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_left;
};

// x (N,H,W,C); y (N,OH,OW,C) overwritten; argmax (N,OH,OW,C) or null: for each output the index
// (ih*W + iw)*C + c of the chosen input within its sample. Ties go to the first maximum in
// row-major window order; a NaN in the window gives NaN (and the first NaN's index).
void max_pool2d_forward(float* y, int32_t* argmax, const float* x, const Pool2dDims& d);
// dy, argmax (N,OH,OW,C); dx (N,H,W,C) overwritten with the scatter-add of dy at argmax.
// Returns the number of argmax entries outside [0, H*W*C), which are skipped (0 when valid).
int64_t max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax,
                            const Pool2dDims& d);

// x (N,H,W,C); y (N,OH,OW,C) overwritten: mean over the window's positions inside the input
// (padding is not counted, as Keras/TensorFlow do for "same").
void avg_pool2d_forward(float* y, const float* x, const Pool2dDims& d);
// dy (N,OH,OW,C); dx (N,H,W,C) overwritten.
void avg_pool2d_backward(float* dx, const float* dy, const Pool2dDims& d);

// Which compiled copy of the pooling loops runs: "avx512", "avx2" or "baseline".
const char* pool2d_simd_path();
// Test hook: force "baseline", "avx2", "avx512" (only if built and supported) or "auto".
// False if refused. Not meant to be called while kernels run on other threads.
bool set_pool2d_simd_path(const char* name);

// Plain loops, single-threaded: the readable spec, fallback and oracle. Same contracts.
void max_pool2d_forward_naive(float* y, int32_t* argmax, const float* x, const Pool2dDims& d);
int64_t max_pool2d_backward_naive(float* dx, const float* dy, const int32_t* argmax,
                                  const Pool2dDims& d);
void avg_pool2d_forward_naive(float* y, const float* x, const Pool2dDims& d);
void avg_pool2d_backward_naive(float* dx, const float* dy, const Pool2dDims& d);

}  // namespace cnnfast
