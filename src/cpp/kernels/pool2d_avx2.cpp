// The pooling loops of pool2d_loops.h compiled with AVX2+FMA flags (see CMakeLists.txt), the
// table pool2d.cpp picks when the CPU and CNNFAST_SIMD allow avx2.
#include "pool2d_simd.h"

#if defined(CNNFAST_BUILD_AVX2)
#define CNNFAST_POOL_NS pool_avx2
#define CNNFAST_POOL_NAME "avx2"
#define CNNFAST_POOL_VBYTES 32
#include "pool2d_loops.h"

namespace cnnfast::detail {
const PoolSimd* pool_simd_avx2() { return &pool_avx2::kPoolTable; }
}  // namespace cnnfast::detail

#else

namespace cnnfast::detail {
const PoolSimd* pool_simd_avx2() { return nullptr; }
}  // namespace cnnfast::detail

#endif
