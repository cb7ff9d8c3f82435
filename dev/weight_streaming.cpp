// How fast one core reads convolution weights that do not fit the caches, by access pattern,
// and a row-streaming kernel tried for batch-1 layers whose weights dominate (VGG16-CIFAR's
// 4x4 and 2x2 maps, 512 -> 512 channels: 9.4 MB of weights per layer, 6 arrays = 57 MB > L3).
//
//   g++ -O2 -mavx512f -mfma dev/weight_streaming.cpp -o /tmp/weight_streaming
//   taskset -c 0 /tmp/weight_streaming
//
// Read patterns over W (Q = 4608 rows of K = 512 floats):
//   0 sequential: every line in address order;
//   1 column blocks: 64 floats (256 bytes) of every 2 KB row, block after block, as the direct
//     convolution kernels read a 64-channel block's weights;
//   2 chunked: 80 rows at a time, each chunk's 8 column blocks in turn;
//   3 chunked with the next chunk prefetched to L2, one line per load;
//   4, 5 column blocks of 128 and 256 floats (512 bytes, 1 KB of every row): what a micro-
//     kernel with fewer pixels and more channels per tile would read.
// Then y (P, K) = X (P, Q) W read row by row, R rows at a time, into accumulators kept in L1.
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr long kQ = 4608, kK = 512, kArrays = 6;

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

__m512 read_pattern(const float* p, int mode) {
    __m512 acc = _mm512_setzero_ps();
    auto add = [&](long at) { acc = _mm512_add_ps(acc, _mm512_load_ps(p + at)); };
    if (mode == 0) {
        for (long i = 0; i < kQ * kK; i += 16) add(i);
    } else if (mode == 1) {
        for (long kb = 0; kb < kK; kb += 64)
            for (long q = 0; q < kQ; ++q)
                for (int v = 0; v < 4; ++v) add(q * kK + kb + 16 * v);
    } else if (mode >= 4) {
        const long width = mode == 4 ? 128 : 256;
        for (long kb = 0; kb < kK; kb += width)
            for (long q = 0; q < kQ; ++q)
                for (long v = 0; v < width; v += 16) add(q * kK + kb + v);
    } else {
        for (long q0 = 0; q0 < kQ; q0 += 80) {
            const char* next = reinterpret_cast<const char*>(p + (q0 + 80) * kK);
            long line = 0;
            for (long kb = 0; kb < kK; kb += 64)
                for (long q = q0; q < q0 + 80 && q < kQ; ++q)
                    for (int v = 0; v < 4; ++v) {
                        if (mode == 3 && q0 + 80 < kQ)
                            _mm_prefetch(next + 64 * line++, _MM_HINT_T1);
                        add(q * kK + kb + 16 * v);
                    }
        }
    }
    return acc;
}

template <int R>
void stream_rows(float* y, const float* X, const float* W, long P) {
    std::memset(y, 0, sizeof(float) * P * kK);
    for (long q = 0; q < kQ; q += R) {
        const float* w = W + q * kK;
        for (long p = 0; p < P; ++p) {
            __m512 a[R];
            for (int r = 0; r < R; ++r) a[r] = _mm512_set1_ps(X[p * kQ + q + r]);
            float* yp = y + p * kK;
            for (long v = 0; v < kK; v += 16) {
                __m512 acc = _mm512_load_ps(yp + v);
                for (int r = 0; r < R; ++r)
                    acc = _mm512_fmadd_ps(a[r], _mm512_load_ps(w + r * kK + v), acc);
                _mm512_store_ps(yp + v, acc);
            }
        }
    }
}

}  // namespace

int main() {
    std::vector<float*> w(kArrays);
    for (auto& p : w) {
        p = static_cast<float*>(std::aligned_alloc(64, kQ * kK * 4));
        for (long i = 0; i < kQ * kK; ++i) p[i] = 1e-3f * static_cast<float>(i % 97);
    }
    const double mb = kQ * kK * 4 / 1e6;
    float sink = 0.0f;
    for (int round = 0; round < 2; ++round)
        for (int mode = 0; mode < 6; ++mode) {
            __m512 acc = _mm512_setzero_ps();
            const auto t0 = std::chrono::steady_clock::now();
            for (int rep = 0; rep < 12; ++rep)
                acc = _mm512_add_ps(acc, read_pattern(w[rep % kArrays], mode));
            const double s = seconds_since(t0) / 12;
            sink += _mm512_reduce_add_ps(acc);
            std::printf("read pattern %d: %.3f ms per %.1f MB, %.1f GB/s\n", mode, s * 1e3, mb,
                        mb / s / 1e3);
        }
    for (long P : {4L, 16L}) {
        auto* X = static_cast<float*>(std::aligned_alloc(64, P * kQ * 4));
        for (long i = 0; i < P * kQ; ++i) X[i] = 1e-2f * static_cast<float>(i % 13);
        auto* y = static_cast<float*>(std::aligned_alloc(64, P * kK * 4));
        for (int R : {4, 8}) {
            const auto t0 = std::chrono::steady_clock::now();
            for (int rep = 0; rep < 12; ++rep)
                (R == 4 ? stream_rows<4> : stream_rows<8>)(y, X, w[rep % kArrays], P);
            const double s = seconds_since(t0) / 12;
            sink += y[7];
            std::printf("row streaming, %ld pixels, %d rows at a time: %.3f ms (%.1f GB/s)\n", P,
                        R, s * 1e3, mb / s / 1e3);
        }
        std::free(X);
        std::free(y);
    }
    std::printf("(checksum %g)\n", sink);
}
