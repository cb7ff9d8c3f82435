#pragma once
// The machine's single-thread FP32 multiply-add ceiling, measured: the yardstick GEMM efficiency
// is quoted against (the nominal peak of a VM's CPU says little about the cycles it gets).
#include <cstdint>

namespace cnnfast {

// GFLOP/s of `iterations` rounds of independent fused multiply-adds on the widest SIMD path
// simd_level() allows (AVX-512: 24 chains of 16 lanes; AVX2: 12 of 8; scalar: 8), on the
// calling thread. Each round is 2 FLOP per lane per chain.
double measure_fma_peak_gflops(int64_t iterations);

}  // namespace cnnfast
