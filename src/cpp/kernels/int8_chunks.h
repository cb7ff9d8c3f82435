#pragma once
// Internal to the int8 kernels (conv2d_int8.cpp, dense_int8.cpp): the tiled loop of an int8
// product on the int8 GEMM's micro-kernel (gemm_u8s8_ukernel.h), as XNNPACK's operators call
// their micro-kernels. Rows of A are gathered chunk by chunk straight into the micro-kernel's
// layout (quads of k, zero past K), so nothing is copied twice; each kU8MR x kU8NR tile of
// int32 sums goes to the epilogue while it is in L1. A chunk is one task of the one parallel
// region; its rows stay in a core's L2 cache.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "gemm_u8s8_ukernel.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

// Bytes of gathered rows of A per chunk.
constexpr int64_t kInt8ChunkBytes = int64_t(128) << 10;

// Y (M,K) from A (M,Kc) x B, B packed by gemm_u8s8_pack_b:
//  fill(m0, rows, a, lda) writes rows [m0, m0 + rows) of A into `a`, row stride lda bytes (at
//    least 4 * ceil(Kc / 4)), zero past Kc to the next quad, and may write up to `slack` bytes
//    past the last row;
//  finish(m, rows, n0, cols, tile, ldt) consumes the sums of rows [m, m + rows) (at most kU8MR,
//    m a multiple of kU8MR) and columns [n0, n0 + cols) (tile row stride ldt).
// On AMX (U8Gemm::amx) the rows are whole steps of 16 quads, the pad zeroed after fill, every B
// panel's last kq % 16 quads copied once into a zero-padded tile, and two kU8MR-row tiles go
// through the block at a time.
template <class Fill, class Finish>
void int8_product(int64_t M, int64_t K, int64_t Kc, const uint32_t* w_packed, const Fill& fill,
                  const Finish& finish, int64_t slack = 64) {
    if (M <= 0 || K <= 0) return;
    const U8Gemm* g = gemm_u8s8_table();
    const U8Amx* amx = g->amx;
    const int64_t kq = (Kc + 3) / 4, nb = (K + kU8NR - 1) / kU8NR;
    const int64_t steps = kq / kAmxStep, tail = kq % kAmxStep;
    const int64_t lda = 4 * (amx ? (kq + kAmxStep - 1) / kAmxStep * kAmxStep : kq);
    const int64_t blocks = (M + kU8MR - 1) / kU8MR;
    constexpr int64_t kTailQuads = kAmxStep * kU8NR;
    uint32_t* b_tails = nullptr;
    if (amx && tail) {
        b_tails = workspace<uint32_t>(Scratch::amx_b_tails, nb * kTailQuads);
        amx_tail_tiles(b_tails, w_packed, kq, nb);
    }
    // Rows per chunk: a multiple of kU8MR, the chunk's rows of A in kInt8ChunkBytes; at least
    // one chunk per thread, in a multiple of the threads so they finish together.
    const int64_t per_chunk = std::max<int64_t>(1, kInt8ChunkBytes / (lda * kU8MR));
    int64_t chunks = (blocks + per_chunk - 1) / per_chunk;
    const int T = threads_for(std::min(blocks, M * K * Kc / kMacsPerThread + 1));
    chunks = (std::max<int64_t>(chunks, T) + T - 1) / T * T;
    const int64_t chunk_blocks = (blocks + chunks - 1) / chunks;
    chunks = (blocks + chunk_blocks - 1) / chunk_blocks;
    parallel_for(T, chunks, [&](int64_t c) {
        const int64_t m0 = c * chunk_blocks * kU8MR;
        const int64_t rows = std::min(chunk_blocks * kU8MR, M - m0);
        const int64_t padded = (rows + kU8MR - 1) / kU8MR * kU8MR;
        auto* a = workspace<uint8_t>(Scratch::int8_columns, padded * lda + slack);
        int32_t* tile = workspace<int32_t>(Scratch::int8_sums, 2 * kU8MR * kU8NR);
        fill(m0, rows, a, lda);
        if (amx)  // to whole steps (a fill's spill past its row lands here too)
            for (int64_t r = 0; r < rows; ++r)
                std::memset(a + r * lda + 4 * kq, 0, static_cast<size_t>(lda - 4 * kq));
        // Rows past M read zeros (their sums are dropped; zeros keep them defined).
        std::memset(a + rows * lda, 0, static_cast<size_t>((padded - rows) * lda));
        const int64_t tiles = padded / kU8MR;
        if (amx) amx->configure();
        for (int64_t b = 0; b < tiles; b += amx ? 2 : 1) {
            const uint8_t* ab = a + b * kU8MR * lda;
            const int64_t m = m0 + b * kU8MR, mr = std::min(kU8MR, M - m);
            const bool two_tiles = amx && b + 1 < tiles;
            for (int64_t jb = 0; jb < nb; ++jb) {
                const int64_t n0 = jb * kU8NR, cols = std::min(kU8NR, K - n0);
                const uint32_t* pb = w_packed + jb * kq * kU8NR;
                if (!amx) {
                    g->ukernel(kq, reinterpret_cast<const uint32_t*>(ab), kq, pb, tile, kU8NR,
                               false);
                } else {
                    amx->block(two_tiles, steps, ab, lda, pb,
                               b_tails ? b_tails + jb * kTailQuads : nullptr, tile, kU8NR);
                }
                finish(m, mr, n0, cols, static_cast<const int32_t*>(tile), kU8NR);
                if (two_tiles)
                    finish(m + kU8MR, std::min(kU8MR, M - m - kU8MR), n0, cols,
                           static_cast<const int32_t*>(tile + kU8MR * kU8NR), kU8NR);
            }
        }
    });
}

// fill for A rows of Kc bytes, ldx apart (gemm_u8s8s32's A; Kc apart: dense inputs, 1x1
// convolutions).
inline void int8_copy_rows(uint8_t* a, int64_t lda, const uint8_t* x, int64_t ldx, int64_t rows,
                           int64_t Kc) {
    for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(a + r * lda, x + r * ldx, static_cast<size_t>(Kc));
        std::memset(a + r * lda + Kc, 0, 4);  // to the next quad (past lda: the next row)
    }
}
inline void int8_copy_rows(uint8_t* a, int64_t lda, const uint8_t* x, int64_t rows, int64_t Kc) {
    int8_copy_rows(a, lda, x, Kc, rows, Kc);
}

}  // namespace cnnfast
