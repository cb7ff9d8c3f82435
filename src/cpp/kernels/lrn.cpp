#include "lrn.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

namespace {

// s^(-beta); the paper's beta = 0.75 (and 0.5, 1) avoid pow: two or three square roots
// vectorise, pow does not.
enum class PowKind { Beta075, Beta05, Beta1, General };

inline PowKind pow_kind(float beta) {
    if (beta == 0.75f) return PowKind::Beta075;
    if (beta == 0.5f) return PowKind::Beta05;
    if (beta == 1.0f) return PowKind::Beta1;
    return PowKind::General;
}

// out[c] = s[c]^(-beta) for c in [0, C).
inline void neg_pow(float* out, const float* s, int64_t C, float beta, PowKind kind) {
    switch (kind) {
        case PowKind::Beta075:
            for (int64_t c = 0; c < C; ++c) {
                const float r = std::sqrt(s[c]);
                out[c] = 1.0f / (r * std::sqrt(r));
            }
            break;
        case PowKind::Beta05:
            for (int64_t c = 0; c < C; ++c) out[c] = 1.0f / std::sqrt(s[c]);
            break;
        case PowKind::Beta1:
            for (int64_t c = 0; c < C; ++c) out[c] = 1.0f / s[c];
            break;
        case PowKind::General:
            for (int64_t c = 0; c < C; ++c) out[c] = std::pow(s[c], -beta);
            break;
    }
}

// win[c] = sum_{o=-r}^{r} pad[c + r + o]: the window sum over a row padded with r zeros on
// each side, so the loop has no bounds tests and vectorises over c.
inline void window_sum(float* win, const float* pad, int64_t C, int64_t r) {
    for (int64_t c = 0; c < C; ++c) win[c] = pad[c];
    for (int64_t o = 1; o <= 2 * r; ++o)
        for (int64_t c = 0; c < C; ++c) win[c] += pad[c + o];
}

// The calling thread's scratch: a zero-padded row (C + 2r) and two rows of C.
float* lrn_scratch(int64_t C, int64_t r) { return workspace(Scratch::lrn_rows, 3 * C + 2 * r); }

int lrn_threads(const LrnDims& d) {
    // About 16K floats per thread before a second thread pays for itself.
    return threads_for(std::min<int64_t>(d.rows, d.rows * d.C / 16384 + 1));
}

}  // namespace

// x (rows,C); y, scale (rows,C).
void lrn_forward(float* y, float* scale, const float* x, const LrnDims& d) {
    const int64_t C = d.C, r = d.depth_radius;
    const PowKind kind = pow_kind(d.beta);
#pragma omp parallel num_threads(lrn_threads(d))
    {
        float* pad = lrn_scratch(C, r);
        float* sq = pad + r;          // squares, with r zeros either side
        float* s = pad + C + 2 * r;   // scale of this row (when not stored)
        float* inv = s + C;           // scale^(-beta)
        for (int64_t i = 0; i < r; ++i) pad[i] = pad[C + r + i] = 0.0f;
#pragma omp for schedule(static)
        for (int64_t row = 0; row < d.rows; ++row) {
            const float* xr = x + row * C;
            float* sr = scale ? scale + row * C : s;
            for (int64_t c = 0; c < C; ++c) sq[c] = xr[c] * xr[c];
            window_sum(sr, pad, C, r);
            for (int64_t c = 0; c < C; ++c) sr[c] = d.bias + d.alpha * sr[c];
            neg_pow(inv, sr, C, d.beta, kind);
            float* yr = y + row * C;
            for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * inv[c];
        }
    }
}

// x, y, scale, dy (rows,C); dx (rows,C), may alias dy.
void lrn_backward(float* dx, const float* x, const float* y, const float* scale, const float* dy,
                  const LrnDims& d) {
    const int64_t C = d.C, r = d.depth_radius;
    const PowKind kind = pow_kind(d.beta);
    const float coef = -2.0f * d.alpha * d.beta;
#pragma omp parallel num_threads(lrn_threads(d))
    {
        float* pad = lrn_scratch(C, r);
        float* t = pad + r;           // dy*y/scale, with r zeros either side
        float* win = pad + C + 2 * r; // its window sums
        float* inv = win + C;         // scale^(-beta)
        for (int64_t i = 0; i < r; ++i) pad[i] = pad[C + r + i] = 0.0f;
#pragma omp for schedule(static)
        for (int64_t row = 0; row < d.rows; ++row) {
            const float *xr = x + row * C, *yr = y + row * C, *sr = scale + row * C;
            const float* gr = dy + row * C;
            // Everything read from dy is taken before dx (possibly the same row) is written.
            for (int64_t c = 0; c < C; ++c) t[c] = gr[c] * yr[c] / sr[c];
            window_sum(win, pad, C, r);
            neg_pow(inv, sr, C, d.beta, kind);
            float* out = dx + row * C;
            for (int64_t c = 0; c < C; ++c) out[c] = gr[c] * inv[c] + coef * xr[c] * win[c];
        }
    }
}

// ---- naive direct loops ------------------------------------------------------------------

void lrn_forward_naive(float* y, float* scale, const float* x, const LrnDims& d) {
    const int64_t C = d.C, r = d.depth_radius;
    for (int64_t row = 0; row < d.rows; ++row)
        for (int64_t c = 0; c < C; ++c) {
            const int64_t lo = c - r < 0 ? 0 : c - r, hi = c + r >= C ? C - 1 : c + r;
            float sum = 0.0f;
            for (int64_t j = lo; j <= hi; ++j) sum += x[row * C + j] * x[row * C + j];
            const float s = d.bias + d.alpha * sum;
            if (scale) scale[row * C + c] = s;
            y[row * C + c] = x[row * C + c] * std::pow(s, -d.beta);
        }
}

void lrn_backward_naive(float* dx, const float* x, const float* y, const float* scale,
                        const float* dy, const LrnDims& d) {
    const int64_t C = d.C, r = d.depth_radius;
    std::vector<float> row_dx(static_cast<size_t>(C));
    for (int64_t row = 0; row < d.rows; ++row) {
        const int64_t b = row * C;
        // dy_j*y_j/scale_j feeds every channel whose window contains j; the window is symmetric.
        for (int64_t c = 0; c < C; ++c) {
            const int64_t lo = c - r < 0 ? 0 : c - r, hi = c + r >= C ? C - 1 : c + r;
            float acc = 0.0f;
            for (int64_t j = lo; j <= hi; ++j) acc += dy[b + j] * y[b + j] / scale[b + j];
            row_dx[c] = dy[b + c] * std::pow(scale[b + c], -d.beta) -
                        2.0f * d.alpha * d.beta * x[b + c] * acc;
        }
        for (int64_t c = 0; c < C; ++c) dx[b + c] = row_dx[c];
    }
}

}  // namespace cnnfast
