// The element-wise loops of activation_loops.h compiled with AVX2+FMA flags (see CMakeLists.txt),
// the table activation.cpp picks when the CPU and CNNFAST_SIMD allow avx2.
#include "elementwise_simd.h"

#if defined(CNNFAST_BUILD_AVX2)
#define CNNFAST_SIMD_NS simd_avx2
#define CNNFAST_SIMD_NAME "avx2"
#include "activation_loops.h"

namespace cnnfast::detail {
const ElementwiseSimd* elementwise_simd_avx2() { return &simd_avx2::kTable; }
}  // namespace cnnfast::detail

#else

namespace cnnfast::detail {
const ElementwiseSimd* elementwise_simd_avx2() { return nullptr; }
}  // namespace cnnfast::detail

#endif
