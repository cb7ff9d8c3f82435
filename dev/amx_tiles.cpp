// What one core's AMX unit does, measured apart from cnnfast: the rate of the GEMM blocks'
// inner loop (gemm_bf16_amx.cpp, gemm_u8s8_amx.cpp: two A tiles, two B tiles, four sum tiles,
// operands in L1) and the cost of configuring the tiles (ldtilecfg) against reading the
// configuration back and comparing it (amx_tiles.h's amx_configure: sttilecfg + memcmp).
//
//   g++ -O2 -mamx-tile -mamx-bf16 -mamx-int8 -Isrc/cpp/kernels dev/amx_tiles.cpp -o /tmp/amx_tiles
//   taskset -c 0 /tmp/amx_tiles
//
// Needs a CPU with AMX (lscpu: amx_tile amx_bf16 amx_int8) and Linux's permission for the tile
// state, which it requests as cnnfast does (cpu_features.cpp).
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "amx_tiles.h"

namespace {

// amx_tiles.h's configuration of the GEMM blocks, a constant in memory as there.
constexpr cnnfast::AmxTileConfig kConfig = cnnfast::amx_block_config(16);

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

alignas(64) uint8_t g_a[2 * 16 * 64], g_b[16 * 128];

template <bool kInt8>
double block_loop_gops(long iterations) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iterations; ++i) {
        _tile_loadd(4, g_a, 64);
        _tile_loadd(5, g_a + 16 * 64, 64);
        _tile_loadd(6, g_b, 128);
        _tile_loadd(7, g_b + 64, 128);
        if (kInt8) {
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
        } else {
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    const double s = seconds_since(t0);
    alignas(64) int32_t c[16 * 16];
    _tile_stored(0, c, 64);  // keep the sums live
    // Multiply-adds per instruction: 16 rows x 16 columns x 32 bfloat16 (64 int8) products.
    const double products = 16.0 * 16 * (kInt8 ? 64 : 32);
    return iterations * 4 * products * 2 / s / 1e9;
}

}  // namespace

int main() {
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
        std::printf("no AMX tile state granted: not an AMX CPU, or an old kernel\n");
        return 1;
    }
    // Operands of mixed signs and magnitudes, as a product's: all-zero tiles ran twice as fast
    // (3368 against 1558 GFLOP/s). Each 16-bit value a bfloat16 in [0.5, 2) with a random sign;
    // the int8 loop reads the same bytes.
    uint32_t state = 12345;
    for (size_t i = 0; i < sizeof g_a + sizeof g_b; i += 2) {
        state = state * 1664525u + 1013904223u;
        const uint16_t v = static_cast<uint16_t>(0x3f00 | ((state >> 8) & 0x80ff));
        std::memcpy(i < sizeof g_a ? g_a + i : g_b + (i - sizeof g_a), &v, 2);
    }
    _tile_loadconfig(&kConfig);
    block_loop_gops<false>(100000);  // warm up (the unit's clock)
    std::printf("tdpbf16ps, 2x2 tiles a step: %.0f GFLOP/s\n", block_loop_gops<false>(2000000));
    std::printf("tdpbusd,   2x2 tiles a step: %.0f GOP/s\n", block_loop_gops<true>(2000000));

    constexpr long kCalls = 200000;
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < kCalls; ++i) {
        _tile_loadconfig(&kConfig);
        _tile_zero(0);
    }
    std::printf("ldtilecfg (+ tilezero): %.1f ns\n", seconds_since(t0) / kCalls * 1e9);
    t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < kCalls; ++i) {
        cnnfast::amx_configure(kConfig);  // already loaded: sttilecfg and a compare
        _tile_zero(0);
    }
    std::printf("sttilecfg + compare (+ tilezero): %.1f ns\n", seconds_since(t0) / kCalls * 1e9);
    _tile_release();
    return 0;
}
