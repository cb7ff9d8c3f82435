#pragma once
// Internal to the int8 kernels: the element-wise loops of quantization and requantization, one
// table per ISA (quantized.cpp holds the portable one, quantized_avx512.cpp the AVX-512 one),
// chosen once at run time. Every table computes the same values as the portable loops, bit for
// bit: the same float operations in the same order (no contraction into FMA).
#include <cstdint>

#include "quantized.h"

namespace cnnfast {

struct Int8Elementwise {
    const char* path;
    // q[i] = (uint8) (round_half_even(max(lo, min(x[i] * inv, hi))) + zp), i < n; NaN -> lo.
    void (*quantize)(uint8_t* q, const float* x, int64_t n, float inv, float lo, float hi,
                     float zp);
    // y (M,K), row stride ldy, = float(acc - shift[k]) * mult[k] (+ bias[k]), then max(y, 0)
    // when relu; acc (M,K) row stride ldacc.
    void (*requantize)(float* y, int64_t ldy, const int32_t* acc, int64_t ldacc, int64_t M,
                       int64_t K, const float* mult, const int32_t* shift, const float* bias,
                       bool relu);
    // The same, then each value quantized as `quantize` does (inv, lo, hi, zp of the next int8
    // layer's input) into q (M,K), row stride ldq.
    void (*requantize_u8)(uint8_t* q, int64_t ldq, const int32_t* acc, int64_t ldacc, int64_t M,
                          int64_t K, const float* mult, const int32_t* shift, const float* bias,
                          bool relu, float inv, float lo, float hi, float zp);
};

// The epilogue's per-channel factors of one call, in the calling thread's workspace: K
// multipliers x_scale * w_scale[k], then K int32 zero-point shares x_zero_point * w_sums[k]
// (0 when w_sums is null).
float* int8_epilogue_factors(int64_t K, const Int8Epilogue& e);
// The table in use.
const Int8Elementwise* int8_elementwise();

// Null when the build lacks AVX-512.
const Int8Elementwise* int8_elementwise_avx512();

// The table in use ("baseline" or "avx512"), and choosing one by name for tests.
const char* int8_elementwise_path();
bool set_int8_elementwise_path(const char* name);

}  // namespace cnnfast
