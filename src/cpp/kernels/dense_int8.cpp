// The int8 dense layer (quantized.h): the quantized rows copied into the int8 GEMM micro-kernel's
// layout, the micro-kernel against the packed (IN, OUT) kernel and the float epilogue on each
// tile, one L2-sized chunk of rows per task (int8_chunks.h).
#include <vector>

#include "int8_chunks.h"
#include "quantized.h"
#include "quantized_simd.h"

namespace cnnfast {

namespace {

template <class Finish>
void dense_int8_tiles(const uint8_t* xq, const uint32_t* w_packed, const DenseDims& d,
                      const Finish& finish) {
    int8_product(
        d.N, d.OUT, d.IN, w_packed,
        [&](int64_t m0, int64_t rows, uint8_t* a, int64_t lda) {
            int8_copy_rows(a, lda, xq + m0 * d.IN, rows, d.IN);
        },
        finish);
}

}  // namespace

void dense_forward_int8(float* y, const uint8_t* xq, const uint32_t* w_packed,
                        const Int8Epilogue& e, const DenseDims& d) {
    const float* mult = int8_epilogue_factors(d.OUT, e);
    const auto* shift = reinterpret_cast<const int32_t*>(mult + d.OUT);
    const Int8Elementwise* t = int8_elementwise();
    dense_int8_tiles(xq, w_packed, d,
                     [&](int64_t m, int64_t rows, int64_t n0, int64_t cols, const int32_t* tile,
                         int64_t ldt) {
                         t->requantize(y + m * d.OUT + n0, d.OUT, tile, ldt, rows, cols, mult + n0,
                                       shift + n0, e.bias ? e.bias + n0 : nullptr, e.relu);
                     });
}

void dense_forward_int8_u8(uint8_t* yq, const uint8_t* xq, const uint32_t* w_packed,
                           const Int8Epilogue& e, const Int8Output& out, const DenseDims& d) {
    const float* mult = int8_epilogue_factors(d.OUT, e);
    const auto* shift = reinterpret_cast<const int32_t*>(mult + d.OUT);
    const Int8Elementwise* t = int8_elementwise();
    const float inv = 1.0f / out.scale, lo = static_cast<float>(-out.zero_point);
    const float hi = static_cast<float>(255 - out.zero_point);
    const float zp = static_cast<float>(out.zero_point);
    dense_int8_tiles(xq, w_packed, d,
                     [&](int64_t m, int64_t rows, int64_t n0, int64_t cols, const int32_t* tile,
                         int64_t ldt) {
                         t->requantize_u8(yq + m * d.OUT + n0, d.OUT, tile, ldt, rows, cols,
                                          mult + n0, shift + n0,
                                          e.bias ? e.bias + n0 : nullptr, e.relu, inv, lo, hi,
                                          zp);
                     });
}

void dense_sums_int8(int32_t* s, const uint8_t* xq, const uint32_t* w_packed,
                     const int32_t* w_sums, int32_t x_zero_point, const DenseDims& d) {
    dense_int8_tiles(xq, w_packed, d,
                     [&](int64_t m, int64_t rows, int64_t n0, int64_t cols, const int32_t* tile,
                         int64_t ldt) {
                         for (int64_t r = 0; r < rows; ++r)
                             for (int64_t k = 0; k < cols; ++k)
                                 s[(m + r) * d.OUT + n0 + k] =
                                     tile[r * ldt + k] - x_zero_point * w_sums[n0 + k];
                     });
}

void dense_sums_int8_naive(int32_t* s, const uint8_t* xq, const int8_t* w, int32_t x_zero_point,
                           const DenseDims& d) {
    for (int64_t m = 0; m < d.N; ++m)
        for (int64_t k = 0; k < d.OUT; ++k) {
            int64_t sum = 0;
            for (int64_t i = 0; i < d.IN; ++i)
                sum += (static_cast<int64_t>(xq[m * d.IN + i]) - x_zero_point) * w[i * d.OUT + k];
            s[m * d.OUT + k] = static_cast<int32_t>(sum);
        }
}

void dense_forward_int8_naive(float* y, const uint8_t* xq, const int8_t* w,
                              const Int8Epilogue& e, const DenseDims& d) {
    std::vector<int32_t> s(static_cast<size_t>(d.N * d.OUT));
    dense_sums_int8_naive(s.data(), xq, w, e.x_zero_point, d);
    Int8Epilogue exact = e;  // the sums already have the zero point taken out
    exact.w_sums = nullptr;
    int8_requantize(y, s.data(), d.N, d.OUT, exact);
}

}  // namespace cnnfast
