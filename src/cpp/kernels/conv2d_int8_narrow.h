#pragma once
// Internal to the int8 convolution (conv2d_int8.cpp): the sums of layers of at most 16 filters
// (LeNet-5's 6 and 16). The int8 GEMM's 14 x 32 register tiles hold 32 filters per pixel: with 6
// (LeNet-5's C1, one input channel) 81% of its vpdpbusd lanes were idle, and its im2col copied
// 25-byte rows in 16-byte pieces. Here one vector holds all of a pixel's filters and each
// vpdpbusd reads the pixel's next 4 input bytes straight from the padded input: no columns, and
// the tile comes out pixel-major, as the epilogues take it. Where a layer's pixels lie at most 4
// bytes apart and its filters are at most 8 (C1), the pixels go in the lanes instead: 16 pixels'
// windows shuffled out of one load, one vpdpbusd per filter, the sums transposed at the end.
#include <cstdint>

#include "activation.h"

namespace cnnfast {

// Output pixels per call (the lanes) and the most filters.
constexpr int64_t kNarrowPixels = 16, kNarrowMaxK = 16;
// The most filters of the form with pixels in the lanes (pixel_step <= 4: one input channel).
constexpr int64_t kNarrowLaneMaxK = 8;

// The filters laid out for Int8NarrowSumsFn: w[(kh * groups + g) * 16 + k] holds, lowest byte
// first, the int8 weights of bytes 4g .. 4g + 3 of kernel row kh's span (KW * C bytes of the
// padded input, kw then c) for filter k; zero past the span and for k >= K.
// groups = ceil(span / 4).
//
// tile[j * 16 + k] (j < n <= 16, k < K; later columns undefined) = sum over kh < KH and b < span of
// src[kh * row_step + j * pixel_step + b] * w(kh, b, k), as int32: the raw sums (the zero-point
// share is the epilogue's) of n consecutive output pixels of one output row, the first one's
// receptive field at src, for a layer of K filters. Reads up to 3 bytes past each span.
using Int8NarrowSumsFn = void (*)(int32_t* tile, const uint8_t* src, int64_t n,
                                  int64_t pixel_step, int64_t row_step, int64_t KH, int64_t span,
                                  const uint32_t* w, int64_t K);

// The fused epilogue of Int8NarrowAvgPoolFn: per filter k < K, the requantization's factors
// (quantized_simd.h's mult and shift, bias or null), then the activation (linear, relu, tanh or
// sigmoid: int8_narrow_fuses), and the next layer's grid (quantize's inv, lo, hi, zp).
struct Int8NarrowEpilogue {
    const float* mult;
    const int32_t* shift;
    const float* bias;
    Activation act;
    float inv, lo, hi, zp;
};
inline bool int8_narrow_fuses(Activation act) {
    return act == Activation::linear || act == Activation::relu || act == Activation::tanh ||
           act == Activation::sigmoid;
}

// q (n / 2 x K bytes, back to back) = the 2x2 average pooling of two output rows' n pixels (n
// even: a pooled row's whole width in one call; the top row's first receptive field at src,
// the bottom row's at src + out_row, each as for Int8NarrowSumsFn) through the epilogue:
// requantized, activated, each window's ((top-left + bottom-left) + (top-right +
// bottom-right)) * 0.25f quantized - the float operations of the int8 epilogue, the activation
// kernel on AVX-512, the average pooling and quantize_u8, so the bytes of those steps apart.
using Int8NarrowAvgPoolFn = void (*)(uint8_t* q, const uint8_t* src, int64_t n,
                                     int64_t pixel_step, int64_t row_step, int64_t out_row,
                                     int64_t KH, int64_t span, const uint32_t* w, int64_t K,
                                     const Int8NarrowEpilogue& e);

// Null when the build lacks AVX512-VNNI.
Int8NarrowSumsFn conv2d_int8_narrow_avx512vnni();
Int8NarrowAvgPoolFn conv2d_int8_narrow_avgpool_avx512vnni();

// The same on AMX tiles (conv2d_int8_narrow_amx.cpp; null when the build lacks AMX), for any
// pixel step, with w in another layout: per kernel row kh and 64-byte chunk c of its
// span (chunks = ceil(span / 64)), a 16 x 16 tile of uint32 at w + (kh * chunks + c) * 256,
// row r holding the 16 filters' weights of bytes 64 c + 4 r .. + 3 of the span (as
// Int8NarrowSumsFn's w, zero past the span and past K). Reads 16 rows of whole chunks from src
// and src + out_row, pixel_step apart: up to 15 pixel_step + 64 chunks bytes past a row's
// first pixel.
Int8NarrowAvgPoolFn conv2d_int8_narrow_avgpool_amx();

}  // namespace cnnfast
