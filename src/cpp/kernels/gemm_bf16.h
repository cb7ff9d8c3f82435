#pragma once
// GEMM with bfloat16 operands and float32 sums: the product of mixed-precision training. Each
// operand value is rounded to bfloat16 (8-bit significand, round to nearest even; bfloat16
// subnormals flushed to zero), products of two bfloat16 values are exact in float32, and the
// sums are float32, in one fixed order. On CPUs with AVX512-BF16 the micro-kernel is vdpbf16ps
// (two multiply-adds per float32 lane per instruction, twice FMA's work); elsewhere a portable
// micro-kernel does the same operations in the same order and gives the same bits (except for
// float32 subnormal sums, which vdpbf16ps flushes to zero).
#include <cstdint>

#include "workspace.h"

namespace cnnfast {

// C (M,N) = op(A) * op(B) + beta * C, row-major; op(A) (M,K): A (M,K) with row stride lda, or
// (K,M) when trans_a; op(B) (K,N): B (K,N) with row stride ldb, or (N,K) when trans_b. A and B
// are float32 and rounded to bfloat16 as they are packed. beta == 0 never reads C. Threaded.
void sgemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The same with an epilogue on each finished tile, as sgemm_bias_relu (gemm.h) has:
// C = act(op(A) op(B) + beta * C + bias), bias (N,) or null, act ReLU when relu. With
// allow_threads false it runs on the calling thread only (sgemm_single_thread's contract).
void sgemm_bf16_bias_relu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc, const float* bias, bool relu, bool allow_threads);

// For several products with one B (Winograd's transformed kernel, over blocks of tiles): op(B)
// (K,N) packed once into sgemm_bf16_packed_b_size(N, K) uint32 (64-byte aligned), then
// C (M,N) = A (M,K, row stride lda) * B + beta * C on the calling thread. Same bits as sgemm_bf16.
int64_t sgemm_bf16_packed_b_size(int64_t N, int64_t K);
void sgemm_bf16_pack_b(bool trans_b, int64_t N, int64_t K, const float* B, int64_t ldb,
                       uint32_t* packed);
void sgemm_bf16_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                       const uint32_t* packed_b, float beta, float* C, int64_t ldc);
// The same with A already in bfloat16 (K even): row m is K / 2 pairs (bfloat16 of k in the low
// half, of k + 1 in the high) at a_rows + m * a_stride; the micro-kernel reads whole tiles of
// rows, so kSgemmBf16RowSlack rows past M must be readable (their sums are dropped).
constexpr int64_t kSgemmBf16RowSlack = 15;
void sgemm_bf16_packed_rows(int64_t M, int64_t N, int64_t K, const uint32_t* a_rows,
                            int64_t a_stride, const uint32_t* packed_b, float beta, float* C,
                            int64_t ldc);

// Mixed-precision training's switch, process-wide as Keras' global dtype policy is: while on,
// sgemm, sgemm_single_thread and sgemm_bias_relu with alpha 1 (gemm.h) compute their products
// as sgemm_bf16 does, and the convolutions take the algorithms whose products are GEMMs
// (conv2d.h). Off by default; Bf16ProductsScope turns it on for one training step.
void set_bf16_products(bool on);
bool bf16_products();

class Bf16ProductsScope {
public:
    explicit Bf16ProductsScope(bool on) : previous_(bf16_products()) { set_bf16_products(on); }
    ~Bf16ProductsScope() { set_bf16_products(previous_); }
    Bf16ProductsScope(const Bf16ProductsScope&) = delete;
    Bf16ProductsScope& operator=(const Bf16ProductsScope&) = delete;

private:
    bool previous_;
};

// The spec: the triple loop over the same rounded operands, summing k in pairs as the
// micro-kernels do (odd k first within a pair, the vdpbf16ps order).
void sgemm_bf16_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc);

// x rounded to bfloat16 (nearest even; float32 subnormals to signed zero; NaN stays NaN), as
// float32.
float round_to_bf16(float x);
// out (n,) = x (n,) rounded so (out may be x). Threaded. A float32 kernel run on operands so
// rounded computes exactly the products bfloat16 hardware does (a product of two bfloat16 values
// is exact in float32), summed in float32: the mixed-precision path of kernels whose sums are too
// short for the bfloat16 GEMM to pay (conv2d.cpp).
void round_to_bf16(float* out, const float* x, int64_t n);
// x (n,) so rounded into the calling thread's workspace `slot` (workspace.h).
const float* bf16_rounded_copy(const float* x, int64_t n, Scratch slot);

// "amx_bf16" (AMX tiles), "avx512_bf16" (vdpbf16ps) or "portable"; select one by name ("auto"
// included) for tests.
const char* sgemm_bf16_path();
// Whether the path in use is AMX or vdpbf16ps: the other kernels of mixed precision that have an
// AVX512-BF16 form (conv2d_winograd.cpp's input transform) take it then, and keep the AVX-512F
// form with the portable path, so that the two paths stay comparable bit for bit.
bool sgemm_bf16_native();
bool set_sgemm_bf16_path(const char* name);

}  // namespace cnnfast
