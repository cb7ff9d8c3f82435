// The fused 2x2-average-pooled epilogue of narrow int8 layers (Int8NarrowAvgPoolFn,
// conv2d_int8_narrow.h) with the sums on AMX tiles: 16 pixels of an output row are the 16 rows
// of an A tile read straight from the padded input (rows pixel_step bytes apart, so they
// overlap), each 64-byte chunk of a kernel row's span against a tile of the filters' weights
// (at most 16 filters: the columns). One tdpbusd does 16 x 16 x 64 multiply-adds against
// vpdpbusd's 16 x 4 (conv2d_int8_narrow_avx512vnni.cpp's pixel form, which spends a broadcast
// and a vpdpbusd per pixel and 4 input bytes); the bytes of a chunk past the span meet zero
// weights. Compiled with -mamx-tile -mamx-int8; chosen at run time only where cpu_has_amx().
// LeNet-5's C3 (6 -> 16 channels, 5x5, with tanh and the 2x2 average pooling after it) on 128
// MNIST images, one thread, Intel Xeon with AMX (OMP_PROC_BIND=close PYTHONPATH=. python
// dev/int8_step_times.py lenet5): 0.21 ms against 0.26 on VNNI's pixel form; its sums were
// bound by the overlapping strided tile loads, not the products (0.145 ms without the
// epilogue, 0.10 once the two output rows shared their input rows' tiles).
#include "conv2d_int8_narrow.h"

#if defined(CNNFAST_BUILD_AMX)
#include <immintrin.h>

#include <algorithm>

#include "amx_tiles.h"
#include "avx512_util.h"
#include "conv2d_int8_narrow_epilogue.h"

// GCC 12 says "uninitialized" of the _mm512_undefined_*() merge sources inside its own
// intrinsics (the float _round_ forms): false positives.
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace cnnfast {
namespace {

// Every tile 16 rows of 64 bytes: 0 and 1 the two rows' sums, 2 the pixels, 3 the weights.
// (The bfloat16 GEMM's configuration: a layer between its calls reconfigures nothing.)
constexpr AmxTileConfig kNarrowConfig = amx_block_config(16);

template <class Act>
void avgpool_with(uint8_t* q, const uint8_t* src, int64_t n, int64_t pixel_step,
                  int64_t row_step, int64_t out_row, int64_t KH, int64_t span, const uint32_t* w,
                  int64_t K, const Int8NarrowEpilogue& e) {
    amx_configure(kNarrowConfig);
    const int64_t chunks = (span + 63) / 64;
    _tile_zero(0);
    _tile_zero(1);
    if (out_row == row_step) {
        // Input row r is the top row's kernel row r and the bottom row's r - 1: each input
        // row and each kernel row loaded once (kernel rows alternate between tiles 3 and 4;
        // tile numbers are constants, hence the two arms).
        auto kernel_row = [&](int64_t r, int64_t c) { return w + (r * chunks + c) * 256; };
        for (int64_t c = 0; c < chunks; ++c)
            for (int64_t r = 0; r <= KH; ++r) {
                _tile_loadd(2, src + r * row_step + 64 * c, pixel_step);
                if (r % 2 == 0) {
                    if (r < KH) {
                        _tile_loadd(3, kernel_row(r, c), 64);
                        _tile_dpbusd(0, 2, 3);
                    }
                    if (r > 0) _tile_dpbusd(1, 2, 4);
                } else {
                    if (r < KH) {
                        _tile_loadd(4, kernel_row(r, c), 64);
                        _tile_dpbusd(0, 2, 4);
                    }
                    _tile_dpbusd(1, 2, 3);
                }
            }
    } else {
        for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t c = 0; c < chunks; ++c) {
                const uint8_t* x = src + kh * row_step + 64 * c;
                _tile_loadd(3, w + (kh * chunks + c) * 256, 64);
                _tile_loadd(2, x, pixel_step);
                _tile_dpbusd(0, 2, 3);
                _tile_loadd(2, x + out_row, pixel_step);
                _tile_dpbusd(1, 2, 3);
            }
    }
    alignas(64) int32_t top[16 * 16], bottom[16 * 16];
    _tile_stored(0, top, 64);
    _tile_stored(1, bottom, 64);
    const __mmask16 mk = lanes(K);
    const __m512i shift = _mm512_maskz_loadu_epi32(mk, e.shift);
    const __m512 mult = _mm512_maskz_loadu_ps(mk, e.mult);
    const __m512 bias = e.bias ? _mm512_maskz_loadu_ps(mk, e.bias) : _mm512_setzero_ps();
    const __m512 quarter = _mm512_set1_ps(0.25f);
    const __m512 inv = _mm512_set1_ps(e.inv), lo = _mm512_set1_ps(e.lo);
    const __m512 hi = _mm512_set1_ps(e.hi), zp = _mm512_set1_ps(e.zp);
    for (int64_t i = 0; i < n / 2; ++i) {
        const int32_t* t = top + 32 * i;
        const int32_t* b = bottom + 32 * i;
        _mm512_mask_cvtepi32_storeu_epi8(
            q + i * K, mk,
            pooled_window<Act>(_mm512_load_si512(t), _mm512_load_si512(t + 16),
                               _mm512_load_si512(b), _mm512_load_si512(b + 16), shift, mult,
                               bias, quarter, inv, lo, hi, zp));
    }
}

void avgpool(uint8_t* q, const uint8_t* src, int64_t n, int64_t pixel_step, int64_t row_step,
             int64_t out_row, int64_t KH, int64_t span, const uint32_t* w, int64_t K,
             const Int8NarrowEpilogue& e) {
    with_activation(e.act, [&](auto act) {
        for (int64_t j = 0; j < n; j += 16)  // a tile's 16 pixels at a time
            avgpool_with<decltype(act)>(q + j / 2 * K, src + j * pixel_step,
                                        std::min<int64_t>(16, n - j), pixel_step, row_step,
                                        out_row, KH, span, w, K, e);
    });
}

}  // namespace

Int8NarrowAvgPoolFn conv2d_int8_narrow_avgpool_amx() { return &avgpool; }

}  // namespace cnnfast

#else

namespace cnnfast {
Int8NarrowAvgPoolFn conv2d_int8_narrow_avgpool_amx() { return nullptr; }
}  // namespace cnnfast

#endif
