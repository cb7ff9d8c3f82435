#pragma once
// GEMM with bfloat16 operands and float32 sums: the product of mixed-precision training. Each
// operand value is rounded to bfloat16 (8-bit significand, round to nearest even; bfloat16
// subnormals flushed to zero), products of two bfloat16 values are exact in float32, and the
// sums are float32, in one fixed order. On CPUs with AVX512-BF16 the micro-kernel is vdpbf16ps
// (two multiply-adds per float32 lane per instruction, twice FMA's work); elsewhere a portable
// micro-kernel does the same operations in the same order and gives the same bits (except for
// float32 subnormal sums, which vdpbf16ps flushes to zero).
#include <cstdint>

namespace cnnfast {

// C (M,N) = op(A) * op(B) + beta * C, row-major; op(A) (M,K): A (M,K) with row stride lda, or
// (K,M) when trans_a; op(B) (K,N): B (K,N) with row stride ldb, or (N,K) when trans_b. A and B
// are float32 and rounded to bfloat16 as they are packed. beta == 0 never reads C. Threaded.
void sgemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The spec: the triple loop over the same rounded operands, summing k in pairs as the
// micro-kernels do (odd k first within a pair, the vdpbf16ps order).
void sgemm_bf16_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc);

// x rounded to bfloat16 (nearest even; float32 subnormals to signed zero; NaN stays NaN), as
// float32.
float round_to_bf16(float x);

// "avx512_bf16" (vdpbf16ps) or "portable"; select one by name ("auto" included) for tests.
const char* sgemm_bf16_path();
bool set_sgemm_bf16_path(const char* name);

}  // namespace cnnfast
