#pragma once
// Internal to the bfloat16 GEMM: the packed layout and the micro-kernel contract shared by
// gemm_bf16.cpp (packing, tiles, threading) and gemm_bf16_avx512bf16.cpp.
#include <cstdint>

namespace cnnfast {

// Register tile: 14 rows x 32 columns (28 zmm accumulators, two B vectors, one broadcast).
constexpr int64_t kBf16MR = 14, kBf16NR = 32;

// Packed operands hold k in pairs: one uint32 = bfloat16 of k (low half) | of k + 1 (high half),
// the layout vdpbf16ps multiplies lane by lane.
//  a: kp x kBf16MR pairs, a[p * kBf16MR + i] (row i of the tile, pair p);
//  b: kp x kBf16NR pairs, b[p * kBf16NR + j], 64-byte aligned.
// c (kBf16MR x kBf16NR, row stride ldc) = sum + beta * c; beta == 0 never reads c.
using Bf16UkernelFn = void (*)(int64_t kp, const uint32_t* a, const uint32_t* b, float* c,
                               int64_t ldc, float beta);

struct Bf16Gemm {
    const char* path;
    Bf16UkernelFn ukernel;
};

// Null when the build lacks AVX512-BF16.
const Bf16Gemm* gemm_bf16_avx512bf16();

}  // namespace cnnfast
