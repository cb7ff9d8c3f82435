// weight_digest.h's block loop with AVX2 flags (see CMakeLists.txt), the table weight_digest.cpp
// picks when the CPU and CNNFAST_SIMD allow avx2: the eight lanes are two vectors.
#include "weight_digest.h"

#if defined(CNNFAST_BUILD_AVX2)
#include <immintrin.h>

namespace cnnfast::detail {

namespace {

// v * p mod 2^64 for p < 2^32 (AVX2 has no 64-bit multiply): lo32(v) p + (hi32(v) p << 32).
__m256i mul_u32_constant(__m256i v, __m256i p) {
    return _mm256_add_epi64(_mm256_mul_epu32(v, p),
                            _mm256_slli_epi64(_mm256_mul_epu32(_mm256_srli_epi64(v, 32), p), 32));
}

void digest_blocks(uint64_t* sum_out, uint64_t* mix_out, const float* w, int64_t n_blocks,
                   const DigestKeys& keys) {
    auto load = [](const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); };
    const __m256i prime = _mm256_set1_epi64x(static_cast<long long>(kDigestPrime));
    __m256i sum[2] = {load(sum_out), load(sum_out + 4)};  // lanes 0-3, 4-7
    __m256i mix[2] = {load(mix_out), load(mix_out + 4)};
    for (int64_t b = 0; b < n_blocks; ++b) {
        const float* block = w + b * kDigestBlockFloats;
        for (int m = 0; m < kDigestBlockStripes; ++m)
            for (int h = 0; h < 2; ++h) {
                const __m256i d = load(block + 16 * m + 8 * h);
                const __m256i x = _mm256_xor_si256(d, load(keys.stripe[m] + 4 * h));
                sum[h] = _mm256_add_epi64(sum[h], d);
                mix[h] = _mm256_add_epi64(mix[h], _mm256_mul_epu32(x, _mm256_srli_epi64(x, 32)));
            }
        for (int h = 0; h < 2; ++h) {
            const __m256i shifted = _mm256_xor_si256(mix[h], _mm256_srli_epi64(mix[h], 47));
            mix[h] = mul_u32_constant(_mm256_xor_si256(shifted, load(keys.scramble + 4 * h)),
                                      prime);
        }
    }
    for (int h = 0; h < 2; ++h) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(sum_out + 4 * h), sum[h]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(mix_out + 4 * h), mix[h]);
    }
}

const WeightDigestSimd kTable = {"avx2", &digest_blocks};

}  // namespace

const WeightDigestSimd* weight_digest_avx2() { return &kTable; }

}  // namespace cnnfast::detail

#else

namespace cnnfast::detail {
const WeightDigestSimd* weight_digest_avx2() { return nullptr; }
}  // namespace cnnfast::detail

#endif
