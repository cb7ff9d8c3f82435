#pragma once
// Internal: the depthwise convolution loops of conv2d_depthwise_loops.h are compiled three
// times - for the baseline ISA (conv2d_depthwise.cpp), with AVX2+FMA flags
// (conv2d_depthwise_avx2.cpp) and with AVX-512 flags (conv2d_depthwise_avx512.cpp) - and one
// table is chosen at run time from the CPU's features (cpu_features.h). Each entry is
// single-threaded over a range of its units; conv2d_depthwise.cpp splits the units.
#include <cstdint>

#include "conv2d.h"

namespace cnnfast::detail {

struct DepthwiseSimd {
    const char* name;
    // x (N,H,W,C); w (KH,KW,1,K); bias (K,) or null; output rows [r0, r1) of the N*OH rows.
    void (*forward_rows)(float* y, const float* x, const float* w, const float* bias,
                         const Conv2dDims& d, bool relu, int64_t r0, int64_t r1);
    // dx rows [r0, r1) of the N*H input rows, overwritten (gathered from dy).
    void (*backward_data_rows)(float* dx, const float* dy, const float* w, const Conv2dDims& d,
                               int64_t r0, int64_t r1);
    // dw, db for input channels [c0, c1) (and their M outputs each), overwritten.
    void (*backward_weights_channels)(float* dw, float* db, const float* x, const float* dy,
                                      const Conv2dDims& d, int64_t c0, int64_t c1);
};

// The tables of conv2d_depthwise_avx2.cpp and conv2d_depthwise_avx512.cpp, null when the build
// lacks the ISA.
const DepthwiseSimd* depthwise_simd_avx2();
const DepthwiseSimd* depthwise_simd_avx512();
// The baseline table and the one in use (for tests: every table gives the same results up to
// FMA contraction).
const DepthwiseSimd* depthwise_simd_baseline();
const DepthwiseSimd& depthwise_simd();

}  // namespace cnnfast::detail
