#pragma once
// Internal to the int8 kernels: the element-wise loops of quantization and requantization, one
// table per ISA (quantized.cpp holds the portable one, quantized_avx512.cpp the AVX-512 one),
// chosen once at run time. Every table computes the same values as the portable loops, bit for
// bit: the same float operations in the same order (no contraction into FMA).
#include <cstdint>

#include "elementwise_simd.h"
#include "gemm_u8s8_ukernel.h"
#include "quantized.h"
#include "workspace.h"

namespace cnnfast {

struct Int8Elementwise {
    const char* path;
    // q[i] = (uint8) (round_half_even(max(lo, min(x[i] * inv, hi))) + zp), i < n; NaN -> lo.
    void (*quantize)(uint8_t* q, const float* x, int64_t n, float inv, float lo, float hi,
                     float zp);
    // The same on `rows` rows of n values, x's ldx floats apart, q's ldq bytes apart (an
    // image's rows into its padded layout: quantize_u8_padded).
    void (*quantize_rows)(uint8_t* q, int64_t ldq, const float* x, int64_t ldx, int64_t rows,
                          int64_t n, float inv, float lo, float hi, float zp);
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
    // 2x2 windows of float outputs averaged, then quantized as `quantize` does: q row i
    // (K values; rows ldq apart) from the window whose top-left, top-right, bottom-left and
    // bottom-right values are top[i step + k], top[i step + K + k], bottom[i step + k] and
    // bottom[i step + K + k], as ((tl + bl) + (tr + br)) * 0.25f: the order of the average
    // pooling kernels (pool2d_loops.h, pool2d_narrow_avx512.cpp), so the same bits as pooling
    // first.
    void (*avgpool2_u8)(uint8_t* q, int64_t ldq, const float* top, const float* bottom,
                        int64_t step, int64_t windows, int64_t K, float inv, float lo, float hi,
                        float zp);
};

// The epilogue's per-channel factors of one call, in the calling thread's workspace: K
// multipliers x_scale * w_scale[k], then K int32 zero-point shares x_zero_point * w_sums[k]
// (0 when w_sums is null).
float* int8_epilogue_factors(int64_t K, const Int8Epilogue& e);
// The table in use.
const Int8Elementwise* int8_elementwise();

// The activation a requantization does not apply (any but linear and ReLU), in place on n
// floats: the element-wise kernel activation_forward runs, so the bits are those of activating
// the whole output afterwards.
struct Int8TileActivation {
    explicit Int8TileActivation(const Int8Epilogue& e)
        : fn(e.act == Activation::linear || e.act == Activation::relu
                 ? nullptr
                 : detail::elementwise_simd().act_forward),
          kind(static_cast<int>(e.act)), alpha(e.act_alpha) {}
    void operator()(float* y, int64_t n) const {
        if (fn) fn(y, y, n, kind, alpha);
    }
    void (*fn)(float*, const float*, int64_t, int, float);
    int kind;
    float alpha;
};

// The finishers of int8_product (int8_chunks.h) shared by the int8 convolution and dense
// layer: each writes rows [m, m + rows) x columns [n0, n0 + cols) of an output of K columns
// from a tile of int32 sums. The factors are taken once per call, read by every thread.
struct Int8FloatTiles {  // y (M,K) float32: the requantize epilogue, then the activation
    Int8FloatTiles(float* y, int64_t K, const Int8Epilogue& e)
        : y(y), K(K), bias(e.bias), relu(e.act == Activation::relu), act(e),
          mult(int8_epilogue_factors(K, e)), shift(reinterpret_cast<const int32_t*>(mult + K)),
          t(int8_elementwise()) {}
    // rows x cols float outputs of tile into out (row stride ldo), activated.
    void to_float(float* out, int64_t ldo, int64_t rows, int64_t n0, int64_t cols,
                  const int32_t* tile, int64_t ldt) const {
        t->requantize(out, ldo, tile, ldt, rows, cols, mult + n0, shift + n0,
                      bias ? bias + n0 : nullptr, relu);
        if (!act.fn) return;
        if (ldo == cols) return act(out, rows * cols);
        for (int64_t r = 0; r < rows; ++r) act(out + r * ldo, cols);
    }
    void operator()(int64_t m, int64_t rows, int64_t n0, int64_t cols, const int32_t* tile,
                    int64_t ldt) const {
        to_float(y + m * K + n0, K, rows, n0, cols, tile, ldt);
    }
    float* y;
    int64_t K;
    const float* bias;
    bool relu;
    Int8TileActivation act;
    const float* mult;
    const int32_t* shift;
    const Int8Elementwise* t;
};

// A thread's float tile of at most `values` outputs, between the sums and their quantization.
inline float* int8_float_tile(int64_t values) {
    return workspace<float>(Scratch::int8_float_tile, values);
}

struct Int8U8Tiles {  // yq (M,K) uint8: the same, quantized to the next layer's grid `out`
    Int8U8Tiles(uint8_t* yq, int64_t K, const Int8Epilogue& e, const Int8Output& out)
        : f(nullptr, K, e), yq(yq), inv(1.0f / out.scale),
          lo(static_cast<float>(-out.zero_point)), hi(static_cast<float>(255 - out.zero_point)),
          zp(static_cast<float>(out.zero_point)) {}
    void operator()(int64_t m, int64_t rows, int64_t n0, int64_t cols, const int32_t* tile,
                    int64_t ldt) const {
        uint8_t* q = yq + m * f.K + n0;
        if (!f.act.fn)
            return f.t->requantize_u8(q, f.K, tile, ldt, rows, cols, f.mult + n0, f.shift + n0,
                                      f.bias ? f.bias + n0 : nullptr, f.relu, inv, lo, hi, zp);
        // Another activation: the float outputs activated in L1, then quantized.
        float* y = int8_float_tile(rows * cols);
        f.to_float(y, cols, rows, n0, cols, tile, ldt);
        f.t->quantize_rows(q, f.K, y, cols, rows, cols, inv, lo, hi, zp);
    }
    Int8FloatTiles f;
    uint8_t* yq;
    float inv, lo, hi, zp;
};

// Int8U8Tiles for the pooled convolutions: tile rows 4i .. 4i + 3 (i < kU8MR / 4) are the
// four pixels (top-left, top-right, bottom-left, bottom-right) of pooled output pixel
// m / kU8MR * (kU8MR / 4) + i (below `windows`). Max pooling (conv2d_forward_int8_u8_maxpool2):
// each column's largest sum (smallest where its factor is negative) goes through the epilogue
// (ReLU or none: fuse_int8_chains fuses no other activation). Average pooling (_avgpool2):
// every pixel's float output, activated, then each window's average quantized.
struct Int8U8PoolTiles {
    Int8U8PoolTiles(uint8_t* yq, int64_t K, const Int8Epilogue& e, const Int8Output& out,
                    int64_t windows, bool average)
        : u(yq, K, e, out), windows(windows), average(average) {}
    void operator()(int64_t m, int64_t, int64_t n0, int64_t cols, const int32_t* tile,
                    int64_t ldt) const {
        constexpr int64_t per_tile = kU8MR / 4;
        const int64_t w0 = m / kU8MR * per_tile, n = std::min(per_tile, windows - w0);
        const Int8FloatTiles& f = u.f;
        uint8_t* q = u.yq + w0 * f.K + n0;
        if (!average)
            return f.t->requantize_u8_pool4(q, f.K, tile, ldt, n, cols, f.mult + n0, f.shift + n0,
                                            f.bias ? f.bias + n0 : nullptr, f.relu, u.inv, u.lo,
                                            u.hi, u.zp);
        float* y = int8_float_tile(4 * n * cols);
        f.to_float(y, cols, 4 * n, n0, cols, tile, ldt);
        f.t->avgpool2_u8(q, f.K, y, y + 2 * cols, 4 * cols, n, cols, u.inv, u.lo, u.hi, u.zp);
    }
    Int8U8Tiles u;
    int64_t windows;
    bool average;
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
