// weight_digest.h: the keys, the partial last block, and the choice of loop.
#include "weight_digest.h"

#include <chrono>
#include <cstring>
#include <random>

#include "cpu_features.h"
#include "elementwise_simd.h"

namespace cnnfast {

namespace detail {

namespace {

// The specification the SIMD loops follow, lane j being j of 8 in each stripe.
void digest_blocks(uint64_t* sum, uint64_t* mix, const float* w, int64_t n_blocks,
                   const DigestKeys& keys) {
    for (int64_t b = 0; b < n_blocks; ++b) {
        const float* block = w + b * kDigestBlockFloats;
        for (int m = 0; m < kDigestBlockStripes; ++m)
            for (int j = 0; j < kDigestLanes; ++j) {
                uint64_t d;  // two floats' bits (memcpy: the well-defined way; a load)
                std::memcpy(&d, block + 16 * m + 2 * j, sizeof d);
                const uint64_t x = d ^ keys.stripe[m][j];
                sum[j] += d;
                mix[j] += (x & 0xFFFFFFFFULL) * (x >> 32);
            }
        for (int j = 0; j < kDigestLanes; ++j)
            mix[j] = (mix[j] ^ (mix[j] >> 47) ^ keys.scramble[j]) * kDigestPrime;
    }
}

const WeightDigestSimd kBaseline = {"baseline", &digest_blocks};

}  // namespace

const WeightDigestSimd* weight_digest_baseline() { return &kBaseline; }

namespace {

SimdTables<WeightDigestSimd>& digest_tables() {
    static SimdTables<WeightDigestSimd> tables(weight_digest_baseline(), nullptr,
                                               weight_digest_avx512());
    return tables;
}

// Drawn once per process: a splitmix64 stream seeded from the OS's entropy and the clock.
const DigestKeys& digest_keys() {
    static const DigestKeys keys = [] {
        DigestKeys k{};
        uint64_t seed = std::random_device{}();
        seed = (seed << 32) ^ std::random_device{}() ^
               static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        uint64_t i = 0;
        auto next = [&] { return splitmix64_mix(seed + ++i * kGoldenGamma); };
        for (auto& stripe : k.stripe)
            for (uint64_t& key : stripe) key = next();
        for (uint64_t& key : k.scramble) key = next();
        return k;
    }();
    return keys;
}

}  // namespace

bool set_weight_digest_path(const char* name) { return digest_tables().select(name); }

}  // namespace detail

bool WeightDigest::operator==(const WeightDigest& o) const {
    return std::memcmp(sum, o.sum, sizeof sum) == 0 && std::memcmp(mix, o.mix, sizeof mix) == 0;
}

WeightDigest weight_digest(const float* w, int64_t count) {
    using namespace detail;
    const DigestKeys& keys = digest_keys();
    WeightDigest d;
    const int64_t whole = count / kDigestBlockFloats;
    digest_tables().current()->blocks(d.sum, d.mix, w, whole, keys);
    // The last, partial block: zero-padded.
    const int64_t rest = count - whole * kDigestBlockFloats;
    if (rest > 0) {
        float tail[kDigestBlockFloats] = {};
        std::memcpy(tail, w + whole * kDigestBlockFloats, sizeof(float) * rest);
        digest_blocks(d.sum, d.mix, tail, 1, keys);
    }
    return d;
}

}  // namespace cnnfast
