#include "gemm_bf16.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "cpu_features.h"
#include "gemm_bf16_ukernel.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

namespace {

// Written as selects, not branches, so that loops over it (round_range) vectorize.
inline uint16_t bf16_bits(float x) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    // Round to nearest even (overflow goes to infinity).
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    // Subnormal inputs become signed zero, as vcvtne2ps2bf16 makes them and as vdpbf16ps reads
    // bfloat16 subnormals; a normal float32 never rounds to a subnormal bfloat16.
    r = (u & 0x7f800000u) == 0 ? (u >> 16) & 0x8000u : r;
    r = (u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x0040u : r;  // NaN stays quiet NaN
    return static_cast<uint16_t>(r);
}

float bf16_value(uint32_t h) {
    const uint32_t u = h << 16;
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// The portable micro-kernel: vdpbf16ps's operations, lane by lane, in its order (k + 1, then k).
void ukernel_14x32_portable(int64_t kp, const uint32_t* a, int64_t a_stride, bool a_panel,
                            const uint32_t* b, float* c, int64_t ldc, float beta) {
    float acc[kBf16MR][kBf16NR] = {};
    for (int64_t p = 0; p < kp; ++p) {
        for (int64_t i = 0; i < kBf16MR; ++i) {
            const uint32_t ai = a_panel ? a[p * kBf16NR + i] : a[i * a_stride + p];
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

const Bf16Gemm kPortable{"portable", ukernel_14x32_portable, nullptr, nullptr, nullptr};

// The avx512 slot holds the BF16 table only on CPUs with the instructions (and under the
// CNNFAST_SIMD cap: scalar or avx2 takes the portable kernel): AMX's where the CPU has AMX.
const Bf16Gemm* vdpbf16ps_table() {
    return cpu_has_avx512_bf16() ? gemm_bf16_avx512bf16() : nullptr;
}
const Bf16Gemm* amx_table() { return cpu_has_amx() ? gemm_bf16_amx() : nullptr; }
const Bf16Gemm* native_table() { return amx_table() ? amx_table() : vdpbf16ps_table(); }

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

bool sgemm_bf16_native() {
    const Bf16Gemm* current = tables().current();
    return current && (current == vdpbf16ps_table() || current == amx_table());
}

bool set_sgemm_bf16_path(const char* name) {
    if (std::strcmp(name, "amx_bf16") == 0) return tables().select(amx_table());
    if (std::strcmp(name, "avx512_bf16") == 0) return tables().select(vdpbf16ps_table());
    if (std::strcmp(name, "portable") == 0) name = "baseline";
    return tables().select(name);
}

namespace {

std::atomic<bool> g_bf16_products{false};

static_assert(kSgemmBf16RowSlack >= kBf16MR - 1 && kSgemmBf16RowSlack >= kAmxStep - 1,
              "sgemm_bf16_packed_rows reads whole tiles");

// Rows of op(A) one thread packs at a time: two register tiles (an A^T panel holds 32 columns).
constexpr int64_t kBlockRows = 2 * kBf16MR;

// Panel of op(B) columns [n0, n0 + 32) as kp x 32 pairs (zero past N and K).
void pack_b_panel(const Bf16Gemm& g, bool trans_b, const float* B, int64_t ldb, int64_t K,
                  int64_t N, int64_t kp, int64_t n0, uint32_t* out) {
    const int64_t cols = std::min(kBf16NR, N - n0);
    if (!trans_b && g.pack_b) return g.pack_b(B, ldb, K, N, n0, kp, out);
    if (trans_b && g.pack_row) {
        // op(B) = B^T, B stored (N,K): each column of the panel is a row of B, converted in
        // place order into its pairs, then transposed into the panel.
        uint32_t* rows = workspace<uint32_t>(Scratch::gemm_bf16_rows, kBf16NR * kp);
        for (int64_t j = 0; j < cols; ++j) g.pack_row(B + (n0 + j) * ldb, K, rows + j * kp);
        for (int64_t p = 0; p < kp; ++p) {
            uint32_t* o = out + p * kBf16NR;
            for (int64_t j = 0; j < cols; ++j) o[j] = rows[j * kp + p];
            for (int64_t j = cols; j < kBf16NR; ++j) o[j] = 0;
        }
        return;
    }
    auto b_at = [&](int64_t k, int64_t n) {
        return n < N && k < K ? (trans_b ? B[n * ldb + k] : B[k * ldb + n]) : 0.0f;
    };
    for (int64_t p = 0; p < kp; ++p)
        for (int64_t j = 0; j < kBf16NR; ++j)
            out[p * kBf16NR + j] = pair(b_at(2 * p, n0 + j), b_at(2 * p + 1, n0 + j));
}

// Rows [m0, m0 + kBlockRows) of op(A), zero past M and K: as rows of `stride` pairs (A stored
// (M,K)), or as one 32-column panel (op(A) = A^T: A's rows 2p and 2p + 1 interleaved, as B's).
void pack_a_block(const Bf16Gemm& g, bool trans_a, const float* A, int64_t lda, int64_t M,
                  int64_t K, int64_t kp, int64_t stride, int64_t m0, uint32_t* out) {
    if (trans_a) return pack_b_panel(g, false, A, lda, K, M, kp, m0, out);  // A stored (K,M)
    for (int64_t i = 0; i < kBlockRows; ++i) {
        uint32_t* o = out + i * stride;
        const int64_t m = m0 + i;
        if (m >= M) {
            std::fill(o, o + kp, 0u);
        } else if (g.pack_row) {
            g.pack_row(A + m * lda, K, o);
        } else {
            for (int64_t p = 0; p < kp; ++p)
                o[p] = pair(A[m * lda + 2 * p], 2 * p + 1 < K ? A[m * lda + 2 * p + 1] : 0.0f);
        }
    }
}

// c (rows x cols) = act(t + beta * c + bias) from the kernel's scratch tile t (ldt), or, with
// t null, act(c + bias) on a tile the kernel already wrote. Cloned so that the loop is vectors
// and std::fma an instruction (a call to libm's fmaf took a twentieth of a small GEMM's time).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void finish_tile(float* c, int64_t ldc, const float* t, int64_t ldt, int64_t rows, int64_t cols,
                 float beta, const float* bias, bool relu) {
    if (!t && !bias && !relu) return;
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
            float v = c[i * ldc + j];
            if (t) v = beta == 0.0f ? t[i * ldt + j] : std::fma(beta, v, t[i * ldt + j]);
            if (bias) v += bias[j];
            c[i * ldc + j] = relu && v < 0.0f ? 0.0f : v;
        }
}

}  // namespace

namespace {

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void round_range(float* out, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = bf16_value(bf16_bits(x[i]));
}

}  // namespace

void round_to_bf16(float* out, const float* x, int64_t n) {
    constexpr int64_t kChunk = 1 << 16;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    parallel_for(threads_for(chunks), chunks, [&](int64_t c) {
        const int64_t i0 = c * kChunk;
        round_range(out + i0, x + i0, std::min(kChunk, n - i0));
    });
}

const float* bf16_rounded_copy(const float* x, int64_t n, Scratch slot) {
    float* out = workspace(slot, n);
    round_to_bf16(out, x, n);
    return out;
}

void set_bf16_products(bool on) { g_bf16_products.store(on, std::memory_order_relaxed); }
bool bf16_products() { return g_bf16_products.load(std::memory_order_relaxed); }

namespace {

// multiply_packed on AMX tiles: row blocks of kAmxRows (two A tiles) across T threads, each
// block's A as rows whose pairs fill whole steps of 16 (zero past kp), every B panel's last
// kp % 16 pairs copied once into a zero-padded tile (b_tails); blocks of 16 rows or fewer take
// one A tile, so packed_rows reads at most 15 rows past M (kSgemmBf16RowSlack).
void multiply_packed_amx(const Bf16Gemm& g, int T, bool trans_a, int64_t M, int64_t N, int64_t K,
                         const float* A, int64_t lda, const uint32_t* packed_b, float beta,
                         float* C, int64_t ldc, const float* bias, bool relu,
                         const uint32_t* a_rows, int64_t a_stride) {
    const Bf16Amx& amx = *g.amx;
    const int64_t kp = (K + 1) / 2, steps = kp / kAmxStep, tail = kp % kAmxStep;
    const int64_t nb = (N + kBf16NR - 1) / kBf16NR, mb = (M + kAmxRows - 1) / kAmxRows;
    constexpr int64_t kTailPairs = kAmxStep * kBf16NR;  // one zero-padded tail tile pair
    uint32_t* b_tails = nullptr;
    if (tail) {
        b_tails = workspace<uint32_t>(Scratch::amx_b_tails, nb * kTailPairs);
        amx_tail_tiles(b_tails, packed_b, kp, nb);
    }
    const int64_t stride = (kp + kAmxStep - 1) / kAmxStep * kAmxStep;
    parallel_for(T, mb, [&](int64_t ib) {
        const int64_t a_size = a_rows ? kAmxRows * kAmxStep : kAmxRows * stride;
        uint32_t* scratch = workspace<uint32_t>(Scratch::gemm_bf16_a, a_size + kAmxRows * kBf16NR);
        float* tile = reinterpret_cast<float*>(scratch + a_size);
        const int64_t m0 = ib * kAmxRows, rows = std::min(kAmxRows, M - m0);
        const uint32_t *a = scratch, *a_tail = nullptr;
        int64_t row_stride = stride, tail_stride = stride;
        if (a_rows) {
            // The caller's rows, read in place; their last pairs copied into a zero-padded tile.
            a = a_rows + m0 * a_stride;
            row_stride = a_stride;
            tail_stride = kAmxStep;
            if (tail) {
                std::fill(scratch, scratch + kAmxRows * kAmxStep, 0u);
                for (int64_t i = 0; i < rows; ++i)
                    std::memcpy(scratch + i * kAmxStep, a + i * a_stride + steps * kAmxStep,
                                static_cast<size_t>(tail) * 4);
                a_tail = scratch;
            }
        } else {
            if (trans_a) {
                amx.pack_a_transposed(A, lda, K, M, m0, stride, scratch);
            } else {
                for (int64_t i = 0; i < kAmxRows; ++i) {
                    uint32_t* o = scratch + i * stride;
                    if (i < rows) {
                        g.pack_row(A + (m0 + i) * lda, K, o);
                        std::fill(o + kp, o + stride, 0u);
                    } else {
                        std::fill(o, o + stride, 0u);
                    }
                }
            }
            if (tail) a_tail = scratch + steps * kAmxStep;
        }
        const bool two_tiles = rows > kAmxStep;
        const int64_t tile_rows = two_tiles ? kAmxRows : kAmxStep;
        amx.configure();
        for (int64_t jb = 0; jb < nb; ++jb) {
            const int64_t n0 = jb * kBf16NR, cols = std::min(kBf16NR, N - n0);
            const uint32_t* pb = packed_b + jb * kp * kBf16NR;
            const uint32_t* b_tail = tail ? b_tails + jb * kTailPairs : nullptr;
            const float* tile_bias = bias ? bias + n0 : nullptr;
            float* c = C + m0 * ldc + n0;
            // Whole blocks with beta 0 or 1 go straight to C, their sums starting from C's values
            // for beta 1 (Winograd's backward-weights products accumulate so).
            if (rows == tile_rows && cols == kBf16NR && (beta == 0.0f || beta == 1.0f)) {
                amx.block(two_tiles, steps, a, row_stride, pb, a_tail, tail_stride, b_tail, c, ldc,
                          beta == 1.0f);
                finish_tile(c, ldc, nullptr, 0, rows, cols, beta, tile_bias, relu);
                continue;
            }
            amx.block(two_tiles, steps, a, row_stride, pb, a_tail, tail_stride, b_tail, tile,
                      kBf16NR, false);
            finish_tile(c, ldc, tile, kBf16NR, rows, cols, beta, tile_bias, relu);
        }
    });
}

// C = act(op(A) * B + beta * C + bias) with B packed (pack_b_panel, panel after panel): row
// blocks across T threads; each packs its rows of op(A), then sweeps every column block a
// register tile at a time; edge tiles go through a scratch tile.
// a_rows: A already as rows of pairs (a_stride apart; op(A) not transposed), or null to pack A.
void multiply_packed(const Bf16Gemm& g, int T, bool trans_a, int64_t M, int64_t N, int64_t K,
                     const float* A, int64_t lda, const uint32_t* packed_b, float beta, float* C,
                     int64_t ldc, const float* bias, bool relu, const uint32_t* a_rows = nullptr,
                     int64_t a_stride = 0) {
    if (g.amx)
        return multiply_packed_amx(g, T, trans_a, M, N, K, A, lda, packed_b, beta, C, ldc, bias,
                                   relu, a_rows, a_stride);
    const int64_t kp = (K + 1) / 2, nb = (N + kBf16NR - 1) / kBf16NR;
    const int64_t mb = (M + kBlockRows - 1) / kBlockRows;
    const int64_t stride = (kp + 15) / 16 * 16;  // rows of pairs padded to a cache line
    const int64_t a_floats = std::max(kBlockRows * stride, kp * kBf16NR);
    parallel_for(T, mb, [&](int64_t ib) {
        uint32_t* scratch =
            workspace<uint32_t>(Scratch::gemm_bf16_a, a_floats + kBf16MR * kBf16NR);
        float* tile = reinterpret_cast<float*>(scratch + a_floats);
        const int64_t m0 = ib * kBlockRows, rows = std::min(kBlockRows, M - m0);
        const uint32_t* packed_a = scratch;
        if (a_rows) {
            packed_a = a_rows + m0 * a_stride;
        } else {
            pack_a_block(g, trans_a, A, lda, M, K, kp, stride, m0, scratch);
        }
        const int64_t row_stride = a_rows ? a_stride : stride;
        // Each B panel serves the block's tiles one after the other, so that the second reads it
        // from L1.
        for (int64_t jb = 0; jb < nb; ++jb) {
            const int64_t n0 = jb * kBf16NR, cols = std::min(kBf16NR, N - n0);
            const uint32_t* pb = packed_b + jb * kp * kBf16NR;
            const float* tile_bias = bias ? bias + n0 : nullptr;
            for (int64_t i0 = 0; i0 < rows; i0 += kBf16MR) {
                const uint32_t* a = trans_a ? packed_a + i0 : packed_a + i0 * row_stride;
                const int64_t tile_rows = std::min(kBf16MR, rows - i0);
                float* c_rows = C + (m0 + i0) * ldc;
                if (tile_rows == kBf16MR && cols == kBf16NR) {
                    g.ukernel(kp, a, row_stride, trans_a, pb, c_rows + n0, ldc, beta);
                    finish_tile(c_rows + n0, ldc, nullptr, 0, tile_rows, cols, beta, tile_bias,
                                relu);
                    continue;
                }
                g.ukernel(kp, a, row_stride, trans_a, pb, tile, kBf16NR, 0.0f);
                finish_tile(c_rows + n0, ldc, tile, kBf16NR, tile_rows, cols, beta, tile_bias,
                            relu);
            }
        }
    });
}

}  // namespace

int64_t sgemm_bf16_packed_b_size(int64_t N, int64_t K) {
    return (N + kBf16NR - 1) / kBf16NR * ((K + 1) / 2) * kBf16NR;
}

void sgemm_bf16_pack_b(bool trans_b, int64_t N, int64_t K, const float* B, int64_t ldb,
                       uint32_t* packed) {
    const int64_t kp = (K + 1) / 2;
    const Bf16Gemm& g = *tables().current();
    for (int64_t n0 = 0; n0 < N; n0 += kBf16NR)
        pack_b_panel(g, trans_b, B, ldb, K, N, kp, n0, packed + n0 / kBf16NR * kp * kBf16NR);
}

void sgemm_bf16_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                       const uint32_t* packed_b, float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    multiply_packed(*tables().current(), 1, false, M, N, K, A, lda, packed_b, beta, C, ldc,
                    nullptr, false);
}

void sgemm_bf16_packed_rows(int64_t M, int64_t N, int64_t K, const uint32_t* a_rows,
                            int64_t a_stride, const uint32_t* packed_b, float beta, float* C,
                            int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    multiply_packed(*tables().current(), 1, false, M, N, K, nullptr, 0, packed_b, beta, C, ldc,
                    nullptr, false, a_rows, a_stride);
}

void sgemm_bf16_bias_relu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc, const float* bias, bool relu,
                          bool allow_threads) {
    if (M <= 0 || N <= 0) return;
    const int64_t kp = (K + 1) / 2, nb = (N + kBf16NR - 1) / kBf16NR;
    const int64_t mb = (M + kBlockRows - 1) / kBlockRows;
    const Bf16Gemm& g = *tables().current();
    const int T = allow_threads ? threads_for(std::min(M * N * K / kMacsPerThread + 1, mb)) : 1;
    // op(B) packed once, column block by column block, shared read-only.
    uint32_t* packed_b = workspace<uint32_t>(Scratch::gemm_bf16_b, nb * kp * kBf16NR);
    parallel_for(T, nb, [&](int64_t jb) {
        pack_b_panel(g, trans_b, B, ldb, K, N, kp, jb * kBf16NR, packed_b + jb * kp * kBf16NR);
    });
    multiply_packed(g, T, trans_a, M, N, K, A, lda, packed_b, beta, C, ldc, bias, relu);
}

void sgemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    sgemm_bf16_bias_relu(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc, nullptr, false,
                         true);
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
