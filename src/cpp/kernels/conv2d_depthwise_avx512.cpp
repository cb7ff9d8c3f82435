// The depthwise convolution loops of conv2d_depthwise_loops.h compiled with AVX-512 flags
// (see CMakeLists.txt), the table conv2d_depthwise.cpp picks when the CPU and CNNFAST_SIMD
// allow avx512.
#include "conv2d_depthwise_simd.h"

#if defined(CNNFAST_BUILD_AVX512)
#define CNNFAST_DW_NS depthwise_avx512
#define CNNFAST_DW_NAME "avx512"
#include "conv2d_depthwise_loops.h"

namespace cnnfast::detail {
const DepthwiseSimd* depthwise_simd_avx512() { return &depthwise_avx512::kDepthwiseTable; }
}  // namespace cnnfast::detail

#else

namespace cnnfast::detail {
const DepthwiseSimd* depthwise_simd_avx512() { return nullptr; }
}  // namespace cnnfast::detail

#endif
