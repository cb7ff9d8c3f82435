#pragma once
// Which SIMD instruction sets kernels may use: the CPU's, limited to what this build compiled
// and capped by the environment variable CNNFAST_SIMD=avx512|avx2|scalar (a request above what
// the CPU supports falls back to the best available; an unknown value is ignored). Every kernel
// family picks its micro-kernels from simd_level(), so one variable steers them all.

namespace cnnfast {

enum class SimdLevel : int { scalar = 0, avx2 = 1, avx512 = 2 };

// AVX-512 F/BW/VL/DQ with FMA, as the *_avx512.cpp files are compiled for (false when not built).
bool cpu_has_avx512();
// AVX2 with FMA (false when not built).
bool cpu_has_avx2();
// The widest level both the CPU and the CNNFAST_SIMD cap allow; computed once.
SimdLevel simd_level();

}  // namespace cnnfast
