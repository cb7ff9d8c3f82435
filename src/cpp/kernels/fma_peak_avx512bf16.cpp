// The vdpbf16ps ceiling (fma_peak.h's measure_bf16_peak_gflops): independent chains of
// AVX512-BF16 dot products, each adding two products of bfloat16 pairs per float32 lane.
#include "fma_peak_loop.h"

#if defined(CNNFAST_BUILD_AVX512BF16)
#include <immintrin.h>

namespace cnnfast {

namespace {

float run(int64_t iterations) {
    // Pairs of bfloat16 values (0.999 and 1e-7 in each half): the chains stay finite. The
    // conversions are loop-invariant and hoisted: the timed loop is 24 vdpbf16ps (objdump).
    return fma_chains<kFmaChainsAvx512, __m512>(
        iterations, [](float v) { return _mm512_set1_ps(v); },
        [](__m512 acc, __m512 a, __m512 b) {
            return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_cvtne2ps_pbh(a, a),
                                    (__m512bh)_mm512_cvtne2ps_pbh(b, b));
        });
}

}  // namespace

const FmaPeakLoop* bf16_peak_loop_avx512bf16() {
    static const FmaPeakLoop table = {&run, kFmaChainsAvx512 * 16 * 4};
    return &table;
}

}  // namespace cnnfast

#else

namespace cnnfast {
const FmaPeakLoop* bf16_peak_loop_avx512bf16() { return nullptr; }
}  // namespace cnnfast

#endif
