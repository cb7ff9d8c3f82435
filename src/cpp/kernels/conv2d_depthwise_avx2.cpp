// The depthwise convolution loops of conv2d_depthwise_loops.h compiled with AVX2+FMA flags
// (see CMakeLists.txt), the table conv2d_depthwise.cpp picks when the CPU and CNNFAST_SIMD
// allow avx2.
#include "conv2d_depthwise_simd.h"

#if defined(CNNFAST_BUILD_AVX2)
#define CNNFAST_DW_NS depthwise_avx2
#define CNNFAST_DW_NAME "avx2"
#include "conv2d_depthwise_loops.h"

namespace cnnfast::detail {
const DepthwiseSimd* depthwise_simd_avx2() { return &depthwise_avx2::kDepthwiseTable; }
}  // namespace cnnfast::detail

#else

namespace cnnfast::detail {
const DepthwiseSimd* depthwise_simd_avx2() { return nullptr; }
}  // namespace cnnfast::detail

#endif
