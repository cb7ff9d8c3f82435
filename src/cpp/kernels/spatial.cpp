#include "spatial.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

namespace {

// Threads for `floats` floats of memory traffic: a thread is worth ~64K floats.
int threads_for_floats(int64_t floats) { return threads_for(floats / (int64_t(1) << 16) + 1); }

}  // namespace

void global_avg_pool2d_forward(float* y, const float* x, const GlobalPoolDims& d) {
    const int64_t HW = d.H * d.W, C = d.C;
    parallel_for(threads_for(std::min<int64_t>(d.N, d.N * HW * C / (int64_t(1) << 16) + 1)), d.N,
                 [&](int64_t n) {
        // Each thread's own slot (workspaces are per thread).
        double* s = workspace<double>(Scratch::global_pool_sums, C);
        std::fill(s, s + C, 0.0);
        const float* xn = x + n * HW * C;
        for (int64_t p = 0; p < HW; ++p)
            for (int64_t c = 0; c < C; ++c) s[c] += xn[p * C + c];
        for (int64_t c = 0; c < C; ++c) y[n * C + c] = static_cast<float>(s[c] / HW);
    });
}

void global_avg_pool2d_backward(float* dx, const float* dy, const GlobalPoolDims& d) {
    const int64_t HW = d.H * d.W, C = d.C;
    const float inv = 1.0f / static_cast<float>(HW);
    parallel_for(threads_for_floats(d.N * HW * C), d.N, [&](int64_t n) {
        float* dxn = dx + n * HW * C;
        for (int64_t p = 0; p < HW; ++p)
            for (int64_t c = 0; c < C; ++c) dxn[p * C + c] = dy[n * C + c] * inv;
    });
}

void global_max_pool2d_forward(float* y, int32_t* argmax, const float* x, const GlobalPoolDims& d) {
    const int64_t HW = d.H * d.W, C = d.C;
    parallel_for(threads_for_floats(d.N * HW * C), d.N, [&](int64_t n) {
        const float* xn = x + n * HW * C;
        for (int64_t c = 0; c < C; ++c) {
            float best = xn[c];
            int64_t at = 0;
            for (int64_t p = 1; p < HW && !std::isnan(best); ++p) {
                const float v = xn[p * C + c];
                if (v > best || std::isnan(v)) {
                    best = v;
                    at = p;
                }
            }
            y[n * C + c] = best;
            if (argmax) argmax[n * C + c] = static_cast<int32_t>(at);
        }
    });
}

void global_max_pool2d_backward(float* dx, const float* dy, const int32_t* argmax,
                                const GlobalPoolDims& d) {
    const int64_t HW = d.H * d.W, C = d.C;
    parallel_for(threads_for_floats(d.N * HW * C), d.N, [&](int64_t n) {
        float* dxn = dx + n * HW * C;
        std::memset(dxn, 0, sizeof(float) * HW * C);
        for (int64_t c = 0; c < C; ++c) dxn[argmax[n * C + c] * C + c] = dy[n * C + c];
    });
}

void zero_pad2d(float* big, const float* small, const Pad2dDims& d) {
    const int64_t BH = d.H + d.top + d.bottom, BW = d.W + d.left + d.right, C = d.C;
    parallel_for(threads_for_floats(d.N * BH * BW * C), d.N * BH, [&](int64_t nh) {
        const int64_t n = nh / BH, h = nh % BH - d.top;
        float* row = big + nh * BW * C;
        if (h < 0 || h >= d.H) {
            std::memset(row, 0, sizeof(float) * BW * C);
            return;
        }
        std::memset(row, 0, sizeof(float) * d.left * C);
        std::memcpy(row + d.left * C, small + (n * d.H + h) * d.W * C, sizeof(float) * d.W * C);
        std::memset(row + (d.left + d.W) * C, 0, sizeof(float) * d.right * C);
    });
}

void crop2d(float* small, const float* big, const Pad2dDims& d) {
    const int64_t BH = d.H + d.top + d.bottom, BW = d.W + d.left + d.right, C = d.C;
    parallel_for(threads_for_floats(d.N * d.H * d.W * C), d.N * d.H, [&](int64_t nh) {
        const int64_t n = nh / d.H, h = nh % d.H;
        std::memcpy(small + nh * d.W * C, big + ((n * BH + h + d.top) * BW + d.left) * C,
                    sizeof(float) * d.W * C);
    });
}

void upsample2d_nearest_forward(float* y, const float* x, const Upsample2dDims& d) {
    const int64_t OH = d.H * d.SH, OW = d.W * d.SW, C = d.C;
    parallel_for(threads_for_floats(d.N * OH * OW * C), d.N * OH, [&](int64_t nh) {
        const int64_t n = nh / OH, h = nh % OH / d.SH;
        const float* xr = x + (n * d.H + h) * d.W * C;
        float* yr = y + nh * OW * C;
        for (int64_t w = 0; w < OW; ++w) std::memcpy(yr + w * C, xr + w / d.SW * C, sizeof(float) * C);
    });
}

void upsample2d_nearest_backward(float* dx, const float* dy, const Upsample2dDims& d) {
    const int64_t OH = d.H * d.SH, OW = d.W * d.SW, C = d.C;
    parallel_for(threads_for_floats(d.N * OH * OW * C), d.N * d.H, [&](int64_t nh) {
        const int64_t n = nh / d.H, h = nh % d.H;
        float* dxr = dx + nh * d.W * C;
        std::memset(dxr, 0, sizeof(float) * d.W * C);
        // Block rows in order, then columns: the same order of float32 additions on any thread.
        for (int64_t i = 0; i < d.SH; ++i) {
            const float* dyr = dy + (n * OH + h * d.SH + i) * OW * C;
            for (int64_t w = 0; w < OW; ++w)
                for (int64_t c = 0; c < C; ++c) dxr[w / d.SW * C + c] += dyr[w * C + c];
        }
    });
}

}  // namespace cnnfast
