// The int8 convolution's narrow-layer sums (conv2d_int8_narrow.h) on AVX512-VNNI, in two forms:
// pixels in accumulators (one per output pixel, the up to 16 filters in its lanes; each vpdpbusd
// adds the pixel's next 4 input bytes, broadcast from the padded input, times the filters' 4
// weights), and pixels in lanes (lane_sums below, for one input channel and few filters).
#include "conv2d_int8_narrow.h"

#if defined(CNNFAST_BUILD_AVX512VNNI)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "avx512_util.h"
#include "conv2d_int8_narrow_epilogue.h"

// GCC 12 warns that the unmasked forms of vpermd and vpunpck*dq read an uninitialised vector
// (the intrinsics pass _mm512_undefined_epi32() as the unused merge source), and GCC 12 says
// "uninitialized" of the float _round_ forms for the same reason: false positives.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace cnnfast {
namespace {

// acc[r][j] (r < R, j < P): pixel j's sums in the output row r (out_row bytes down the input
// per row), its filters in the lanes. P and R are template arguments, so that the accumulators
// stay in registers and the pixel loop unrolls without tests; the rows share each weight load.
template <int P, int R>
inline void pixel_accumulate(__m512i (*acc)[P], const uint8_t* src, int64_t pixel_step,
                             int64_t row_step, int64_t out_row, int64_t KH, int64_t groups,
                             const uint32_t* w) {
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
        for (int j = 0; j < P; ++j) acc[r][j] = _mm512_setzero_si512();
    for (int64_t kh = 0; kh < KH; ++kh) {
        for (int64_t g = 0; g < groups; ++g) {
            const __m512i wg = _mm512_loadu_si512(w + (kh * groups + g) * kNarrowMaxK);
            const uint8_t* x = src + kh * row_step + 4 * g;
            // Pixel j's 4 bytes, broadcast (an unaligned 4-byte load), times the filters' 4
            // weights.
#pragma GCC unroll 16
            for (int j = 0; j < P; ++j)
#pragma GCC unroll 2
                for (int r = 0; r < R; ++r) {
                    uint32_t quad;
                    std::memcpy(&quad, x + r * out_row + j * pixel_step, 4);
                    acc[r][j] = _mm512_dpbusd_epi32(
                        acc[r][j], _mm512_set1_epi32(static_cast<int>(quad)), wg);
                }
        }
    }
}

template <int P>
void pixel_sums(int32_t* tile, const uint8_t* src, int64_t pixel_step, int64_t row_step,
                int64_t KH, int64_t groups, const uint32_t* w) {
    __m512i acc[1][P];
    pixel_accumulate<P, 1>(acc, src, pixel_step, row_step, 0, KH, groups, w);
#pragma GCC unroll 16
    for (int j = 0; j < P; ++j) _mm512_storeu_si512(tile + j * kNarrowMaxK, acc[0][j]);
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
// acc[k] (k < K): filter k's sums of the n pixels, pixel j in lane j.
template <int K>
inline void lane_accumulate(__m512i* acc, const uint8_t* src, int64_t n, int64_t pixel_step,
                            int64_t row_step, int64_t KH, int64_t groups, const uint32_t* w) {
    const __m512i dwords = _mm512_load_si512(kWindowShuffles.dwords[pixel_step - 1]);
    const __m512i bytes = _mm512_load_si512(kWindowShuffles.bytes[pixel_step - 1]);
    // The bytes the n pixels' windows cover, and no more (the pixel form's reads).
    const int64_t used = (n - 1) * pixel_step + 4;
    const __mmask64 load_mask = lanes64(used);
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
}

// lane_accumulate of two output rows one input row apart (stride and dilation 1 down the
// rows): input row r's windows serve the top row's kernel row r and the bottom row's r - 1, so
// each is built once (LeNet-5's C1: 6 input rows' windows, not 10).
template <int K>
inline void lane_accumulate_rows(__m512i* top, __m512i* bottom, const uint8_t* src, int64_t n,
                                 int64_t pixel_step, int64_t row_step, int64_t KH,
                                 int64_t groups, const uint32_t* w) {
    const __m512i dwords = _mm512_load_si512(kWindowShuffles.dwords[pixel_step - 1]);
    const __m512i bytes = _mm512_load_si512(kWindowShuffles.bytes[pixel_step - 1]);
    const __mmask64 load_mask = lanes64((n - 1) * pixel_step + 4);
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) top[k] = bottom[k] = _mm512_setzero_si512();
    for (int64_t r = 0; r <= KH; ++r)
        for (int64_t g = 0; g < groups; ++g) {
            const __m512i in = _mm512_maskz_loadu_epi8(load_mask, src + r * row_step + 4 * g);
            const __m512i windows =
                _mm512_shuffle_epi8(_mm512_permutexvar_epi32(dwords, in), bytes);
            if (r < KH) {
                const uint32_t* wg = w + (r * groups + g) * kNarrowMaxK;
#pragma GCC unroll 16
                for (int k = 0; k < K; ++k)
                    top[k] = _mm512_dpbusd_epi32(top[k], windows,
                                                 _mm512_set1_epi32(static_cast<int>(wg[k])));
            }
            if (r > 0) {
                const uint32_t* wg = w + ((r - 1) * groups + g) * kNarrowMaxK;
#pragma GCC unroll 16
                for (int k = 0; k < K; ++k)
                    bottom[k] = _mm512_dpbusd_epi32(bottom[k], windows,
                                                    _mm512_set1_epi32(static_cast<int>(wg[k])));
            }
        }
}

template <int K>
void lane_sums(int32_t* tile, const uint8_t* src, int64_t n, int64_t pixel_step,
               int64_t row_step, int64_t KH, int64_t groups, const uint32_t* w) {
    __m512i acc[K];
    lane_accumulate<K>(acc, src, n, pixel_step, row_step, KH, groups, w);
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

// ---- the fused epilogue of a 2x2 average pooling (Int8NarrowAvgPoolFn) ---------------------
// Requantization, activation, pooling and quantization on the sums while they are in
// registers, in the float operations of the steps apart: requantize16 with the filter's
// factors, the activation's vector code (activation_vec.h, as activation_forward runs it),
// ((top-left + bottom-left) + (top-right + bottom-right)) * 0.25f, quantize16. LeNet-5's C1 on
// 128 MNIST images, one thread, Intel Xeon with AMX (OMP_PROC_BIND=close PYTHONPATH=. python
// dev/int8_step_times.py lenet5): 0.57 ms, where the float tiles' route of conv2d_int8.cpp
// (sums stored, requantized and activated in L1, the windows compressed out of them) took 0.73.

// The permutes of the lane form's output: the pooled sums of filters 2j (lanes 0 .. 7) and
// 2j + 1 (lanes 8 .. 15) in pooled[j], pixel i in lane i and i + 8, to pixel-major order
// (pixel i, filter k at i K + k): output vector m, lane l holds flat value 16 m + l, drawn from
// pooled[k / 2] lane 8 (k % 2) + i by a two-source permute of pooled[0, 1] or pooled[2, 3].
template <int K>
struct LaneOutputOrder {
    alignas(64) int32_t index[(K + 1) / 2][16];
    uint16_t high[(K + 1) / 2];  // lanes from pooled[2, 3]
    constexpr LaneOutputOrder() : index(), high() {
        for (int m = 0; m < (K + 1) / 2; ++m) {
            high[m] = 0;
            for (int l = 0; l < 16; ++l) {
                const int f = 16 * m + l, i = f / K, k = f % K;
                const int j = k / 2, lane = 8 * (k % 2) + (i < 8 ? i : 0);
                index[m][l] = 16 * (j % 2) + lane;
                if (j >= 2) high[m] = static_cast<uint16_t>(high[m] | (1u << l));
            }
        }
    }
};
template <int K>
constexpr LaneOutputOrder<K> kLaneOutputOrder{};

// Pixels in lanes (lane_accumulate; at most 8 filters): the two rows' sums per filter, each
// row's 16 pixels activated, added down (top-left + bottom-left in even lanes, top-right +
// bottom-right in odd), then each window's two lanes added after a permute pairs them.
template <int K, class Act>
void lane_avgpool(uint8_t* q, const uint8_t* src, int64_t n, int64_t pixel_step,
                  int64_t row_step, int64_t out_row, int64_t KH, int64_t groups,
                  const uint32_t* w, const Int8NarrowEpilogue& e) {
    __m512i top[K], bottom[K];
    if (out_row == row_step) {
        lane_accumulate_rows<K>(top, bottom, src, n, pixel_step, row_step, KH, groups, w);
    } else {
        lane_accumulate<K>(top, src, n, pixel_step, row_step, KH, groups, w);
        lane_accumulate<K>(bottom, src + out_row, n, pixel_step, row_step, KH, groups, w);
    }
    const __m512 quarter = _mm512_set1_ps(0.25f);
    const __m512 inv = _mm512_set1_ps(e.inv), lo = _mm512_set1_ps(e.lo);
    const __m512 hi = _mm512_set1_ps(e.hi), zp = _mm512_set1_ps(e.zp);
    // Lanes 0 .. 7 from a's even (odd) lanes, 8 .. 15 from b's.
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    constexpr int S = (K + 1) / 2;
    __m512i pooled[4];
#pragma GCC unroll 4
    for (int j = 0; j < S; ++j) {
        __m512 down[2];
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const int k = 2 * j + h < K ? 2 * j + h : 2 * j;  // a missing odd filter: a copy
            const __m512i shift = _mm512_set1_epi32(e.shift[k]);
            const __m512 mult = _mm512_set1_ps(e.mult[k]);
            const __m512 bias = _mm512_set1_ps(e.bias ? e.bias[k] : 0.0f);
            down[h] = _mm512_add_ps(epilogue16<Act>(top[k], shift, mult, bias),
                                    epilogue16<Act>(bottom[k], shift, mult, bias));
        }
        const __m512 left = _mm512_permutex2var_ps(down[0], even, down[1]);
        const __m512 right = _mm512_permutex2var_ps(down[0], odd, down[1]);
        pooled[j] = quantize16(_mm512_mul_ps(_mm512_add_ps(left, right), quarter), inv, lo, hi,
                               zp);
    }
#pragma GCC unroll 4
    for (int j = S; j < 4; ++j) pooled[j] = pooled[0];
    const int64_t values = n / 2 * K;
#pragma GCC unroll 4
    for (int m = 0; m < S; ++m) {
        if (16 * m >= values) break;
        const __m512i index = _mm512_load_si512(kLaneOutputOrder<K>.index[m]);
        __m512i out = _mm512_permutex2var_epi32(pooled[0], index, pooled[1]);
        if (S > 2)
            out = _mm512_mask_blend_epi32(kLaneOutputOrder<K>.high[m], out,
                                          _mm512_permutex2var_epi32(pooled[2], index, pooled[3]));
        _mm512_mask_cvtepi32_storeu_epi8(q + 16 * m, lanes(values - 16 * m), out);
    }
}

// Filters in lanes (at most 16), P pixels of each row in accumulators (P even, at most 8: two
// rows' 16 accumulators; 10 spilled them, LeNet-5's C3 0.39 ms against 0.25), each window's
// four pixels activated and added.
template <int P, class Act>
void pixel_avgpool(uint8_t* q, const uint8_t* src, int64_t pixel_step, int64_t row_step,
                   int64_t out_row, int64_t KH, int64_t groups, const uint32_t* w, int64_t K,
                   const Int8NarrowEpilogue& e) {
    __m512i acc[2][P];  // the top row's pixels, then the bottom row's
    pixel_accumulate<P, 2>(acc, src, pixel_step, row_step, out_row, KH, groups, w);
    const __m512i* top = acc[0];
    const __m512i* bottom = acc[1];
    const __mmask16 mk = lanes(K);
    const __m512i shift = _mm512_maskz_loadu_epi32(mk, e.shift);
    const __m512 mult = _mm512_maskz_loadu_ps(mk, e.mult);
    const __m512 bias = e.bias ? _mm512_maskz_loadu_ps(mk, e.bias) : _mm512_setzero_ps();
    const __m512 quarter = _mm512_set1_ps(0.25f);
    const __m512 inv = _mm512_set1_ps(e.inv), lo = _mm512_set1_ps(e.lo);
    const __m512 hi = _mm512_set1_ps(e.hi), zp = _mm512_set1_ps(e.zp);
#pragma GCC unroll 4
    for (int i = 0; i < P / 2; ++i)
        _mm512_mask_cvtepi32_storeu_epi8(
            q + i * K, mk,
            pooled_window<Act>(top[2 * i], top[2 * i + 1], bottom[2 * i], bottom[2 * i + 1],
                               shift, mult, bias, quarter, inv, lo, hi, zp));
}

template <class Act>
void avgpool_with(uint8_t* q, const uint8_t* src, int64_t n, int64_t pixel_step,
                  int64_t row_step, int64_t out_row, int64_t KH, int64_t span, const uint32_t* w,
                  int64_t K, const Int8NarrowEpilogue& e) {
    static constexpr decltype(&lane_avgpool<1, Act>) kLane[kNarrowLaneMaxK] = {
        &lane_avgpool<1, Act>, &lane_avgpool<2, Act>, &lane_avgpool<3, Act>,
        &lane_avgpool<4, Act>, &lane_avgpool<5, Act>, &lane_avgpool<6, Act>,
        &lane_avgpool<7, Act>, &lane_avgpool<8, Act>};
    static constexpr decltype(&pixel_avgpool<2, Act>) kPixel[4] = {
        &pixel_avgpool<2, Act>, &pixel_avgpool<4, Act>, &pixel_avgpool<6, Act>,
        &pixel_avgpool<8, Act>};
    const int64_t groups = (span + 3) / 4;
    // The choice of `sums`, per row.
    if (pixel_step <= 4 && K <= kNarrowLaneMaxK && K + 2 < 2 * std::min<int64_t>(n, 16)) {
        for (int64_t j = 0; j < n; j += 16)
            kLane[K - 1](q + j / 2 * K, src + j * pixel_step, std::min<int64_t>(16, n - j),
                         pixel_step, row_step, out_row, KH, groups, w, e);
        return;
    }
    // Calls of at most 8 pixels, as even as they go (10: 6 + 4, not 8 + 2).
    const int64_t calls = (n + 7) / 8, per_call = (n / 2 + calls - 1) / calls * 2;
    for (int64_t j = 0; j < n; j += per_call) {
        const int64_t p = std::min(per_call, n - j);
        kPixel[p / 2 - 1](q + j / 2 * K, src + j * pixel_step, pixel_step, row_step, out_row, KH,
                          groups, w, K, e);
    }
}

void avgpool(uint8_t* q, const uint8_t* src, int64_t n, int64_t pixel_step, int64_t row_step,
             int64_t out_row, int64_t KH, int64_t span, const uint32_t* w, int64_t K,
             const Int8NarrowEpilogue& e) {
    with_activation(e.act, [&](auto act) {
        avgpool_with<decltype(act)>(q, src, n, pixel_step, row_step, out_row, KH, span, w, K, e);
    });
}

}  // namespace

Int8NarrowSumsFn conv2d_int8_narrow_avx512vnni() { return &sums; }
Int8NarrowAvgPoolFn conv2d_int8_narrow_avgpool_avx512vnni() { return &avgpool; }

}  // namespace cnnfast

#else

namespace cnnfast {
Int8NarrowSumsFn conv2d_int8_narrow_avx512vnni() { return nullptr; }
Int8NarrowAvgPoolFn conv2d_int8_narrow_avgpool_avx512vnni() { return nullptr; }
}  // namespace cnnfast

#endif
