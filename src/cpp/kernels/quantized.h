#pragma once
// int8 inference (issue 23): activations quantized per tensor to uint8 with a scale and a zero
// point, weights int8 symmetric per output channel, products summed exactly in int32 by the int8
// GEMM's micro-kernel (gemm_u8s8_ukernel.h: vpdpbusd on AVX512-VNNI, a portable one elsewhere),
// and the float result recovered in the epilogue of each tile of sums while it is in L1:
//
//   y[m, k] = float(acc[m, k] - x_zero_point * w_sums[k]) * (x_scale * w_scale[k]) + bias[k]
//
// then the layer's activation. acc = sum_j xq[m, j] * wq[j, k] and w_sums[k] = sum_j wq[j, k], so
// the integer part is exactly sum_j (xq[m, j] - x_zero_point) * wq[j, k]: the real product
// x . w up to the rounding of x and w to their grids. Every integer is exact (|sum| <=
// rows * 255 * 127 < 2^31 for the rows the GEMM accepts), so every path gives the same int32
// sums, and the float epilogue is the same code on every path: fast and naive kernels agree to
// the bit. The naive loops beside each kernel are the spec and the test oracle.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "activation.h"
#include "conv2d.h"
#include "dense.h"
#include "pool2d.h"

namespace cnnfast {

// The epilogue of an int8 product with K output channels.
struct Int8Epilogue {
    const int32_t* w_sums = nullptr;   // (K,) column sums of the int8 weights (int8_weight_sums);
                                       // null: the sums have the zero point taken out already
    const float* w_scale = nullptr;    // (K,) per-channel weight scales: w ~= wq * w_scale
    const float* bias = nullptr;       // (K,) or null
    float x_scale = 1.0f;              // x ~= (xq - x_zero_point) * x_scale
    int32_t x_zero_point = 0;          // in [0, 255]
    // The layer's activation: ReLU inside the requantization; any other by the element-wise
    // activation kernel (activation.h's, the function activation_forward runs) on each tile of
    // float outputs while it is in L1, so the same bits as activating the whole output after.
    Activation act = Activation::linear;
    float act_alpha = 0.0f;
    // Bytes the convolutions may read past the input's end (0: none). With at least
    // conv2d_int8_input_slack(d) and an input laid out as the padded one (quantize_u8_padded,
    // dims with no padding), the convolutions read it in place instead of copying it padded.
    int64_t x_slack = 0;
};

// An int8 kernel (rows, K) packed once for the int8 GEMM (gemm_u8s8_pack_b, in 64-byte-aligned
// storage it owns), with its weight sums: made by the operators that hold weights (the Network's
// int8 steps, the bindings) and read by the kernels below.
class Int8PackedKernel {
public:
    Int8PackedKernel(const int8_t* w, int64_t rows, int64_t K);
    const uint32_t* packed() const { return storage_.data() + offset_; }
    const int32_t* sums() const { return sums_.data(); }

private:
    std::vector<uint32_t> storage_;
    size_t offset_ = 0;
    std::vector<int32_t> sums_;
};

// x (n,) float -> q (n,) uint8:
//   q = clamp(round_half_even(x * (1 / scale)), -zero_point, 255 - zero_point) + zero_point,
// 1 / scale rounded to float once. NaN becomes 0. Threaded.
void quantize_u8(uint8_t* q, const float* x, int64_t n, float scale, int32_t zero_point);
void quantize_u8_naive(uint8_t* q, const float* x, int64_t n, float scale, int32_t zero_point);

// x (N,H,W,C) float -> xp (N,Hp,Wp,C) uint8: x quantized as quantize_u8 does, pad_top rows
// and pad_left columns of zero_point (the quantized 0.0) before it and as many after as Hp and
// Wp leave (rows and columns of x past them dropped): a convolution's quantized input with its
// padding, written once. Threaded.
void quantize_u8_padded(uint8_t* xp, const float* x, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t pad_top, int64_t pad_left, int64_t Hp, int64_t Wp, float scale,
                        int32_t zero_point);

// w (rows, K) int8 -> sums (K,) int32: each output channel's weight sum (the zero point's share).
void int8_weight_sums(int32_t* sums, const int8_t* w, int64_t rows, int64_t K);

// acc (M,K) int32 -> y (M,K) float32 by the epilogue above (w_sums null: acc - 0).
void int8_requantize(float* y, const int32_t* acc, int64_t M, int64_t K, const Int8Epilogue& e);

// xq (N,H,W,C) uint8; w_packed: the (KH*KW*C, K) kernel (Keras layout (KH,KW,C,K), flat)
// packed by gemm_u8s8_pack_b; y (N,OH,OW,K) float32 is overwritten. One group; stride, padding
// and dilation as Conv2dDims says. Padding reads x_zero_point (the quantized 0.0): the input is
// padded with it once, then each L2-sized chunk of output pixels (one task of the one parallel
// region) gathers its columns straight into the micro-kernel's layout (1x1 stride-1 unpadded
// kernels copy the input's rows), and each 14x32 tile of sums goes through the epilogue.
void conv2d_forward_int8(float* y, const uint8_t* xq, const uint32_t* w_packed,
                         const Int8Epilogue& e, const Conv2dDims& d);
// The padded input's rows and columns for d, (OH - 1) stride + (K - 1) dilation + 1 (those a
// stride never reaches left out), and the bytes the convolutions may read past it.
int64_t conv2d_int8_padded_rows(const Conv2dDims& d);
int64_t conv2d_int8_padded_cols(const Conv2dDims& d);
int64_t conv2d_int8_input_slack(const Conv2dDims& d);
// The exact integer part alone: s (N,OH,OW,K) = sum (xq - x_zero_point) * wq (for tests).
void conv2d_sums_int8(int32_t* s, const uint8_t* xq, const uint32_t* w_packed,
                      const int32_t* w_sums, int32_t x_zero_point, const Conv2dDims& d);
// Direct loops on the unpacked kernel w (KH,KW,C,K), single-threaded. Same contracts.
void conv2d_forward_int8_naive(float* y, const uint8_t* xq, const int8_t* w,
                               const Int8Epilogue& e, const Conv2dDims& d);
void conv2d_sums_int8_naive(int32_t* s, const uint8_t* xq, const int8_t* w,
                            int32_t x_zero_point, const Conv2dDims& d);

// The next int8 layer's input quantization, for the kernels below that write its uint8 input
// directly (a chain of int8 layers, joined by max pooling or a flatten).
struct Int8Output {
    float scale = 1.0f;
    int32_t zero_point = 0;
};

// The same convolution, each output value then quantized as quantize_u8(.., out.scale,
// out.zero_point) does: yq (N,OH,OW,K) uint8 equals quantize_u8 of conv2d_forward_int8's y, to
// the bit (the same float operations), without writing y.
void conv2d_forward_int8_u8(uint8_t* yq, const uint8_t* xq, const uint32_t* w_packed,
                            const Int8Epilogue& e, const Int8Output& out, const Conv2dDims& d);

// conv2d_forward_int8_u8 then 2x2 stride-2 max pooling of its uint8 output ("valid": an odd
// last row or column dropped), in one pass: yq (N,OH/2,OW/2,K). The requantization is monotonic
// in the int32 sums (non-decreasing for a channel whose x_scale * w_scale >= 0, non-increasing
// otherwise), so each window's largest (smallest) sum gives its largest uint8: the bytes of the
// two steps, with a quarter of the epilogues and no full-size output (the sums of a window's
// four pixels are rows of one GEMM tile).
void conv2d_forward_int8_u8_maxpool2(uint8_t* yq, const uint8_t* xq, const uint32_t* w_packed,
                                     const Int8Epilogue& e, const Int8Output& out,
                                     const Conv2dDims& d);

// conv2d_forward_int8 (its activation included) then 2x2 stride-2 average pooling ("valid")
// of the float output, quantized to the next layer's grid: yq (N,OH/2,OW/2,K) uint8 equals
// quantize_u8 of avg_pool2d_forward of conv2d_forward_int8's y, to the bit (each window summed
// as the pooling kernels do, (top-left + bottom-left) + (top-right + bottom-right), times 1/4),
// without writing y: LeNet-5's convolution, tanh and subsampling in one pass over L1 tiles.
void conv2d_forward_int8_u8_avgpool2(uint8_t* yq, const uint8_t* xq, const uint32_t* w_packed,
                                     const Int8Epilogue& e, const Int8Output& out,
                                     const Conv2dDims& d);

// x (N,H,W,C) uint8 -> y (N,OH,OW,C) uint8, the maximum over each window; padded cells are
// ignored (pool2d_u8.cpp). Quantization is non-decreasing, so the maximum of quantized values
// is the quantized maximum: max pooling runs on the uint8 values between two int8 layers.
void max_pool2d_u8_forward(uint8_t* y, const uint8_t* x, const Pool2dDims& d);

// xq (N,IN) uint8; w_packed: the (IN,OUT) kernel packed by gemm_u8s8_pack_b; y (N,OUT) float32
// is overwritten.
void dense_forward_int8(float* y, const uint8_t* xq, const uint32_t* w_packed,
                        const Int8Epilogue& e, const DenseDims& d);
void dense_forward_int8_u8(uint8_t* yq, const uint8_t* xq, const uint32_t* w_packed,
                           const Int8Epilogue& e, const Int8Output& out, const DenseDims& d);
void dense_sums_int8(int32_t* s, const uint8_t* xq, const uint32_t* w_packed,
                     const int32_t* w_sums, int32_t x_zero_point, const DenseDims& d);
// Plain loops on the unpacked kernel w (IN,OUT). Same contracts.
void dense_forward_int8_naive(float* y, const uint8_t* xq, const int8_t* w,
                              const Int8Epilogue& e, const DenseDims& d);
void dense_sums_int8_naive(int32_t* s, const uint8_t* xq, const int8_t* w, int32_t x_zero_point,
                           const DenseDims& d);

}  // namespace cnnfast
