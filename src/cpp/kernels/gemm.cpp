// Packed, cache-blocked, threaded SGEMM (Goto / BLIS style; the loop nest is above gemm_serial).
// Unlike the textbook order, the packed B block lives in L2 and each A micro-panel in L1 (ir
// outside jr): measured faster here than streaming A micro-panels from L2 past an L1-resident B
// micro-panel, which at KC x NR = 384 x 32 floats does not leave room for A in a 48 KiB L1.
//
// Threads each own a rectangle of C tiles (split over M and/or N) and pack their own operands,
// so the parallel region has no barriers. The micro-kernels are chosen once per process from the
// CPU features (gemm_ukernel_*.cpp tables, through SimdTables), overridable downwards with
// CNNFAST_SIMD=avx512|avx2|scalar.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include <unistd.h>

#include "gemm.h"
#include "gemm_bf16.h"
#include "cpu_features.h"
#include "gemm_ukernel.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {
namespace {

constexpr int64_t KC = kGemmKC;
// Largest micro-tile any path uses, for the edge-tile scratch.
constexpr int kMaxMR = 16, kMaxNR = 64;

using PackBFn = void (*)(float* dst, const float* b, int64_t ldb, bool trans_b, int64_t kc,
                         int64_t nc);
PackBFn pack_b_for(int nr);

struct GemmConfig {
    GemmUkernel uk;
    PackBFn pack_b;  // for uk.nr
    // Floats in the packed B block: about half of L2, so it stays there while every A
    // micro-panel (in L1) sweeps across it.
    int64_t b_floats;
    // Rows of op(A) packed at once (multiples of MR), per A layout; the A block stays in L2
    // beside B. Stored (K, M) wants wide blocks: each stored row then yields one long contiguous
    // read instead of many 56-byte pieces of cache lines scattered over pages.
    int64_t mc_rows, mc_kmajor;
};

// The best compiled-in micro-kernels for simd_level() (CPU features capped by CNNFAST_SIMD).
GemmConfig select_config() {
    SimdTables<GemmUkernel> tables(gemm_ukernel_4x8_scalar(), gemm_ukernel_6x16_avx2(),
                                   gemm_ukernel_14x32_avx512());
    GemmConfig cfg{};
    cfg.uk = *tables.current();
    cfg.pack_b = pack_b_for(cfg.uk.nr);
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 <= 0) l2 = 1 << 20;
    cfg.b_floats = l2 / 2 / int64_t(sizeof(float));
    cfg.mc_rows = cfg.uk.mr * 4;
    cfg.mc_kmajor = cfg.uk.mr * 16;
    return cfg;
}

const GemmConfig& config() {
    static const GemmConfig cfg = select_config();
    return cfg;
}

// Largest packed A gemm_serial keeps for reuse across column blocks (per thread): 16 MiB, which
// covers M x K = 2048 x 2048 with the panels' padding; larger products repack A per block.
constexpr int64_t kKeptAMaxFloats = int64_t(4) << 20;

// Optional work done on each finished tile of C: bias over columns, then ReLU.
struct Epilogue {
    const float* bias;  // (N,) or null
    bool relu;
    bool active() const { return bias || relu; }
};

// op(B) block (kc, nc) -> nc/NR panels of kc x NR, k-major, zero-padded to a whole panel.
// b points at op(B)(0, 0) of the block: B + p0*ldb + j0, or B + j0*ldb + p0 when trans_b.
// NR is a template argument so that the panel-row copies are fixed-size (inlined, no call per
// 128 bytes).
template <int NR>
void pack_b(float* dst, const float* b, int64_t ldb, bool trans_b, int64_t kc, int64_t nc) {
    const int64_t full = nc / NR * NR;
    if (!trans_b) {
        // Stored row by row: walk each row once, in order, dealing it out to the panels. Panel by
        // panel instead would read NR floats from each of kc rows a page apart, which the
        // hardware prefetchers do not follow (measured 1.2-1.6x slower at 342 x 704 of 2048^2).
        for (int64_t k = 0; k < kc; ++k) {
            const float* s = b + k * ldb;
            float* d = dst + k * NR;
            for (int64_t jp = 0; jp < full; jp += NR)
                std::memcpy(d + jp * kc, s + jp, NR * sizeof(float));
            if (full < nc) {
                float* dk = d + full * kc;
                std::memcpy(dk, s + full, (nc - full) * sizeof(float));
                std::fill(dk + (nc - full), dk + NR, 0.0f);
            }
        }
        return;
    }
    // Stored (N, K): walk each stored row contiguously, scatter into the panel columns.
    for (int64_t jp = 0; jp < nc; jp += NR) {
        const int64_t nr = std::min<int64_t>(NR, nc - jp);
        float* d = dst + jp * kc;
        for (int64_t j = 0; j < nr; ++j) {
            const float* s = b + (jp + j) * ldb;
            for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = s[k];
        }
        for (int64_t k = 0; k < kc; ++k)
            for (int64_t j = nr; j < NR; ++j) d[k * NR + j] = 0.0f;
    }
}

// For the micro-kernel's NR: 32 (AVX-512), 16 (AVX2) or 8 (scalar).
PackBFn pack_b_for(int nr) {
    if (nr == 32) return &pack_b<32>;
    if (nr == 16) return &pack_b<16>;
    return &pack_b<8>;
}

// Floats one packed A panel occupies in each layout.
inline int64_t a_panel_size(bool trans_a, int mr, int64_t kc) {
    return trans_a ? mr * kc : mr * kGemmARowStride;
}

// op(A) block (mc, kc) -> mc/MR panels, zero-padded to whole panels. A stored (M, K) goes into the
// row-panel layout (row memcpy); stored (K, M) (trans_a) into the k-major layout (MR-wide copies).
// a points at op(A)(0, 0) of the block: A + i0*lda + p0, or A + p0*lda + i0 when trans_a.
void pack_a(float* dst, const float* a, int64_t lda, bool trans_a, int64_t mc, int64_t kc,
            int mr_max) {
    const int64_t panel = a_panel_size(trans_a, mr_max, kc);
    if (!trans_a) {
        for (int64_t ip = 0; ip < mc; ip += mr_max) {
            const int64_t mr = std::min<int64_t>(mr_max, mc - ip);
            float* d = dst + (ip / mr_max) * panel;
            for (int64_t i = 0; i < mr; ++i)
                std::memcpy(d + i * kGemmARowStride, a + (ip + i) * lda, kc * sizeof(float));
            for (int64_t i = mr; i < mr_max; ++i)
                std::memset(d + i * kGemmARowStride, 0, kc * sizeof(float));
        }
        return;
    }
    // Stored (K, M): k outermost, so each stored row's mc floats are read once, in order.
    const int64_t full = mc / mr_max * mr_max;
    for (int64_t k = 0; k < kc; ++k) {
        const float* s = a + k * lda;
        for (int64_t ip = 0; ip < full; ip += mr_max)
            std::memcpy(dst + (ip / mr_max) * panel + k * mr_max, s + ip, mr_max * sizeof(float));
        if (full < mc) {
            float* dk = dst + (full / mr_max) * panel + k * mr_max;
            std::memcpy(dk, s + full, (mc - full) * sizeof(float));
            for (int64_t i = mc - full; i < mr_max; ++i) dk[i] = 0.0f;
        }
    }
}

// c (mr, nr) with row stride ldc; bias indexed by the tile's first column.
void apply_epilogue(float* c, int64_t ldc, int64_t mr, int64_t nr, const float* bias, bool relu) {
    for (int64_t i = 0; i < mr; ++i) {
        float* ci = c + i * ldc;
        if (bias)
            for (int64_t j = 0; j < nr; ++j) ci[j] += bias[j];
        if (relu)
            for (int64_t j = 0; j < nr; ++j) ci[j] = ci[j] < 0.0f ? 0.0f : ci[j];  // NaN stays NaN
    }
}

// Prefetch part `part` of `parts` of the cache lines an A block (mc x kc of op(A)) will be packed
// from, so that packing it after the current block's kernels finds them in cache rather than in
// DRAM. a points at op(A)(i0, p0) as in pack_a.
void prefetch_a_source(const float* a, int64_t lda, bool trans_a, int64_t mc, int64_t kc,
                       int64_t part, int64_t parts) {
    // Non-transposed: mc rows of kc floats; transposed: kc rows of mc floats.
    const int64_t rows = trans_a ? kc : mc, len = trans_a ? mc : kc;
    const int64_t lines_per_row = (len + 15) / 16 + 1;  // +1: rows need not start on a line
    const int64_t total = rows * lines_per_row;
    const int64_t l0 = total * part / parts, l1 = total * (part + 1) / parts;
    for (int64_t l = l0; l < l1; ++l) {
        const int64_t r = l / lines_per_row;
        const int64_t x = std::min<int64_t>((l % lines_per_row) * 16, len - 1);
        __builtin_prefetch(a + r * lda + x, 0, 2);
    }
}

// One thread's whole loop nest over C (M,N) = alpha op(A) op(B) + beta C (then epilogue).
// A, B, C, bias already point at this thread's sub-problem.
//
//   pb over K (kb)                (kb = all of K when it fits)
//    jc over N (nc_blk)           B block: kb x nc_blk packed, sized to about half of L2
//     ic over M (MC)              A block: mc x kc packed, next block's source prefetched
//      pc over the kb (kc)
//       ir over MR                one A micro-panel, loaded into L1 once ...
//        jr over NR               ... swept across the B block's micro-panels (from L2)
//
// When N needs several B blocks, the packed A of the whole K range is kept (keep_a) for the
// later column blocks, rather than A being re-read from memory and packed again for each: at
// 2048^2 that is three passes over 16 MiB of A, and their prefetches and copies cost about 2% of
// single-thread throughput (scratch A/B runs).
void gemm_serial(const GemmConfig& cfg, bool trans_a, bool trans_b, int64_t M, int64_t N,
                 int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                 float beta, float* C, int64_t ldc, const Epilogue& ep) {
    const int MR = cfg.uk.mr, NR = cfg.uk.nr;
    const GemmUkernelFn kern = trans_a ? cfg.uk.a_kmajor : cfg.uk.a_rows;
    // Balanced blocks: K = 576 becomes 2 x 288 rather than 384 + 192.
    const int64_t k_blocks = (K + KC - 1) / KC;
    const int64_t kc_blk = (K + k_blocks - 1) / k_blocks;
    const int64_t n_panels = (N + NR - 1) / NR;
    const int64_t nc_cap = std::max<int64_t>(NR, cfg.b_floats / kc_blk / NR * NR);
    const int64_t n_blocks = (n_panels * NR + nc_cap - 1) / nc_cap;
    const int64_t nc_blk = (n_panels + n_blocks - 1) / n_blocks * NR;
    const int64_t kb_blocks = std::clamp<int64_t>(cfg.b_floats / (kc_blk * nc_blk), 1, k_blocks);
    const int64_t kb = kb_blocks * kc_blk;
    const int64_t MC = trans_a ? cfg.mc_kmajor : cfg.mc_rows;
    float* pb = workspace(Scratch::gemm_pack_b, nc_blk * kb);
    const int64_t a_blk =
        std::min(MC, (M + MR - 1) / MR * MR) / MR * a_panel_size(trans_a, MR, kc_blk);
    const int64_t m_blocks = (M + MC - 1) / MC;
    const bool keep_a = n_blocks > 1 && m_blocks * kb_blocks * a_blk <= kKeptAMaxFloats;
    float* pa_all = keep_a ? workspace(Scratch::gemm_kept_a, m_blocks * kb_blocks * a_blk)
                           : workspace(Scratch::gemm_pack_a, a_blk);
    alignas(64) float tile[kMaxMR * kMaxNR];
    // op(A)(i, p) of a stored A.
    auto a_at = [&](int64_t i, int64_t p) { return trans_a ? A + p * lda + i : A + i * lda + p; };

    for (int64_t pb0 = 0; pb0 < K; pb0 += kb) {
        const int64_t pb1 = std::min(K, pb0 + kb);
        for (int64_t jc = 0; jc < N; jc += nc_blk) {
            const int64_t nc = std::min(nc_blk, N - jc);
            const int64_t nr_steps = (nc + NR - 1) / NR;
            for (int64_t pc = pb0; pc < pb1; pc += kc_blk) {
                const int64_t kc = std::min(kc_blk, K - pc);
                cfg.pack_b(pb + (pc - pb0) * nc_blk,
                           trans_b ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, trans_b, kc, nc);
            }
            // Kept A is packed during the first column block only.
            const bool pack_now = !keep_a || jc == 0;
            for (int64_t ic = 0; ic < M; ic += MC) {
                const int64_t mc = std::min(MC, M - ic);
                for (int64_t pc = pb0; pc < pb1; pc += kc_blk) {
                    const int64_t kc = std::min(kc_blk, K - pc);
                    const float beta_k = pc == 0 ? beta : 1.0f;  // later K blocks accumulate
                    const bool last_k = pc + kc == K;
                    const float* pbk = pb + (pc - pb0) * nc_blk;
                    const int64_t a_panel = a_panel_size(trans_a, MR, kc);
                    float* pa = keep_a
                        ? pa_all + ((ic / MC) * kb_blocks + (pc - pb0) / kc_blk) * a_blk
                        : pa_all;
                    if (pack_now) pack_a(pa, a_at(ic, pc), lda, trans_a, mc, kc, MR);
                    // The A block packed after this one: next K block, else next rows.
                    int64_t next_i = ic, next_p = pc + kc;
                    if (next_p >= pb1) next_i = ic + MC, next_p = pb0;
                    const int64_t next_mc = pack_now ? std::min(MC, M - next_i) : 0;
                    const int64_t next_kc = std::min(kc_blk, K - next_p);
                    const int64_t calls = (mc + MR - 1) / MR * nr_steps;
                    int64_t call = 0;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        const int64_t mr = std::min<int64_t>(MR, mc - ir);
                        const float* pa_r = pa + (ir / MR) * a_panel;
                        for (int64_t jr = 0; jr < nc; jr += NR, ++call) {
                            if (next_mc > 0)
                                prefetch_a_source(a_at(next_i, next_p), lda, trans_a, next_mc,
                                                  next_kc, call, calls);
                            const int64_t nr = std::min<int64_t>(NR, nc - jr);
                            const float* b_panel = pbk + jr * kc;
                            float* c = C + (ic + ir) * ldc + jc + jr;
                            if (mr == MR && nr == NR) {
                                kern(kc, pa_r, b_panel, c, ldc, alpha, beta_k);
                            } else {
                                // Edge tile: full tile into scratch, write back only mr x nr.
                                kern(kc, pa_r, b_panel, tile, NR, alpha, 0.0f);
                                for (int64_t i = 0; i < mr; ++i) {
                                    float* ci = c + i * ldc;
                                    const float* ti = tile + i * NR;
                                    if (beta_k == 0.0f)
                                        for (int64_t j = 0; j < nr; ++j) ci[j] = ti[j];
                                    else
                                        for (int64_t j = 0; j < nr; ++j)
                                            ci[j] = ti[j] + beta_k * ci[j];
                                }
                            }
                            if (last_k && ep.active())
                                apply_epilogue(c, ldc, mr, nr,
                                               ep.bias ? ep.bias + jc + jr : nullptr, ep.relu);
                        }
                    }
                }
            }
        }
    }
}

// C = beta * C (beta == 0 writes zeros without reading), then the epilogue: the K == 0 or
// alpha == 0 case, where no product is formed.
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc, const Epilogue& ep) {
    for (int64_t i = 0; i < M; ++i) {
        float* ci = C + i * ldc;
        if (beta == 0.0f)
            std::fill(ci, ci + N, 0.0f);
        else if (beta != 1.0f)
            for (int64_t j = 0; j < N; ++j) ci[j] *= beta;
    }
    if (ep.active()) apply_epilogue(C, ldc, M, N, ep.bias, ep.relu);
}

// The small-M contract (gemm_ukernel.h) in plain loops, for paths without a SIMD version: row
// by row, B streamed once per row with the k loop outside so the j loop vectorises.
void gemm_small_m_portable(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                           const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                           float* C, int64_t ldc, const float* bias, bool relu) {
    constexpr int64_t kCols = 256;
    float acc[kCols];
    for (int64_t i = 0; i < M; ++i) {
        float* c = C + i * ldc;
        for (int64_t j0 = 0; j0 < N; j0 += kCols) {
            const int64_t nc = std::min(kCols, N - j0);
            std::fill(acc, acc + nc, 0.0f);
            for (int64_t k = 0; k < K; ++k) {
                const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                const float* b = B + k * ldb + j0;
                for (int64_t j = 0; j < nc; ++j) acc[j] += a * b[j];
            }
            for (int64_t j = 0; j < nc; ++j) {
                float s = alpha * acc[j];
                if (beta != 0.0f) s += beta * c[j0 + j];
                if (bias) s += bias[j0 + j];
                c[j0 + j] = relu && s < 0.0f ? 0.0f : s;  // NaN stays NaN
            }
        }
    }
}

// Below this many multiply-adds the packing and threading overheads dominate: plain loops.
constexpr int64_t kSmallMacs = 4096;

// The unpacked A^T B route (gemm_tn_narrow_avx512.cpp) beat the packed one from K = 16 to
// K = 32768 for 16 <= N <= 128 (1.1-2.3x, 1 and 2 threads); below 16 columns neither is good and
// the packed one was ahead. It re-reads each A cache line from L1 (for the neighbouring row
// panels and the second 64-column block): a row stride that is a multiple of 512 bytes puts a
// chunk's rows in 8 or fewer of L1's 64 sets, they are evicted in between, and the packed route
// wins (measured at M = 1152 with N = 128, M = 2048 with N = 32 and 64).
constexpr int64_t kNarrowMinN = 16, kNarrowMinM = 12, kNarrowBadStride = 128;

enum class Route { empty, scale_c, small_m, tn_narrow, naive, packed };

// Which code computes a product of this shape (alpha != 0 assumed unless told).
Route choose_route(const GemmConfig& cfg, bool trans_a, bool trans_b, int64_t M, int64_t N,
                   int64_t K, int64_t lda, float alpha) {
    if (M <= 0 || N <= 0) return Route::empty;
    if (K <= 0 || alpha == 0.0f) return Route::scale_c;
    if (M <= kGemmSmallM && !trans_b) return Route::small_m;
    if (M * N * K <= kSmallMacs) return Route::naive;
    if (trans_a && !trans_b && cfg.uk.tn_narrow && N >= kNarrowMinN && N <= kGemmNarrowN &&
        M >= kNarrowMinM && lda % kNarrowBadStride != 0)
        return Route::tn_narrow;
    return Route::packed;
}

void sgemm_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc, const Epilogue& ep, bool allow_threads) {
    // Mixed-precision training (gemm_bf16.h): the same product on bfloat16 operands.
    if (alpha == 1.0f && bf16_products())
        return sgemm_bf16_bias_relu(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc,
                                    ep.bias, ep.relu, allow_threads);
    const GemmConfig& cfg = config();
    const Route route = choose_route(cfg, trans_a, trans_b, M, N, K, lda, alpha);
    if (route == Route::empty) return;
    if (route == Route::scale_c) {
        scale_c(M, N, beta, C, ldc, ep);
        return;
    }
    const int64_t macs = M * N * K;
    if (route == Route::small_m) {
        // Few rows: stream B once, unpacked; threads take column blocks when B is large.
        const GemmSmallMFn fn = cfg.uk.small_m ? cfg.uk.small_m : &gemm_small_m_portable;
        const int64_t col_blocks = (N + 127) / 128;
        const int nth =
            allow_threads ? threads_for(std::min(macs / kMacsPerThread, col_blocks)) : 1;
        if (nth <= 1) {
            fn(trans_a, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep.bias, ep.relu);
            return;
        }
#pragma omp parallel for num_threads(nth) schedule(static)
        for (int t = 0; t < nth; ++t) {
            const int64_t j0 = col_blocks * t / nth * 128;
            const int64_t j1 = std::min(N, col_blocks * (t + 1) / nth * 128);
            if (j0 < j1)
                fn(trans_a, M, j1 - j0, K, alpha, A, lda, B + j0, ldb, beta, C + j0, ldc,
                   ep.bias ? ep.bias + j0 : nullptr, ep.relu);
        }
        return;
    }
    if (route == Route::tn_narrow) {
        // Few-column A^T B: unpacked, threads take whole row panels.
        constexpr int64_t R = kGemmNarrowRows;
        const int64_t panels = (M + R - 1) / R;
        const int nth = allow_threads ? threads_for(std::min(macs / kMacsPerThread, panels)) : 1;
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1)
        for (int t = 0; t < nth; ++t) {
            const int64_t i0 = panels * t / nth * R, i1 = std::min(M, panels * (t + 1) / nth * R);
            if (i0 < i1)
                cfg.uk.tn_narrow(i1 - i0, N, K, alpha, A + i0, lda, B, ldb, beta, C + i0 * ldc, ldc,
                              ep.bias, ep.relu);
        }
        return;
    }
    if (route == Route::naive) {
        sgemm_naive(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        if (ep.active()) apply_epilogue(C, ldc, M, N, ep.bias, ep.relu);
        return;
    }
    const int MR = cfg.uk.mr, NR = cfg.uk.nr;
    const int64_t m_tiles = (M + MR - 1) / MR, n_tiles = (N + NR - 1) / NR;
    const int nth = allow_threads ? threads_for(std::min(macs / kMacsPerThread, m_tiles * n_tiles))
                                  : 1;
    if (nth <= 1) {
        gemm_serial(cfg, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
        return;
    }

    // Split C into a tm x tn grid of tile rectangles: minimise the largest share of the product
    // plus the operand packing each thread repeats (its A rows per NC block, its B columns).
    int tm = nth, tn = 1;
    double best = -1.0;
    for (int m = 1; m <= nth; ++m) {
        if (nth % m) continue;
        const int n = nth / m;
        if (m > m_tiles || n > n_tiles) continue;
        const double rows = double((m_tiles + m - 1) / m * MR);
        const double cols = double((n_tiles + n - 1) / n * NR);
        const double n_blocks = std::ceil(cols * double(std::min(K, KC)) / double(cfg.b_floats));
        const double cost = rows * cols * double(K) + 4.0 * double(K) * (rows * n_blocks + cols);
        if (best < 0.0 || cost < best) best = cost, tm = m, tn = n;
    }

#pragma omp parallel num_threads(tm * tn)
    {
        // Loop in case the runtime gave fewer threads than asked.
        const int got = omp_get_num_threads();
        for (int t = omp_get_thread_num(); t < tm * tn; t += got) {
            const int ti = t / tn, tj = t % tn;
            const int64_t i0 = std::min(M, m_tiles * ti / tm * MR);
            const int64_t i1 = std::min(M, m_tiles * (ti + 1) / tm * MR);
            const int64_t j0 = std::min(N, n_tiles * tj / tn * NR);
            const int64_t j1 = std::min(N, n_tiles * (tj + 1) / tn * NR);
            if (i0 >= i1 || j0 >= j1) continue;
            const float* a = trans_a ? A + i0 : A + i0 * lda;
            const float* b = trans_b ? B + j0 * ldb : B + j0;
            const Epilogue sub{ep.bias ? ep.bias + j0 : nullptr, ep.relu};
            gemm_serial(cfg, trans_a, trans_b, i1 - i0, j1 - j0, K, alpha, a, lda, b, ldb, beta,
                        C + i0 * ldc + j0, ldc, sub);
        }
    }
}

}  // namespace

// A (M,K) or (K,M) if trans_a; B (K,N) or (N,K) if trans_b; C (M,N).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
    sgemm_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, {nullptr, false},
               true);
}

// Same shapes as sgemm; runs on the calling thread only.
void sgemm_single_thread(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                         float* C, int64_t ldc) {
    sgemm_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, {nullptr, false},
               false);
}

// Same shapes as sgemm; bias (N,) or null.
void sgemm_bias_relu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc, const float* bias, bool relu) {
    sgemm_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, {bias, relu}, true);
}

const char* sgemm_simd_path() { return config().uk.path; }

double measure_sgemm_ukernel_gflops(int64_t rounds, bool in_l1) {
    const GemmConfig& cfg = config();
    const int MR = cfg.uk.mr, NR = cfg.uk.nr;
    // sgemm's blocking for a large square product: K blocks near KC, an A block of mc_rows rows
    // and as many B panels as the L2 share holds.
    const int64_t l2_a_panels = cfg.mc_rows / MR;
    const int64_t l2_b_panels = std::max<int64_t>(1, cfg.b_floats / (KC * NR));
    // In L1 instead: one A panel, one B panel and their C tile at a depth whose operands fit in
    // 32 KiB, repeated so that a sweep does the same multiply-adds as the L2 one.
    const int64_t kc = in_l1 ? 128 : KC;
    const int64_t a_panels = in_l1 ? 1 : l2_a_panels, b_panels = in_l1 ? 1 : l2_b_panels;
    const int64_t repeats = in_l1 ? KC / kc * l2_a_panels * l2_b_panels : 1;
    const int64_t a_panel = a_panel_size(false, MR, kc);
    const int64_t a_floats = a_panels * a_panel, b_floats = b_panels * kc * NR;
    const int64_t ldc = b_panels * NR, c_floats = a_panels * MR * ldc;
    // Buffers as sgemm packs into (64-byte aligned).
    float* pa = workspace(Scratch::gemm_pack_a, a_floats);
    float* pb = workspace(Scratch::gemm_pack_b, b_floats);
    float* pc = workspace(Scratch::gemm_measure_c, c_floats);
    std::fill(pa, pa + a_floats, 1e-3f);
    std::fill(pb, pb + b_floats, 1e-3f);
    std::fill(pc, pc + c_floats, 0.0f);
    auto sweep = [&] {
        for (int64_t r = 0; r < repeats; ++r)
            for (int64_t ir = 0; ir < a_panels; ++ir)
                for (int64_t jr = 0; jr < b_panels; ++jr)
                    cfg.uk.a_rows(kc, pa + ir * a_panel, pb + jr * kc * NR,
                                  pc + ir * MR * ldc + jr * NR, ldc, 1.0f, 1.0f);
    };
    sweep();  // warm-up: caches, clocks
    rounds = std::max<int64_t>(1, rounds);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < rounds; ++r) sweep();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return 2.0 * double(MR * NR) * double(kc * a_panels * b_panels) * double(repeats * rounds) /
           s / 1e9;
}

// Same shapes as sgemm (alpha != 0).
const char* sgemm_route(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda) {
    switch (choose_route(config(), trans_a, trans_b, M, N, K, lda, 1.0f)) {
        case Route::empty: return "empty";
        case Route::scale_c: return "scale_c";
        case Route::small_m: return "small_m";
        case Route::tn_narrow: return "tn_narrow";
        case Route::naive: return "naive";
        case Route::packed: break;
    }
    return "packed";
}

}  // namespace cnnfast
