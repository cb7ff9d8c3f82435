// The int8 GEMM's products on AMX tiles (AMX-INT8: Intel Sapphire Rapids and later). Compiled
// with -mamx-tile -mamx-int8; chosen at run time only where cpu_has_amx().
//
// One tdpbusd multiplies a 14 x 64 uint8 tile by a 64 x 16 int8 one into 14 x 16 int32 sums:
// 14336 multiply-adds, against vpdpbusd's 64 (a loop of 16-row blocks: 5061 GOP/s on one core
// of the Xeon with AMX, dev/amx_tiles.cpp). The sums are exact, as on every path, so this one
// gives the naive loop's bits. The sum and A tiles have the micro-kernel tile's kU8MR rows, not
// AMX's 16, so that the int8 layers' row blocks (conv2d_int8.cpp's pooled windows among them)
// keep their shape.
#include "gemm_u8s8_ukernel.h"

#if defined(CNNFAST_BUILD_AMX)
#include <immintrin.h>

#include "amx_tiles.h"

namespace cnnfast {

namespace {

// A constant in memory, not a local (amx_tiles.h says why).
constexpr AmxTileConfig kBlockConfig = amx_block_config(static_cast<uint8_t>(kU8MR));

void configure() { amx_configure(kBlockConfig); }

constexpr int64_t kPanelRowBytes = kU8NR * 4;  // a packed B panel's row: kU8NR quads

template <bool kTwoTiles>
void block_tiles(int64_t steps, const uint8_t* a, int64_t lda, const uint32_t* b,
                 const uint32_t* b_tail, int32_t* c, int64_t ldc) {
    _tile_zero(0);
    _tile_zero(1);
    if (kTwoTiles) {
        _tile_zero(2);
        _tile_zero(3);
    }
    // One step: 16 quads of k of the block's rows (the upper tile's from a_upper, the lower's
    // kU8MR rows below) times 16 quad rows of the panel (bs, rows 128 bytes apart).
    auto step = [&](const uint8_t* a_upper, const uint32_t* bs) {
        _tile_loadd(6, bs, kPanelRowBytes);
        _tile_loadd(7, bs + 16, kPanelRowBytes);
        _tile_loadd(4, a_upper, lda);
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 4, 7);
        if (kTwoTiles) {
            _tile_loadd(5, a_upper + kU8MR * lda, lda);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
        }
    };
    constexpr int64_t kStepBytes = 4 * kAmxStep;
    for (int64_t s = 0; s < steps; ++s) step(a + s * kStepBytes, b + s * kAmxStep * kU8NR);
    if (b_tail) step(a + steps * kStepBytes, b_tail);
    const int64_t c_bytes = ldc * 4;
    _tile_stored(0, c, c_bytes);
    _tile_stored(1, c + 16, c_bytes);
    if (kTwoTiles) {
        _tile_stored(2, c + kU8MR * ldc, c_bytes);
        _tile_stored(3, c + kU8MR * ldc + 16, c_bytes);
    }
}

void block(bool two_tiles, int64_t steps, const uint8_t* a, int64_t lda, const uint32_t* b,
           const uint32_t* b_tail, int32_t* c, int64_t ldc) {
    if (two_tiles) return block_tiles<true>(steps, a, lda, b, b_tail, c, ldc);
    block_tiles<false>(steps, a, lda, b, b_tail, c, ldc);
}

const U8Amx kAmx{configure, block};

}  // namespace

const U8Gemm* gemm_u8s8_amx() {
    static const U8Gemm table = amx_table_from(*gemm_u8s8_avx512vnni(), "amx_int8", &kAmx);
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const U8Gemm* gemm_u8s8_amx() { return nullptr; }
}  // namespace cnnfast

#endif
