#pragma once
// Internal: the pooling loops of pool2d_loops.h are compiled three times - for the baseline ISA
// (pool2d.cpp), with AVX2+FMA flags (pool2d_avx2.cpp) and with AVX-512 flags
// (pool2d_avx512.cpp) - and one table is chosen at run time from the CPU's features. Each entry
// is single-threaded over output rows [r0, r1) of the N*OH rows; pool2d.cpp splits the rows.
#include <cstdint>

#include "pool2d.h"

namespace cnnfast::detail {

// 2x2 stride-2 unpadded average pooling of maps with C < 16 channels, vectorised over a row's
// flattened (column, channel) values (pool2d_narrow_avx512.cpp); same row contracts as below.
struct PoolNarrow {
    void (*avg_forward_rows)(float* y, const float* x, const Pool2dDims& d, int64_t r0,
                             int64_t r1);
    void (*avg_backward_rows)(float* dx, const float* dy, const Pool2dDims& d, int64_t r0,
                              int64_t r1);
};

struct PoolSimd {
    const char* name;
    // x (N,H,W,C); y, argmax (N,OH,OW,C) rows [r0, r1); argmax may be null.
    void (*max_forward_rows)(float* y, int32_t* argmax, const float* x, const Pool2dDims& d,
                             int64_t r0, int64_t r1);
    void (*avg_forward_rows)(float* y, const float* x, const Pool2dDims& d, int64_t r0,
                             int64_t r1);
    // Windows must not overlap (stride >= pool on both axes). Overwrites the dx rows that output
    // rows [r0, r1) own; returns the count of argmax entries outside their own window.
    int64_t (*max_backward_rows_disjoint)(float* dx, const float* dy, const int32_t* argmax,
                                          const Pool2dDims& d, int64_t r0, int64_t r1);
    void (*avg_backward_rows_disjoint)(float* dx, const float* dy, const Pool2dDims& d,
                                       int64_t r0, int64_t r1);
    // The narrow-channel average kernels of this ISA, or null (only AVX-512 has them).
    const PoolNarrow* narrow_avg;
};

// The tables of pool2d_avx2.cpp and pool2d_avx512.cpp, null when the build lacks the ISA
// (cpu_features.h: the dispatch idiom).
const PoolSimd* pool_simd_avx2();
const PoolSimd* pool_simd_avx512();
// The narrow-channel kernels of pool2d_narrow_avx512.cpp (null without AVX-512 in the build),
// which the AVX-512 table carries.
const PoolNarrow* pool_narrow_avx512();

}  // namespace cnnfast::detail
