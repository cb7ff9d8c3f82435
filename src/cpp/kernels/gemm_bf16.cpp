#include "gemm_bf16.h"

#include <cmath>
#include <cstring>

#include "cpu_features.h"
#include "gemm_bf16_ukernel.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

namespace {

uint16_t bf16_bits(float x) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
    // Subnormal inputs become signed zero, as vcvtne2ps2bf16 makes them and as vdpbf16ps reads
    // bfloat16 subnormals; a normal float32 never rounds to a subnormal bfloat16.
    if ((u & 0x7f800000u) == 0) return static_cast<uint16_t>((u >> 16) & 0x8000u);
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (overflow goes to infinity)
    return static_cast<uint16_t>(u >> 16);
}

float bf16_value(uint32_t h) {
    const uint32_t u = h << 16;
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// The portable micro-kernel: vdpbf16ps's operations, lane by lane, in its order (k + 1, then k).
void ukernel_14x32_portable(int64_t kp, const uint32_t* a, int64_t a_stride, const uint32_t* b,
                            float* c, int64_t ldc, float beta) {
    float acc[kBf16MR][kBf16NR] = {};
    for (int64_t p = 0; p < kp; ++p) {
        for (int64_t i = 0; i < kBf16MR; ++i) {
            const uint32_t ai = a[i * a_stride + p];
            const float a_hi = bf16_value(ai >> 16), a_lo = bf16_value(ai & 0xffffu);
            const uint32_t* bp = b + p * kBf16NR;
            // Products of two bfloat16 values are exact in float32: a fused or a separate
            // multiply-add rounds the same.
            for (int64_t j = 0; j < kBf16NR; ++j) {
                acc[i][j] += a_hi * bf16_value(bp[j] >> 16);
                acc[i][j] += a_lo * bf16_value(bp[j] & 0xffffu);
            }
        }
    }
    for (int64_t i = 0; i < kBf16MR; ++i)
        for (int64_t j = 0; j < kBf16NR; ++j)
            c[i * ldc + j] = beta == 0.0f ? acc[i][j] : std::fma(beta, c[i * ldc + j], acc[i][j]);
}

const Bf16Gemm kPortable{"portable", ukernel_14x32_portable, nullptr, nullptr};

// The avx512 slot holds the BF16 table only on CPUs with the instructions (and under the
// CNNFAST_SIMD cap: scalar or avx2 takes the portable kernel).
const Bf16Gemm* native_table() { return cpu_has_avx512_bf16() ? gemm_bf16_avx512bf16() : nullptr; }

SimdTables<Bf16Gemm>& tables() {
    static SimdTables<Bf16Gemm> t(&kPortable, nullptr, native_table());
    return t;
}

uint32_t pair(float lo, float hi) {
    return static_cast<uint32_t>(bf16_bits(lo)) | (static_cast<uint32_t>(bf16_bits(hi)) << 16);
}

}  // namespace

float round_to_bf16(float x) { return bf16_value(bf16_bits(x)); }

const char* sgemm_bf16_path() { return tables().current()->path; }

bool set_sgemm_bf16_path(const char* name) {
    if (std::strcmp(name, "avx512_bf16") == 0) name = "avx512";
    if (std::strcmp(name, "portable") == 0) name = "baseline";
    return tables().select(name);
}

void sgemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    const int64_t kp = (K + 1) / 2, nb = (N + kBf16NR - 1) / kBf16NR;
    const int64_t mb = (M + kBf16MR - 1) / kBf16MR;
    const Bf16Gemm* g = tables().current();
    auto a_at = [&](int64_t m, int64_t k) {
        return m < M && k < K ? (trans_a ? A[k * lda + m] : A[m * lda + k]) : 0.0f;
    };
    auto b_at = [&](int64_t k, int64_t n) {
        return n < N && k < K ? (trans_b ? B[n * ldb + k] : B[k * ldb + n]) : 0.0f;
    };
    const int T = threads_for(M * N * K / kMacsPerThread + 1);
    // op(B) packed once, column block by column block (zero beyond N and K), shared read-only.
    uint32_t* packed_b = workspace<uint32_t>(Scratch::gemm_bf16_b, nb * kp * kBf16NR);
    parallel_for(T, nb, [&](int64_t jb) {
        uint32_t* out = packed_b + jb * kp * kBf16NR;
        for (int64_t p = 0; p < kp; ++p) {
            if (g->pack_b && !trans_b) {
                g->pack_b(B, ldb, K, N, p, jb * kBf16NR, out + p * kBf16NR);
                continue;
            }
            for (int64_t j = 0; j < kBf16NR; ++j)
                out[p * kBf16NR + j] =
                    pair(b_at(2 * p, jb * kBf16NR + j), b_at(2 * p + 1, jb * kBf16NR + j));
        }
    });
    // Row blocks across threads: each packs its 14 rows of op(A), then sweeps every column
    // block; edge tiles go through a scratch tile.
    parallel_for(T, mb, [&](int64_t ib) {
        // Rows of kp pairs, the stride padded to a cache line.
        const int64_t stride = (kp + 15) / 16 * 16;
        uint32_t* packed_a =
            workspace<uint32_t>(Scratch::gemm_bf16_a, stride * kBf16MR + kBf16MR * kBf16NR);
        float* tile = reinterpret_cast<float*>(packed_a + stride * kBf16MR);
        const int64_t m0 = ib * kBf16MR, rows = std::min(kBf16MR, M - m0);
        for (int64_t i = 0; i < kBf16MR; ++i) {
            uint32_t* out = packed_a + i * stride;
            if (g->pack_row && !trans_a && i < rows) {
                g->pack_row(A + (m0 + i) * lda, K, out);
                continue;
            }
            for (int64_t p = 0; p < kp; ++p)
                out[p] = pair(a_at(m0 + i, 2 * p), a_at(m0 + i, 2 * p + 1));
        }
        for (int64_t jb = 0; jb < nb; ++jb) {
            const int64_t n0 = jb * kBf16NR, cols = std::min(kBf16NR, N - n0);
            const uint32_t* pb = packed_b + jb * kp * kBf16NR;
            if (rows == kBf16MR && cols == kBf16NR) {
                g->ukernel(kp, packed_a, stride, pb, C + m0 * ldc + n0, ldc, beta);
                continue;
            }
            g->ukernel(kp, packed_a, stride, pb, tile, kBf16NR, 0.0f);
            for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < cols; ++j) {
                    float& c = C[(m0 + i) * ldc + n0 + j];
                    c = beta == 0.0f ? tile[i * kBf16NR + j] : std::fma(beta, c, tile[i * kBf16NR + j]);
                }
        }
    });
}

void sgemm_bf16_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) {
    auto a_at = [&](int64_t m, int64_t k) {
        return k < K ? round_to_bf16(trans_a ? A[k * lda + m] : A[m * lda + k]) : 0.0f;
    };
    auto b_at = [&](int64_t k, int64_t n) {
        return k < K ? round_to_bf16(trans_b ? B[n * ldb + k] : B[k * ldb + n]) : 0.0f;
    };
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            float sum = 0.0f;
            for (int64_t k = 0; k < K; k += 2) {
                sum += a_at(m, k + 1) * b_at(k + 1, n);
                sum += a_at(m, k) * b_at(k, n);
            }
            float& c = C[m * ldc + n];
            c = beta == 0.0f ? sum : std::fma(beta, c, sum);
        }
}

}  // namespace cnnfast
