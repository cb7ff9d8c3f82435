// The int8 convolution's narrow-layer sums (conv2d_int8_narrow.h) on AVX512-VNNI: one
// accumulator per output pixel, the (up to 16) filters in its lanes; each vpdpbusd adds the
// pixel's next 4 input bytes, broadcast from the padded input, times the filters' 4 weights.
#include "conv2d_int8_narrow.h"

#if defined(CNNFAST_BUILD_AVX512VNNI)
#include <immintrin.h>

#include <cstring>

namespace cnnfast {
namespace {

// P pixels (a template argument, so that the accumulators stay in registers and the pixel loop
// unrolls without tests).
template <int P>
void pixel_sums(int32_t* tile, const uint8_t* src, int64_t pixel_step, int64_t row_step,
                int64_t KH, int64_t groups, const uint32_t* w) {
    __m512i acc[P];
#pragma GCC unroll 16
    for (int j = 0; j < P; ++j) acc[j] = _mm512_setzero_si512();
    for (int64_t kh = 0; kh < KH; ++kh) {
        for (int64_t g = 0; g < groups; ++g) {
            const __m512i wg = _mm512_loadu_si512(w + (kh * groups + g) * kNarrowMaxK);
            const uint8_t* x = src + kh * row_step + 4 * g;
            // Pixel j's 4 bytes, broadcast (an unaligned 4-byte load), times the filters' 4
            // weights.
#pragma GCC unroll 16
            for (int j = 0; j < P; ++j) {
                uint32_t quad;
                std::memcpy(&quad, x + j * pixel_step, 4);
                acc[j] = _mm512_dpbusd_epi32(acc[j], _mm512_set1_epi32(static_cast<int>(quad)), wg);
            }
        }
    }
#pragma GCC unroll 16
    for (int j = 0; j < P; ++j) _mm512_storeu_si512(tile + j * kNarrowMaxK, acc[j]);
}

constexpr decltype(&pixel_sums<1>) kPixelSums[kNarrowPixels] = {
    &pixel_sums<1>,  &pixel_sums<2>,  &pixel_sums<3>,  &pixel_sums<4>,
    &pixel_sums<5>,  &pixel_sums<6>,  &pixel_sums<7>,  &pixel_sums<8>,
    &pixel_sums<9>,  &pixel_sums<10>, &pixel_sums<11>, &pixel_sums<12>,
    &pixel_sums<13>, &pixel_sums<14>, &pixel_sums<15>, &pixel_sums<16>};

void sums(int32_t* tile, const uint8_t* src, int64_t n, int64_t pixel_step, int64_t row_step,
          int64_t KH, int64_t span, const uint32_t* w) {
    // Pixels past n are not read: their bytes may lie past the input.
    kPixelSums[n - 1](tile, src, pixel_step, row_step, KH, (span + 3) / 4, w);
}

}  // namespace

Int8NarrowSumsFn conv2d_int8_narrow_avx512vnni() { return &sums; }

}  // namespace cnnfast

#else

namespace cnnfast {
Int8NarrowSumsFn conv2d_int8_narrow_avx512vnni() { return nullptr; }
}  // namespace cnnfast

#endif
