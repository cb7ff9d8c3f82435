#include "gemm_u8s8.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu_features.h"
#include "gemm_u8s8_ukernel.h"
#include "int8_chunks.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

namespace {

// The portable micro-kernel: the same quads, summed exactly in int32.
void ukernel_14x32_portable(int64_t kq, const uint32_t* a, int64_t a_stride, const uint32_t* b,
                            int32_t* c, int64_t ldc, bool accumulate) {
    int32_t acc[kU8MR][kU8NR] = {};
    for (int64_t q = 0; q < kq; ++q)
        for (int64_t i = 0; i < kU8MR; ++i) {
            uint8_t av[4];
            std::memcpy(av, a + i * a_stride + q, 4);
            const uint32_t* bq = b + q * kU8NR;
            for (int64_t j = 0; j < kU8NR; ++j) {
                int8_t bv[4];
                std::memcpy(bv, bq + j, 4);
                acc[i][j] += av[0] * bv[0] + av[1] * bv[1] + av[2] * bv[2] + av[3] * bv[3];
            }
        }
    for (int64_t i = 0; i < kU8MR; ++i)
        for (int64_t j = 0; j < kU8NR; ++j)
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

const U8Gemm kPortable{"portable", ukernel_14x32_portable, nullptr, nullptr};

// The avx512 slot: AMX's table where the CPU has AMX, else vpdpbusd's where it has VNNI.
const U8Gemm* vnni_table() { return cpu_has_avx512_vnni() ? gemm_u8s8_avx512vnni() : nullptr; }
const U8Gemm* amx_table() {
    return cpu_has_amx() && cpu_has_avx512_vnni() ? gemm_u8s8_amx() : nullptr;
}
const U8Gemm* native_table() { return amx_table() ? amx_table() : vnni_table(); }

SimdTables<U8Gemm>& tables() {
    static SimdTables<U8Gemm> t(&kPortable, nullptr, native_table());
    return t;
}

// The largest K whose sums cannot leave int32: K * 255 * 128 <= 2^31 - 1.
constexpr int64_t kMaxK = (int64_t(1) << 31) / (255 * 128) - 1;

}  // namespace

const char* gemm_u8s8_path() { return tables().current()->path; }

const U8Gemm* gemm_u8s8_table() { return tables().current(); }

bool set_gemm_u8s8_path(const char* name) {
    if (std::strcmp(name, "amx_int8") == 0) return tables().select(amx_table());
    if (std::strcmp(name, "avx512_vnni") == 0) return tables().select(vnni_table());
    if (std::strcmp(name, "portable") == 0) name = "baseline";
    return tables().select(name);
}

namespace {

void check_k(const char* what, int64_t K) {
    if (K > kMaxK)
        throw std::invalid_argument(std::string(what) + ": K = " + std::to_string(K) +
                                    " could overflow the int32 sums (at most " +
                                    std::to_string(kMaxK) + ")");
}

// B packed column block by column block: quads of k per column, zero past K and N.
void pack_b(int T, const U8Gemm* g, uint32_t* packed_b, int64_t K, int64_t N, const int8_t* B,
            int64_t ldb) {
    const int64_t kq = (K + 3) / 4, nb = (N + kU8NR - 1) / kU8NR;
    parallel_for(T, nb, [&](int64_t jb) {
        uint32_t* out = packed_b + jb * kq * kU8NR;
        const bool full_cols = (jb + 1) * kU8NR <= N;
        for (int64_t q = 0; q < kq; ++q) {
            if (g->pack_b && full_cols && 4 * q + 4 <= K) {
                g->pack_b(B, ldb, q, jb * kU8NR, out + q * kU8NR);
                continue;
            }
            for (int64_t j = 0; j < kU8NR; ++j) {
                const int64_t n = jb * kU8NR + j;
                int8_t quad[4] = {};
                for (int64_t r = 0; r < 4; ++r)
                    if (n < N && 4 * q + r < K) quad[r] = B[(4 * q + r) * ldb + n];
                std::memcpy(out + q * kU8NR + j, quad, 4);
            }
        }
    });
}

}  // namespace

int64_t gemm_u8s8_packed_b_size(int64_t K, int64_t N) {
    return (N + kU8NR - 1) / kU8NR * ((K + 3) / 4) * kU8NR;
}

void gemm_u8s8_pack_b(uint32_t* packed_b, int64_t K, int64_t N, const int8_t* B, int64_t ldb) {
    check_k("gemm_u8s8_pack_b", K);
    if (K <= 0 || N <= 0) return;
    pack_b(threads_for(K * N / kMacsPerThread + 1), tables().current(), packed_b, K, N, B, ldb);
}

void gemm_u8s8s32(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                  const int8_t* B, int64_t ldb, int32_t* C, int64_t ldc, bool accumulate) {
    check_k("gemm_u8s8s32", K);
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // empty sums
        for (int64_t m = 0; m < M && !accumulate; ++m) std::fill(C + m * ldc, C + m * ldc + N, 0);
        return;
    }
    // B packed once (shared by the threads of this call), then the int8 layers' tiled loop
    // (int8_chunks.h), which copies rows of A into the micro-kernel's layout.
    uint32_t* packed_b =
        workspace<uint32_t>(Scratch::gemm_int8_b, gemm_u8s8_packed_b_size(K, N));
    pack_b(threads_for(K * N / kMacsPerThread + 1), tables().current(), packed_b, K, N, B, ldb);
    int8_product(
        M, N, K, packed_b,
        [&](int64_t m0, int64_t rows, uint8_t* a, int64_t la) {
            int8_copy_rows(a, la, A + m0 * lda, lda, rows, K);
        },
        [&](int64_t m, int64_t rows, int64_t n0, int64_t cols, const int32_t* tile, int64_t ldt) {
            for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < cols; ++j) {
                    int32_t& c = C[(m + i) * ldc + n0 + j];
                    c = accumulate ? c + tile[i * ldt + j] : tile[i * ldt + j];
                }
        });
}

void gemm_u8s8s32_naive(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda,
                        const int8_t* B, int64_t ldb, int32_t* C, int64_t ldc, bool accumulate) {
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            int64_t sum = 0;
            for (int64_t k = 0; k < K; ++k)
                sum += static_cast<int64_t>(A[m * lda + k]) * B[k * ldb + n];
            int32_t& c = C[m * ldc + n];
            c = static_cast<int32_t>(accumulate ? c + sum : sum);
        }
}

}  // namespace cnnfast
