// The int8 dense layer (quantized.h): the quantized rows are the GEMM's A as they are; the int8
// GEMM against the packed (IN, OUT) kernel and the float epilogue run one L2-sized chunk of rows
// at a time (int8_chunks.h).
#include <vector>

#include "int8_chunks.h"
#include "quantized.h"

namespace cnnfast {

namespace {

template <class Finish>
void dense_int8_chunks(const uint8_t* xq, const uint32_t* w_packed, const DenseDims& d,
                       const Finish& finish) {
    int8_product_chunks(
        d.N, d.OUT, d.IN, false, w_packed,
        [&](int64_t m0, int64_t, uint8_t*) -> const uint8_t* { return xq + m0 * d.IN; }, finish);
}

}  // namespace

void dense_forward_int8(float* y, const uint8_t* xq, const uint32_t* w_packed,
                        const Int8Epilogue& e, const DenseDims& d) {
    dense_int8_chunks(xq, w_packed, d, [&](int64_t m0, int64_t rows, const int32_t* acc) {
        int8_requantize(y + m0 * d.OUT, acc, rows, d.OUT, e);
    });
}

void dense_sums_int8(int32_t* s, const uint8_t* xq, const uint32_t* w_packed,
                     const int32_t* w_sums, int32_t x_zero_point, const DenseDims& d) {
    dense_int8_chunks(xq, w_packed, d, [&](int64_t m0, int64_t rows, const int32_t* acc) {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t k = 0; k < d.OUT; ++k)
                s[(m0 + r) * d.OUT + k] = acc[r * d.OUT + k] - x_zero_point * w_sums[k];
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
