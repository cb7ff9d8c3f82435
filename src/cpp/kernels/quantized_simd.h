#pragma once
// Internal to the int8 kernels: the element-wise loops of quantization and requantization, one
// table per ISA (quantized.cpp holds the portable one, quantized_avx512.cpp the AVX-512 one),
// chosen once at run time. Every table computes the same values as the portable loops, bit for
// bit: the same float operations in the same order (no contraction into FMA).
#include <cstdint>

#include "gemm_u8s8_ukernel.h"
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
    // requantize_u8 of `windows` rows of pooled sums: row i of q from rows 4i .. 4i + 3 of acc,
    // per column the largest of the four (the smallest where mult[k] < 0, whose requantization
    // decreases), so row i is the largest of the four rows requantize_u8 would write.
    void (*requantize_u8_pool4)(uint8_t* q, int64_t ldq, const int32_t* acc, int64_t ldacc,
                                int64_t windows, int64_t K, const float* mult,
                                const int32_t* shift, const float* bias, bool relu, float inv,
                                float lo, float hi, float zp);
};

// The epilogue's per-channel factors of one call, in the calling thread's workspace: K
// multipliers x_scale * w_scale[k], then K int32 zero-point shares x_zero_point * w_sums[k]
// (0 when w_sums is null).
float* int8_epilogue_factors(int64_t K, const Int8Epilogue& e);
// The table in use.
const Int8Elementwise* int8_elementwise();

// The finishers of int8_product (int8_chunks.h) shared by the int8 convolution and dense
// layer: each writes rows [m, m + rows) x columns [n0, n0 + cols) of an output of K columns
// from a tile of int32 sums. The factors are taken once per call, read by every thread.
struct Int8FloatTiles {  // y (M,K) float32: the requantize epilogue
    Int8FloatTiles(float* y, int64_t K, const Int8Epilogue& e)
        : y(y), K(K), bias(e.bias), relu(e.relu), mult(int8_epilogue_factors(K, e)),
          shift(reinterpret_cast<const int32_t*>(mult + K)), t(int8_elementwise()) {}
    void operator()(int64_t m, int64_t rows, int64_t n0, int64_t cols, const int32_t* tile,
                    int64_t ldt) const {
        t->requantize(y + m * K + n0, K, tile, ldt, rows, cols, mult + n0, shift + n0,
                      bias ? bias + n0 : nullptr, relu);
    }
    float* y;
    int64_t K;
    const float* bias;
    bool relu;
    const float* mult;
    const int32_t* shift;
    const Int8Elementwise* t;
};

struct Int8U8Tiles {  // yq (M,K) uint8: the same, quantized to the next layer's grid `out`
    Int8U8Tiles(uint8_t* yq, int64_t K, const Int8Epilogue& e, const Int8Output& out)
        : f(nullptr, K, e), yq(yq), inv(1.0f / out.scale),
          lo(static_cast<float>(-out.zero_point)), hi(static_cast<float>(255 - out.zero_point)),
          zp(static_cast<float>(out.zero_point)) {}
    void operator()(int64_t m, int64_t rows, int64_t n0, int64_t cols, const int32_t* tile,
                    int64_t ldt) const {
        f.t->requantize_u8(yq + m * f.K + n0, f.K, tile, ldt, rows, cols, f.mult + n0,
                           f.shift + n0, f.bias ? f.bias + n0 : nullptr, f.relu, inv, lo, hi, zp);
    }
    Int8FloatTiles f;
    uint8_t* yq;
    float inv, lo, hi, zp;
};

// Int8U8Tiles for conv2d_forward_int8_u8_maxpool2: tile rows 4i .. 4i + 3 (i < kU8MR / 4) are
// the four pixels of pooled output pixel m / kU8MR * (kU8MR / 4) + i (below `windows`); each
// column's largest sum (smallest where its factor is negative) goes through the epilogue.
struct Int8U8PoolTiles {
    Int8U8PoolTiles(uint8_t* yq, int64_t K, const Int8Epilogue& e, const Int8Output& out,
                    int64_t windows)
        : u(yq, K, e, out), windows(windows) {}
    void operator()(int64_t m, int64_t, int64_t n0, int64_t cols, const int32_t* tile,
                    int64_t ldt) const {
        constexpr int64_t per_tile = kU8MR / 4;
        const int64_t w0 = m / kU8MR * per_tile, n = std::min(per_tile, windows - w0);
        const Int8FloatTiles& f = u.f;
        f.t->requantize_u8_pool4(u.yq + w0 * f.K + n0, f.K, tile, ldt, n, cols, f.mult + n0,
                                 f.shift + n0, f.bias ? f.bias + n0 : nullptr, f.relu, u.inv,
                                 u.lo, u.hi, u.zp);
    }
    Int8U8Tiles u;
    int64_t windows;
};

struct Int8SumTiles {  // s (M,K) int32: the sums less the zero point's share
    void operator()(int64_t m, int64_t rows, int64_t n0, int64_t cols, const int32_t* tile,
                    int64_t ldt) const {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t k = 0; k < cols; ++k)
                s[(m + r) * K + n0 + k] = tile[r * ldt + k] - x_zero_point * w_sums[n0 + k];
    }
    int32_t* s;
    int64_t K;
    const int32_t* w_sums;
    int32_t x_zero_point;
};

// Null when the build lacks AVX-512.
const Int8Elementwise* int8_elementwise_avx512();

// The table in use ("baseline" or "avx512"), and choosing one by name for tests.
const char* int8_elementwise_path();
bool set_int8_elementwise_path(const char* name);

}  // namespace cnnfast
