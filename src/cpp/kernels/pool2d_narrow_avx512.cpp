// 2x2 stride-2 average pooling of maps with fewer than 16 channels (LeNet's S2: 6), on AVX-512.
// The general loops vectorise over C, so 6 channels use 6 of 16 lanes and run mostly in scalar
// tails. Here a row of W pixels x C channels is one flat array: the two input rows are added as
// flat vectors, then each window's two columns - C floats apart - are added, and the lanes that
// start a window (flat index mod 2C < C) are compressed into the output row. Backward does the
// reverse with expand-loads: each output value lands in both columns of its window.
#include "pool2d_simd.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

#include <cstring>

#include "avx512_util.h"

namespace cnnfast::detail {
namespace {

// Lanes l of a vector starting at flat index i0 with (i0 + l) mod 2C < C: the first column of a
// window. The pattern repeats with period 2C; bit l of lead[p] is set for i0 mod 2C == p.
struct LeadMasks {
    __mmask16 lead[32];
    explicit LeadMasks(int64_t C) {
        for (int64_t p = 0; p < 2 * C; ++p) {
            unsigned m = 0;
            for (int l = 0; l < 16; ++l) m |= unsigned((p + l) % (2 * C) < C) << l;
            lead[p] = __mmask16(m);
        }
    }
};

void avg_forward_rows(float* y, const float* x, const Pool2dDims& d, int64_t r0, int64_t r1) {
    const int64_t C = d.C, L = 2 * d.OW * C, row = d.W * C;
    const LeadMasks masks(C);
    const __m512 quarter = _mm512_set1_ps(0.25f);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        const float* x0 = x + (n * d.H + 2 * oh) * row;
        const float* x1 = x0 + row;
        float* out = y + r * d.OW * C;
        for (int64_t i0 = 0; i0 < L; i0 += 16) {
            const __mmask16 in = lanes(L - i0);
            const __mmask16 lead = in & masks.lead[i0 % (2 * C)];
            // The second column of a window sits C floats on; it is always inside the row.
            const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(lead, x0 + i0),
                                                         _mm512_maskz_loadu_ps(lead, x1 + i0)),
                                           _mm512_add_ps(_mm512_maskz_loadu_ps(lead, x0 + i0 + C),
                                                         _mm512_maskz_loadu_ps(lead, x1 + i0 + C)));
            // Compressed in a register, then stored under a mask: the memory form of
            // vcompressps is microcoded on AMD Zen 4 (LeNet-5's S2, 28x28x6 at batch 1, one
            // thread: 4.6 us with it, 0.9 us this way; dev/network_step_times.py lenet5).
            const int kept = __builtin_popcount(lead);
            const __m512 packed = _mm512_maskz_compress_ps(lead, _mm512_mul_ps(s, quarter));
            _mm512_mask_storeu_ps(out, lanes(kept), packed);
            out += kept;
        }
    }
}

void avg_backward_rows(float* dx, const float* dy, const Pool2dDims& d, int64_t r0, int64_t r1) {
    const int64_t C = d.C, L = 2 * d.OW * C, row = d.W * C;
    const LeadMasks masks(C);
    const __m512 quarter = _mm512_set1_ps(0.25f);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        float* d0 = dx + (n * d.H + 2 * oh) * row;
        float* d1 = d0 + row;
        const float* g = dy + r * d.OW * C;
        for (int64_t i0 = 0; i0 < L; i0 += 16) {
            const __mmask16 in = lanes(L - i0);
            const int64_t p = i0 % (2 * C), block = i0 / (2 * C);
            const __mmask16 lead = in & masks.lead[p];
            const __mmask16 second = in & ~masks.lead[p];
            // Window values in order: the first lead lane reads value block*C + p (or the next
            // block's first when the vector starts in a second column), the first second-column
            // lane value block*C + p - C (or block*C).
            const float* ga = g + (p < C ? block * C + p : (block + 1) * C);
            const float* gb = g + (p >= C ? block * C + p - C : block * C);
            // Loaded under a mask, then expanded in a register (not vexpandps from memory,
            // microcoded on Zen 4 as its compress store is).
            const __m512 va = _mm512_maskz_expand_ps(
                lead, _mm512_maskz_loadu_ps(lanes(__builtin_popcount(lead)), ga));
            const __m512 vb = _mm512_maskz_expand_ps(
                second, _mm512_maskz_loadu_ps(lanes(__builtin_popcount(second)), gb));
            const __m512 v = _mm512_mul_ps(_mm512_add_ps(va, vb), quarter);
            _mm512_mask_storeu_ps(d0 + i0, in, v);
            _mm512_mask_storeu_ps(d1 + i0, in, v);
        }
        if (L < row) {  // a last column no window reaches
            std::memset(d0 + L, 0, sizeof(float) * (row - L));
            std::memset(d1 + L, 0, sizeof(float) * (row - L));
        }
        if (oh == d.OH - 1 && 2 * d.OH < d.H)  // a last row no window reaches
            std::memset(d1 + row, 0, sizeof(float) * (d.H - 2 * d.OH) * row);
    }
}

}  // namespace

const PoolNarrow* pool_narrow_avx512() {
    static const PoolNarrow table = {avg_forward_rows, avg_backward_rows};
    return &table;
}

}  // namespace cnnfast::detail

#else

namespace cnnfast::detail {
const PoolNarrow* pool_narrow_avx512() { return nullptr; }
}  // namespace cnnfast::detail

#endif
