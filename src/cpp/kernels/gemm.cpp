// TEMPORARY placeholder (being replaced by the packed SIMD GEMM): row-parallel naive loop.
#include "gemm.h"
#include "parallel.h"

namespace cnnfast {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
#pragma omp parallel for num_threads(threads_for(M)) schedule(static)
    for (int64_t i = 0; i < M; ++i) {
        const float* a_row = trans_a ? A + i : A + i * lda;
        sgemm_naive(trans_a, trans_b, 1, N, K, alpha, a_row, lda, B, ldb, beta, C + i * ldc, ldc);
    }
}

const char* sgemm_simd_path() { return "scalar"; }

}  // namespace cnnfast
