#pragma once
// Internal to the int8 GEMM: the packed layout and the micro-kernel contract shared by
// gemm_u8s8.cpp (packing, tiles, threading), gemm_u8s8_avx512vnni.cpp and the int8 layers'
// tile loop (int8_chunks.h).
#include <cstdint>

#include "amx_tiles.h"

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

// AMX-INT8 (Intel Sapphire Rapids and later; amx_tiles.h): tdpbusd multiplies a tile of kU8MR
// rows x 16 quads of A by 16 quads x 16 columns of B (one packed panel's half, rows 128 bytes
// apart) into kU8MR x 16 int32 sums, so a block is two micro-kernel tiles (2 kU8MR rows) x kU8NR
// columns and k goes in steps of kAmxStep quads. The tiles' shapes are per-thread state:
// configure() on a thread before its blocks.
static_assert(kU8NR == kAmxPanelColumns, "a B tile pair is one packed panel's 16 rows");
struct U8Amx {
    void (*configure)();
    // c (kU8MR rows, or 2 kU8MR with two_tiles; x kU8NR; row stride ldc) = A x B exactly:
    // `steps` steps of A rows (a, lda bytes apart, 2 kU8MR rows readable with two_tiles) and of
    // the packed panel b, then, with b_tail non-null, one more step of A at a + steps * 64
    // bytes, zero past the last quad, and of b_tail (16 x kU8NR quads, zero past the last).
    void (*block)(bool two_tiles, int64_t steps, const uint8_t* a, int64_t lda,
                  const uint32_t* b, const uint32_t* b_tail, int32_t* c, int64_t ldc);
};

struct U8Gemm {
    const char* path;
    U8UkernelFn ukernel;
    U8PackBFn pack_b;    // null: the scalar packing; edge quads always take it
    const U8Amx* amx;    // non-null: the products on AMX tiles, not on ukernel
};

// Null when the build lacks AVX512-VNNI.
const U8Gemm* gemm_u8s8_avx512vnni();
// Null when the build lacks AMX: the AVX512-VNNI table with products on AMX tiles.
const U8Gemm* gemm_u8s8_amx();

// The table in use (gemm_u8s8.cpp), for the int8 layers that tile their products themselves
// (int8_chunks.h).
const U8Gemm* gemm_u8s8_table();

}  // namespace cnnfast
