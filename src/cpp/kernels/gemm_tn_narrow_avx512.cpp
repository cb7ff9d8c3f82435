// Narrow transposed-A GEMM, AVX-512: C (M,N) = A^T B with A stored (K,M) and N <= kGemmNarrowN -
// weight gradients: cols^T (K = batch*OH*OW) x dY (K, C_out) for an im2col convolution, x^T dy
// for a dense layer. Packing would copy all of A (tens of MB for a convolution) to do only N
// columns of work per element, and the packed path spends most of its time waiting on that
// copy. Here the micro-kernel broadcasts A straight from its stored rows (the R values of one k
// are adjacent), so A is read once, and while it works through one K chunk it prefetches its own
// rows of the next chunk: the prefetches are spread over the FMAs instead of issued in bursts, and
// they reach L2 well before the chunk's turn comes (all other row panels run in between).
#include "gemm_ukernel.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include <algorithm>

#include "avx512_util.h"
#include "workspace.h"

namespace cnnfast {
namespace {

// Rows per panel: 6 x 4 vectors = 24 accumulators + 4 B vectors + 1 broadcast fit in 32 zmm.
constexpr int kRows = kGemmNarrowRows, kVecs = 4;
// K rows per chunk: the copied B chunk (kKChunk x N <= 128 floats = 32 KiB) stays in L1 while
// every row panel sweeps it. 64 measured best of 32 to 256 (576 x 64, K = 15488, 1 and 2
// threads); shorter chunks pay the C update more often.
constexpr int64_t kKChunk = 64;

// One R x (16 V) tile of C over kc rows of K. a: A + k0*lda + i0 (R adjacent values per row);
// b: the packed chunk, row stride ldb_pack; c: C + i0*ldc + j0. first: this is K's first chunk
// (apply beta); last: add bias / ReLU. ml masks the last vector's columns. pf: the same R values
// in the next chunk's first row, pf_rows (<= kc) of its rows to prefetch.
template <int R, int V>
void tile(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb_pack, float* c,
          int64_t ldc, float alpha, float beta, bool first, bool last, const float* bias,
          bool relu, __mmask16 ml, const float* pf, int64_t pf_rows) {
    __m512 acc[R][V];
#pragma GCC unroll 64
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 64
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k < pf_rows; ++k, a += lda, b += ldb_pack, pf += lda) {
        _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
        rank1_update<R, V>(acc, a, b);
    }
#pragma GCC unroll 2
    for (; k < kc; ++k, a += lda, b += ldb_pack) rank1_update<R, V>(acc, a, b);

    // Later chunks accumulate onto C; the epilogue belongs to the last.
    const __m512 va = _mm512_set1_ps(alpha);
    const float beta_k = first ? beta : 1.0f;
#pragma GCC unroll 64
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 64
        for (int v = 0; v < V; ++v)
            store_c_vector(c + r * ldc + 16 * v, v == V - 1 ? ml : __mmask16(0xFFFF),
                           _mm512_mul_ps(va, acc[r][v]), beta_k,
                           last && bias ? bias + 16 * v : nullptr, last && relu);
}

using TileFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                        float, float, bool, bool, const float*, bool, __mmask16, const float*,
                        int64_t);

template <int R>
constexpr TileFn tile_for(int v) {
    return v == 1 ? &tile<R, 1> : v == 2 ? &tile<R, 2> : v == 3 ? &tile<R, 3> : &tile<R, 4>;
}

TileFn tile_fn(int r, int v) {
    switch (r) {
        case 1: return tile_for<1>(v);
        case 2: return tile_for<2>(v);
        case 3: return tile_for<3>(v);
        case 4: return tile_for<4>(v);
        case 5: return tile_for<5>(v);
        default: return tile_for<6>(v);
    }
}

}  // namespace

// C (M,N) = act(alpha * A^T B + beta * C + bias); A stored (K,M), B stored (K,N), N <= 128.
// Single-threaded: the caller hands each thread its own rows.

void gemm_tn_narrow_avx512(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                           int64_t ldc, const float* bias, bool relu) {
    // The B chunk, rows padded to whole vectors so every load is aligned and full.
    float* b_chunk = workspace(Scratch::gemm_narrow_b, kKChunk * kGemmNarrowN);
    const int64_t ldb_pack = (N + 15) / 16 * 16;
    for (int64_t k0 = 0; k0 < K; k0 += kKChunk) {
        const int64_t kc = std::min(kKChunk, K - k0);
        const int64_t next_kc = std::min(kKChunk, K - k0 - kc);  // 0 on the last chunk
        for (int64_t k = 0; k < kc; ++k) {
            float* d = b_chunk + k * ldb_pack;
            std::copy_n(B + (k0 + k) * ldb, N, d);
            std::fill(d + N, d + ldb_pack, 0.0f);
        }
        const bool first = k0 == 0, last = k0 + kc == K;
        for (int64_t i = 0; i < M; i += kRows) {
            const int r = static_cast<int>(std::min<int64_t>(kRows, M - i));
            const float* a = A + k0 * lda + i;
            for (int64_t j = 0; j < N; j += 16 * kVecs) {
                const int64_t cols = std::min<int64_t>(16 * kVecs, N - j);
                const int v = static_cast<int>((cols + 15) / 16);
                // Only the first column block fetches the next chunk; the others find A in L1.
                tile_fn(r, v)(kc, a, lda, b_chunk + j, ldb_pack, C + i * ldc + j, ldc, alpha, beta,
                              first, last, bias ? bias + j : nullptr, relu,
                              lanes(cols - 16 * (v - 1)), j == 0 ? a + kc * lda : nullptr,
                              j == 0 ? next_kc : 0);
            }
        }
    }
}

}  // namespace cnnfast

#endif
