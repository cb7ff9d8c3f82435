// The pooling loops of pool2d_loops.h compiled with AVX-512 flags (see CMakeLists.txt), the
// table pool2d.cpp picks when the CPU and CNNFAST_SIMD allow avx512.
#include "pool2d_simd.h"

#if defined(CNNFAST_BUILD_AVX512)
#define CNNFAST_POOL_NS pool_avx512
#define CNNFAST_POOL_NAME "avx512"
#define CNNFAST_POOL_VBYTES 64
#define CNNFAST_POOL_NARROW pool_narrow_avx512()  // the 2x2 average kernels for C < 16
#include "pool2d_loops.h"

namespace cnnfast::detail {
const PoolSimd* pool_simd_avx512() { return &pool_avx512::kPoolTable; }
}  // namespace cnnfast::detail

#else

namespace cnnfast::detail {
const PoolSimd* pool_simd_avx512() { return nullptr; }
}  // namespace cnnfast::detail

#endif
