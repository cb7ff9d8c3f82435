// weight_digest.h's block loop with AVX-512 flags (see CMakeLists.txt), the table
// weight_digest.cpp picks when the CPU and CNNFAST_SIMD allow avx512: the eight lanes are one
// vector, each 64-byte stripe one load, one XOR, one widening multiply and two adds.
#include "weight_digest.h"

#if defined(CNNFAST_BUILD_AVX512)
#include <immintrin.h>

namespace cnnfast::detail {

namespace {

void digest_blocks(uint64_t* sum_out, uint64_t* mix_out, const float* w, int64_t n_blocks,
                   const DigestKeys& keys) {
    __m512i key[kDigestBlockStripes];
    for (int m = 0; m < kDigestBlockStripes; ++m) key[m] = _mm512_loadu_si512(keys.stripe[m]);
    const __m512i scramble = _mm512_loadu_si512(keys.scramble);
    const __m512i prime = _mm512_set1_epi64(static_cast<long long>(kDigestPrime));
    __m512i sum = _mm512_loadu_si512(sum_out), mix = _mm512_loadu_si512(mix_out);
    for (int64_t b = 0; b < n_blocks; ++b) {
        const float* block = w + b * kDigestBlockFloats;
        // The weights come from memory, and this machine's hardware prefetchers run too little
        // ahead for one core's full read rate: 4 KB ahead, a block's 8 lines at a time.
        if (b + kDigestPrefetchBlocks < n_blocks)
            for (int m = 0; m < kDigestBlockStripes; ++m)
                _mm_prefetch(reinterpret_cast<const char*>(
                                 block + kDigestPrefetchBlocks * kDigestBlockFloats + 16 * m),
                             _MM_HINT_T0);
        for (int m = 0; m < kDigestBlockStripes; ++m) {
            const __m512i d = _mm512_loadu_si512(block + 16 * m);
            const __m512i x = _mm512_xor_si512(d, key[m]);
            sum = _mm512_add_epi64(sum, d);
            mix = _mm512_add_epi64(mix, _mm512_mul_epu32(x, _mm512_srli_epi64(x, 32)));
        }
        mix = _mm512_xor_si512(_mm512_xor_si512(mix, _mm512_srli_epi64(mix, 47)), scramble);
        mix = _mm512_mullo_epi64(mix, prime);
    }
    _mm512_storeu_si512(sum_out, sum);
    _mm512_storeu_si512(mix_out, mix);
}

const WeightDigestSimd kTable = {"avx512", &digest_blocks};

}  // namespace

const WeightDigestSimd* weight_digest_avx512() { return &kTable; }

}  // namespace cnnfast::detail

#else

namespace cnnfast::detail {
const WeightDigestSimd* weight_digest_avx512() { return nullptr; }
}  // namespace cnnfast::detail

#endif
