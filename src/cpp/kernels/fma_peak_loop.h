#pragma once
// Internal to fma_peak: the timed loop, instantiated by each ISA's file with its vector type.
#include <cstdint>
#include <cstring>

namespace cnnfast {

// Independent chains per path: more than FMA latency x pipes, within the register file (AVX-512:
// 24 of 32 zmm; AVX2: 12 of 16 ymm; scalar: 8). Each round is 2 FLOP per lane per chain.
constexpr int kFmaChainsAvx512 = 24, kFmaChainsAvx2 = 12, kFmaChainsScalar = 8;

// Chains independent multiply-add chains of vectors V for `iterations` rounds (more chains than
// FMA latency x pipes, as a GEMM tile has); returns their sum so the work cannot be elided.
template <int Chains, class V, class Splat, class Fma>
inline float fma_chains(int64_t iterations, Splat splat, Fma fma) {
    V acc[Chains];
    for (int i = 0; i < Chains; ++i) acc[i] = splat(0.001f * static_cast<float>(i));
    const V a = splat(0.999999f), b = splat(1e-7f);
    for (int64_t it = 0; it < iterations; ++it)
#pragma GCC unroll 32
        for (int i = 0; i < Chains; ++i) acc[i] = fma(acc[i], a, b);
    float r = 0.0f, lanes[sizeof(V) / sizeof(float)];
    for (int i = 0; i < Chains; ++i) {
        std::memcpy(lanes, &acc[i], sizeof(V));
        for (float v : lanes) r += v;
    }
    return r;
}

// One ISA's timed loop and the floating-point operations each of its iterations does.
struct FmaPeakLoop {
    float (*run)(int64_t iterations);
    double flop_per_iteration;
};

// The tables of fma_peak_avx2.cpp and fma_peak_avx512.cpp; null when the build lacks the ISA.
const FmaPeakLoop* fma_peak_loop_avx2();
const FmaPeakLoop* fma_peak_loop_avx512();
// vdpbf16ps chains (fma_peak_avx512bf16.cpp); null when the build lacks AVX512-BF16.
const FmaPeakLoop* bf16_peak_loop_avx512bf16();

}  // namespace cnnfast
