#include "activation.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "cpu_features.h"
#include "elementwise_common.h"
#include "elementwise_simd.h"
#include "workspace.h"

// The baseline-ISA copy of the element-wise loops.
#define CNNFAST_SIMD_NS simd_base
#include "activation_loops.h"
#undef CNNFAST_SIMD_NS

namespace cnnfast {

namespace detail {

static SimdTables<ElementwiseSimd>& tables() {
    static SimdTables<ElementwiseSimd> t(&simd_base::kTable, elementwise_simd_avx2(),
                                         elementwise_simd_avx512());
    return t;
}

const ElementwiseSimd& elementwise_simd() { return *tables().current(); }

}  // namespace detail

const char* elementwise_simd_path() { return detail::elementwise_simd().name; }

bool set_elementwise_simd_path(const char* name) { return detail::tables().select(name); }

bool activation_from_name(const char* name, Activation* kind) {
    static const struct {
        const char* name;
        Activation kind;
    } names[] = {{"linear", Activation::linear}, {"relu", Activation::relu},
                 {"sigmoid", Activation::sigmoid}, {"tanh", Activation::tanh},
                 {"elu", Activation::elu},       {"swish", Activation::swish},
                 {"leaky_relu", Activation::leaky_relu}};
    for (const auto& e : names)
        if (std::strcmp(name, e.name) == 0) {
            *kind = e.kind;
            return true;
        }
    return false;
}

// x, y (n,). y may alias x.
void activation_forward(float* y, const float* x, int64_t n, Activation kind, float alpha) {
    const auto& k = detail::elementwise_simd();
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        k.act_forward(y + lo, x + lo, hi - lo, static_cast<int>(kind), alpha);
    });
}

// x, y, dy, dx (n,). dx may alias dy.
void activation_backward(float* dx, const float* x, const float* y, const float* dy, int64_t n,
                         Activation kind, float alpha) {
    const auto& k = detail::elementwise_simd();
    detail::for_each_chunk(n, detail::kElementwiseGrain, [&](int64_t lo, int64_t hi) {
        k.act_backward(dx + lo, x + lo, y + lo, dy + lo, hi - lo, static_cast<int>(kind), alpha);
    });
}

// x, y (n,): the textbook formulas.
void activation_forward_naive(float* y, const float* x, int64_t n, Activation kind, float alpha) {
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        float r = v;
        switch (kind) {
            case Activation::linear: r = v; break;
            case Activation::relu: r = v < 0.0f ? 0.0f : v; break;
            case Activation::sigmoid:
                r = v >= 0.0f ? 1.0f / (1.0f + std::exp(-v)) : std::exp(v) / (1.0f + std::exp(v));
                break;
            case Activation::tanh: r = std::tanh(v); break;
            case Activation::elu: r = v > 0.0f ? v : alpha * std::expm1(v); break;
            case Activation::leaky_relu: r = v > 0.0f ? v : alpha * v; break;
            case Activation::swish:
                r = v * (v >= 0.0f ? 1.0f / (1.0f + std::exp(-v))
                                   : std::exp(v) / (1.0f + std::exp(v)));
                break;
        }
        y[i] = r;
    }
}

// x, y, dy, dx (n,).
void activation_backward_naive(float* dx, const float* x, const float* y, const float* dy,
                               int64_t n, Activation kind, float alpha) {
    for (int64_t i = 0; i < n; ++i) {
        float d = 1.0f;
        switch (kind) {
            case Activation::linear: d = 1.0f; break;
            case Activation::relu: d = x[i] > 0.0f ? 1.0f : 0.0f; break;
            case Activation::sigmoid: d = y[i] * (1.0f - y[i]); break;
            case Activation::tanh: d = 1.0f - y[i] * y[i]; break;
            case Activation::elu: d = x[i] > 0.0f ? 1.0f : y[i] + alpha; break;
            case Activation::leaky_relu: d = x[i] > 0.0f ? 1.0f : alpha; break;
            case Activation::swish: {
                const float v = x[i];
                const float s = v >= 0.0f ? 1.0f / (1.0f + std::exp(-v))
                                          : std::exp(v) / (1.0f + std::exp(v));
                d = s * (1.0f + v * (1.0f - s));
                break;
            }
        }
        dx[i] = dy[i] * d;
    }
}

// x, y (n,); alpha (A,) at i % A. y may alias x.
void prelu_forward(float* y, const float* x, const float* alpha, int64_t n, int64_t A) {
    // Chunks are whole rows of A elements so the inner loop indexes alpha directly.
    const int64_t rows = n / A;
    const int64_t grain = std::max<int64_t>(1, detail::kElementwiseGrain / A);
    detail::for_each_chunk(rows, grain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* xr = x + r * A;
            float* yr = y + r * A;
#pragma omp simd
            for (int64_t k = 0; k < A; ++k) yr[k] = xr[k] > 0.0f ? xr[k] : alpha[k] * xr[k];
        }
    });
}

namespace {

// Rows [r0, r1) of x, dy (rows, A), columns [k0, k1): writes dx and adds
// dy * min(x, 0) into acc[k - k0] in row order.
inline void prelu_backward_block(float* dx, double* acc, const float* x, const float* alpha,
                                 const float* dy, int64_t A, int64_t r0, int64_t r1, int64_t k0,
                                 int64_t k1) {
    for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * A;
        const float* dyr = dy + r * A;
        float* dxr = dx + r * A;
#pragma omp simd
        for (int64_t k = k0; k < k1; ++k) {
            const float v = xr[k], g = dyr[k];
            acc[k - k0] += v > 0.0f ? 0.0 : static_cast<double>(g) * static_cast<double>(v);
            dxr[k] = v > 0.0f ? g : alpha[k] * g;
        }
    }
}

}  // namespace

// x, dy, dx (n,); alpha, dalpha (A,). dalpha overwritten; dx may alias dy.
void prelu_backward(float* dx, float* dalpha, const float* x, const float* alpha, const float* dy,
                    int64_t n, int64_t A) {
    constexpr int64_t kColChunk = 1024;
    const int64_t rows = n / A;
    if (A > kColChunk || rows * A <= detail::kElementwiseGrain) {
        // Wide alpha (or small input): threads own column chunks and run down all rows, so each
        // dalpha[k] is one sequential double sum over the rows.
        const int64_t chunks = (A + kColChunk - 1) / kColChunk;
        const int nt = rows * A > detail::kElementwiseGrain ? threads_for(chunks) : 1;
        auto column_chunk = [&](int64_t c) {
            const int64_t k0 = c * kColChunk, k1 = std::min(A, k0 + kColChunk);
            double acc[kColChunk];
            std::fill(acc, acc + (k1 - k0), 0.0);
            prelu_backward_block(dx, acc, x, alpha, dy, A, 0, rows, k0, k1);
            for (int64_t k = k0; k < k1; ++k) dalpha[k] = static_cast<float>(acc[k - k0]);
        };
        parallel_for(nt, chunks, column_chunk);
        return;
    }
    // Narrow alpha (shared axes): fixed row blocks (layout depends on n and A only) each
    // produce a partial per column, then the partials are added in block order.
    constexpr int64_t kMaxBlocks = 64;
    const int64_t grain = std::max<int64_t>(1, detail::kElementwiseGrain / A);
    const int64_t bs = std::max(grain, (rows + kMaxBlocks - 1) / kMaxBlocks);
    const int64_t nb = (rows + bs - 1) / bs;
    double* partial = workspace<double>(Scratch::prelu_partials, nb * A);
    auto row_block = [&](int64_t b) {
        double* acc = partial + b * A;
        std::fill(acc, acc + A, 0.0);
        prelu_backward_block(dx, acc, x, alpha, dy, A, b * bs, std::min(rows, (b + 1) * bs), 0, A);
    };
    parallel_for(threads_for(nb), nb, row_block);
    for (int64_t k = 0; k < A; ++k) {
        double s = 0.0;
        for (int64_t b = 0; b < nb; ++b) s += partial[b * A + k];
        dalpha[k] = static_cast<float>(s);
    }
}

}  // namespace cnnfast
