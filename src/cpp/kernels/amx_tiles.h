#pragma once
// Internal to the AMX products (gemm_bf16_amx.cpp, gemm_u8s8_amx.cpp and their drivers,
// gemm_bf16.cpp and int8_chunks.h). Both GEMMs multiply blocks of two A tiles (rows x 64
// bytes), two B tiles (16 rows x 64 bytes: the two halves of 16 rows of a packed 32-column
// panel, pairs or quads of k) and four sum tiles (rows x 16 lanes of 32 bits), so k goes in
// steps of 16 panel rows and a panel's last rows % 16 need a zero-padded tile of their own.
#include <cstdint>
#include <cstring>

#if defined(__AMX_TILE__)
#include <immintrin.h>
#endif

namespace cnnfast {

// Packed panel rows per B tile (k pairs for bfloat16, k quads for int8), and columns a panel.
constexpr int64_t kAmxStep = 16, kAmxPanelColumns = 32;

// out (panels x kAmxStep x 32 uint32): each of the `panels` packed panels (panel_rows x 32,
// one after another) with its last panel_rows % kAmxStep rows copied to the top of a tile, zero
// below them: the last k step of every block reads whole tiles, and the rows past a panel's end
// are the next panel's (or past the buffer).
inline void amx_tail_tiles(uint32_t* out, const uint32_t* panels, int64_t panel_rows,
                           int64_t panels_count) {
    constexpr int64_t kTile = kAmxStep * kAmxPanelColumns;
    const int64_t tail = panel_rows % kAmxStep, first = panel_rows - tail;
    for (int64_t p = 0; p < panels_count; ++p) {
        uint32_t* tile = out + p * kTile;
        std::memcpy(tile, panels + (p * panel_rows + first) * kAmxPanelColumns,
                    static_cast<size_t>(tail * kAmxPanelColumns) * 4);
        std::memset(tile + tail * kAmxPanelColumns, 0,
                    static_cast<size_t>(kTile - tail * kAmxPanelColumns) * 4);
    }
}

// The 64-byte operand of ldtilecfg: palette 1, then each tile's bytes per row and rows.
struct alignas(64) AmxTileConfig {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
};

// Tiles 0-3: sums (row half 0 / 1 x column half 0 / 1), 4-5: A's row halves, 6-7: B's column
// halves; `rows` rows in each sum and A tile (at most 16). Keep a configuration in a constant
// in memory, not in a local: GCC 12 does not see ldtilecfg read its operand and dropped the
// stores that fill a local one (objdump: only the palette byte was written; the first tile
// instruction then faulted).
constexpr AmxTileConfig amx_block_config(uint8_t rows) {
    AmxTileConfig config{};
    config.palette = 1;
    for (int t = 0; t < 8; ++t) {
        config.bytes_per_row[t] = 64;
        config.rows[t] = t < 6 ? rows : 16;
    }
    return config;
}

// A GEMM family's AMX table: its AVX-512 table (every AMX CPU has AVX512-BF16 and -VNNI, whose
// packing the tiles read) under another path name, with the products on AMX's kernels.
template <class Table, class Amx>
Table amx_table_from(const Table& avx512, const char* path, const Amx* amx) {
    Table t = avx512;
    t.path = path;
    t.amx = amx;
    return t;
}

#if defined(__AMX_TILE__)
// Loads `config` into the calling thread's tiles unless it is there already: ldtilecfg took
// 49-51 ns, reading the configuration back (sttilecfg) and comparing it 7 ns (dev/amx_tiles.cpp,
// one core of the Xeon with AMX), and the GEMMs configure once per block of rows (Winograd's
// positions: thousands of times a training step). The tiles stay configured when a kernel
// returns (the thread's 8 KB of tile state is then saved at its context switches); AMX code of
// other libraries that releases them or loads another configuration in between costs the next
// call one ldtilecfg, as the comparison sees.
inline void amx_configure(const AmxTileConfig& config) {
    AmxTileConfig current;
    _tile_storeconfig(&current);
    if (std::memcmp(&current, &config, sizeof config) != 0) _tile_loadconfig(&config);
}
#endif

}  // namespace cnnfast
