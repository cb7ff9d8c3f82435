// The int8 convolution (quantized.h): im2col into uint8 columns, the int8 GEMM against the
// packed (KH*KW*C, K) kernel, and the float epilogue, one L2-sized chunk of output pixels at a
// time (int8_chunks.h). 1x1 stride-1 unpadded kernels read the quantized input as the columns.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "int8_chunks.h"
#include "quantized.h"

namespace cnnfast {

namespace {

void check_dims(const Conv2dDims& d, const char* what) {
    if (d.groups != 1)
        throw std::invalid_argument(std::string(what) + ": groups = " +
                                    std::to_string(d.groups) + "; the int8 convolution takes one");
}

bool input_is_columns(const Conv2dDims& d) {
    return d.KH == 1 && d.KW == 1 && d.stride_h == 1 && d.stride_w == 1 && d.pad_top == 0 &&
           d.pad_left == 0 && d.OH == d.H && d.OW == d.W;
}

// n bytes from src to dst: a plain loop for the short spans of few-channel inputs (a call to
// memcpy costs more than copying 3 bytes).
inline void copy_bytes(uint8_t* dst, const uint8_t* src, int64_t n) {
    if (n <= 16) {
        for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
    } else {
        std::memcpy(dst, src, static_cast<size_t>(n));
    }
}

inline void fill_bytes(uint8_t* dst, uint8_t v, int64_t n) {
    if (n <= 16) {
        for (int64_t i = 0; i < n; ++i) dst[i] = v;
    } else {
        std::memset(dst, v, static_cast<size_t>(n));
    }
}

// cols (rows, KH*KW*C) for output pixels [m0, m0 + rows) (pixel m = (n*OH + oh)*OW + ow) of xq
// (N,H,W,C); taps outside the input read zero_point.
void im2col_u8(uint8_t* cols, const uint8_t* xq, int64_t m0, int64_t rows, uint8_t zero_point,
               const Conv2dDims& d) {
    const int64_t Kc = d.KH * d.KW * d.C, C = d.C;
    int64_t ow = m0 % d.OW, oh = (m0 / d.OW) % d.OH, n = m0 / (d.OW * d.OH);
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* xn = xq + n * d.H * d.W * C;
        uint8_t* dst = cols + r * Kc;
        const int64_t iw0 = ow * d.stride_w - d.pad_left;
        const bool row_inside = d.dilation_w == 1 && iw0 >= 0 && iw0 + d.KW <= d.W;
        for (int64_t kh = 0; kh < d.KH; ++kh) {
            const int64_t ih = oh * d.stride_h - d.pad_top + kh * d.dilation_h;
            uint8_t* out = dst + kh * d.KW * C;
            if (ih < 0 || ih >= d.H) {
                fill_bytes(out, zero_point, d.KW * C);
                continue;
            }
            const uint8_t* row = xn + ih * d.W * C;
            if (row_inside) {  // the whole kernel row inside the input: one contiguous span
                copy_bytes(out, row + iw0 * C, d.KW * C);
                continue;
            }
            for (int64_t kw = 0; kw < d.KW; ++kw) {
                const int64_t iw = iw0 + kw * d.dilation_w;
                if (iw < 0 || iw >= d.W)
                    fill_bytes(out + kw * C, zero_point, C);
                else
                    copy_bytes(out + kw * C, row + iw * C, C);
            }
        }
        // The next output pixel.
        if (++ow == d.OW) {
            ow = 0;
            if (++oh == d.OH) {
                oh = 0;
                ++n;
            }
        }
    }
}

// The chunk loop of both kernels: finish(m0, rows, acc) gets each chunk's raw sums.
template <class Finish>
void conv2d_int8_chunks(const uint8_t* xq, const uint32_t* w_packed, int32_t zero_point,
                        const Conv2dDims& d, const Finish& finish) {
    const int64_t M = d.N * d.OH * d.OW, Kc = d.KH * d.KW * d.C;
    const bool in_place = input_is_columns(d);
    int8_product_chunks(
        M, d.K, Kc, !in_place, w_packed,
        [&](int64_t m0, int64_t rows, uint8_t* cols) -> const uint8_t* {
            if (in_place) return xq + m0 * Kc;
            im2col_u8(cols, xq, m0, rows, static_cast<uint8_t>(zero_point), d);
            return cols;
        },
        finish);
}

}  // namespace

void conv2d_forward_int8(float* y, const uint8_t* xq, const uint32_t* w_packed,
                         const Int8Epilogue& e, const Conv2dDims& d) {
    check_dims(d, "conv2d_forward_int8");
    conv2d_int8_chunks(xq, w_packed, e.x_zero_point, d,
                       [&](int64_t m0, int64_t rows, const int32_t* acc) {
                           int8_requantize(y + m0 * d.K, acc, rows, d.K, e);
                       });
}

void conv2d_sums_int8(int32_t* s, const uint8_t* xq, const uint32_t* w_packed,
                      const int32_t* w_sums, int32_t x_zero_point, const Conv2dDims& d) {
    check_dims(d, "conv2d_sums_int8");
    conv2d_int8_chunks(xq, w_packed, x_zero_point, d,
                       [&](int64_t m0, int64_t rows, const int32_t* acc) {
                           for (int64_t r = 0; r < rows; ++r)
                               for (int64_t k = 0; k < d.K; ++k)
                                   s[(m0 + r) * d.K + k] =
                                       acc[r * d.K + k] - x_zero_point * w_sums[k];
                       });
}

void conv2d_sums_int8_naive(int32_t* s, const uint8_t* xq, const int8_t* w,
                            int32_t x_zero_point, const Conv2dDims& d) {
    check_dims(d, "conv2d_sums_int8_naive");
    for (int64_t n = 0; n < d.N; ++n)
        for (int64_t oh = 0; oh < d.OH; ++oh)
            for (int64_t ow = 0; ow < d.OW; ++ow)
                for (int64_t k = 0; k < d.K; ++k) {
                    int64_t sum = 0;  // taps outside the input read the zero point: add 0
                    for (int64_t kh = 0; kh < d.KH; ++kh) {
                        const int64_t ih = oh * d.stride_h - d.pad_top + kh * d.dilation_h;
                        if (ih < 0 || ih >= d.H) continue;
                        for (int64_t kw = 0; kw < d.KW; ++kw) {
                            const int64_t iw = ow * d.stride_w - d.pad_left + kw * d.dilation_w;
                            if (iw < 0 || iw >= d.W) continue;
                            const uint8_t* xp = xq + ((n * d.H + ih) * d.W + iw) * d.C;
                            const int8_t* wp = w + (kh * d.KW + kw) * d.C * d.K + k;
                            for (int64_t c = 0; c < d.C; ++c)
                                sum += (static_cast<int64_t>(xp[c]) - x_zero_point) * wp[c * d.K];
                        }
                    }
                    s[((n * d.OH + oh) * d.OW + ow) * d.K + k] = static_cast<int32_t>(sum);
                }
}

void conv2d_forward_int8_naive(float* y, const uint8_t* xq, const int8_t* w,
                               const Int8Epilogue& e, const Conv2dDims& d) {
    const int64_t M = d.N * d.OH * d.OW;
    std::vector<int32_t> s(static_cast<size_t>(M * d.K));
    conv2d_sums_int8_naive(s.data(), xq, w, e.x_zero_point, d);
    // The sums already have the zero point taken out.
    Int8Epilogue exact = e;
    exact.w_sums = nullptr;
    int8_requantize(y, s.data(), M, d.K, exact);
}

}  // namespace cnnfast
