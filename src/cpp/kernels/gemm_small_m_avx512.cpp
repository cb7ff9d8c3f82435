// Small-M GEMM, AVX-512: C (M,N) for M <= kGemmSmallM rows (batch-1 dense layers, a convolution
// whose kernel covers its whole input) without packing. Each k step broadcasts the R values of
// op(A)(:, k) and streams one row of B: B is read once from wherever it lives, and at one row
// the product is bound by that stream, not by the FMAs (a packed 14x32 tile would be 1/14 used
// and repack all of B on every call).
#include "gemm_ukernel.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include "avx512_util.h"

namespace cnnfast {
namespace {

constexpr int64_t kPrefetchRows = 16;

// R rows x V vectors of 16 columns (the last masked by ml), over all K. With few accumulators
// the k loop is split into U interleaved partial sums, so the FMA latency is not the bound.
template <int R, int V>
void tile(bool trans_a, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc, const float* bias, bool relu,
          __mmask16 ml) {
    constexpr int U = R * V >= 8 ? 1 : R * V >= 4 ? 2 : 4;
    __m512 acc[U][R][V];
#pragma GCC unroll 64
    for (int u = 0; u < U; ++u)
#pragma GCC unroll 64
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 64
            for (int v = 0; v < V; ++v) acc[u][r][v] = _mm512_setzero_ps();
    // op(A)(r, k): A stored (M,K) or, when trans_a, (K,M).
    const int64_t a_r = trans_a ? 1 : lda, a_k = trans_a ? lda : 1;
    int64_t k = 0;
    for (; k + U <= K; k += U) {
#pragma GCC unroll 64
        for (int u = 0; u < U; ++u) {
            // A column block walks B's rows ldb floats apart, which the hardware prefetchers
            // follow too slowly when B comes from memory (a batch-1 dense layer's 1 MB kernel):
            // this block's lines kPrefetchRows rows ahead, into L2. VGG16-CIFAR's 512 -> 512
            // dense layer at batch 1, one thread, AMD EPYC Zen 4 (the dense row of
            // dev/vgg_batch1_layers.py, this build and one without the prefetch in alternating
            // processes, 4 rounds): 74-89 us against 94-108.
            if (k + u + kPrefetchRows < K)
#pragma GCC unroll 64
                for (int v = 0; v < V; ++v)
                    _mm_prefetch(reinterpret_cast<const char*>(
                                     B + (k + u + kPrefetchRows) * ldb + 16 * v),
                                 _MM_HINT_T1);
            const float* ak = A + (k + u) * a_k;
            rank1_update(acc[u], [&](int r) { return ak[r * a_r]; }, B + (k + u) * ldb, ml);
        }
    }
    for (; k < K; ++k) {
        const float* ak = A + k * a_k;
        rank1_update(acc[0], [&](int r) { return ak[r * a_r]; }, B + k * ldb, ml);
    }
    const __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 64
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 64
        for (int v = 0; v < V; ++v) {
            __m512 s = acc[0][r][v];
#pragma GCC unroll 64
            for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[u][r][v]);
            store_c_vector(C + r * ldc + 16 * v, v == V - 1 ? ml : __mmask16(0xFFFF),
                           _mm512_mul_ps(s, va), beta, bias ? bias + 16 * v : nullptr, relu);
        }
}

using TileFn = void (*)(bool, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                        float*, int64_t, const float*, bool, __mmask16);

// Widest column block per row count: R * V <= 16 accumulators (x U partial sums <= 32 zmm).
constexpr int kMaxV[5] = {0, 8, 8, 4, 4};

template <int R>
constexpr TileFn tile_for(int v) {
    switch (v) {
        case 1: return &tile<R, 1>;
        case 2: return &tile<R, 2>;
        case 3: return &tile<R, 3>;
        case 4: return &tile<R, 4>;
        case 5: return &tile<R, kMaxV[R] >= 5 ? 5 : 4>;
        case 6: return &tile<R, kMaxV[R] >= 6 ? 6 : 4>;
        case 7: return &tile<R, kMaxV[R] >= 7 ? 7 : 4>;
        default: return &tile<R, kMaxV[R] >= 8 ? 8 : 4>;
    }
}

}  // namespace

// C (M,N) = act(alpha * op(A) * B + beta * C + bias), M <= kGemmSmallM; B stored (K,N).
void gemm_small_m_avx512(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                         float* C, int64_t ldc, const float* bias, bool relu) {
    for (int64_t i = 0; i < M;) {
        const int R = static_cast<int>(M - i >= 4 ? 4 : M - i);
        const float* a = trans_a ? A + i : A + i * lda;
        for (int64_t j = 0; j < N;) {
            const int64_t vecs = (N - j + 15) / 16;
            const int V = static_cast<int>(vecs < kMaxV[R] ? vecs : kMaxV[R]);
            const int64_t cols = N - j < 16 * V ? N - j : 16 * V;
            const __mmask16 ml = lanes(cols - 16 * (V - 1));
            TileFn fn = R == 1 ? tile_for<1>(V) : R == 2 ? tile_for<2>(V)
                      : R == 3 ? tile_for<3>(V) : tile_for<4>(V);
            fn(trans_a, K, alpha, a, lda, B + j, ldb, beta, C + i * ldc + j, ldc,
               bias ? bias + j : nullptr, relu, ml);
            j += cols;
        }
        i += R;
    }
}

}  // namespace cnnfast

#endif
