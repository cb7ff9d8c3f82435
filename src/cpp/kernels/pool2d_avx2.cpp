// The pooling loops of pool2d_loops.h compiled with AVX2+FMA flags (see CMakeLists.txt); only
// called after pool2d.cpp checked the CPU supports AVX2.
#define CNNFAST_POOL_NS pool_avx2
#define CNNFAST_POOL_NAME "avx2"
#define CNNFAST_POOL_VBYTES 32
#include "pool2d_loops.h"
