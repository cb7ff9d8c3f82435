// The pooling loops of pool2d_loops.h compiled with AVX-512 flags (see CMakeLists.txt); only
// called after pool2d.cpp checked the CPU supports AVX-512F/BW/VL/DQ.
#define CNNFAST_POOL_NS pool_avx512
#define CNNFAST_POOL_NAME "avx512"
#define CNNFAST_POOL_VBYTES 64
#if defined(__AVX512F__)
#define CNNFAST_POOL_NARROW &kPoolNarrow  // the 2x2 average kernels for C < 16
#endif
#include "pool2d_loops.h"
