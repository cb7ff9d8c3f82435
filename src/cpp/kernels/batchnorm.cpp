#include "batchnorm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

namespace {

// Rows per partial sum. The chunking does not depend on the thread count, and the chunks'
// partials are added in chunk order, so the statistics are the same on any number of threads.
constexpr int64_t kChunkRows = 512;

int64_t chunks_of(int64_t rows) { return std::max<int64_t>(1, (rows + kChunkRows - 1) / kChunkRows); }

// The row loops, vectorized across channels. The library builds for the baseline ISA, where
// these run at SSE2 width (measured: ResNet-20's 32x32x16 maps took 2.7 ms per training forward
// at one thread, 13x a copy); GCC's target clones pick an AVX-512 or AVX2 version once at load
// time (an ifunc), as the SIMD micro-kernels are chosen from CPU features. Each channel's sum
// still adds its rows in order, so every version gives the same float64 sums.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CNNFAST_BN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CNNFAST_BN_CLONES
#endif

// e = x[r, c] - shift[c]: s[c] += e, q[c] += e * e over the rows. The statistics in one pass:
// shifted by a value of the channel itself (its first row), the variance q/n - (s/n)^2 does
// not cancel as the textbook E[x^2] - E[x]^2 can when the mean is far from zero.
CNNFAST_BN_CLONES
void add_shifted_sums(double* __restrict s, double* __restrict q, const float* __restrict x,
                      const double* __restrict shift, int64_t rows, int64_t C) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < C; ++c) {
            const double e = static_cast<double>(x[r * C + c]) - shift[c];
            s[c] += e;
            q[c] += e * e;
        }
}

// The gradient arriving at the normalization is dy, or with a ReLU after it (relu_y, that
// ReLU's output, not null) dy where relu_y > 0 and 0 elsewhere: activation_backward's relu
// mask, since relu_y > 0 exactly where the ReLU's input was. The loops that read it are
// instantiated with and without the mask, so that neither tests relu_y per element, and
// inlined into each clone (CNNFAST_BN_INLINE), to be compiled for its ISA.
#define CNNFAST_BN_INLINE inline __attribute__((always_inline))

// v where relu_y > 0, else +0: written on the bits so that it vectorizes as an AND (GCC
// keeps a float select in these loops as a branch, which mispredicts half the time).
CNNFAST_BN_INLINE float masked(float v, float relu_y) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    bits &= relu_y > 0.0f ? 0xFFFFFFFFu : 0u;
    std::memcpy(&v, &bits, sizeof bits);
    return v;
}

template <bool Masked>
CNNFAST_BN_INLINE float arriving(const float* dy, const float* relu_y, int64_t i) {
    return Masked ? masked(dy[i], relu_y[i]) : dy[i];
}

// sdy[c] += g[r, c]; sdyx[c] += g[r, c] * xhat[r, c], xhat = (x - mean) * istd in float32,
// g the arriving gradient.
template <bool Masked>
CNNFAST_BN_INLINE void gradient_sums(double* __restrict sdy, double* __restrict sdyx,
                                     const float* __restrict x, const float* __restrict dy,
                                     const float* __restrict relu_y,
                                     const float* __restrict mean, const float* __restrict istd,
                                     int64_t rows, int64_t C) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < C; ++c) {
            const float g = arriving<Masked>(dy, relu_y, r * C + c);
            sdy[c] += static_cast<double>(g);
            sdyx[c] += static_cast<double>(g) *
                       static_cast<double>((x[r * C + c] - mean[c]) * istd[c]);
        }
}

CNNFAST_BN_CLONES
void add_gradient_sums(double* __restrict sdy, double* __restrict sdyx, const float* __restrict x,
                       const float* __restrict dy, const float* __restrict relu_y,
                       const float* __restrict mean, const float* __restrict istd, int64_t rows,
                       int64_t C) {
    if (relu_y)
        gradient_sums<true>(sdy, sdyx, x, dy, relu_y, mean, istd, rows, C);
    else
        gradient_sums<false>(sdy, sdyx, x, dy, relu_y, mean, istd, rows, C);
}

// y = x * scale + shift per channel (y may alias x), then max(y, 0) when `relu` (the
// activation kernel's relu: -0 and NaN pass through).
CNNFAST_BN_CLONES
void affine(float* y, const float* x, const float* __restrict scale,
            const float* __restrict shift, int64_t rows, int64_t C, bool relu) {
    if (relu) {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < C; ++c) {
                const float v = x[r * C + c] * scale[c] + shift[c];
                y[r * C + c] = v < 0.0f ? 0.0f : v;
            }
        return;
    }
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] * scale[c] + shift[c];
}

// dx = k * (g - a - xhat * b) per channel, xhat = (x - mean) * istd, g the arriving gradient
// (dx may alias dy).
template <bool Masked>
CNNFAST_BN_INLINE void data_gradient_rows(float* dx, const float* dy,
                                          const float* __restrict relu_y,
                                          const float* __restrict x, const float* __restrict mean,
                                          const float* __restrict istd, const float* __restrict k,
                                          const float* __restrict a, const float* __restrict b,
                                          int64_t rows, int64_t C) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < C; ++c) {
            const float xhat = (x[r * C + c] - mean[c]) * istd[c];
            dx[r * C + c] = k[c] * (arriving<Masked>(dy, relu_y, r * C + c) - a[c] - xhat * b[c]);
        }
}

CNNFAST_BN_CLONES
void data_gradient(float* dx, const float* dy, const float* __restrict relu_y,
                   const float* __restrict x, const float* __restrict mean,
                   const float* __restrict istd, const float* __restrict k,
                   const float* __restrict a, const float* __restrict b, int64_t rows,
                   int64_t C) {
    if (relu_y)
        data_gradient_rows<true>(dx, dy, relu_y, x, mean, istd, k, a, b, rows, C);
    else
        data_gradient_rows<false>(dx, dy, relu_y, x, mean, istd, k, a, b, rows, C);
}

// dx = g * scale per channel, g the arriving gradient (dx may alias dy).
template <bool Masked>
CNNFAST_BN_INLINE void scaled_gradient_rows(float* dx, const float* dy,
                                            const float* __restrict relu_y,
                                            const float* __restrict scale, int64_t rows,
                                            int64_t C) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < C; ++c)
            dx[r * C + c] = arriving<Masked>(dy, relu_y, r * C + c) * scale[c];
}

CNNFAST_BN_CLONES
void scaled_gradient(float* dx, const float* dy, const float* __restrict relu_y,
                     const float* __restrict scale, int64_t rows, int64_t C) {
    if (relu_y)
        scaled_gradient_rows<true>(dx, dy, relu_y, scale, rows, C);
    else
        scaled_gradient_rows<false>(dx, dy, relu_y, scale, rows, C);
}

// Per channel, float64 sums over the rows, each chunk of rows into its own partial (one or two
// C-vectors, written by `chunk(part_f, part_g, first_row, rows)`), added in chunk order.
template <class Chunk>
void channel_sums(double* sums_f, double* sums_g, const BatchNormDims& d, const Chunk& chunk) {
    const int64_t C = d.C, chunks = chunks_of(d.rows);
    double* part = workspace<double>(Scratch::batchnorm_partials, chunks * 2 * C);
    const int T = threads_for(std::min(chunks, d.rows * C / (int64_t(1) << 15) + 1));
    parallel_for(T, chunks, [&](int64_t k) {
        double* pf = part + k * 2 * C;
        std::fill(pf, pf + 2 * C, 0.0);
        const int64_t first = k * kChunkRows;
        chunk(pf, pf + C, first, std::min(d.rows, first + kChunkRows) - first);
    });
    std::fill(sums_f, sums_f + C, 0.0);
    std::fill(sums_g, sums_g + C, 0.0);
    for (int64_t k = 0; k < chunks; ++k)
        for (int64_t c = 0; c < C; ++c) {
            sums_f[c] += part[k * 2 * C + c];
            sums_g[c] += part[k * 2 * C + C + c];
        }
}

// body(first_row, rows) over blocks of rows, in parallel.
template <class Body>
void for_row_blocks(const BatchNormDims& d, const Body& body) {
    const int64_t blocks = chunks_of(d.rows);
    const int T = threads_for(std::min(blocks, d.rows * d.C / (int64_t(1) << 16) + 1));
    parallel_for(T, blocks, [&](int64_t k) {
        const int64_t first = k * kChunkRows;
        body(first, std::min(d.rows, first + kChunkRows) - first);
    });
}

// y = x * scale + shift per channel (then relu), row blocks in parallel.
void affine_rows(float* y, const float* x, const float* scale, const float* shift,
                 const BatchNormDims& d, bool relu) {
    const int64_t C = d.C;
    for_row_blocks(d, [&](int64_t first, int64_t rows) {
        affine(y + first * C, x + first * C, scale, shift, rows, C, relu);
    });
}

float inv_std(float var, float eps) { return 1.0f / std::sqrt(var + eps); }

// Per-channel scratch of the calling thread (no allocation once shapes settle): `doubles`
// C-vectors of double, then `floats` C-vectors of float.
struct ChannelScratch {
    double* d;
    float* f;
};
ChannelScratch channel_scratch(int64_t C, int doubles, int floats) {
    double* base = workspace<double>(Scratch::batchnorm_channels, doubles * C + (floats * C + 1) / 2);
    return {base, reinterpret_cast<float*>(base + doubles * C)};
}

}  // namespace

void batchnorm_scale_shift(float* scale, float* shift, const float* gamma, const float* beta,
                           const float* mean, const float* var, int64_t C, float epsilon) {
    for (int64_t c = 0; c < C; ++c) {
        scale[c] = (gamma ? gamma[c] : 1.0f) * inv_std(var[c], epsilon);
        shift[c] = (beta ? beta[c] : 0.0f) - mean[c] * scale[c];
    }
}

void batchnorm_forward_training(float* y, float* mean, float* var, const float* x,
                                const float* gamma, const float* beta, const BatchNormDims& d,
                                bool relu) {
    const int64_t C = d.C;
    const ChannelScratch w = channel_scratch(C, 3, 2);
    double *s1 = w.d, *s2 = w.d + C, *k = w.d + 2 * C;
    float *scale = w.f, *shift = w.f + C;
    const double inv_rows = d.rows ? 1.0 / static_cast<double>(d.rows) : 0.0;
    // One pass over x (add_shifted_sums), then the affine pass.
    for (int64_t c = 0; c < C; ++c) k[c] = d.rows ? static_cast<double>(x[c]) : 0.0;
    channel_sums(s1, s2, d, [&](double* pf, double* pg, int64_t first, int64_t rows) {
        add_shifted_sums(pf, pg, x + first * C, k, rows, C);
    });
    for (int64_t c = 0; c < C; ++c) {
        const double dm = s1[c] * inv_rows;
        mean[c] = static_cast<float>(k[c] + dm);
        var[c] = static_cast<float>(std::max(0.0, s2[c] * inv_rows - dm * dm));
    }
    batchnorm_scale_shift(scale, shift, gamma, beta, mean, var, C, d.epsilon);
    affine_rows(y, x, scale, shift, d, relu);
}

void batchnorm_forward_inference(float* y, const float* x, const float* gamma, const float* beta,
                                 const float* mean, const float* var, const BatchNormDims& d,
                                 bool relu) {
    const ChannelScratch w = channel_scratch(d.C, 0, 2);
    batchnorm_scale_shift(w.f, w.f + d.C, gamma, beta, mean, var, d.C, d.epsilon);
    affine_rows(y, x, w.f, w.f + d.C, d, relu);
}

void batchnorm_update_moving(float* moving_mean, float* moving_var, const float* mean,
                             const float* var, int64_t C, float momentum) {
    for (int64_t c = 0; c < C; ++c) {
        moving_mean[c] = moving_mean[c] * momentum + mean[c] * (1.0f - momentum);
        moving_var[c] = moving_var[c] * momentum + var[c] * (1.0f - momentum);
    }
}

void batchnorm_backward_training(float* dx, float* dgamma, float* dbeta, const float* x,
                                 const float* dy, const float* mean, const float* var,
                                 const float* gamma, const BatchNormDims& d,
                                 const float* relu_y) {
    const int64_t C = d.C;
    const ChannelScratch w = channel_scratch(C, 2, 4);
    double *sdy = w.d, *sdyx = w.d + C;
    float *istd = w.f, *k = w.f + C, *a = w.f + 2 * C, *b = w.f + 3 * C;
    for (int64_t c = 0; c < C; ++c) istd[c] = inv_std(var[c], d.epsilon);
    channel_sums(sdy, sdyx, d, [&](double* pf, double* pg, int64_t first, int64_t rows) {
        add_gradient_sums(pf, pg, x + first * C, dy + first * C,
                          relu_y ? relu_y + first * C : nullptr, mean, istd, rows, C);
    });
    for (int64_t c = 0; c < C; ++c) {
        if (dbeta) dbeta[c] = static_cast<float>(sdy[c]);
        if (dgamma) dgamma[c] = static_cast<float>(sdyx[c]);
    }
    if (!dx) return;
    // dx = k * (dy - a - xhat * b) per channel, with k, a, b computed once.
    const double inv_rows = d.rows ? 1.0 / static_cast<double>(d.rows) : 0.0;
    for (int64_t c = 0; c < C; ++c) {
        k[c] = (gamma ? gamma[c] : 1.0f) * istd[c];
        a[c] = static_cast<float>(sdy[c] * inv_rows);
        b[c] = static_cast<float>(sdyx[c] * inv_rows);
    }
    for_row_blocks(d, [&](int64_t first, int64_t rows) {
        data_gradient(dx + first * C, dy + first * C, relu_y ? relu_y + first * C : nullptr,
                      x + first * C, mean, istd, k, a, b, rows, C);
    });
}

void batchnorm_backward_inference(float* dx, const float* dy, const float* gamma,
                                  const float* var, const BatchNormDims& d,
                                  const float* relu_y) {
    const int64_t C = d.C;
    const ChannelScratch w = channel_scratch(C, 0, 1);
    float* scale = w.f;
    for (int64_t c = 0; c < C; ++c) scale[c] = (gamma ? gamma[c] : 1.0f) * inv_std(var[c], d.epsilon);
    for_row_blocks(d, [&](int64_t first, int64_t rows) {
        scaled_gradient(dx + first * C, dy + first * C, relu_y ? relu_y + first * C : nullptr,
                        scale, rows, C);
    });
}

void batchnorm_forward_training_naive(float* y, float* mean, float* var, const float* x,
                                      const float* gamma, const float* beta,
                                      const BatchNormDims& d) {
    const int64_t C = d.C;
    for (int64_t c = 0; c < C; ++c) {
        double s = 0.0;
        for (int64_t r = 0; r < d.rows; ++r) s += x[r * C + c];
        const double m = d.rows ? s / static_cast<double>(d.rows) : 0.0;
        double q = 0.0;
        for (int64_t r = 0; r < d.rows; ++r) q += (x[r * C + c] - m) * (x[r * C + c] - m);
        mean[c] = static_cast<float>(m);
        var[c] = static_cast<float>(d.rows ? q / static_cast<double>(d.rows) : 0.0);
        const double istd = 1.0 / std::sqrt(static_cast<double>(var[c]) + d.epsilon);
        for (int64_t r = 0; r < d.rows; ++r)
            y[r * C + c] = static_cast<float>((x[r * C + c] - m) * istd * (gamma ? gamma[c] : 1.0f) +
                                              (beta ? beta[c] : 0.0f));
    }
}

void batchnorm_backward_training_naive(float* dx, float* dgamma, float* dbeta, const float* x,
                                       const float* dy, const float* mean, const float* var,
                                       const float* gamma, const BatchNormDims& d) {
    const int64_t C = d.C;
    for (int64_t c = 0; c < C; ++c) {
        const double istd = 1.0 / std::sqrt(static_cast<double>(var[c]) + d.epsilon);
        double sdy = 0.0, sdyx = 0.0;
        for (int64_t r = 0; r < d.rows; ++r) {
            sdy += dy[r * C + c];
            sdyx += dy[r * C + c] * ((x[r * C + c] - static_cast<double>(mean[c])) * istd);
        }
        if (dbeta) dbeta[c] = static_cast<float>(sdy);
        if (dgamma) dgamma[c] = static_cast<float>(sdyx);
        if (!dx) continue;
        const double g = gamma ? gamma[c] : 1.0;
        for (int64_t r = 0; r < d.rows; ++r) {
            const double xhat = (x[r * C + c] - static_cast<double>(mean[c])) * istd;
            dx[r * C + c] = static_cast<float>(g * istd *
                                               (dy[r * C + c] - sdy / d.rows - xhat * sdyx / d.rows));
        }
    }
}

}  // namespace cnnfast
