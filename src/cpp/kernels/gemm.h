#pragma once
// Single-precision GEMM on row-major buffers, the workhorse of conv and dense layers.
#include <cstdint>

namespace cnnfast {

// C (M,N) = alpha * op(A) * op(B) + beta * C, all row-major.
// op(A) is (M,K): A is (M,K) with row stride lda, or (K,M) when trans_a.
// op(B) is (K,N): B is (K,N) with row stride ldb, or (N,K) when trans_b.
// beta == 0 overwrites C without reading it (NaNs in C do not propagate). Threaded internally.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// The plain triple loop: readable spec, fallback and test oracle.
void sgemm_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc);

// sgemm on the calling thread only, for callers that parallelise outside (sgemm itself also runs
// single-threaded when called inside an OpenMP parallel region).
void sgemm_single_thread(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                         float* C, int64_t ldc);

// sgemm with a fused epilogue on each finished tile: C = act(alpha * op(A) * op(B) + beta * C + bias)
// where bias (N,) is added to every row (null: none) and act is ReLU when relu, else identity.
void sgemm_bias_relu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc, const float* bias, bool relu);

// Name of the micro-kernel path sgemm uses ("avx512", "avx2", "scalar").
const char* sgemm_simd_path();

// Which of sgemm's routes computes a product of this shape and leading dimension of A (for
// tests and benchmarks): "empty", "scale_c" (K == 0), "small_m" (few rows, unpacked),
// "tn_narrow" (A^T B with few columns, unpacked), "naive" (tiny) or "packed".
const char* sgemm_route(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda);

// Single-thread GFLOP/s of sgemm's micro-kernel loop alone, on operands already packed and in
// cache: one A block (row-panel layout, as non-transposed A is packed) swept across an L2-sized
// packed B block exactly as sgemm's inner loops do, into a cache-resident C, for `rounds` sweeps.
// The ceiling of the packed route: what is lost between it and sgemm is packing and the memory
// traffic of A, B and C. With in_l1, one A panel and one B panel at depth 128 and their C tile,
// all in L1, instead: the micro-kernel's instruction mix alone, with no cache to wait on. For
// benchmarks (bench/bench_gemm.py).
double measure_sgemm_ukernel_gflops(int64_t rounds, bool in_l1 = false);

}  // namespace cnnfast
