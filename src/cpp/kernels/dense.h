#pragma once
// Fully connected layer on row-major float32 buffers, Keras kernel layout (in, out), via sgemm.
#include <cstdint>

namespace cnnfast {

// x (N,IN); w (IN,OUT); bias (OUT,); y (N,OUT).
struct DenseDims {
    int64_t N, IN, OUT;
};

// x (N,IN); w (IN,OUT); bias (OUT,) or null; y (N,OUT) is overwritten, then y = max(y, 0)
// when relu (fused into the GEMM epilogue).
void dense_forward(float* y, const float* x, const float* w, const float* bias,
                   const DenseDims& d, bool relu = false);
// dy (N,OUT); dx (N,IN) = dy @ w^T (skipped when null); dw (IN,OUT) = x^T @ dy;
// db (OUT,) = column sums of dy (skipped when null). All outputs are overwritten.
void dense_backward(float* dx, float* dw, float* db, const float* x, const float* w,
                    const float* dy, const DenseDims& d);

// Plain loops: the readable spec, fallback and oracle. Same contracts.
void dense_forward_naive(float* y, const float* x, const float* w, const float* bias,
                         const DenseDims& d, bool relu = false);
void dense_backward_naive(float* dx, float* dw, float* db, const float* x, const float* w,
                          const float* dy, const DenseDims& d);

// db (cols,) = sum over the rows of g (rows, cols), overwritten: the bias gradient of dense and
// conv layers. Threaded over row blocks; partial sums are kept in double.
void dense_bias_grad(float* db, const float* g, int64_t rows, int64_t cols);

}  // namespace cnnfast
