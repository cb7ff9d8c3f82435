#pragma once
// Internal to the AMX kernels (*_amx.cpp, compiled with -mamx-tile): the tile configuration
// both GEMMs load. Their blocks
// are two A tiles (rows x 64 bytes), two B tiles (16 rows x 64 bytes: one packed panel's two
// halves) and four sum tiles (rows x 16 lanes of 32 bits).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace cnnfast {

// The 64-byte operand of ldtilecfg: palette 1, then each tile's bytes per row and rows.
struct alignas(64) AmxTileConfig {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
};

// Tiles 0-3: sums (row half 0 / 1 x column half 0 / 1), 4-5: A's row halves, 6-7: B's column
// halves; `rows` rows in each sum and A tile (at most 16).
constexpr AmxTileConfig amx_block_config(uint8_t rows) {
    AmxTileConfig config{};
    config.palette = 1;
    for (int t = 0; t < 8; ++t) {
        config.bytes_per_row[t] = 64;
        config.rows[t] = t < 6 ? rows : 16;
    }
    return config;
}

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

}  // namespace cnnfast
