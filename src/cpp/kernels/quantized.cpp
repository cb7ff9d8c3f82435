// The element-wise parts of int8 inference (quantized.h): quantizing activations, the weight
// sums of the zero-point correction, and the float epilogue, each a portable loop here or the
// AVX-512 one (quantized_avx512.cpp) chosen at run time. The convolution and dense drivers
// (conv2d_int8.cpp, dense_int8.cpp) share this epilogue and the row-chunk loop of
// int8_chunks.h.
#include "quantized.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu_features.h"
#include "gemm_u8s8.h"
#include "parallel.h"
#include "quantized_simd.h"
#include "workspace.h"

namespace cnnfast {

namespace {

// Values per quantization task: ~10 us of one core on the portable loop.
constexpr int64_t kQuantizeBlock = int64_t(1) << 15;

// Adding and subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer, half
// to even (the default rounding mode), in two vectorisable additions: the same result as
// std::nearbyint, which the baseline ISA (no SSE4.1 roundps) would call out of line.
constexpr float kRoundMagic = 12582912.0f;

void quantize_portable(uint8_t* q, const float* x, int64_t n, float inv, float lo, float hi,
                       float zp) {
    // max(lo, min(t, hi)) sends NaN to lo, as the naive loop does.
    for (int64_t i = 0; i < n; ++i) {
        const float t = std::max(lo, std::min(x[i] * inv, hi));
        const float r = (t + kRoundMagic) - kRoundMagic;
        q[i] = static_cast<uint8_t>(static_cast<int32_t>(r + zp));
    }
}

void quantize_rows_portable(uint8_t* q, int64_t ldq, const float* x, int64_t ldx, int64_t rows,
                            int64_t n, float inv, float lo, float hi, float zp) {
    for (int64_t r = 0; r < rows; ++r)
        quantize_portable(q + r * ldq, x + r * ldx, n, inv, lo, hi, zp);
}

void requantize_portable(float* y, int64_t ldy, const int32_t* acc, int64_t ldacc, int64_t M,
                         int64_t K, const float* mult, const int32_t* shift, const float* bias,
                         bool relu) {
    for (int64_t m = 0; m < M; ++m) {
        const int32_t* a = acc + m * ldacc;
        float* out = y + m * ldy;
        if (bias)
            for (int64_t k = 0; k < K; ++k)
                out[k] = static_cast<float>(a[k] - shift[k]) * mult[k] + bias[k];
        else
            for (int64_t k = 0; k < K; ++k) out[k] = static_cast<float>(a[k] - shift[k]) * mult[k];
        if (relu)
            for (int64_t k = 0; k < K; ++k) out[k] = std::max(out[k], 0.0f);
    }
}

// One value as quantize_portable does it.
inline uint8_t quantize_one(float x, float inv, float lo, float hi, float zp) {
    const float t = std::max(lo, std::min(x * inv, hi));
    const float r = (t + kRoundMagic) - kRoundMagic;
    return static_cast<uint8_t>(static_cast<int32_t>(r + zp));
}

void requantize_u8_portable(uint8_t* q, int64_t ldq, const int32_t* acc, int64_t ldacc,
                            int64_t M, int64_t K, const float* mult, const int32_t* shift,
                            const float* bias, bool relu, float inv, float lo, float hi,
                            float zp) {
    for (int64_t m = 0; m < M; ++m) {
        const int32_t* a = acc + m * ldacc;
        uint8_t* out = q + m * ldq;
        for (int64_t k = 0; k < K; ++k) {
            float y = static_cast<float>(a[k] - shift[k]) * mult[k];
            if (bias) y = y + bias[k];
            if (relu) y = std::max(y, 0.0f);
            out[k] = quantize_one(y, inv, lo, hi, zp);
        }
    }
}

void requantize_u8_pool4_portable(uint8_t* q, int64_t ldq, const int32_t* acc, int64_t ldacc,
                                  int64_t windows, int64_t K, const float* mult,
                                  const int32_t* shift, const float* bias, bool relu, float inv,
                                  float lo, float hi, float zp) {
    int32_t pooled[64];
    for (int64_t i = 0; i < windows; ++i) {
        const int32_t* r = acc + 4 * i * ldacc;
        for (int64_t k0 = 0; k0 < K; k0 += 64) {
            const int64_t n = std::min<int64_t>(64, K - k0);
            for (int64_t k = k0; k < k0 + n; ++k) {
                const int32_t a = r[k], b = r[ldacc + k], c = r[2 * ldacc + k];
                const int32_t d = r[3 * ldacc + k];
                pooled[k - k0] = mult[k] < 0.0f ? std::min(std::min(a, b), std::min(c, d))
                                                : std::max(std::max(a, b), std::max(c, d));
            }
            requantize_u8_portable(q + i * ldq + k0, ldq, pooled, n, 1, n, mult + k0, shift + k0,
                                   bias ? bias + k0 : nullptr, relu, inv, lo, hi, zp);
        }
    }
}

void avgpool2_u8_portable(uint8_t* q, int64_t ldq, const float* top, const float* bottom,
                          int64_t step, int64_t windows, int64_t K, float inv, float lo, float hi,
                          float zp) {
    for (int64_t i = 0; i < windows; ++i) {
        const float* t = top + i * step;
        const float* b = bottom + i * step;
        for (int64_t k = 0; k < K; ++k) {
            const float avg = ((t[k] + b[k]) + (t[K + k] + b[K + k])) * 0.25f;
            q[i * ldq + k] = quantize_one(avg, inv, lo, hi, zp);
        }
    }
}

const Int8Elementwise kPortable{"baseline",
                                quantize_portable,
                                quantize_rows_portable,
                                requantize_portable,
                                requantize_u8_portable,
                                requantize_u8_pool4_portable,
                                avgpool2_u8_portable};

SimdTables<Int8Elementwise>& tables() {
    static SimdTables<Int8Elementwise> t(&kPortable, nullptr, int8_elementwise_avx512());
    return t;
}

}  // namespace

const char* int8_elementwise_path() { return tables().current()->path; }
bool set_int8_elementwise_path(const char* name) { return tables().select(name); }

Int8PackedKernel::Int8PackedKernel(const int8_t* w, int64_t rows, int64_t K)
    : sums_(static_cast<size_t>(K)) {
    // 15 spare values: room to start the packed panels on a 64-byte boundary.
    storage_.resize(static_cast<size_t>(gemm_u8s8_packed_b_size(rows, K)) + 15);
    offset_ = (64 - reinterpret_cast<uintptr_t>(storage_.data()) % 64) % 64 / sizeof(uint32_t);
    gemm_u8s8_pack_b(storage_.data() + offset_, rows, K, w, K);
    int8_weight_sums(sums_.data(), w, rows, K);
}

void quantize_u8(uint8_t* q, const float* x, int64_t n, float scale, int32_t zero_point) {
    const float inv = 1.0f / scale;
    const float lo = static_cast<float>(-zero_point), hi = static_cast<float>(255 - zero_point);
    const float zp = static_cast<float>(zero_point);
    const Int8Elementwise* t = tables().current();
    const int64_t blocks = (n + kQuantizeBlock - 1) / kQuantizeBlock;
    parallel_for(threads_for(blocks), blocks, [&](int64_t b) {
        const int64_t i = b * kQuantizeBlock;
        t->quantize(q + i, x + i, std::min(n - i, kQuantizeBlock), inv, lo, hi, zp);
    });
}

void quantize_u8_padded(uint8_t* xp, const float* x, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t pad_top, int64_t pad_left, int64_t Hp, int64_t Wp, float scale,
                        int32_t zero_point) {
    const float inv = 1.0f / scale;
    const float lo = static_cast<float>(-zero_point), hi = static_cast<float>(255 - zero_point);
    const float zp = static_cast<float>(zero_point);
    const Int8Elementwise* t = tables().current();
    const int64_t rows = std::min(H, Hp - pad_top), cols = std::min(W, Wp - pad_left);
    const auto fill = static_cast<uint8_t>(zero_point);
    const int T = threads_for(N * Hp * Wp * C / kQuantizeBlock + 1);
    // Per image: the padding (one fill of the whole image), then its rows in one call (short
    // rows, LeNet-5's 28 values, one call each cost more than their quantization).
    parallel_for(T, N, [&](int64_t n) {
        uint8_t* out = xp + n * Hp * Wp * C;
        std::memset(out, fill, static_cast<size_t>(Hp * Wp * C));
        t->quantize_rows(out + (pad_top * Wp + pad_left) * C, Wp * C, x + n * H * W * C, W * C,
                         rows, cols * C, inv, lo, hi, zp);
    });
}

void quantize_u8_naive(uint8_t* q, const float* x, int64_t n, float scale, int32_t zero_point) {
    const float inv = 1.0f / scale;
    const float lo = static_cast<float>(-zero_point), hi = static_cast<float>(255 - zero_point);
    for (int64_t i = 0; i < n; ++i) {
        const float t = std::max(lo, std::min(x[i] * inv, hi));
        q[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(t)) + zero_point);
    }
}

void int8_weight_sums(int32_t* sums, const int8_t* w, int64_t rows, int64_t K) {
    std::fill(sums, sums + K, 0);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < K; ++k) sums[k] += w[r * K + k];
}

float* int8_epilogue_factors(int64_t K, const Int8Epilogue& e) {
    float* mult = workspace<float>(Scratch::int8_epilogue, 2 * K);
    int32_t* shift = reinterpret_cast<int32_t*>(mult + K);
    for (int64_t k = 0; k < K; ++k) {
        mult[k] = e.x_scale * e.w_scale[k];
        shift[k] = e.w_sums ? e.x_zero_point * e.w_sums[k] : 0;
    }
    return mult;
}

const Int8Elementwise* int8_elementwise() { return tables().current(); }

void int8_requantize(float* y, const int32_t* acc, int64_t M, int64_t K, const Int8Epilogue& e) {
    Int8FloatTiles(y, K, e).to_float(y, K, M, 0, K, acc, K);
}

}  // namespace cnnfast
