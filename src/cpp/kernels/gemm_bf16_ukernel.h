#pragma once
// Internal to the bfloat16 GEMM: the packed layout and the micro-kernel contract shared by
// gemm_bf16.cpp (packing, tiles, threading) and gemm_bf16_avx512bf16.cpp.
#include <cstdint>

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

struct Bf16Gemm {
    const char* path;
    Bf16UkernelFn ukernel;
    Bf16PackRowFn pack_row;  // null: the scalar packing
    Bf16PackBFn pack_b;      // null: the scalar packing
};

// Null when the build lacks AVX512-BF16.
const Bf16Gemm* gemm_bf16_avx512bf16();

}  // namespace cnnfast
