#include "dense.h"

#include <omp.h>

#include <algorithm>

#include "gemm.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

// g (rows, cols) -> db (cols,). Rows are summed in float in blocks of kBlock (short, so the
// float rounding stays ~kBlock ulps), block sums in double per thread, threads reduced at the end.
void dense_bias_grad(float* db, const float* g, int64_t rows, int64_t cols) {
    constexpr int64_t kBlock = 32;
    const int64_t blocks = (rows + kBlock - 1) / kBlock;
    const int nt = threads_for(std::min<int64_t>(blocks, rows * cols / 16384 + 1));
    double* partial = workspace<double>(Scratch::bias_grad_partials, int64_t(nt) * cols * 2);
    int used = 1;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        double* acc = partial + static_cast<int64_t>(t) * cols * 2;
        float* block_sum = reinterpret_cast<float*>(acc + cols);  // cols floats fit in cols doubles
        std::fill(acc, acc + cols, 0.0);
        const int64_t b0 = blocks * t / T, b1 = blocks * (t + 1) / T;
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t i0 = b * kBlock, i1 = std::min(rows, i0 + kBlock);
            std::fill(block_sum, block_sum + cols, 0.0f);
            for (int64_t i = i0; i < i1; ++i) {
                const float* row = g + i * cols;
                for (int64_t j = 0; j < cols; ++j) block_sum[j] += row[j];
            }
            for (int64_t j = 0; j < cols; ++j) acc[j] += block_sum[j];
        }
        if (t == 0) used = T;  // OpenMP may grant fewer threads than asked
    }
    for (int64_t j = 0; j < cols; ++j) {
        double s = 0.0;
        for (int t = 0; t < used; ++t) s += partial[static_cast<int64_t>(t) * cols * 2 + j];
        db[j] = static_cast<float>(s);
    }
}

// x (N,IN); w (IN,OUT); bias (OUT,) or null; y (N,OUT) = x @ w + bias.
// Bias and ReLU are applied in the GEMM's epilogue, on each tile while it is in cache.
void dense_forward(float* y, const float* x, const float* w, const float* bias,
                   const DenseDims& d, bool relu) {
    if (d.N == 0) return;
    sgemm_bias_relu(false, false, d.N, d.OUT, d.IN, 1.0f, x, d.IN, w, d.OUT, 0.0f, y, d.OUT, bias,
                    relu);
}

// dx (N,IN) = dy @ w^T; dw (IN,OUT) = x^T @ dy; db (OUT,) = sum_n dy.
void dense_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                    const float* dy, const DenseDims& d) {
    if (dx && d.N > 0)
        sgemm(false, true, d.N, d.IN, d.OUT, 1.0f, dy, d.OUT, w, d.OUT, 0.0f, dx, d.IN);
    if (d.N > 0)
        sgemm(true, false, d.IN, d.OUT, d.N, 1.0f, x, d.IN, dy, d.OUT, 0.0f, dw, d.OUT);
    else
        std::fill(dw, dw + d.IN * d.OUT, 0.0f);
    if (db) dense_bias_grad(db, dy, d.N, d.OUT);
}

void dense_forward_naive(float* y, const float* x, const float* w, const float* bias,
                         const DenseDims& d, bool relu) {
    for (int64_t i = 0; i < d.N; ++i)
        for (int64_t j = 0; j < d.OUT; ++j) {
            float acc = bias ? bias[j] : 0.0f;
            for (int64_t p = 0; p < d.IN; ++p) acc += x[i * d.IN + p] * w[p * d.OUT + j];
            y[i * d.OUT + j] = relu && acc < 0.0f ? 0.0f : acc;
        }
}

void dense_backward_naive(float* dx, float* dw, float* db, const float* x, const float* w,
                          const float* dy, const DenseDims& d) {
    if (dx)
        for (int64_t i = 0; i < d.N; ++i)
            for (int64_t p = 0; p < d.IN; ++p) {
                float acc = 0.0f;
                for (int64_t j = 0; j < d.OUT; ++j) acc += dy[i * d.OUT + j] * w[p * d.OUT + j];
                dx[i * d.IN + p] = acc;
            }
    for (int64_t p = 0; p < d.IN; ++p)
        for (int64_t j = 0; j < d.OUT; ++j) {
            float acc = 0.0f;
            for (int64_t i = 0; i < d.N; ++i) acc += x[i * d.IN + p] * dy[i * d.OUT + j];
            dw[p * d.OUT + j] = acc;
        }
    if (db)
        for (int64_t j = 0; j < d.OUT; ++j) {
            float acc = 0.0f;
            for (int64_t i = 0; i < d.N; ++i) acc += dy[i * d.OUT + j];
            db[j] = acc;
        }
}

}  // namespace cnnfast
