// Max pooling on uint8 values (quantized.h): the pooling between two int8 layers, on the
// quantized values the first writes for the second. Loops over the channels, which the
// compiler vectorises (pmaxub is SSE2); threaded over output rows.
#include <algorithm>
#include <cstring>

#include "parallel.h"
#include "quantized.h"

namespace cnnfast {

namespace {

// out[c] = max(out[c], in[c]); restrict: byte pointers may alias anything, and without it the
// compiler does not vectorise the loop.
void max_into(uint8_t* __restrict out, const uint8_t* __restrict in, int64_t C) {
    for (int64_t c = 0; c < C; ++c) out[c] = std::max(out[c], in[c]);
}

}  // namespace

void max_pool2d_u8_forward(uint8_t* y, const uint8_t* x, const Pool2dDims& d) {
    const int64_t C = d.C, rows = d.N * d.OH;
    const int T = threads_for(rows * d.OW * d.PH * d.PW * C / (int64_t(1) << 20) + 1);
    parallel_for(T, rows, [&](int64_t r) {
        const int64_t n = r / d.OH, oh = r % d.OH;
        const uint8_t* xn = x + n * d.H * d.W * C;
        const int64_t h0 = std::max<int64_t>(0, oh * d.stride_h - d.pad_top);
        const int64_t h1 = std::min(d.H, oh * d.stride_h - d.pad_top + d.PH);
        for (int64_t ow = 0; ow < d.OW; ++ow) {
            const int64_t w0 = std::max<int64_t>(0, ow * d.stride_w - d.pad_left);
            const int64_t w1 = std::min(d.W, ow * d.stride_w - d.pad_left + d.PW);
            uint8_t* out = y + (r * d.OW + ow) * C;
            // Every window holds at least one input cell (the padding is below the window).
            std::memcpy(out, xn + (h0 * d.W + w0) * C, static_cast<size_t>(C));
            for (int64_t h = h0; h < h1; ++h)
                for (int64_t w = w0; w < w1; ++w) max_into(out, xn + (h * d.W + w) * C, C);
        }
    });
}

}  // namespace cnnfast
