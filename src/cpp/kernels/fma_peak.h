#pragma once
// The machine's single-thread FP32 multiply-add ceiling, measured: the yardstick GEMM efficiency
// is quoted against (the nominal peak of a VM's CPU says little about the cycles it gets).
#include <cstdint>

namespace cnnfast {

// GFLOP/s of `iterations` rounds of independent fused multiply-adds on the widest SIMD path
// simd_level() allows (chain counts in fma_peak_loop.h), on the calling thread.
double measure_fma_peak_gflops(int64_t iterations);

// The same for mixed precision's product (gemm_bf16.h): GFLOP/s (2 per multiply-add) of
// `iterations` rounds of independent vdpbf16ps chains on the calling thread, the ceiling the
// bfloat16 GEMM is quoted against; 0 where the CPU or the build lacks AVX512-BF16 or
// CNNFAST_SIMD caps the kernels below avx512 (then the bfloat16 GEMM is the portable one).
double measure_bf16_peak_gflops(int64_t iterations);

}  // namespace cnnfast
