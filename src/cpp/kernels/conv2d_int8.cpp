// The int8 convolution (quantized.h): im2col into uint8 columns laid out for the int8 GEMM's
// micro-kernel, the micro-kernel against the packed (KH*KW*C, K) kernel, and the float epilogue
// on each tile, one L2-sized chunk of output pixels per task (int8_chunks.h). 1x1 stride-1
// unpadded kernels copy the quantized input's rows as the columns.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "conv2d_int8_narrow.h"
#include "elementwise_simd.h"
#include "gemm_u8s8.h"
#include "int8_chunks.h"
#include "quantized.h"
#include "quantized_simd.h"

namespace cnnfast {

namespace {

void check_dims(const Conv2dDims& d, const char* what) {
    if (d.groups != 1)
        throw std::invalid_argument(std::string(what) + ": groups = " +
                                    std::to_string(d.groups) + "; the int8 convolution takes one");
}

// Whether each output pixel's receptive field is a contiguous row of the input, in order: 1x1
// stride-1 unpadded kernels, and kernels covering the whole unpadded input (one output pixel:
// LeNet-5's C5, a dense layer on the image).
bool input_is_columns(const Conv2dDims& d) {
    const bool unpadded = d.pad_top == 0 && d.pad_left == 0;
    const bool pointwise = d.KH == 1 && d.KW == 1 && d.stride_h == 1 && d.stride_w == 1 &&
                           unpadded && d.OH == d.H && d.OW == d.W;
    const bool whole = d.KH == d.H && d.KW == d.W && unpadded && d.OH == 1 && d.OW == 1 &&
                       d.dilation_h == 1 && d.dilation_w == 1;
    return pointwise || whole;
}

// Bytes of slack after the padded input and after the columns: the copies below move whole
// 16-byte pieces, reading and writing up to 15 bytes past a span.
constexpr int64_t kSlack = 64;

// Moves n bytes in 16-byte pieces: dst and src must have 15 bytes of room past n (the bytes
// written past n are rewritten later or are slack).
inline void copy_pieces(uint8_t* dst, const uint8_t* src, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) std::memcpy(dst + i, src + i, 16);
}

// xp (N, Hp, Wp, C): xq surrounded by d's padding, filled with zero_point (the quantized 0.0),
// so that every tap of every output pixel lies inside xp.
void pad_input(uint8_t* xp, int64_t Hp, int64_t Wp, const uint8_t* xq, uint8_t zero_point,
               const Conv2dDims& d) {
    const int64_t C = d.C;
    const int64_t rows = std::min(d.H, Hp - d.pad_top), cols = std::min(d.W, Wp - d.pad_left);
    // A thread per 16 KiB of output: the copy is short rows (LeNet-5's C1: 28 bytes of 32),
    // and on one thread it held back a two-thread int8 LeNet-5 (C1 0.41 ms against 0.29-0.32 ms
    // at 256 KiB a thread; dev/int8_step_times.py lenet5 --threads 2).
    const int T = threads_for(d.N * Hp * Wp * C / (int64_t(1) << 14) + 1);
    parallel_for(T, d.N, [&](int64_t n) {
        uint8_t* out = xp + n * Hp * Wp * C;
        const uint8_t* in = xq + n * d.H * d.W * C;
        std::memset(out, zero_point, static_cast<size_t>(d.pad_top * Wp * C));
        for (int64_t h = 0; h < rows; ++h) {
            uint8_t* row = out + (d.pad_top + h) * Wp * C;
            std::memset(row, zero_point, static_cast<size_t>(d.pad_left * C));
            std::memcpy(row + d.pad_left * C, in + h * d.W * C, static_cast<size_t>(cols * C));
            std::memset(row + (d.pad_left + cols) * C, zero_point,
                        static_cast<size_t>((Wp - d.pad_left - cols) * C));
        }
        std::memset(out + (d.pad_top + rows) * Wp * C, zero_point,
                    static_cast<size_t>((Hp - d.pad_top - rows) * Wp * C));
    });
}

// Where one output pixel's receptive field lies in the padded input xp (N,Hp,Wp,C): KH spans of
// KW*C bytes, row_step apart (KW spans of C bytes, tap_step apart, when dilated).
struct ColumnGeometry {
    int64_t C, KH, KW, span, row_step, tap_step, pixel_step;  // pixel_step: one output column
    bool dense_row;

    ColumnGeometry(const Conv2dDims& d, int64_t Wp)
        : C(d.C), KH(d.KH), KW(d.KW), span(d.KW * d.C), row_step(d.dilation_h * Wp * d.C),
          tap_step(d.dilation_w * d.C), pixel_step(d.stride_w * d.C),
          dense_row(d.dilation_w == 1) {}

    // The pixel's columns from src (its first tap) into dst, then zeros up to the next quad
    // (the packed kernel is zero there too, so any bytes would do, but defined ones keep the
    // sums defined). Writes up to 15 bytes past the columns.
    void copy(uint8_t* dst, const uint8_t* src) const {
        for (int64_t kh = 0; kh < KH; ++kh, src += row_step, dst += span) {
            if (dense_row) {
                copy_pieces(dst, src, span);
            } else {
                for (int64_t kw = 0; kw < KW; ++kw)
                    copy_pieces(dst + kw * C, src + kw * tap_step, C);
            }
        }
        std::memset(dst, 0, 4);
    }
};

// cols (rows, KH*KW*C), row stride ld bytes, for output pixels [m0, m0 + rows) (pixel
// m = (n*OH + oh)*OW + ow) of xp (N,Hp,Wp,C), which holds every tap (pad_input).
void im2col_u8(uint8_t* cols, int64_t ld, const uint8_t* xp, int64_t Hp, int64_t Wp,
               int64_t m0, int64_t rows, const Conv2dDims& d) {
    // Dims in locals: the byte stores below may alias anything, so fields read through `d`
    // would be reloaded after every one.
    const ColumnGeometry g(d, Wp);
    const int64_t OH = d.OH, OW = d.OW, sh = d.stride_h, C = d.C;
    int64_t ow = m0 % OW, oh = (m0 / OW) % OH, n = m0 / (OW * OH);
    for (int64_t r = 0; r < rows; ++r) {
        g.copy(cols + r * ld, xp + (n * Hp + oh * sh) * Wp * C + ow * g.pixel_step);
        if (++ow == OW) {  // the next output pixel
            ow = 0;
            if (++oh == OH) {
                oh = 0;
                ++n;
            }
        }
    }
}

// The input padded once (rows and columns a stride never reaches left out), shared by the
// threads, so that every column row is a copy of whole spans: xp (N, Hp, Wp, C).
struct PaddedInput {
    const uint8_t* xp;
    int64_t Hp, Wp;
};

// The AMX form's reads past the padded input (conv2d_int8_narrow.h): 16 pixels of whole
// 64-byte chunks.
int64_t amx_narrow_slack(const Conv2dDims& d) {
    return std::max(kSlack, kNarrowPixels * d.stride_w * d.C + 64 * ((d.KW * d.C + 63) / 64));
}

// In place when xq is laid out as xp already (no padding, no row or column left out) and may be
// read `slack` bytes past its end (x_slack: Int8Epilogue's promise; quantize_u8_padded's
// buffers), else a copy.
PaddedInput padded_input(const uint8_t* xq, int32_t zero_point, const Conv2dDims& d,
                         int64_t x_slack, int64_t slack = kSlack) {
    const int64_t Hp = conv2d_int8_padded_rows(d), Wp = conv2d_int8_padded_cols(d);
    if (d.pad_top == 0 && d.pad_left == 0 && Hp == d.H && Wp == d.W && x_slack >= slack)
        return {xq, Hp, Wp};
    auto* xp = workspace<uint8_t>(Scratch::int8_padded, d.N * Hp * Wp * d.C + slack);
    pad_input(xp, Hp, Wp, xq, static_cast<uint8_t>(zero_point), d);
    return {xp, Hp, Wp};
}

// The narrow-layer sums (conv2d_int8_narrow.h) for layers of at most 16 filters with whole
// kernel rows in the padded input (no dilation across the row), where the int8 GEMM runs its
// AVX512-VNNI kernel or AMX (whose CPUs have VNNI; the portable GEMM stays the reference that
// tests hold them to); else null.
// LeNet-5 on 128 MNIST images, one thread (OMP_PROC_BIND=close PYTHONPATH=.
// python dev/int8_step_times.py lenet5, this build against the GEMM path's, one after the
// other): C1 (1 -> 6 channels, 5x5 "same" on 28x28) 0.59 ms against 0.97, C3 (6 -> 16, 5x5,
// 14x14 -> 10x10) 0.19 against 0.30, each with its input's quantization and the tanh after.
Int8NarrowSumsFn narrow_sums_for(const Conv2dDims& d) {
    static const Int8NarrowSumsFn fn = conv2d_int8_narrow_avx512vnni();
    const U8Gemm* g = gemm_u8s8_table();
    const bool vnni = g == gemm_u8s8_avx512vnni() || g == gemm_u8s8_amx();
    return fn && vnni && d.K <= kNarrowMaxK && d.dilation_w == 1 ? fn : nullptr;
}

// The filters of w_packed (gemm_u8s8_pack_b's panels) laid out for the narrow-layer sums, in the
// calling thread's scratch. Re-laid on each call: at most KH * ceil(KW C / 4) * 16 words (640
// for LeNet-5's C3), against the call's N OH OW of those words' multiply-adds.
const uint32_t* narrow_weights(const uint32_t* w_packed, const Conv2dDims& d) {
    const int64_t span = d.KW * d.C, groups = (span + 3) / 4, kq = (d.KH * span + 3) / 4;
    auto* out = workspace<uint32_t>(Scratch::int8_narrow_weights, d.KH * groups * kNarrowMaxK);
    auto byte = [&](int64_t r, int64_t k) {  // weight r (of KH * span) of filter k
        const uint32_t quad = w_packed[(k / kU8NR) * kq * kU8NR + (r / 4) * kU8NR + k % kU8NR];
        return (quad >> (8 * (r % 4))) & 0xFFu;
    };
    for (int64_t kh = 0; kh < d.KH; ++kh)
        for (int64_t g = 0; g < groups; ++g)
            for (int64_t k = 0; k < kNarrowMaxK; ++k) {
                uint32_t v = 0;
                for (int64_t i = 0; i < 4 && k < d.K && 4 * g + i < span; ++i)
                    v |= byte(kh * span + 4 * g + i, k) << (8 * i);
                out[(kh * groups + g) * kNarrowMaxK + k] = v;
            }
    return out;
}

// narrow_weights (w) in the AMX form's layout (conv2d_int8_narrow.h), in the calling thread's
// scratch: per kernel row, its quads of weights in tiles of 16, zero past the span.
const uint32_t* narrow_amx_weights(const uint32_t* w, const Conv2dDims& d) {
    const int64_t span = d.KW * d.C, groups = (span + 3) / 4, chunks = (span + 63) / 64;
    auto* out = workspace<uint32_t>(Scratch::int8_narrow_amx_weights, d.KH * chunks * 256);
    for (int64_t kh = 0; kh < d.KH; ++kh)
        for (int64_t g = 0; g < chunks * 16; ++g)
            for (int64_t k = 0; k < kNarrowMaxK; ++k)
                out[(kh * chunks * 16 + g) * kNarrowMaxK + k] =
                    g < groups ? w[(kh * groups + g) * kNarrowMaxK + k] : 0u;
    return out;
}

// The tile loop of both kernels: finish(m, rows, n0, cols, tile, ldt) gets each tile's raw sums.
template <class Finish>
void conv2d_int8_tiles(const uint8_t* xq, const uint32_t* w_packed, int32_t zero_point,
                       int64_t x_slack, const Conv2dDims& d, const Finish& finish) {
    const int64_t M = d.N * d.OH * d.OW, Kc = d.KH * d.KW * d.C;
    if (const Int8NarrowSumsFn sums = narrow_sums_for(d)) {
        if (M <= 0) return;
        const PaddedInput p = padded_input(xq, zero_point, d, x_slack);
        const uint32_t* w = narrow_weights(w_packed, d);
        const int64_t C = d.C, row_step = d.dilation_h * p.Wp * C, pixel_step = d.stride_w * C;
        const int64_t segments = (d.OW + kNarrowPixels - 1) / kNarrowPixels;
        const int T = threads_for(std::min(d.N * d.OH, M * d.K * Kc / kMacsPerThread + 1));
        parallel_for(T, d.N * d.OH, [&](int64_t r) {  // one output row each
            int32_t* tile = workspace<int32_t>(Scratch::int8_narrow_sums,
                                               kNarrowPixels * kNarrowMaxK);
            const int64_t n = r / d.OH, oh = r % d.OH;
            const uint8_t* row = p.xp + (n * p.Hp + oh * d.stride_h) * p.Wp * C;
            for (int64_t s = 0; s < segments; ++s) {
                const int64_t ow = s * kNarrowPixels, cols = std::min(kNarrowPixels, d.OW - ow);
                sums(tile, row + ow * pixel_step, cols, pixel_step, row_step, d.KH, d.KW * C, w,
                     d.K);
                finish(r * d.OW + ow, cols, 0, d.K, static_cast<const int32_t*>(tile),
                       kNarrowMaxK);
            }
        });
        return;
    }
    if (input_is_columns(d)) {
        int8_product(
            M, d.K, Kc, w_packed,
            [&](int64_t m0, int64_t rows, uint8_t* a, int64_t lda) {
                int8_copy_rows(a, lda, xq + m0 * Kc, rows, Kc);
            },
            finish);
        return;
    }
    const PaddedInput p = padded_input(xq, zero_point, d, x_slack);
    int8_product(
        M, d.K, Kc, w_packed,
        [&](int64_t m0, int64_t rows, uint8_t* a, int64_t lda) {
            im2col_u8(a, lda, p.xp, p.Hp, p.Wp, m0, rows, d);
        },
        finish, kSlack);
}

// The int8 product of a convolution followed by 2x2 stride-2 pooling ("valid"), its GEMM rows
// window by window: tile b's rows 4i .. 4i + 3 are the pixels (top-left, top-right,
// bottom-left, bottom-right) of pooled pixel b * per_tile + i, its last kU8MR - 4 per_tile rows
// zeros (2 of 14: the micro-kernel's work on them is small beside the epilogues the pooling
// saves). finish: Int8U8PoolTiles.
template <class Finish>
void conv2d_int8_window_tiles(const uint8_t* xq, const uint32_t* w_packed, int32_t zero_point,
                              int64_t x_slack, const Conv2dDims& d, const Finish& finish) {
    constexpr int64_t per_tile = kU8MR / 4;
    const int64_t PH = d.OH / 2, PW = d.OW / 2, windows = d.N * PH * PW;
    const int64_t M = (windows + per_tile - 1) / per_tile * kU8MR;
    const PaddedInput p = padded_input(xq, zero_point, d, x_slack);
    const ColumnGeometry cg(d, p.Wp);
    // In xp: one image, one output row down, one window down and one window right.
    const int64_t image = p.Hp * p.Wp * d.C, out_row = d.stride_h * p.Wp * d.C;
    const int64_t window_row = 2 * out_row, window_col = 2 * cg.pixel_step;
    int8_product(
        M, d.K, d.KH * d.KW * d.C, w_packed,
        [&](int64_t m0, int64_t rows, uint8_t* a, int64_t lda) {
            // Rows in order (a row's spill past its columns lands on the next row); windows
            // stepped along their rows, one division per chunk.
            int64_t w = m0 / kU8MR * per_tile, n = w / (PH * PW), ph = w / PW % PH, pw = w % PW;
            for (int64_t r = 0; r < rows; r += kU8MR) {
                uint8_t* tile = a + r * lda;
                for (int64_t i = 0; i < per_tile; ++i, ++w) {
                    uint8_t* dst = tile + 4 * i * lda;
                    if (w >= windows) {
                        std::memset(dst, 0, static_cast<size_t>(4 * lda));
                        continue;
                    }
                    const uint8_t* src = p.xp + n * image + ph * window_row + pw * window_col;
                    cg.copy(dst, src);
                    cg.copy(dst + lda, src + cg.pixel_step);
                    cg.copy(dst + 2 * lda, src + out_row);
                    cg.copy(dst + 3 * lda, src + out_row + cg.pixel_step);
                    if (++pw == PW) {
                        pw = 0;
                        if (++ph == PH) {
                            ph = 0;
                            ++n;
                        }
                    }
                }
                std::memset(tile + 4 * per_tile * lda, 0,
                            static_cast<size_t>((kU8MR - 4 * per_tile) * lda));
            }
        },
        finish, kSlack);
}

// Where a pooled row's input lies for the narrow layers' pooled routes (Int8NarrowSumsFn's and
// Int8NarrowAvgPoolFn's arguments): one output pixel on, one kernel row down, one output row
// down, in the padded input.
struct NarrowSteps {
    int64_t pixel, row, out_row;
};

// A narrow layer followed by 2x2 stride-2 pooling, one task per pooled row:
// row_fn(r, row, steps) for pooled row r (of N * OH / 2), `row` its top output row's first
// receptive field in the padded input (read in place or copied with `slack` bytes after it).
template <class RowFn>
void narrow_pooled_rows(const uint8_t* xq, int32_t zero_point, int64_t x_slack, int64_t slack,
                        const Conv2dDims& d, const RowFn& row_fn) {
    const int64_t PH = d.OH / 2, C = d.C;
    if (d.N * PH * (d.OW / 2) <= 0) return;
    const PaddedInput p = padded_input(xq, zero_point, d, x_slack, slack);
    const NarrowSteps steps{d.stride_w * C, d.dilation_h * p.Wp * C, d.stride_h * p.Wp * C};
    const int64_t macs = d.N * d.OH * d.OW * d.K * d.KH * d.KW * C;
    const int T = threads_for(std::min(d.N * PH, macs / kMacsPerThread + 1));
    parallel_for(T, d.N * PH, [&](int64_t r) {
        const int64_t n = r / PH, ph = r % PH;
        row_fn(r, p.xp + (n * p.Hp + 2 * ph * d.stride_h) * p.Wp * C, steps);
    });
}

// The float-tile route's pixels per finish (below): whole rows rather than 16 pixels, since a
// finish stores its float tile and loads it back at once, and on small tiles those loads waited
// on the stores (LeNet-5's C1 with its 2x2 average pooling and tanh, 16 pixels a finish: 0.90
// ms against 0.72 + 0.12 unfused; dev/int8_step_times.py lenet5).
constexpr int64_t kNarrowPooledPixels = 64;

}  // namespace

int64_t conv2d_int8_padded_rows(const Conv2dDims& d) {
    return (d.OH - 1) * d.stride_h + (d.KH - 1) * d.dilation_h + 1;
}
int64_t conv2d_int8_padded_cols(const Conv2dDims& d) {
    return (d.OW - 1) * d.stride_w + (d.KW - 1) * d.dilation_w + 1;
}
int64_t conv2d_int8_input_slack(const Conv2dDims& d) { return amx_narrow_slack(d); }

void conv2d_forward_int8(float* y, const uint8_t* xq, const uint32_t* w_packed,
                         const Int8Epilogue& e, const Conv2dDims& d) {
    check_dims(d, "conv2d_forward_int8");
    conv2d_int8_tiles(xq, w_packed, e.x_zero_point, e.x_slack, d, Int8FloatTiles(y, d.K, e));
}

void conv2d_forward_int8_u8(uint8_t* yq, const uint8_t* xq, const uint32_t* w_packed,
                            const Int8Epilogue& e, const Int8Output& out, const Conv2dDims& d) {
    check_dims(d, "conv2d_forward_int8_u8");
    conv2d_int8_tiles(xq, w_packed, e.x_zero_point, e.x_slack, d,
                      Int8U8Tiles(yq, d.K, e, out));
}

void conv2d_forward_int8_u8_maxpool2(uint8_t* yq, const uint8_t* xq, const uint32_t* w_packed,
                                     const Int8Epilogue& e, const Int8Output& out,
                                     const Conv2dDims& d) {
    check_dims(d, "conv2d_forward_int8_u8_maxpool2");
    if (e.act != Activation::linear && e.act != Activation::relu)
        throw std::invalid_argument("conv2d_forward_int8_u8_maxpool2: ReLU or no activation");
    conv2d_int8_window_tiles(xq, w_packed, e.x_zero_point, e.x_slack, d,
                             Int8U8PoolTiles(yq, d.K, e, out, d.N * (d.OH / 2) * (d.OW / 2),
                                             false));
}

void conv2d_forward_int8_u8_avgpool2(uint8_t* yq, const uint8_t* xq, const uint32_t* w_packed,
                                     const Int8Epilogue& e, const Int8Output& out,
                                     const Conv2dDims& d) {
    check_dims(d, "conv2d_forward_int8_u8_avgpool2");
    if (const Int8NarrowSumsFn sums = narrow_sums_for(d)) {
        const Int8U8Tiles u(yq, d.K, e, out);
        // The whole epilogue in registers where the activation's vector code is the one the
        // activation kernels run here (their AVX-512 table).
        static const Int8NarrowAvgPoolFn vnni = conv2d_int8_narrow_avgpool_avx512vnni();
        static const Int8NarrowAvgPoolFn amx = conv2d_int8_narrow_avgpool_amx();
        const bool same_activation = e.act == Activation::linear ||
                                     e.act == Activation::relu ||
                                     std::strcmp(detail::elementwise_simd().name, "avx512") == 0;
        const int64_t pixel_step = d.stride_w * d.C;
        // AMX where the VNNI pixels-in-lanes form is out (it reads each input byte once for
        // all the filters, where AMX's tiles would multiply C1's 6 filters and 5-byte spans
        // padded to 16 and 64).
        const bool on_amx = amx && gemm_u8s8_table() == gemm_u8s8_amx() &&
                            (pixel_step > 4 || d.K > kNarrowLaneMaxK);
        const Int8NarrowAvgPoolFn fused = on_amx ? amx : vnni;
        const int64_t PW = d.OW / 2, KH = d.KH, span = d.KW * d.C, K = d.K;
        const uint32_t* w = narrow_weights(w_packed, d);
        if (fused && int8_narrow_fuses(e.act) && same_activation) {
            const Int8NarrowEpilogue ep{u.f.mult, u.f.shift, e.bias, e.act,
                                        u.inv,    u.lo,      u.hi,   u.zp};
            if (on_amx) w = narrow_amx_weights(w, d);
            return narrow_pooled_rows(
                xq, e.x_zero_point, e.x_slack, on_amx ? amx_narrow_slack(d) : kSlack, d,
                [&](int64_t r, const uint8_t* row, const NarrowSteps& st) {
                    fused(yq + r * PW * K, row, 2 * PW, st.pixel, st.row, st.out_row, KH, span,
                          w, K, ep);
                });
        }
        // Another activation (or another activation table): the sums of up to
        // kNarrowPooledPixels pixels of both rows stored (top row, then bottom row, a pixel a
        // row kNarrowMaxK apart), their float outputs activated in L1, then averaged.
        return narrow_pooled_rows(
            xq, e.x_zero_point, e.x_slack, kSlack, d,
            [&](int64_t r, const uint8_t* row, const NarrowSteps& st) {
                int32_t* top = workspace<int32_t>(Scratch::int8_narrow_sums,
                                                  2 * kNarrowPooledPixels * kNarrowMaxK);
                int32_t* bottom = top + kNarrowPooledPixels * kNarrowMaxK;
                for (int64_t ow0 = 0; ow0 < 2 * PW; ow0 += kNarrowPooledPixels) {
                    const int64_t pixels = std::min(kNarrowPooledPixels, 2 * PW - ow0);
                    for (int64_t j = 0; j < pixels; j += kNarrowPixels) {
                        const int64_t cols = std::min(kNarrowPixels, pixels - j);
                        const uint8_t* src = row + (ow0 + j) * st.pixel;
                        sums(top + j * kNarrowMaxK, src, cols, st.pixel, st.row, KH, span, w, K);
                        sums(bottom + j * kNarrowMaxK, src + st.out_row, cols, st.pixel, st.row,
                             KH, span, w, K);
                    }
                    // Both rows' float outputs back to back (K apart), activated, averaged.
                    float* y = int8_float_tile(2 * pixels * K);
                    u.f.to_float(y, K, pixels, 0, K, top, kNarrowMaxK);
                    u.f.to_float(y + pixels * K, K, pixels, 0, K, bottom, kNarrowMaxK);
                    u.f.t->avgpool2_u8(yq + (r * PW + ow0 / 2) * K, K, y, y + pixels * K, 2 * K,
                                       pixels / 2, K, u.inv, u.lo, u.hi, u.zp);
                }
            });
    }
    conv2d_int8_window_tiles(xq, w_packed, e.x_zero_point, e.x_slack, d,
                             Int8U8PoolTiles(yq, d.K, e, out, d.N * (d.OH / 2) * (d.OW / 2),
                                             true));
}

void conv2d_sums_int8(int32_t* s, const uint8_t* xq, const uint32_t* w_packed,
                      const int32_t* w_sums, int32_t x_zero_point, const Conv2dDims& d) {
    check_dims(d, "conv2d_sums_int8");
    conv2d_int8_tiles(xq, w_packed, x_zero_point, 0, d,
                      Int8SumTiles{s, d.K, w_sums, x_zero_point});
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
