#pragma once
// Internal to the AVX-512 Winograd transforms (conv2d_winograd_avx512.cpp and
// conv2d_winograd_avx512bf16.cpp; include it only from files compiled for AVX-512): the input
// transform's walk over a block of tiles, shared by its float32 and bfloat16 writers.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "avx512_util.h"
#include "conv2d_winograd.h"

namespace cnnfast {
namespace winograd_input {

// An input patch inside x: its pixels from one pointer and two strides. (16 pointers and masks
// per patch spilled in the walk's loop: a third of its time at 32 channels.)
struct InteriorPatch {
    const float* base;
    int64_t row_floats, C;
    __m512 load(int a, int b, int64_t c, __mmask16 m) const {
        return _mm512_maskz_loadu_ps(m, base + a * row_floats + b * C + c);
    }
};

// A patch over the border: pixels outside x masked off (masked-off loads never touch memory, so
// their pointers may be anything).
struct BorderPatch {
    const float* src[16];
    __mmask16 in[16];
    __m512 load(int a, int b, int64_t c, __mmask16 m) const {
        return _mm512_maskz_loadu_ps(in[4 * a + b] & m, src[4 * a + b] + c);
    }
};

// o[pos] = (B^T d B)[pos] of channels [c, c + 16) (lanes m) of patch d,
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
template <class Patch>
inline __attribute__((always_inline)) void patch_positions(__m512 o[16], const Patch& patch,
                                                           int64_t c, __mmask16 m) {
    __m512 p[4][4], t[4][4];
    for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) p[a][b] = patch.load(a, b, c, m);
    for (int b = 0; b < 4; ++b) {  // B^T d
        t[0][b] = _mm512_sub_ps(p[0][b], p[2][b]);
        t[1][b] = _mm512_add_ps(p[1][b], p[2][b]);
        t[2][b] = _mm512_sub_ps(p[2][b], p[1][b]);
        t[3][b] = _mm512_sub_ps(p[1][b], p[3][b]);
    }
    for (int a = 0; a < 4; ++a) {  // (B^T d) B
        o[4 * a] = _mm512_sub_ps(t[a][0], t[a][2]);
        o[4 * a + 1] = _mm512_add_ps(t[a][1], t[a][2]);
        o[4 * a + 2] = _mm512_sub_ps(t[a][2], t[a][1]);
        o[4 * a + 3] = _mm512_sub_ps(t[a][1], t[a][3]);
    }
}

// write(i, patch) for tiles t0 + i, i < nt, of x (N,H,W,C) (grid g), with patch an
// InteriorPatch or a BorderPatch; patch pixels outside the input read as zero.
template <class Write>
void walk_tiles(const float* x, int64_t t0, int64_t nt, const Conv2dDims& d, const TileGrid& g,
                const Write& write) {
    const int64_t C = d.C, WC = d.W * C;
    // Tiles per image whose patch lies inside the input: tile rows (columns) t with
    // 0 <= 2t - pad and 2t - pad + 4 <= H (W).
    auto inside_tiles = [](int64_t tiles, int64_t pad, int64_t size) {
        if (size + pad < 4) return int64_t{0};  // (the division below truncates toward zero)
        const int64_t first = (pad + 1) / 2, last = (size + pad - 4) / 2;
        return std::max<int64_t>(0, std::min(tiles - 1, last) - first + 1);
    };
    const int64_t interior_tiles =
        inside_tiles(g.TH, d.pad_top, d.H) * inside_tiles(g.TW, d.pad_left, d.W);
    // A padded copy pays where at least 40% of the tiles touch the border (ResNet-20's 16x16 and
    // 8x8 maps: 44% and 75%); at the Keras MNIST CNN's 13x13 "valid" map (31%) the masked
    // patches cost less than the copy (batch-1 predict 1.5 us slower with it).
    const bool copy = 10 * (g.per_image - interior_tiles) >= 4 * g.per_image;
    for (int64_t i0 = 0; i0 < nt;) {
        // The tiles of one image: [i0, i1), tile rows tr0 .. tr1.
        const int64_t n = (t0 + i0) / g.per_image, r0 = (t0 + i0) % g.per_image;
        const int64_t i1 = std::min(nt, i0 + g.per_image - r0);
        const int64_t tr0 = r0 / g.TW, tr1 = (r0 + i1 - i0 - 1) / g.TW;
        // Where many patches reach outside and the tiles fill at least half their tile rows, a
        // zero-padded copy of those rows makes every patch an interior one: per-pixel masks
        // (16 pointers and masks per patch, spilled) took 70% of this transform's time on
        // ResNet-20's 16x16 and 8x8 maps.
        if (copy && 2 * (i1 - i0) >= (tr1 - tr0 + 1) * g.TW) {
            const int64_t Wp = 2 * g.TW + 2;
            // Tile rows tr0 .. tr1: input rows 2 tr0 - pad_top .. 2 tr1 + 3 - pad_top.
            const float* band = winograd_padded_rows(x, n, 2 * tr0 - d.pad_top,
                                                     2 * (tr1 - tr0) + 4, Wp, d);
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t r = (t0 + i) % g.per_image;
                write(i, InteriorPatch{band + (2 * (r / g.TW - tr0) * Wp + 2 * (r % g.TW)) * C,
                                       Wp * C, C});
            }
            i0 = i1;
            continue;
        }
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t r = (t0 + i) % g.per_image;
            const int64_t ih0 = 2 * (r / g.TW) - d.pad_top, iw0 = 2 * (r % g.TW) - d.pad_left;
            const int64_t patch = ((n * d.H + ih0) * d.W + iw0) * C;  // may lie before x
            if (ih0 >= 0 && ih0 + 4 <= d.H && iw0 >= 0 && iw0 + 4 <= d.W) {
                write(i, InteriorPatch{x + patch, WC, C});
                continue;
            }
            BorderPatch p;
            for (int a = 0; a < 4; ++a)
                for (int b = 0; b < 4; ++b) {
                    const int64_t ih = ih0 + a, iw = iw0 + b;
                    const bool ok = ih >= 0 && ih < d.H && iw >= 0 && iw < d.W;
                    p.in[4 * a + b] = ok ? __mmask16(0xFFFF) : __mmask16(0);
                    p.src[4 * a + b] = ok ? x + (patch + a * WC + b * C) : x;
                }
            write(i, p);
        }
        i0 = i1;
    }
}

}  // namespace winograd_input
}  // namespace cnnfast
