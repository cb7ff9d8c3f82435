// The element-wise loops of activation_loops.h compiled with AVX-512 flags (see CMakeLists.txt);
// only called after activation.cpp checked the CPU supports AVX-512F/DQ.
#define CNNFAST_SIMD_NS simd_avx512
#define CNNFAST_SIMD_NAME "avx512"
#include "activation_loops.h"
