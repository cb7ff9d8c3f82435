// GEMM micro-kernel, portable C++ (baseline ISA): a 4 x 8 tile of C in a local array that the
// compiler keeps in SSE2 registers (8 xmm accumulators). The fallback when no SIMD path applies.
#include "gemm_ukernel.h"

namespace cnnfast {
namespace {

constexpr int MR = 4;
constexpr int NR = 8;

// a: packed A panel; b: kc x 8 k-major; c (4, 8) with row stride ldc.
template <bool KMajor>
void ukernel_4x8(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                 float beta) {
    float acc[MR][NR] = {};
    for (int64_t k = 0; k < kc; ++k) {
        for (int i = 0; i < MR; ++i) {
            const float ai = KMajor ? a[k * MR + i] : a[i * kGemmARowStride + k];
            for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[k * NR + j];
        }
    }
    for (int i = 0; i < MR; ++i) {
        float* ci = c + i * ldc;
        if (beta == 0.0f) {
            for (int j = 0; j < NR; ++j) ci[j] = alpha * acc[i][j];
        } else {
            for (int j = 0; j < NR; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
        }
    }
}

}  // namespace

const GemmUkernel* gemm_ukernel_4x8_scalar() {
    static const GemmUkernel table = {
        "scalar", MR, NR, &ukernel_4x8<true>, &ukernel_4x8<false>, nullptr, nullptr};
    return &table;
}

}  // namespace cnnfast
