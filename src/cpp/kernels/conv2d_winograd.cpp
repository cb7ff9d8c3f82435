// Winograd F(2x2, 3x3) convolution: the drivers (contracts and the algebra in conv2d_winograd.h;
// the transforms, on AVX-512, in conv2d_winograd_avx512.cpp).
//
// Work is split into blocks of tiles. A thread transforms one block's input patches into
// V (16, tiles, C), runs the 16 position GEMMs into M (16, tiles, K) and transforms M back into
// the output, while V and M stay in its L2 cache. Wide layers' forward passes (and backward-data
// as one) go position by position instead (forward_position_major).
#include "conv2d_winograd.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "cpu_features.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {
namespace {

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// V and M of one block together fill about this many floats (1 MiB), half a core's L2 here.
constexpr int64_t kBlockFloats = int64_t(1) << 18;

// Blocks of `tiles` tiles on T threads; the block count is a multiple of T so that the static
// schedule balances.
struct BlockPlan {
    int T;
    int64_t tiles, blocks;
};

BlockPlan block_plan(const TileGrid& g, int64_t C, int64_t Kp, int64_t positions = 16) {
    // Multiples of 24 tiles fill the micro-kernels' 6-, 8- and 12-row register tiles.
    const int64_t most = std::max<int64_t>(24, kBlockFloats / (positions * (C + Kp)) / 24 * 24);
    const int64_t macs = g.total * positions * C * Kp;
    int64_t blocks = (g.total + most - 1) / most;
    const int T = static_cast<int>(std::min<int64_t>(threads_for(macs / kMacsPerThread), blocks));
    blocks = round_up(blocks, T);
    const int64_t tiles = round_up((g.total + blocks - 1) / blocks, 12);
    return {T, tiles, (g.total + tiles - 1) / tiles};
}

// The transformed kernel of one call: U (16, Cin, ldu) in float32, its positions us floats
// apart, or, in mixed-precision training (gemm_bf16.h), U's positions as the bfloat16 GEMM's
// packed B (Cin x Cout each), pos_size uint32 apart, written by the transform itself.
struct TransformedKernel {
    const float* U = nullptr;
    int64_t us = 0;
    const uint32_t* packed = nullptr;
    int64_t pos_size = 0;

    const float* position(int64_t pos) const { return U ? U + pos * us : nullptr; }
    const uint32_t* packed_position(int64_t pos) const {
        return packed ? packed + pos * pos_size : nullptr;
    }
};

// Mixed-precision training's input transform: with the kernel packed for bfloat16 and an even
// channel count, the input transform writes bfloat16 pairs of channels, which the GEMM reads in
// place (no float32 V, no packing of its rows).
bool bf16_inputs(const TransformedKernel& U, int64_t C) { return U.packed && C % 2 == 0; }

// A block's transformed tiles, the left operand of the position products: float32 rows, or
// bfloat16 pairs of channels that the bfloat16 GEMM reads in place (bf16_inputs). Position pos
// starts ldpos values in, each tile ld values after the one before.
struct TileRows {
    float* f = nullptr;
    uint16_t* b = nullptr;
    int64_t ldpos = 0, ld = 0;
};

// Rows in the float32 scratch V (bfloat16 ones take half its room).
TileRows tile_rows(float* V, bool bf16, int64_t ldpos, int64_t ld) {
    if (bf16) return {nullptr, reinterpret_cast<uint16_t*>(V), ldpos, ld};
    return {V, nullptr, ldpos, ld};
}

// A tile-block's V in the calling thread's scratch: 16 positions of ldv values, tiles C apart,
// and the slack rows sgemm_bf16_packed_rows may read past the last tile.
TileRows block_rows(int64_t ldv, int64_t C, bool bf16) {
    float* V = workspace(Scratch::winograd_inputs, 16 * ldv + kSgemmBf16RowSlack * C);
    return tile_rows(V, bf16, ldv, C);
}

// The bfloat16 input transform: on AVX512-BF16's rounding where the bfloat16 GEMM runs on
// AVX512-BF16 (sgemm_bf16_native; the same bits as the AVX-512F rounding).
WinogradInputBf16 bf16_input_transform(const WinogradTransforms& tf) {
    static const WinogradInputBf16 native = conv2d_winograd_input_avx512bf16();
    return native && sgemm_bf16_native() ? native : tf.input_bf16;
}

// Rows i .. i + n of V = the input transform of tiles t0 .. t0 + n of x.
void transform_tiles(const WinogradTransforms& tf, const TileRows& V, int64_t i, const float* x,
                     int64_t t0, int64_t n, const Conv2dDims& d, const TileGrid& g) {
    if (V.b)
        bf16_input_transform(tf)(V.b + i * V.ld, V.ldpos, x, t0, n, d, g);
    else
        tf.input(V.f + i * V.ld, V.ldpos, x, t0, n, d, g);
}

// out (nt, cols; row stride ldo) = V[pos] (nt, inner) x U[pos] (inner, cols; row stride ldu):
// one position's GEMM, single-threaded. In mixed-precision training (gemm_bf16.h) on bfloat16
// operands (the rows read in place when V holds bfloat16); else on the direct convolution's
// micro-kernels (a "pixel" per tile; the tile-block schedules), or, with uk null, as a packed
// sgemm (the position-major ones, whose U[pos] blocks stay in L2 while the tiles stream past).
void position_product(const ConvDirectUkernels* uk, float* out, int64_t ldo, const TileRows& V,
                      int64_t pos, int64_t nt, int64_t inner, const TransformedKernel& U,
                      int64_t ldu, int64_t cols) {
    if (V.b)
        return sgemm_bf16_packed_rows(nt, cols, inner,
                                      reinterpret_cast<const uint32_t*>(V.b + pos * V.ldpos),
                                      V.ld / 2, U.packed_position(pos), 0.0f, out, ldo);
    const float* rows = V.f + pos * V.ldpos;
    if (U.packed)
        return sgemm_bf16_packed(nt, cols, inner, rows, V.ld, U.packed_position(pos), 0.0f, out,
                                 ldo);
    if (!uk)
        return sgemm_single_thread(false, false, nt, cols, inner, 1.0f, rows, V.ld,
                                   U.position(pos), ldu, 0.0f, out, ldo);
    const ConvPixels px{const_cast<float*>(rows), 0, V.ld, nt};
    for (int64_t k0 = 0; k0 < cols; k0 += 64)
        uk->forward(out + k0, ldo, px, 0, nt, 1, 0, inner, U.position(pos) + k0, ldu, nullptr,
                    false, std::min<int64_t>(64, cols - k0));
}

// U (16, Cin, ldu), positions winograd_kernel_stride(Cin, ldu) floats apart = G g G^T of every
// pair of channels in float32, on T threads.
void transform_kernel_f32(float* U, const WinogradTransforms& tf, int64_t ldu, const float* w,
                          int64_t Cin, int64_t Cout, bool flipped, int64_t taps, int64_t s_ci,
                          int64_t s_co, int T) {
    if (s_co == 1) {  // rows of w and of U[pos] read and written in order
        // One call per thread's range of input channels (a call per channel, 13 arguments
        // each, was a third of this transform's time for the Keras MNIST CNN's 64x64 kernel).
        parallel_for(T, T, [&](int64_t t) {
            const int64_t ci0 = Cin * t / T, ci1 = Cin * (t + 1) / T;
            if (ci0 < ci1)
                tf.kernel(U, ldu, w, Cin, Cout, flipped, taps, s_ci, s_co, ci0, ci1, 0, ldu);
        });
    } else {
        parallel_for(T, ldu / 16, [&](int64_t b) {
            tf.kernel(U, ldu, w, Cin, Cout, flipped, taps, s_ci, s_co, 0, Cin, 16 * b, 16 * b + 16);
        });
    }
}

// G g G^T of every pair of input and output channels (U's rows ldu >= Cout floats wide, a
// multiple of 16), split over threads by input channel, or by 16 output channels when those are
// s_co floats apart (gathered: then each block's cache lines serve 16 consecutive input
// channels). Packed for bfloat16, the transform writes the GEMM's operand directly, instead of
// a float32 U (16 MiB for VGG16-CIFAR's 512 -> 512 kernels) packed afterwards: with that, the
// transform took 6.9% of VGG16-CIFAR's bfloat16 step and all packing 6.8%, now 5.1% and 3.8%
// (perf on dev/profile_step.py, one thread).
TransformedKernel transform_kernel(const WinogradTransforms& tf, int64_t ldu, const float* w,
                                   int64_t Cin, int64_t Cout, bool flipped, int64_t taps,
                                   int64_t s_ci, int64_t s_co) {
    // A thread per 2048 kernel pairs (about 2 us of transforms): the Keras MNIST CNN's 64x64
    // kernel, transformed on every batch-1 call, took a tenth of its time on one thread.
    const int T = threads_for(Cin * ldu / 2048);
    TransformedKernel k;
    if (bf16_products()) {
        k.pos_size = sgemm_bf16_packed_b_size(Cout, Cin);
        uint32_t* P = workspace<uint32_t>(Scratch::winograd_weights_bf16, 16 * k.pos_size);
        k.packed = P;
        const int64_t pairs = (Cin + 1) / 2;
        if (s_co == 1) {
            parallel_for(T, T, [&](int64_t t) {  // whole pairs of input channels per thread
                const int64_t ci0 = 2 * (pairs * t / T);
                const int64_t ci1 = std::min(Cin, 2 * (pairs * (t + 1) / T));
                if (ci0 < ci1)
                    tf.kernel_bf16(P, k.pos_size, w, Cin, Cout, flipped, taps, s_ci, s_co, ci0,
                                   ci1, 0, ldu);
            });
        } else {
            parallel_for(T, ldu / 16, [&](int64_t b) {
                tf.kernel_bf16(P, k.pos_size, w, Cin, Cout, flipped, taps, s_ci, s_co, 0, Cin,
                               16 * b, 16 * b + 16);
            });
        }
        return k;
    }
    k.us = winograd_kernel_stride(Cin, ldu);
    float* U = workspace(Scratch::winograd_weights, 16 * k.us);
    k.U = U;
    transform_kernel_f32(U, tf, ldu, w, Cin, Cout, flipped, taps, s_ci, s_co, T);
    return k;
}

// Wide layers: U (16 C Kp floats) above this many floats (1 MiB, 128 -> 128 channels) no longer
// stays in a core's L2 beside a block's V and M, and the tile-block schedule below would read it
// again for every block of tiles: for 512 -> 512 channels that is 16 MiB per 24 tiles.
constexpr int64_t kWideKernelFloats = int64_t(1) << 18;
bool is_wide(int64_t C, int64_t Kp) { return 16 * C * Kp > kWideKernelFloats; }
// V and M of one pass of the position-major schedule together hold at most this many floats.
constexpr int64_t kPassFloats = int64_t(1) << 22;

// Runs of tiles for the position-major schedules below: f(t0, nt, V, M) for tiles t0 .. t0+nt,
// with the calling thread's V (16, nt, C) and M (16, nt, Kp) scratch holding together at most
// kPassFloats.
template <class F>
void for_each_pass(const TileGrid& g, int64_t C, int64_t Kp, const F& f) {
    const int64_t per_pass = std::max<int64_t>(12, kPassFloats / (16 * (C + Kp)) / 12 * 12);
    for (int64_t t0 = 0; t0 < g.total; t0 += per_pass) {
        const int64_t nt = std::min(per_pass, g.total - t0);
        f(t0, nt, workspace(Scratch::winograd_inputs, 16 * nt * C),
          workspace(Scratch::winograd_products, 16 * nt * Kp));
    }
}
// The threads each pass runs on.
int pass_threads(const TileGrid& g, int64_t C, int64_t Kp) {
    return threads_for(g.total * 16 * C * Kp / kMacsPerThread);
}

// The forward pass of a wide layer, position by position: each pass transforms a run of tiles
// into V, then runs each position's GEMM over all of them (the threads take whole positions, as
// packed single-thread sgemm calls whose blocks of U[pos] stay in L2 while every tile streams
// past), then transforms M back. Each product is one call whatever the thread count.
void forward_position_major(float* y, const float* x, const TransformedKernel& U, int64_t Kp,
                            const float* bias, const Conv2dDims& d, bool relu) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    const TileGrid g = winograd_tile_grid(d);
    const int64_t C = d.C;
    const int T = pass_threads(g, C, Kp);
    for_each_pass(g, C, Kp, [&](int64_t t0, int64_t nt, float* Vf, float* M) {
        const int64_t ldm = nt * Kp;
        // (bfloat16 rows take half of Vf, the slack rows included.)
        const TileRows V = tile_rows(Vf, bf16_inputs(U, C), nt * C, C);
#pragma omp parallel num_threads(T)
        {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nt; i += 12)
                transform_tiles(tf, V, i, x, t0 + i, std::min<int64_t>(12, nt - i), d, g);
#pragma omp for schedule(static)
            for (int64_t pos = 0; pos < 16; ++pos)
                position_product(nullptr, M + pos * ldm, Kp, V, pos, nt, C, U, Kp, d.K);
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nt; i += 12)
                tf.output(y, M + i * Kp, ldm, Kp, t0 + i, std::min<int64_t>(12, nt - i),
                                 bias, relu, d, g);
        }
    });
}

// The tile-block schedule of a forward pass with `positions` position products (F(2x2, 3x3)'s
// 16, F(4x4, 3x3)'s 36): each block of plan.tiles tiles is transformed into the calling thread's
// rows (rows(); input(V, i, t0, n): rows i .. i + n from tiles t0 ..), multiplied position by
// position into M (product(V, M[pos], pos, nt)) and transformed back (output(M, t0, n): M's
// tiles from t0, ldm floats between positions, Kp between tiles). One block on more threads (a
// single image: the Keras MNIST CNN's second convolution has 36 tiles of 2x2, 9 of 4x4) would
// leave the others idle: its three phases split instead, tiles for the transforms, positions
// for the products.
template <class Rows, class Input, class Product, class Output>
void forward_in_tile_blocks(const BlockPlan& plan, int T, int64_t total, int64_t positions,
                            int64_t ldm, int64_t Kp, const Rows& rows, const Input& input,
                            const Product& product, const Output& output) {
    if (plan.blocks == 1 && T > 1) {
        const int64_t per = (total + T - 1) / T;
        const auto V = rows();
        float* M = workspace(Scratch::winograd_products, positions * ldm);
        parallel_for(T, T, [&](int64_t t) {
            const int64_t a = t * per, n = std::min(total, a + per) - a;
            if (n > 0) input(V, a, a, n);
        });
        parallel_for(T, positions, [&](int64_t pos) { product(V, M + pos * ldm, pos, total); });
        parallel_for(T, T, [&](int64_t t) {
            const int64_t a = t * per, n = std::min(total, a + per) - a;
            if (n > 0) output(M + a * Kp, a, n);
        });
        return;
    }
    parallel_for(plan.T, plan.blocks, [&](int64_t b) {
        const int64_t t0 = b * plan.tiles, nt = std::min(plan.tiles, total - t0);
        const auto V = rows();
        float* M = workspace(Scratch::winograd_products, positions * ldm);
        input(V, 0, t0, nt);
        for (int64_t pos = 0; pos < positions; ++pos) product(V, M + pos * ldm, pos, nt);
        output(M, t0, nt);
    });
}

// The forward pass with the kernel already transformed: U (16, C, Kp).
void forward_transformed(const ConvDirectUkernels& uk, float* y, const float* x,
                         const TransformedKernel& U, int64_t Kp, const float* bias,
                         const Conv2dDims& d, bool relu) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    if (is_wide(d.C, Kp)) return forward_position_major(y, x, U, Kp, bias, d, relu);
    const TileGrid g = winograd_tile_grid(d);
    const BlockPlan plan = block_plan(g, d.C, Kp);
    const int64_t C = d.C, ldv = plan.tiles * C, ldm = plan.tiles * Kp;
    const bool bf16 = bf16_inputs(U, C);
    forward_in_tile_blocks(
        plan, threads_for(g.total * 16 * C * Kp / kMacsPerThread), g.total, 16, ldm, Kp,
        [&] { return block_rows(ldv, C, bf16); },
        [&](const TileRows& V, int64_t i, int64_t t0, int64_t n) {
            transform_tiles(tf, V, i, x, t0, n, d, g);
        },
        [&](const TileRows& V, float* M, int64_t pos, int64_t nt) {
            position_product(&uk, M, Kp, V, pos, nt, C, U, Kp, d.K);
        },
        [&](const float* M, int64_t t0, int64_t n) {
            tf.output(y, M, ldm, Kp, t0, n, bias, relu, d, g);
        });
}

}  // namespace

const WinogradTransforms* conv2d_winograd_transforms() {
    static SimdTables<WinogradTransforms> tables(nullptr, nullptr, conv2d_winograd_avx512());
    return tables.current();
}

bool winograd_computes(const Conv2dDims& d) {
    return conv2d_winograd_transforms() != nullptr && !conv2d_dilated(d) && d.groups == 1 &&
           d.KH == 3 && d.KW == 3 &&
           d.stride_h == 1 && d.stride_w == 1 && d.pad_top >= 0 && d.pad_top <= 2 &&
           d.pad_left >= 0 && d.pad_left <= 2 && d.N > 0 && d.OH > 0 && d.OW > 0 && d.C > 0 &&
           d.K > 0;
}

void conv2d_forward_winograd(const ConvDirectUkernels& uk, float* y, const float* x,
                             const float* w, const float* bias, const Conv2dDims& d, bool relu) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    const int64_t Kp = round_up(d.K, 16);
    const TransformedKernel U = transform_kernel(tf, Kp, w, d.C, d.K, false, d.C * d.K, d.K, 1);
    forward_transformed(uk, y, x, U, Kp, bias, d, relu);
}

namespace {

// A kept kernel's U as the position products read it.
TransformedKernel kept_transform(const WinogradKernel& U) {
    TransformedKernel k;
    k.U = U.U(), k.us = U.position_stride();
    return k;
}

// F(4x4, 3x3): V rows i .. i + n (positions ldv floats apart) = the input transform of tiles
// t0 .. t0 + n of x (transform_tiles' contract), image by image. The input rows an image's
// tiles read are read in place where they lie inside x and reach the 4 TW + 2 columns the tiles
// span unpadded, else from one zero-padded copy of those rows (winograd_padded_rows: the Keras
// MNIST CNN's 13x13 "valid" map, whose last tiles reach column 14; "same" maps), made once per
// image rather than per tile row (whose 6 rows overlap the next one's by 2).
void transform_tiles_f4(const WinogradTransforms& tf, float* V, int64_t ldv, int64_t i,
                        const float* x, int64_t t0, int64_t n, const Conv2dDims& d,
                        const TileGrid& g) {
    const int64_t C = d.C, Wp = 4 * g.TW + 2;
    for (int64_t t = t0, end = t0 + n; t < end;) {
        const int64_t img = t / g.per_image, first = img * g.per_image;
        const int64_t img_end = std::min(end, first + g.per_image);
        const int64_t tr0 = (t - first) / g.TW, tr1 = (img_end - 1 - first) / g.TW;
        const int64_t ih0 = 4 * tr0 - d.pad_top, rows = 4 * (tr1 - tr0) + 6;
        const bool inside = ih0 >= 0 && ih0 + rows <= d.H && d.pad_left == 0 && Wp <= d.W;
        const float* band = inside ? x + (img * d.H + ih0) * d.W * C
                                   : winograd_padded_rows(x, img, ih0, rows, Wp, d);
        const int64_t row_floats = (inside ? d.W : Wp) * C;
        for (int64_t u = t; u < img_end;) {  // one call per run of tiles in a tile row
            const int64_t tr = (u - first) / g.TW, tc = (u - first) % g.TW;
            const int64_t run = std::min(g.TW - tc, img_end - u);
            tf.input_f4(V + (i + u - t0) * C, ldv,
                        band + 4 * (tr - tr0) * row_floats + 4 * tc * C,
                        row_floats, 4 * C, run, C);
            u += run;
        }
        t = img_end;
    }
}

// The forward pass of F(4x4, 3x3) on a kept kernel, in blocks of tiles as forward_transformed
// runs F(2x2, 3x3)'s (the kernel fits in L2 by construction, conv2d_winograd_kernel_tile, unless
// streamed: forward_kept_streamed).
void forward_f4(const ConvDirectUkernels& uk, float* y, const float* x, const WinogradKernel& U,
                const float* bias, const Conv2dDims& d, bool relu) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    const TileGrid g = winograd_tile_grid(d, 4);
    const int64_t C = d.C, Kp = U.Kp;
    const BlockPlan plan = block_plan(g, C, Kp, 36);
    const int64_t ldv = plan.tiles * C, ldm = plan.tiles * Kp;
    const TransformedKernel k = kept_transform(U);
    // A thread per half kMacsPerThread: at kMacsPerThread the Keras MNIST CNN's batch-1 second
    // convolution (1.3 M multiply-adds) ran on one thread, and `python -m bench beyond` on
    // 6e18841 timed its predict at 32.7 us on two threads against 32.4 on one; on 4a2e09e's
    // results, 30.3 against 32.5.
    forward_in_tile_blocks(
        plan, threads_for(2 * g.total * 36 * C * Kp / kMacsPerThread), g.total, 36, ldm, Kp,
        [&] { return tile_rows(workspace(Scratch::winograd_inputs, 36 * ldv), false, ldv, C); },
        [&](const TileRows& V, int64_t i, int64_t t0, int64_t n) {
            transform_tiles_f4(tf, V.f, ldv, i, x, t0, n, d, g);
        },
        [&](const TileRows& V, float* M, int64_t pos, int64_t nt) {
            position_product(&uk, M, Kp, V, pos, nt, C, k, Kp, d.K);
        },
        [&](const float* M, int64_t t0, int64_t n) {
            tf.output_f4(y, M, ldm, Kp, t0, n, bias, relu, d, g);
        });
}

}  // namespace

const float* winograd_padded_rows(const float* x, int64_t n, int64_t ih0, int64_t rows,
                                  int64_t Wp, const Conv2dDims& d) {
    const int64_t C = d.C;
    float* band = workspace(Scratch::winograd_padded_image, rows * Wp * C);
    const int64_t cols = std::min(d.W, Wp - d.pad_left);  // input columns the tiles reach
    for (int64_t r = 0; r < rows; ++r) {
        float* row = band + r * Wp * C;
        const int64_t ih = ih0 + r;
        if (ih < 0 || ih >= d.H) {
            std::memset(row, 0, sizeof(float) * Wp * C);
            continue;
        }
        std::memset(row, 0, sizeof(float) * d.pad_left * C);
        std::memcpy(row + d.pad_left * C, x + (n * d.H + ih) * d.W * C, sizeof(float) * cols * C);
        std::memset(row + (d.pad_left + cols) * C, 0, sizeof(float) * (Wp - d.pad_left - cols) * C);
    }
    return band;
}

const float* WinogradKernel::U() const {
    const auto at = reinterpret_cast<uintptr_t>(storage.data());
    return storage.data() + (64 - at % 64) % 64 / sizeof(float);
}

bool winograd_kernel_fits_l2(int64_t C, int64_t K) { return !is_wide(C, round_up(K, 16)); }

int64_t WinogradKernel::position_stride() const { return winograd_kernel_stride(C, Kp); }

namespace {

// The tiles a streamed kept kernel serves: at most 16 (a position's accumulators, 16 tiles of
// 256 channels = 16 KB, stay in L1 while the chunk of U being read comes from L2); at least 9,
// since with fewer (a single image's 4x4 and 2x2 maps in F(2x2, 3x3)) the layer's time is the
// read of its weights, which U makes 16/9 longer: those ran slower than the weight-streaming
// forward on VGG16-CIFAR.
constexpr int64_t kStreamedTilesMost = 16, kStreamedTilesFewest = 9;

// Whether a kept kernel of m x m output tiles is streamed on d (winograd_streams_kept_kernel).
bool streams_with(const Conv2dDims& d, int64_t m) {
    const int64_t tiles = winograd_tile_grid(d, m).total;
    return d.N == 1 && tiles >= kStreamedTilesFewest && tiles <= kStreamedTilesMost &&
           (m == 4 ? 36 : 16) * d.C * round_up(d.K, 16) > kWideKernelFloats;
}

}  // namespace

int conv2d_winograd_kernel_tile(const Conv2dDims& d) {
    const WinogradTransforms* tf = conv2d_winograd_transforms();
    if (!tf || !tf->kernel_f4) return 2;
    return 36 * d.C * round_up(d.K, 16) <= kWideKernelFloats || streams_with(d, 4) ? 4 : 2;
}

bool winograd_streams_kept_kernel(const Conv2dDims& d) {
    return winograd_computes(d) && streams_with(d, conv2d_winograd_kernel_tile(d));
}

std::shared_ptr<const WinogradKernel> conv2d_winograd_kernel(const float* w, const Conv2dDims& d) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    auto k = std::make_shared<WinogradKernel>();
    k->C = d.C, k->K = d.K, k->Kp = round_up(d.K, 16);
    k->tile = conv2d_winograd_kernel_tile(d);
    const int64_t positions = k->tile == 4 ? 36 : 16;
    k->storage.resize(positions * k->position_stride() + 64 / sizeof(float));
    float* U = const_cast<float*>(k->U());
    const int T = threads_for(d.C * k->Kp / 2048);
    if (k->tile == 2) {
        transform_kernel_f32(U, tf, k->Kp, w, d.C, d.K, false, d.C * d.K, d.K, 1, T);
        return k;
    }
    parallel_for(T, T, [&](int64_t t) {
        const int64_t ci0 = d.C * t / T, ci1 = d.C * (t + 1) / T;
        if (ci0 < ci1) tf.kernel_f4(U, k->Kp, w, d.C, d.K, ci0, ci1);
    });
    return k;
}

namespace {

// The forward on a kept U read as winograd_streams_kept_kernel says: V of every tile, M = 0,
// every position's product streamed (a position is a tap every tile reads), y.
void forward_kept_streamed(const ConvDirectUkernels& uk, float* y, const float* x,
                           const WinogradKernel& U, const float* bias, const Conv2dDims& d,
                           bool relu) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    const TileGrid g = winograd_tile_grid(d, U.tile);
    const int64_t nt = g.total, C = d.C, Kp = U.Kp, P = U.tile == 4 ? 36 : 16;
    float* V = workspace(Scratch::winograd_inputs, P * nt * C);
    float* M = workspace(Scratch::winograd_products, P * nt * Kp);
    if (U.tile == 4)
        transform_tiles_f4(tf, V, nt * C, 0, x, 0, nt, d, g);
    else
        tf.input(V, nt * C, x, 0, nt, d, g);
    std::memset(M, 0, sizeof(float) * P * nt * Kp);
    int64_t* begin = workspace<int64_t>(Scratch::conv_stream_readers, 2 * P + 1 + 2 * P * nt);
    int64_t *used = begin + P + 1, *m_at = used + P, *v_at = m_at + P * nt;
    for (int64_t pos = 0; pos <= P; ++pos) begin[pos] = pos * nt;
    for (int64_t pos = 0; pos < P; ++pos) used[pos] = pos;
    for (int64_t i = 0; i < P * nt; ++i) m_at[i] = i * Kp, v_at[i] = i * C;
    streamed_products(uk, M, V, U.U(), U.position_stride(), Kp, C, Kp,
                      StreamReaders{begin, m_at, v_at, used, P});
    if (U.tile == 4)
        tf.output_f4(y, M, nt * Kp, Kp, 0, nt, bias, relu, d, g);
    else
        tf.output(y, M, nt * Kp, Kp, 0, nt, bias, relu, d, g);
}

}  // namespace

void conv2d_forward_winograd(const ConvDirectUkernels& uk, float* y, const float* x,
                             const WinogradKernel& U, const float* bias, const Conv2dDims& d,
                             bool relu) {
    if (streams_with(d, U.tile)) return forward_kept_streamed(uk, y, x, U, bias, d, relu);
    if (U.tile == 4) return forward_f4(uk, y, x, U, bias, d, relu);
    forward_transformed(uk, y, x, kept_transform(U), U.Kp, bias, d, relu);
}

// Backward-data over the forward's own tiles: per tile, dV = (A dy A^T) x U^T per position,
// then dx += B dV B^T on the tile's 4x4 input patch. Patches of neighbouring tiles overlap, so a
// block holds whole images (one thread writes each image).
void backward_data_transposed(const ConvDirectUkernels& uk, float* dx, const float* dy,
                              const float* w, const Conv2dDims& d) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    const TileGrid g = winograd_tile_grid(d);
    const int64_t C = d.C, K = d.K, Cp = round_up(C, 16), Kp = round_up(K, 16);
    const TransformedKernel UT =
        transform_kernel(tf, Cp, w, K, C, false, C * K, 1, K);  // UT[pos][k][c]
    const int64_t images = std::max<int64_t>(1, kBlockFloats / (16 * (Cp + Kp)) / g.per_image);
    BlockPlan plan{1, images * g.per_image, (d.N + images - 1) / images};
    plan.T = static_cast<int>(std::min<int64_t>(
        threads_for(g.total * 16 * C * Kp / kMacsPerThread), plan.blocks));
    const int64_t ldd = plan.tiles * Kp, ldv = plan.tiles * Cp;
    parallel_for(plan.T, plan.blocks, [&](int64_t b) {
        const int64_t n0 = b * images, t0 = n0 * g.per_image;
        const int64_t nt = std::min(plan.tiles, g.total - t0);
        std::memset(dx + n0 * d.H * d.W * C, 0, sizeof(float) * (nt / g.per_image) * d.H * d.W * C);
        float* D = workspace(Scratch::winograd_inputs, 16 * ldd);
        float* dV = workspace(Scratch::winograd_products, 16 * ldv);
        tf.gradient(D, ldd, Kp, nullptr, dy, t0, nt, d, g);
        const TileRows rows = tile_rows(D, false, ldd, Kp);
        for (int pos = 0; pos < 16; ++pos)
            position_product(&uk, dV + pos * ldv, Cp, rows, pos, nt, K, UT, Cp, C);
        tf.scatter_input_gradient(dx, dV, ldv, Cp, t0, nt, d, g);
    });
}

// Stride-1 backward-data is also the forward convolution of dy, zero-padded by 2 - pad_top rows
// and 2 - pad_left columns, with wf[i][j][k][c] = w[2-i][2-j][c][k]: a gather, taken unless the
// forward's tiling has fewer tiles ("valid" padding: the flipped convolution's output is larger).
void conv2d_backward_data_winograd(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                   const float* w, const Conv2dDims& d) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    if (winograd_tile_grid(d).per_image < ((d.H + 1) / 2) * ((d.W + 1) / 2))
        return backward_data_transposed(uk, dx, dy, w, d);
    const Conv2dDims f = backward_data_as_forward_dims(d);
    const int64_t Cp = round_up(d.C, 16);
    const TransformedKernel U = transform_kernel(tf, Cp, w, d.K, d.C, true, d.C * d.K, 1, d.K);
    forward_transformed(uk, dx, dy, U, Cp, nullptr, f, false);
}

namespace {

// Backward-weights of a wide layer (see forward_position_major), position by position: the
// threads take whole positions of dU and accumulate each over every tile of every pass, so no
// thread keeps a partial of all of dU (16 C Kp floats; 16 MiB at 512 channels, zeroed and summed
// per thread by the tile-block schedule) and the result does not depend on the thread count.
// db sums dy pixel by pixel, 16 channels per work item.
void backward_weights_position_major(float* dw, float* db, const float* x, const float* dy,
                                     const Conv2dDims& d) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    const TileGrid g = winograd_tile_grid(d);
    const int64_t C = d.C, K = d.K, Kp = round_up(K, 16);
    const int T = pass_threads(g, C, Kp);
    float* dU = workspace(Scratch::conv_shared, 16 * C * Kp);
    for_each_pass(g, C, Kp, [&](int64_t t0, int64_t nt, float* V, float* D) {
        const int64_t ldv = nt * C, ldm = nt * Kp;
#pragma omp parallel num_threads(T)
        {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nt; i += 12) {
                const int64_t n = std::min<int64_t>(12, nt - i);
                tf.input(V + i * C, ldv, x, t0 + i, n, d, g);
                tf.gradient(D + i * Kp, ldm, Kp, nullptr, dy, t0 + i, n, d, g);
            }
#pragma omp for schedule(static)
            for (int64_t pos = 0; pos < 16; ++pos)  // dU[pos] (+)= V[pos]^T D[pos]
                sgemm_single_thread(true, false, C, K, nt, 1.0f, V + pos * ldv, C, D + pos * ldm,
                                    Kp, t0 == 0 ? 0.0f : 1.0f, dU + pos * C * Kp, Kp);
        }
    });
    const int64_t pixels = d.N * d.OH * d.OW;
#pragma omp parallel num_threads(T)
    {
#pragma omp for schedule(static) nowait
        for (int64_t c = 0; c < C; ++c) tf.weight_gradient_row(dw, dU, 0, 1, C, K, Kp, c);
        if (db) {
#pragma omp for schedule(static)
            for (int64_t k = 0; k < K; k += 16) tf.bias_gradient_block(db, dy, pixels, K, k);
        }
    }
}

}  // namespace

void conv2d_backward_weights_winograd(const ConvDirectUkernels& uk, float* dw, float* db,
                                      const float* x, const float* dy, const Conv2dDims& d) {
    const WinogradTransforms& tf = *conv2d_winograd_transforms();
    const int64_t C = d.C, K = d.K, Kp = round_up(K, 16);
    if (is_wide(C, Kp)) return backward_weights_position_major(dw, db, x, dy, d);
    const TileGrid g = winograd_tile_grid(d);
    const BlockPlan plan = block_plan(g, C, Kp);
    const int64_t ldv = plan.tiles * C, ldm = plan.tiles * Kp;
    // Per thread: dU (16, C, Kp) then db (Kp), summed over threads in thread order at the end,
    // so the result depends on the thread count only, not on timing.
    const int64_t UF = 16 * C * Kp, part_floats = UF + Kp;
    float* parts = workspace(Scratch::conv_shared, std::max(plan.T, 1) * part_floats);
    int64_t* off = workspace<int64_t>(Scratch::conv_offsets, C);
    for (int64_t c = 0; c < C; ++c) off[c] = c;
    const bool bf16 = bf16_products();
    auto accumulate = [&](float* part, int64_t b) {
        const int64_t t0 = b * plan.tiles, nt = std::min(plan.tiles, g.total - t0);
        float* V = workspace(Scratch::winograd_inputs, 16 * ldv);
        float* D = workspace(Scratch::winograd_products, 16 * ldm);
        tf.input(V, ldv, x, t0, nt, d, g);
        tf.gradient(D, ldm, Kp, part + UF, dy, t0, nt, d, g);
        for (int pos = 0; pos < 16; ++pos) {
            if (bf16) {  // part[pos] (C, Kp) += V[pos]^T D[pos] on bfloat16 operands
                sgemm_bf16_bias_relu(true, false, C, K, nt, V + pos * ldv, C, D + pos * ldm, Kp,
                                     1.0f, part + pos * C * Kp, Kp, nullptr, false, false);
                continue;
            }
            const ConvPixels px{V + pos * ldv, 0, C, plan.tiles};
            for (int64_t k0 = 0; k0 < K; k0 += 64) {
                const int64_t nc = std::min<int64_t>(64, K - k0), R = conv_bwdw_max_rows(nc);
                for (int64_t c0 = 0; c0 < C; c0 += R)
                    uk.backward_weights(part + pos * C * Kp + c0 * Kp + k0, Kp, px, nt, off + c0,
                                        std::min(R, C - c0), D + pos * ldm + k0, Kp, nc);
            }
        }
    };
    // Items: the C dw rows, then the K db values (each partial's db starts at UF).
    reduce_over_threads(plan.T, plan.blocks, parts, part_floats, accumulate, C + K,
                        [&](int used, int64_t i) {
                            if (i < C)
                                return tf.weight_gradient_row(dw, parts, part_floats, used, C, K,
                                                           Kp, i);
                            write_summed_gradient(nullptr, db, 0, parts + UF, part_floats, 1,
                                                  used, i - C);
                        });
}

}  // namespace cnnfast
