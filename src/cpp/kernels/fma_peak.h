#pragma once
// The machine's single-thread FP32 multiply-add ceiling, measured: the yardstick GEMM efficiency
// is quoted against (the nominal peak of a VM's CPU says little about the cycles it gets).
#include <cstdint>

namespace cnnfast {

// GFLOP/s of `iterations` rounds of independent fused multiply-adds on the widest SIMD path
// simd_level() allows (chain counts in fma_peak_loop.h), on the calling thread.
double measure_fma_peak_gflops(int64_t iterations);

}  // namespace cnnfast
