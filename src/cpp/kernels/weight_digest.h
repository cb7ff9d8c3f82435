#pragma once
// A keyed digest of a float array, which a kept derived form of borrowed weights (a network's
// Winograd kernels, network.h) compares on each use to see whether the weights changed in place.
// It reads the weights once, where comparing them with a copy reads them and the copy.
//
// The digest is 8 lanes of two 64-bit sums over the array as 64-bit words (two floats each; the
// last 512-byte block zero-padded), lane j taking words j, j + 8, j + 16, ...:
//  - sum[j], their plain sum mod 2^64: any edit that changes a lane's sum is certain to change
//    the digest, which every edit of one value does, and every edit within one word;
//  - mix[j], XXH3's accumulate-and-scramble construction: each word d, XORed with a key for its
//    place in a 512-byte block, adds lo32 * hi32 of the result; at each block's end the lane goes
//    through a bijection (xorshift, XOR a key, multiply by an odd constant), so the blocks' order
//    and every value's place count. The keys are drawn at random per process, so no edit can be
//    made to collide without reading them; an edit that leaves all eight sums alone (values
//    moved between words of one lane, say) goes unnoticed only if every mixed lane it touches
//    collides too, which for such a keyed mix is expected about once in 2^64 per lane (not a
//    proven bound, as it is for a checksum of a universal hash family).
#include <cstdint>

namespace cnnfast {

struct WeightDigest {
    uint64_t sum[8] = {}, mix[8] = {};
    bool operator==(const WeightDigest& o) const;
    bool operator!=(const WeightDigest& o) const { return !(*this == o); }
};

// The digest of w[0, count) with this process's keys.
WeightDigest weight_digest(const float* w, int64_t count);

namespace detail {

constexpr int kDigestLanes = 8, kDigestBlockStripes = 8;  // a block: 8 stripes of 8 words
constexpr int64_t kDigestBlockFloats = 2 * kDigestLanes * kDigestBlockStripes;  // 128
constexpr int64_t kDigestPrefetchBlocks = 8;  // 4 KB ahead
// The odd multiplier of a lane's end-of-block bijection (XXH3's PRIME32_1).
constexpr uint64_t kDigestPrime = 0x9E3779B1ULL;

struct DigestKeys {
    uint64_t stripe[kDigestBlockStripes][kDigestLanes];
    uint64_t scramble[kDigestLanes];
};

// Folds n_blocks whole blocks (128 floats, 64 words, each) of w into sum and mix.
struct WeightDigestSimd {
    const char* name;
    void (*blocks)(uint64_t* sum, uint64_t* mix, const float* w, int64_t n_blocks,
                   const DigestKeys& keys);
};

// The loops: the baseline (the specification, which also folds the zero-padded last block) and
// AVX-512. No AVX2 loop: the digest serves kept Winograd kernels, which exist only where the
// AVX-512 Winograd transforms do (conv2d_winograd.h).
const WeightDigestSimd* weight_digest_baseline();
const WeightDigestSimd* weight_digest_avx512();

// Tests: run weight_digest on "baseline", "avx512" or "auto"; false where unavailable.
bool set_weight_digest_path(const char* name);

}  // namespace detail
}  // namespace cnnfast
