#pragma once
// Integer GEMM for int8 inference: unsigned 8-bit activations times signed 8-bit weights,
// summed exactly in int32. On CPUs with AMX the products run on its tiles (tdpbusd); with
// AVX512-VNNI the micro-kernel is vpdpbusd (four products and their sum per int32 lane per
// instruction); elsewhere a portable micro-kernel.
// Integer sums are exact (no overflow for K * 255 * 128 < 2^31, i.e. K < 65,793), so every
// path gives the same result as the naive loop.
#include <cstdint>

namespace cnnfast {

// C (M,N) int32 = A (M,K) uint8, row stride lda  x  B (K,N) int8, row stride ldb (+ C when
// accumulate). Threaded. Throws std::invalid_argument when K could overflow int32.
void gemm_u8s8s32(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                  const int8_t* B, int64_t ldb, int32_t* C, int64_t ldc, bool accumulate);

// B (K,N) int8, row stride ldb, packed once into gemm_u8s8_packed_b_size(K, N) uint32 values,
// 64-byte aligned (every path reads the one layout, gemm_u8s8_ukernel.h): the int8 layers
// (quantized.h) pack their kernels so and run the micro-kernel on their own tiles. Throws as
// gemm_u8s8s32 for a K that could overflow.
int64_t gemm_u8s8_packed_b_size(int64_t K, int64_t N);
void gemm_u8s8_pack_b(uint32_t* packed_b, int64_t K, int64_t N, const int8_t* B, int64_t ldb);

// The spec: the triple loop.
void gemm_u8s8s32_naive(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                        const int8_t* B, int64_t ldb, int32_t* C, int64_t ldc, bool accumulate);

// "amx_int8" (AMX tiles), "avx512_vnni" (vpdpbusd) or "portable"; select one by name ("auto"
// included) for tests.
const char* gemm_u8s8_path();
bool set_gemm_u8s8_path(const char* name);

}  // namespace cnnfast
