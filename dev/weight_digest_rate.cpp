// How fast the keyed weight digest (src/cpp/kernels/weight_digest.h) reads weights against a
// plain read of the same bytes: `predict` digests the kept Winograd kernels' weights on every
// call (network.cpp, KeptWinogradKernel::get; 6.9 MB for VGG16-CIFAR) to see in-place edits,
// which the C API, on fixed weights, does not.
//
//   ./dev/build.sh
//   g++ -O2 -mavx512f -std=c++17 -fopenmp -Isrc/cpp/kernels dev/weight_digest_rate.cpp \
//       cnnfast/lib/libcnnfast.a -o /tmp/weight_digest_rate
//   taskset -c 0 /tmp/weight_digest_rate
//
// Twelve 6.9 MB arrays (83 MB) are walked in turn, so each comes from memory or a shared L3, as
// a network's weights do between calls; three rounds, the first warming up.
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "weight_digest.h"

int main() {
    constexpr long kFloats = 6900000 / 4;
    constexpr int kArrays = 12, kPasses = 4;
    std::vector<std::vector<float>> arrays(kArrays, std::vector<float>(kFloats));
    for (auto& a : arrays)
        for (long i = 0; i < kFloats; ++i) a[i] = 0.5f * static_cast<float>(i);
    volatile uint64_t sink = 0;
    auto per_array_ms = [&](auto&& read) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int p = 0; p < kPasses; ++p)
            for (auto& a : arrays) sink = sink + read(a.data());
        const std::chrono::duration<double> s = std::chrono::steady_clock::now() - t0;
        return s.count() / (kPasses * kArrays) * 1e3;
    };
    for (int round = 0; round < 3; ++round) {
        const double digest = per_array_ms([](const float* w) {
            return cnnfast::weight_digest(w, kFloats).sum[0];
        });
        const double plain = per_array_ms([](const float* w) {
            __m512 acc = _mm512_setzero_ps();
            for (long i = 0; i + 16 <= kFloats; i += 16)
                acc = _mm512_add_ps(acc, _mm512_loadu_ps(w + i));
            return static_cast<uint64_t>(_mm512_reduce_add_ps(acc));
        });
        std::printf("6.9 MB: digest %.3f ms (%.1f GB/s), plain read %.3f ms (%.1f GB/s)\n", digest,
                    kFloats * 4 / digest / 1e6, plain, kFloats * 4 / plain / 1e6);
    }
    return 0;
}
