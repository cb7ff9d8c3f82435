// Winograd's input transform for mixed-precision training on AVX512-BF16 (AMD Zen 4 and later,
// Intel from Cooper Lake): the float32 transform of conv2d_winograd_avx512.cpp, rounded to
// bfloat16 by vcvtne2ps2bf16, 32 channels to one 64-byte store. Chosen at run time
// (conv2d_winograd.cpp) with the bfloat16 GEMM's AVX512-BF16 kernel.
#include "conv2d_winograd.h"

#if defined(CNNFAST_BUILD_AVX512BF16)
#include "conv2d_winograd_input.h"

namespace cnnfast {
namespace {

// The AVX-512F transform writes each 16 channels' bfloat16 halves with its own rounding
// (bf16_upper, about 12 instructions a vector) and a narrowing masked store (vpmovdw to memory,
// several micro-ops on AMD Zen); here one vcvtne2ps2bf16 rounds 32 channels the same way
// (nearest even, subnormals to signed zero, NaN quiet: the bits gemm_bf16.h specifies) and one
// store writes them.
void transform_input_bf16(uint16_t* V, int64_t ldpos, const float* x, int64_t t0, int64_t nt,
                          const Conv2dDims& d, const TileGrid& g) {
    const int64_t C = d.C;
    winograd_input::walk_tiles(x, t0, nt, d, g, [&](int64_t i, const auto& patch) {
        uint16_t* v = V + i * C;
        for (int64_t c = 0; c < C; c += 32) {
            __m512 lo[16], hi[16];
            winograd_input::patch_positions(lo, patch, c, lanes(C - c));
            if (C - c > 16)
                winograd_input::patch_positions(hi, patch, c + 16, lanes(C - c - 16));
            else
                for (__m512& h : hi) h = _mm512_setzero_ps();
            const __mmask32 m = lanes32(C - c);
            for (int pos = 0; pos < 16; ++pos)
                _mm512_mask_storeu_epi16(v + pos * ldpos + c, m,
                                         (__m512i)_mm512_cvtne2ps_pbh(hi[pos], lo[pos]));
        }
    });
}

}  // namespace

WinogradInputBf16 conv2d_winograd_input_avx512bf16() { return &transform_input_bf16; }

}  // namespace cnnfast

#else

namespace cnnfast {
WinogradInputBf16 conv2d_winograd_input_avx512bf16() { return nullptr; }
}  // namespace cnnfast

#endif
