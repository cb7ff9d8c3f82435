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
    dense_int8_tiles(xq, w_packed, d, Int8FloatTiles(y, d.OUT, e));
}

void dense_forward_int8_u8(uint8_t* yq, const uint8_t* xq, const uint32_t* w_packed,
                           const Int8Epilogue& e, const Int8Output& out, const DenseDims& d) {
    dense_int8_tiles(xq, w_packed, d, Int8U8Tiles(yq, d.OUT, e, out));
}

void dense_sums_int8(int32_t* s, const uint8_t* xq, const uint32_t* w_packed,
                     const int32_t* w_sums, int32_t x_zero_point, const DenseDims& d) {
    dense_int8_tiles(xq, w_packed, d, Int8SumTiles{s, d.OUT, w_sums, x_zero_point});
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
