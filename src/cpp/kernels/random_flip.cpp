#include "random_flip.h"

#include <algorithm>
#include <cstring>

#include "elementwise_simd.h"
#include "parallel.h"

namespace cnnfast {

namespace {

// out (N,H,W,C) = in with image n flipped as flips[n] says; one unit per output row.
void apply_flips(float* out, const float* in, const uint8_t* flips, int64_t N, int64_t H,
                 int64_t W, int64_t C) {
    const int64_t rows = N * H;
    parallel_for(threads_for(N * H * W * C / 32768), rows, [&](int64_t r) {
        const int64_t n = r / H, h = r % H;
        const bool left_right = flips[n] & 1, upside_down = flips[n] & 2;
        const float* src = in + (n * H + (upside_down ? H - 1 - h : h)) * W * C;
        float* dst = out + r * W * C;
        if (!left_right) {
            std::memcpy(dst, src, sizeof(float) * W * C);
            return;
        }
        for (int64_t w = 0; w < W; ++w)
            std::memcpy(dst + w * C, src + (W - 1 - w) * C, sizeof(float) * C);
    });
}

}  // namespace

// x, y (N,H,W,C); flips (N,).
void random_flip_forward(float* y, uint8_t* flips, const float* x, int64_t N, int64_t H,
                         int64_t W, int64_t C, int mode, uint64_t seed) {
    const uint64_t key = detail::splitmix64_mix(seed);
    for (int64_t n = 0; n < N; ++n) {
        const uint64_t h =
            detail::splitmix64_mix(key + static_cast<uint64_t>(n + 1) * detail::kGoldenGamma);
        uint8_t f = 0;
        if ((mode & kFlipHorizontal) && (h >> 63)) f |= 1;
        if ((mode & kFlipVertical) && ((h >> 62) & 1)) f |= 2;
        flips[n] = f;
    }
    apply_flips(y, x, flips, N, H, W, C);
}

// dy, dx (N,H,W,C); flips (N,).
void random_flip_backward(float* dx, const float* dy, const uint8_t* flips, int64_t N, int64_t H,
                          int64_t W, int64_t C) {
    apply_flips(dx, dy, flips, N, H, W, C);
}

}  // namespace cnnfast
