// The element-wise loops of activation_loops.h compiled with AVX2+FMA flags (see CMakeLists.txt);
// only called after activation.cpp checked the CPU supports AVX2 and FMA.
#define CNNFAST_SIMD_NS simd_avx2
#define CNNFAST_SIMD_NAME "avx2"
#include "activation_loops.h"
