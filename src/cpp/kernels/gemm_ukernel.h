#pragma once
// Internal to the GEMM: the micro-kernel contract shared by gemm.cpp (packing, blocking, threading)
// and the per-ISA micro-kernel files. Nothing here is part of the public gemm.h interface.
#include <cstdint>

namespace cnnfast {

// Depth of one packed block (the K extent a micro-kernel sweeps per call). Compile-time so that
// the row-panel layout below has constant displacements in the micro-kernels. At 384 an A row panel
// (14 x 400 floats, 22 KiB) stays in the 48 KiB L1 while B panels stream past it; 256, 512 and 768
// ran within the noise of 384 at 1024^2 and 2048^2 on one thread (Xeon, scratch builds).
constexpr int64_t kGemmKC = 384;
// Row stride of an A panel packed row by row. The +16 floats (one cache line) keep the MR rows of
// a panel off a 1 KiB-periodic address pattern (L1 set conflicts, 4K aliasing).
constexpr int64_t kGemmARowStride = kGemmKC + 16;

// Packed-operand layouts a micro-kernel reads (MR x NR register tile, kc <= kGemmKC):
//  b: kc x NR floats, k-major (the NR values of one k contiguous), 64-byte aligned.
//  a: one of
//     - k-major  (GemmALayout::kKMajor):  kc x MR floats, a[k*MR + i]; filled by contiguous copies
//       when op(A) is stored transposed (K,M);
//     - row panel (GemmALayout::kRows):   MR rows of kGemmARowStride floats, a[i*kGemmARowStride + k];
//       filled by row memcpy when A is stored (M,K) - the im2col case, which so needs no transpose.
// c: the MR x NR tile of C with row stride ldc; c = alpha * a*b + beta * c, and beta == 0 never
//    reads c. Only full tiles are passed; the driver routes edge tiles through a scratch tile.
using GemmUkernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                               float alpha, float beta);


// C (M,N) = act(alpha * op(A) * B + beta * C + bias) for few rows (M <= kGemmSmallM), B stored
// (K,N), unpacked: op(A) is A (M,K) or, when trans_a, A stored (K,M). bias (N,) or null; act is
// ReLU (NaN-propagating) when relu. beta == 0 never reads C.
constexpr int64_t kGemmSmallM = 4;
using GemmSmallMFn = void (*)(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                              const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                              float* C, int64_t ldc, const float* bias, bool relu);

// C (M,N) = act(alpha * A^T * B + beta * C + bias) for A stored (K,M) and B stored (K,N), both
// unpacked, N <= kGemmNarrowN: the few-column products of convolution and dense weight gradients.
// Runs on the calling thread; bias (N,) or null, act ReLU when relu, beta == 0 never reads C.
// Rows are processed in panels of kGemmNarrowRows: split rows between threads at multiples of it.
constexpr int64_t kGemmNarrowN = 128, kGemmNarrowRows = 6;
using GemmTnNarrowFn = void (*)(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                int64_t ldc, const float* bias, bool relu);

// The GEMM micro-kernels of one ISA, picked at run time by gemm.cpp (cpu_features.h: the dispatch
// idiom).
struct GemmUkernel {
    const char* path;  // "avx512", "avx2", "scalar"
    int mr, nr;
    GemmUkernelFn a_kmajor;
    GemmUkernelFn a_rows;
    GemmSmallMFn small_m;      // few-row products without packing (null: the portable loops)
    GemmTnNarrowFn tn_narrow;  // A^T B with few columns, without packing (null: none)
};

// Each ISA's table; null when the build lacks the ISA.
const GemmUkernel* gemm_ukernel_14x32_avx512();
const GemmUkernel* gemm_ukernel_6x16_avx2();
const GemmUkernel* gemm_ukernel_4x8_scalar();

// The AVX-512 table's unpacked kernels (gemm_small_m_avx512.cpp, gemm_tn_narrow_avx512.cpp),
// defined only in builds with AVX-512.
void gemm_small_m_avx512(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                         float* C, int64_t ldc, const float* bias, bool relu);
void gemm_tn_narrow_avx512(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                           int64_t ldc, const float* bias, bool relu);

}  // namespace cnnfast
