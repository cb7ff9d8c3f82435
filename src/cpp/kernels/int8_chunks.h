#pragma once
// Internal to the int8 kernels (conv2d_int8.cpp, dense_int8.cpp): the loop over row chunks of an
// int8 product. Each chunk's uint8 columns (when the rows must be gathered) and int32 sums are
// sized to stay in a core's L2 cache; a chunk is one task of the one parallel region (the GEMM
// inside then runs on its thread), or, when one chunk holds every row, the GEMM threads itself.
#include <algorithm>
#include <cstdint>

#include "gemm_u8s8.h"
#include "gemm_u8s8_ukernel.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

// Bytes of uint8 columns and of int32 sums per chunk.
constexpr int64_t kInt8ChunkBytes = int64_t(128) << 10;

// C (M,K) = A (M,Kc) x packed B, chunk by chunk: rows(m0, rows, scratch) returns the chunk's
// rows of A (stride Kc), gathering them into `scratch` (rows x Kc bytes) when `gathers`;
// finish(m0, rows, sums) then consumes the chunk's sums (rows x K int32).
template <class Rows, class Finish>
void int8_product_chunks(int64_t M, int64_t K, int64_t Kc, bool gathers, const uint32_t* w_packed,
                         const Rows& rows_of, const Finish& finish) {
    if (M <= 0 || K <= 0) return;
    int64_t rc = kInt8ChunkBytes / (4 * K);
    if (gathers) rc = std::min(rc, kInt8ChunkBytes / std::max<int64_t>(Kc, 1));
    rc = std::min(M, std::max(kU8MR, rc / kU8MR * kU8MR));
    int64_t chunks = (M + rc - 1) / rc;
    const int T = threads_for(std::min(chunks, M * K * Kc / kMacsPerThread + 1));
    if (T > 1) {
        // A multiple of T chunks of equal rows, so the threads finish together.
        chunks = (chunks + T - 1) / T * T;
        rc = ((M + chunks - 1) / chunks + kU8MR - 1) / kU8MR * kU8MR;
        chunks = (M + rc - 1) / rc;
    }
    parallel_for(T, chunks, [&](int64_t c) {
        const int64_t m0 = c * rc, rows = std::min(rc, M - m0);
        uint8_t* scratch = gathers ? workspace<uint8_t>(Scratch::int8_columns, rc * Kc) : nullptr;
        int32_t* sums = workspace<int32_t>(Scratch::int8_sums, rc * K);
        const uint8_t* a = rows_of(m0, rows, scratch);
        gemm_u8s8s32_packed(rows, K, Kc, a, Kc, w_packed, sums, K, false);
        finish(m0, rows, static_cast<const int32_t*>(sums));
    });
}

}  // namespace cnnfast
