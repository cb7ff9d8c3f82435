#pragma once
// Internal to the int8 kernels: the element-wise loops of quantization and requantization, one
// table per ISA (quantized.cpp holds the portable one, quantized_avx512.cpp the AVX-512 one),
// chosen once at run time. Every table computes the same values as the portable loops, bit for
// bit: the same float operations in the same order (no contraction into FMA).
#include <cstdint>

namespace cnnfast {

struct Int8Elementwise {
    const char* path;
    // q[i] = (uint8) (round_half_even(max(lo, min(x[i] * inv, hi))) + zp), i < n; NaN -> lo.
    void (*quantize)(uint8_t* q, const float* x, int64_t n, float inv, float lo, float hi,
                     float zp);
    // y (M,K) = float(acc - shift[k]) * mult[k] (+ bias[k]), then max(y, 0) when relu.
    void (*requantize)(float* y, const int32_t* acc, int64_t M, int64_t K, const float* mult,
                       const int32_t* shift, const float* bias, bool relu);
};

// Null when the build lacks AVX-512.
const Int8Elementwise* int8_elementwise_avx512();

// The table in use ("baseline" or "avx512"), and choosing one by name for tests.
const char* int8_elementwise_path();
bool set_int8_elementwise_path(const char* name);

}  // namespace cnnfast
