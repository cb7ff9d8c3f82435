#pragma once
// Internal to the int8 GEMM: the packed layout and the micro-kernel contract shared by
// gemm_u8s8.cpp (packing, tiles, threading), gemm_u8s8_avx512vnni.cpp and the int8 layers'
// tile loop (int8_chunks.h).
#include <cstdint>

namespace cnnfast {

// Register tile: 14 rows x 32 columns of int32 (28 zmm accumulators), as the float kernels.
constexpr int64_t kU8MR = 14, kU8NR = 32;

// Packed operands hold k in quads: one uint32 = 4 consecutive k of one row of A (uint8, k
// lowest) or of one column of B (int8), the layout vpdpbusd multiplies lane by lane.
//  a: kU8MR rows of a_stride quads, a[i * a_stride + q];
//  b: kq x kU8NR quads, b[q * kU8NR + j], 64-byte aligned.
// c (kU8MR x kU8NR int32, row stride ldc) = sum (+ c when accumulate).
using U8UkernelFn = void (*)(int64_t kq, const uint32_t* a, int64_t a_stride, const uint32_t* b,
                             int32_t* c, int64_t ldc, bool accumulate);

// Rows 4q .. 4q + 3 of B stored (K,N) (all inside K), columns [n0, n0 + kU8NR) (all inside N),
// as kU8NR quads: one quad row q of a packed B panel.
using U8PackBFn = void (*)(const int8_t* B, int64_t ldb, int64_t q, int64_t n0, uint32_t* out);

struct U8Gemm {
    const char* path;
    U8UkernelFn ukernel;
    U8PackBFn pack_b;  // null: the scalar packing; edge quads always take it
};

// Null when the build lacks AVX512-VNNI.
const U8Gemm* gemm_u8s8_avx512vnni();

// The table in use (gemm_u8s8.cpp), for the int8 layers that tile their products themselves
// (int8_chunks.h).
const U8Gemm* gemm_u8s8_table();

}  // namespace cnnfast
