#pragma once
// Internal to the bfloat16 GEMM: the packed layout and the micro-kernel contract shared by
// gemm_bf16.cpp (packing, tiles, threading) and gemm_bf16_avx512bf16.cpp.
#include <cstdint>

#include "amx_tiles.h"

namespace cnnfast {

// Register tile: 14 rows x 32 columns (28 zmm accumulators, two B vectors, one broadcast).
constexpr int64_t kBf16MR = 14, kBf16NR = 32;

// Packed operands hold k in pairs: one uint32 = bfloat16 of k (low half) | of k + 1 (high half),
// the layout vdpbf16ps multiplies lane by lane.
//  a, in one of two layouts:
//   rows   (a_panel false): a[i * a_stride + p], row i of the tile, pair p; a row of A stored
//          (M,K) packs by converting it in place order;
//   panel  (a_panel true): a[p * kBf16NR + i]: the layout of b below, for op(A) = A^T (A stored
//          (K,M)): two rows of A interleaved, so no transpose is needed; the tile's rows are
//          kBf16MR consecutive columns of a 32-column panel;
//  b: kp x kBf16NR pairs, b[p * kBf16NR + j], 64-byte aligned.
// c (kBf16MR x kBf16NR, row stride ldc) = sum + beta * c; beta == 0 never reads c.
using Bf16UkernelFn = void (*)(int64_t kp, const uint32_t* a, int64_t a_stride, bool a_panel,
                               const uint32_t* b, float* c, int64_t ldc, float beta);
// One row of A stored (M,K) (K floats) as kp = ceil(K/2) pairs (zero past K).
using Bf16PackRowFn = void (*)(const float* row, int64_t K, uint32_t* out);
// Columns [n0, n0 + kBf16NR) of B stored (K,N) as a packed panel of kp pairs (out[p * kBf16NR
// + j] from rows 2p and 2p + 1; zero past K and past N): a B panel, or an A^T panel.
using Bf16PackBFn = void (*)(const float* B, int64_t ldb, int64_t K, int64_t N, int64_t n0,
                             int64_t kp, uint32_t* out);

// AMX (Intel Sapphire Rapids and later; amx_tiles.h): tiles of 16 rows x 16 pairs (A), 16 pairs
// x 16 columns (B: one packed panel's half, rows 128 bytes apart) and 16 x 16 float32 sums, so a
// block is up to 32 rows x 32 columns and k goes in steps of kAmxStep pairs. The tiles' shapes
// are per-thread state: configure() on a thread before its blocks.
constexpr int64_t kAmxRows = 32;
static_assert(kBf16NR == kAmxPanelColumns, "a B tile pair is one packed panel's 16 rows");
struct Bf16Amx {
    void (*configure)();
    // c (16 or 32 rows, two_tiles: 32; x 32 columns; row stride ldc) = A x B (+ c when
    // accumulate) over `steps` steps: A rows of a_stride pairs (16 or 32 rows readable), B a
    // packed panel. Then, with a_tail non-null, one more step on a_tail (rows a_tail_stride
    // pairs apart) x b_tail (16 x 32 pairs), both zero past the last pair: the rest of k,
    // kp % 16 pairs.
    void (*block)(bool two_tiles, int64_t steps, const uint32_t* a, int64_t a_stride,
                  const uint32_t* b, const uint32_t* a_tail, int64_t a_tail_stride,
                  const uint32_t* b_tail, float* c, int64_t ldc, bool accumulate);
    // Columns [m0, m0 + 32) of A stored (K,M) (op(A) = A^T's rows) as 32 rows of `stride`
    // pairs (a multiple of 16, zero past K and past M): the transpose AMX's A tiles need.
    void (*pack_a_transposed)(const float* A, int64_t lda, int64_t K, int64_t M, int64_t m0,
                              int64_t stride, uint32_t* out);
};

struct Bf16Gemm {
    const char* path;
    Bf16UkernelFn ukernel;
    Bf16PackRowFn pack_row;  // null: the scalar packing
    Bf16PackBFn pack_b;      // null: the scalar packing
    const Bf16Amx* amx;      // non-null: the products on AMX tiles, not on ukernel
};

// Null when the build lacks AVX512-BF16.
const Bf16Gemm* gemm_bf16_avx512bf16();
// Null when the build lacks AMX: the AVX512-BF16 table with products on AMX tiles.
const Bf16Gemm* gemm_bf16_amx();

}  // namespace cnnfast
