// The pooling loops of pool2d_loops.h compiled with AVX-512 flags (see CMakeLists.txt); only
// called after pool2d.cpp checked the CPU supports AVX-512F/BW/VL/DQ.
#define CNNFAST_POOL_NS pool_avx512
#define CNNFAST_POOL_NAME "avx512"
#define CNNFAST_POOL_VBYTES 64
#include "pool2d_loops.h"
