#include "batchnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

namespace {

// Rows per partial sum. The chunking does not depend on the thread count, and the chunks'
// partials are added in chunk order, so the statistics are the same on any number of threads.
constexpr int64_t kChunkRows = 512;

int64_t chunks_of(int64_t rows) { return std::max<int64_t>(1, (rows + kChunkRows - 1) / kChunkRows); }

// Per channel, the float64 sums over the rows of two row functions f(r, c) and g(r, c):
// sums_f[c] and sums_g[c] (C each), chunk partials added in chunk order.
template <class F, class G>
void channel_sums(double* sums_f, double* sums_g, const BatchNormDims& d, const F& f,
                  const G& g) {
    const int64_t C = d.C, chunks = chunks_of(d.rows);
    double* part = workspace<double>(Scratch::batchnorm_partials, chunks * 2 * C);
    const int T = threads_for(std::min(chunks, d.rows * C / (int64_t(1) << 15) + 1));
    parallel_for(T, chunks, [&](int64_t k) {
        double* pf = part + k * 2 * C;
        double* pg = pf + C;
        std::fill(pf, pf + 2 * C, 0.0);
        const int64_t end = std::min(d.rows, (k + 1) * kChunkRows);
        for (int64_t r = k * kChunkRows; r < end; ++r)
            for (int64_t c = 0; c < C; ++c) {
                pf[c] += f(r, c);
                pg[c] += g(r, c);
            }
    });
    std::fill(sums_f, sums_f + C, 0.0);
    std::fill(sums_g, sums_g + C, 0.0);
    for (int64_t k = 0; k < chunks; ++k)
        for (int64_t c = 0; c < C; ++c) {
            sums_f[c] += part[k * 2 * C + c];
            sums_g[c] += part[k * 2 * C + C + c];
        }
}

// y = x * scale + shift per channel, rows in parallel.
void affine_rows(float* y, const float* x, const float* scale, const float* shift,
                 const BatchNormDims& d) {
    const int64_t C = d.C;
    const int T = threads_for(d.rows * C / (int64_t(1) << 16) + 1);
    parallel_for(T, d.rows, [&](int64_t r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * scale[c] + shift[c];
    });
}

float inv_std(float var, float eps) { return 1.0f / std::sqrt(var + eps); }

}  // namespace

void batchnorm_scale_shift(float* scale, float* shift, const float* gamma, const float* beta,
                           const float* mean, const float* var, int64_t C, float epsilon) {
    for (int64_t c = 0; c < C; ++c) {
        scale[c] = (gamma ? gamma[c] : 1.0f) * inv_std(var[c], epsilon);
        shift[c] = (beta ? beta[c] : 0.0f) - mean[c] * scale[c];
    }
}

void batchnorm_forward_training(float* y, float* mean, float* var, const float* x,
                                const float* gamma, const float* beta, const BatchNormDims& d) {
    const int64_t C = d.C;
    std::vector<double> s1(C), s2(C), m(C);
    const double inv_rows = d.rows ? 1.0 / static_cast<double>(d.rows) : 0.0;
    // Two passes (mean, then squared deviations) for a variance without cancellation.
    channel_sums(s1.data(), s2.data(), d, [&](int64_t r, int64_t c) { return double(x[r * C + c]); },
                 [](int64_t, int64_t) { return 0.0; });
    for (int64_t c = 0; c < C; ++c) m[c] = s1[c] * inv_rows;
    channel_sums(s2.data(), s1.data(), d,
                 [&](int64_t r, int64_t c) {
                     const double e = double(x[r * C + c]) - m[c];
                     return e * e;
                 },
                 [](int64_t, int64_t) { return 0.0; });
    for (int64_t c = 0; c < C; ++c) {
        mean[c] = static_cast<float>(m[c]);
        var[c] = static_cast<float>(s2[c] * inv_rows);
    }
    std::vector<float> scale(C), shift(C);
    batchnorm_scale_shift(scale.data(), shift.data(), gamma, beta, mean, var, C, d.epsilon);
    affine_rows(y, x, scale.data(), shift.data(), d);
}

void batchnorm_forward_inference(float* y, const float* x, const float* gamma, const float* beta,
                                 const float* mean, const float* var, const BatchNormDims& d) {
    std::vector<float> scale(d.C), shift(d.C);
    batchnorm_scale_shift(scale.data(), shift.data(), gamma, beta, mean, var, d.C, d.epsilon);
    affine_rows(y, x, scale.data(), shift.data(), d);
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
                                 const float* gamma, const BatchNormDims& d) {
    const int64_t C = d.C;
    std::vector<float> istd(C);
    for (int64_t c = 0; c < C; ++c) istd[c] = inv_std(var[c], d.epsilon);
    std::vector<double> sdy(C), sdyx(C);
    channel_sums(sdy.data(), sdyx.data(), d, [&](int64_t r, int64_t c) { return double(dy[r * C + c]); },
                 [&](int64_t r, int64_t c) {
                     return double(dy[r * C + c]) * double((x[r * C + c] - mean[c]) * istd[c]);
                 });
    for (int64_t c = 0; c < C; ++c) {
        if (dbeta) dbeta[c] = static_cast<float>(sdy[c]);
        if (dgamma) dgamma[c] = static_cast<float>(sdyx[c]);
    }
    if (!dx) return;
    // dx = k * (dy - a - xhat * b) per channel, with k, a, b computed once.
    std::vector<float> k(C), a(C), b(C);
    const double inv_rows = d.rows ? 1.0 / static_cast<double>(d.rows) : 0.0;
    for (int64_t c = 0; c < C; ++c) {
        k[c] = (gamma ? gamma[c] : 1.0f) * istd[c];
        a[c] = static_cast<float>(sdy[c] * inv_rows);
        b[c] = static_cast<float>(sdyx[c] * inv_rows);
    }
    const int T = threads_for(d.rows * C / (int64_t(1) << 16) + 1);
    parallel_for(T, d.rows, [&](int64_t r) {
        const float* xr = x + r * C;
        const float* dyr = dy + r * C;
        float* dxr = dx + r * C;
        for (int64_t c = 0; c < C; ++c) {
            const float xhat = (xr[c] - mean[c]) * istd[c];
            dxr[c] = k[c] * (dyr[c] - a[c] - xhat * b[c]);
        }
    });
}

void batchnorm_backward_inference(float* dx, const float* dy, const float* gamma,
                                  const float* var, const BatchNormDims& d) {
    std::vector<float> scale(d.C), zero(d.C, 0.0f);
    for (int64_t c = 0; c < d.C; ++c) scale[c] = (gamma ? gamma[c] : 1.0f) * inv_std(var[c], d.epsilon);
    affine_rows(dx, dy, scale.data(), zero.data(), d);
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
