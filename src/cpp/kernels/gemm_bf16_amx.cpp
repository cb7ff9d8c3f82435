// The bfloat16 GEMM's products on AMX tiles (AMX-BF16: Intel Sapphire Rapids and later).
// Compiled with -mamx-tile -mamx-bf16; chosen at run time only where cpu_has_amx() (the CPU has
// the tiles and the kernel granted this process their state).
//
// One tdpbf16ps multiplies a 16 x 32 bfloat16 tile by a 32 x 16 one into 16 x 16 float32 sums:
// 8192 multiply-adds, against vdpbf16ps's 32. A standalone loop of four of them per step (the
// 32 x 32 block below, operands in L1) ran at 2474-2568 GFLOP/s on one core of the Xeon with
// AMX (dev/amx_tiles.cpp), whose FP32 FMA peak is 235 (bench/results/intel-xeon-2c.md).
//
// Sums: each tdpbf16ps adds a pair's two products to the running float32 sums, as vdpbf16ps
// does, but not with vdpbf16ps's roundings (Intel does not specify the order inside a pair),
// so this path agrees with the portable one to float32 rounding of the sums, not to the bit.
#include "gemm_bf16_ukernel.h"

#if defined(CNNFAST_BUILD_AMX)
#include <immintrin.h>

#include <algorithm>

#include "amx_tiles.h"

namespace cnnfast {

namespace {

// A constant in memory, not a local (amx_tiles.h says why).
constexpr AmxTileConfig kBlockConfig = amx_block_config(16);

void configure() { amx_configure(kBlockConfig); }

constexpr int64_t kPanelRowBytes = 32 * 4;  // a packed B panel's row: 32 columns of pairs

template <bool kTwoTiles>
void block_tiles(int64_t steps, const uint32_t* a, int64_t a_stride, const uint32_t* b,
                 const uint32_t* a_tail, int64_t a_tail_stride, const uint32_t* b_tail, float* c,
                 int64_t ldc, bool accumulate) {
    const int64_t c_bytes = ldc * 4;
    if (accumulate) {
        _tile_loadd(0, c, c_bytes);
        _tile_loadd(1, c + 16, c_bytes);
        if (kTwoTiles) {
            _tile_loadd(2, c + 16 * ldc, c_bytes);
            _tile_loadd(3, c + 16 * ldc + 16, c_bytes);
        }
    } else {
        _tile_zero(0);
        _tile_zero(1);
        if (kTwoTiles) {
            _tile_zero(2);
            _tile_zero(3);
        }
    }
    // One step: 16 pairs of k of the block's rows (the upper tile's from a_upper, the lower's
    // 16 rows below, rows `stride` pairs apart) times 16 pair rows of the panel (bs).
    auto step = [&](const uint32_t* a_upper, int64_t stride, const uint32_t* bs) {
        _tile_loadd(6, bs, kPanelRowBytes);
        _tile_loadd(7, bs + 16, kPanelRowBytes);
        _tile_loadd(4, a_upper, stride * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        if (kTwoTiles) {
            _tile_loadd(5, a_upper + kAmxStep * stride, stride * 4);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    };
    for (int64_t s = 0; s < steps; ++s) step(a + s * kAmxStep, a_stride, b + s * kAmxStep * 32);
    if (a_tail) step(a_tail, a_tail_stride, b_tail);
    _tile_stored(0, c, c_bytes);
    _tile_stored(1, c + 16, c_bytes);
    if (kTwoTiles) {
        _tile_stored(2, c + 16 * ldc, c_bytes);
        _tile_stored(3, c + 16 * ldc + 16, c_bytes);
    }
}

void block(bool two_tiles, int64_t steps, const uint32_t* a, int64_t a_stride, const uint32_t* b,
           const uint32_t* a_tail, int64_t a_tail_stride, const uint32_t* b_tail, float* c,
           int64_t ldc, bool accumulate) {
    if (two_tiles)
        return block_tiles<true>(steps, a, a_stride, b, a_tail, a_tail_stride, b_tail, c, ldc,
                                 accumulate);
    block_tiles<false>(steps, a, a_stride, b, a_tail, a_tail_stride, b_tail, c, ldc, accumulate);
}

// r[j] = column j of the 16 x 16 uint32 matrix whose row i was r[i]: 32-bit, 64-bit, then
// 128-bit interleaves.
inline void transpose_16x16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    // u[4i + c], 128-bit lane L: rows 4i .. 4i + 3 of column 4L + c.
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    // Column 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c].
    for (int c = 0; c < 4; ++c) {
        const __m512i even_upper = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);
        const __m512i odd_upper = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xdd);
        const __m512i even_lower = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
        const __m512i odd_lower = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xdd);
        r[c] = _mm512_shuffle_i32x4(even_upper, even_lower, 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(even_upper, even_lower, 0xdd);
        r[4 + c] = _mm512_shuffle_i32x4(odd_upper, odd_lower, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(odd_upper, odd_lower, 0xdd);
    }
}

// For each half of the 32 columns and each 16 pairs: the pairs of 16 columns (as a packed B
// panel's rows: row 2p in the low half), then transposed so that each column becomes a row.
void pack_a_transposed(const float* A, int64_t lda, int64_t K, int64_t M, int64_t m0,
                       int64_t stride, uint32_t* out) {
    static const __m512i interleave = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
        23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t h = 0; h < 2; ++h) {
        const int64_t col0 = m0 + 16 * h;
        const int64_t cols = std::clamp<int64_t>(M - col0, 0, 16);
        const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1);
        for (int64_t p0 = 0; p0 < stride; p0 += kAmxStep) {
            __m512i r[16];
            for (int q = 0; q < 16; ++q) {
                const int64_t k = 2 * (p0 + q);
                const __m512 lo =
                    k < K ? _mm512_maskz_loadu_ps(mask, A + k * lda + col0) : _mm512_setzero_ps();
                const __m512 hi = k + 1 < K ? _mm512_maskz_loadu_ps(mask, A + (k + 1) * lda + col0)
                                            : _mm512_setzero_ps();
                r[q] = _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
            }
            transpose_16x16(r);
            for (int j = 0; j < 16; ++j)
                _mm512_storeu_si512(out + (16 * h + j) * stride + p0, r[j]);
        }
    }
}

const Bf16Amx kAmx{configure, block, pack_a_transposed};

}  // namespace

const Bf16Gemm* gemm_bf16_amx() {
    static const Bf16Gemm table = amx_table_from(*gemm_bf16_avx512bf16(), "amx_bf16", &kAmx);
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const Bf16Gemm* gemm_bf16_amx() { return nullptr; }
}  // namespace cnnfast

#endif
