// The element-wise loops of activation_loops.h compiled with AVX-512 flags (see CMakeLists.txt),
// the table activation.cpp picks when the CPU and CNNFAST_SIMD allow avx512.
#include "elementwise_simd.h"

#if defined(CNNFAST_BUILD_AVX512)
#define CNNFAST_SIMD_NS simd_avx512
#define CNNFAST_SIMD_NAME "avx512"
#include "activation_loops.h"

namespace cnnfast::detail {
const ElementwiseSimd* elementwise_simd_avx512() { return &simd_avx512::kTable; }
}  // namespace cnnfast::detail

#else

namespace cnnfast::detail {
const ElementwiseSimd* elementwise_simd_avx512() { return nullptr; }
}  // namespace cnnfast::detail

#endif
