// The int8 convolution's narrow-layer sums (conv2d_int8_narrow.h) on AVX512-VNNI, in two forms:
// pixels in accumulators (one per output pixel, the up to 16 filters in its lanes; each vpdpbusd
// adds the pixel's next 4 input bytes, broadcast from the padded input, times the filters' 4
// weights), and pixels in lanes (lane_sums below, for one input channel and few filters).
#include "conv2d_int8_narrow.h"

#if defined(CNNFAST_BUILD_AVX512VNNI)
#include <immintrin.h>

#include <cstring>

#include "avx512_util.h"

// GCC 12 warns that the unmasked forms of vpermd and vpunpck*dq read an uninitialised vector
// (the intrinsics pass _mm512_undefined_epi32() as the unused merge source): a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

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

// The two shuffles' indices for pixel_step p = 1 .. 4, made once (built in the kernel on each
// call, they took about a quarter of its samples in `perf annotate`).
struct WindowShuffles {
    alignas(64) int32_t dwords[4][16];
    alignas(64) int8_t bytes[4][64];
    constexpr WindowShuffles() : dwords(), bytes() {
        for (int p = 1; p <= 4; ++p)
            for (int lane = 0; lane < 4; ++lane)
                for (int i = 0; i < 4; ++i) {
                    dwords[p - 1][4 * lane + i] = lane * p + i;
                    for (int b = 0; b < 4; ++b)
                        bytes[p - 1][16 * lane + 4 * i + b] = static_cast<int8_t>(i * p + b);
                }
    }
};
constexpr WindowShuffles kWindowShuffles;

// Pixels in the lanes, filters in the accumulators: for layers whose pixels lie at most 4 bytes
// apart (one input channel, stride 1 to 4: LeNet-5's C1) and few filters. The pixel form above
// spends a broadcast and a vpdpbusd per pixel and 4 input bytes, with K of the vpdpbusd's 16
// lanes used (6 of 16 for C1); here one vpdpbusd serves 16 pixels of one filter (its 4 weights
// broadcast from memory), and the 16 pixels' 4-byte windows are built by two shuffles
// from one load: vpermd gives 128-bit lane L the input's dwords L p .. L p + 3 (bytes 4 L p ..
// 4 L p + 15, p = pixel_step), vpshufb then picks, for the lane's pixels 4 L + i, bytes i p + b
// (b < 4; at most 3 * 4 + 3 = 15, inside the lane). K accumulators, transposed into the tile.
// LeNet-5's int8 C1 on 128 MNIST images, one thread, AMD EPYC Zen 4 (OMP_PROC_BIND=close
// PYTHONPATH=. python dev/int8_step_times.py lenet5): 0.64 ms against the pixel form's 0.76-0.78
// (float32 C1: 0.70); `python -m bench quantize --threads 1,2`: int8 LeNet-5 1.55x float32 on
// one thread, 1.35x on two (with the pixel form, 1.29x and 1.17x: the first run in the history
// of bench/results/amd-epyc-family25-model17-2c-beyond.md).
template <int K>
void lane_sums(int32_t* tile, const uint8_t* src, int64_t n, int64_t pixel_step,
               int64_t row_step, int64_t KH, int64_t groups, const uint32_t* w) {
    const __m512i dwords = _mm512_load_si512(kWindowShuffles.dwords[pixel_step - 1]);
    const __m512i bytes = _mm512_load_si512(kWindowShuffles.bytes[pixel_step - 1]);
    // The bytes the n pixels' windows cover, and no more (the pixel form's reads).
    const int64_t used = (n - 1) * pixel_step + 4;
    const __mmask64 load_mask = lanes64(used);
    __m512i acc[K];
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) acc[k] = _mm512_setzero_si512();
    for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t g = 0; g < groups; ++g) {
            const __m512i in = _mm512_maskz_loadu_epi8(load_mask, src + kh * row_step + 4 * g);
            const __m512i windows =
                _mm512_shuffle_epi8(_mm512_permutexvar_epi32(dwords, in), bytes);
            const uint32_t* wg = w + (kh * groups + g) * kNarrowMaxK;
#pragma GCC unroll 16
            for (int k = 0; k < K; ++k)
                acc[k] = _mm512_dpbusd_epi32(acc[k], windows,
                                             _mm512_set1_epi32(static_cast<int>(wg[k])));
        }
    // The 8 x 16 (filter, pixel) sums transposed in registers: 32-bit then 64-bit interleaves
    // give each 128-bit lane 4 filters of one pixel (pixels 0, 4, 8, 12 in f[0] and f[4], 1, 5,
    // 9, 13 in f[1] and f[5], ...), then one two-source permute pairs a pixel's two halves.
    __m512i a[8], f[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) a[k] = k < K ? acc[k] : _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 8; h += 4) {
        const __m512i lo01 = _mm512_unpacklo_epi32(a[h], a[h + 1]);
        const __m512i hi01 = _mm512_unpackhi_epi32(a[h], a[h + 1]);
        const __m512i lo23 = _mm512_unpacklo_epi32(a[h + 2], a[h + 3]);
        const __m512i hi23 = _mm512_unpackhi_epi32(a[h + 2], a[h + 3]);
        f[h + 0] = _mm512_unpacklo_epi64(lo01, lo23);  // pixels 0, 4, 8, 12
        f[h + 1] = _mm512_unpackhi_epi64(lo01, lo23);  // 1, 5, 9, 13
        f[h + 2] = _mm512_unpacklo_epi64(hi01, hi23);  // 2, 6, 10, 14
        f[h + 3] = _mm512_unpackhi_epi64(hi01, hi23);  // 3, 7, 11, 15
    }
    const __m512i first = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    const __m512i second = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        // Pixels i and i + 4, then i + 8 and i + 12: 8 filters each, in 256-bit halves.
        const __m512i p0 = _mm512_permutex2var_epi64(f[i], first, f[i + 4]);
        const __m512i p1 = _mm512_permutex2var_epi64(f[i], second, f[i + 4]);
        const __m512i pair[2] = {p0, p1};
#pragma GCC unroll 2
        for (int q = 0; q < 2; ++q) {
            const int64_t lo = i + 8 * q, hi = lo + 4;
            if (lo < n) _mm512_mask_storeu_epi32(tile + lo * kNarrowMaxK, 0x00FF, pair[q]);
            if (hi < n) _mm512_mask_storeu_epi32(tile + hi * kNarrowMaxK - 8, 0xFF00, pair[q]);
        }
    }
}

constexpr decltype(&lane_sums<1>) kLaneSums[kNarrowLaneMaxK] = {
    &lane_sums<1>, &lane_sums<2>, &lane_sums<3>, &lane_sums<4>,
    &lane_sums<5>, &lane_sums<6>, &lane_sums<7>, &lane_sums<8>};

void sums(int32_t* tile, const uint8_t* src, int64_t n, int64_t pixel_step, int64_t row_step,
          int64_t KH, int64_t span, const uint32_t* w, int64_t K) {
    const int64_t groups = (span + 3) / 4;
    // Per (kh, group): the lane form's 2 shuffles and K vpdpbusd against the pixel form's n
    // broadcasts and n vpdpbusd.
    if (pixel_step <= 4 && K <= kNarrowLaneMaxK && K + 2 < 2 * n)
        return kLaneSums[K - 1](tile, src, n, pixel_step, row_step, KH, groups, w);
    // Pixels past n are not read: their bytes may lie past the input.
    kPixelSums[n - 1](tile, src, pixel_step, row_step, KH, groups, w);
}

}  // namespace

Int8NarrowSumsFn conv2d_int8_narrow_avx512vnni() { return &sums; }

}  // namespace cnnfast

#else

namespace cnnfast {
Int8NarrowSumsFn conv2d_int8_narrow_avx512vnni() { return nullptr; }
}  // namespace cnnfast

#endif
