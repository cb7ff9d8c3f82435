// The direct (implicit-GEMM) convolution's drivers: planning, padding and threading around the
// micro-kernels of conv2d_direct_avx512.cpp (contracts in conv2d_direct.h).
//
// No column matrix: the micro-kernels read the input in place (or a zero-padded copy of one band
// of it, which stays in L2) and scatter backward-data products straight into dx.
// Each thread takes whole units - an image or a band of output rows - so no output element is
// written by two threads; dw goes to per-thread partials added at the end. Work below
// kMacsPerThread (parallel.h) runs on the calling thread without entering an OpenMP region.
#include "conv2d_direct.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu_features.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

const int64_t* conv_field_offsets(const Conv2dDims& d, int64_t rs) {
    const int64_t seg = d.KW * d.C, Q = d.KH * seg;
    int64_t* off = workspace<int64_t>(Scratch::conv_offsets, Q);
    for (int64_t q = 0; q < Q; ++q) off[q] = q / seg * rs + q % seg;
    return off;
}

const float* aligned_weight_rows(const float* w, int64_t Q, int64_t K, int64_t* ldw,
                                 Scratch slot) {
    *ldw = (K + 15) / 16 * 16;
    if (reinterpret_cast<uintptr_t>(w) % 64 == 0 && K == *ldw) return w;
    float* copy = workspace(slot, Q * *ldw);
    for (int64_t q = 0; q < Q; ++q) {
        std::memcpy(copy + q * *ldw, w + q * K, sizeof(float) * K);
        std::fill(copy + q * *ldw + K, copy + (q + 1) * *ldw, 0.0f);
    }
    return copy;
}

Conv2dDims backward_data_as_forward_dims(const Conv2dDims& d) {
    Conv2dDims f{};
    f.N = d.N, f.H = d.OH, f.W = d.OW, f.C = d.K;
    f.KH = d.KH, f.KW = d.KW, f.K = d.C;
    f.OH = d.H, f.OW = d.W;
    f.stride_h = f.stride_w = 1;
    f.pad_top = d.KH - 1 - d.pad_top, f.pad_left = d.KW - 1 - d.pad_left;
    f.groups = 1;
    return f;
}

const ConvDirectUkernels* conv2d_direct_ukernels() {
    static SimdTables<ConvDirectUkernels> tables(nullptr, nullptr, conv2d_direct_avx512());
    return tables.current();
}

namespace {

// Where receptive fields are read from (or, for backward-data, accumulated into): the image
// itself (row stride W*C) when every field lies inside it, else a zero-padded copy of a band
// of it, Wp = (OW-1)*stride_w + KW columns wide, whose origin is input (oh0*sh - pt, -pl).
struct DirectGeometry {
    bool padded;
    int64_t Wp, rs;
};

DirectGeometry direct_geometry(const Conv2dDims& d) {
    const bool padded = d.pad_top > 0 || d.pad_left > 0 ||
                        (d.OH - 1) * d.stride_h + d.KH > d.H ||
                        (d.OW - 1) * d.stride_w + d.KW > d.W;
    const int64_t Wp = padded ? (d.OW - 1) * d.stride_w + d.KW : d.W;
    return {padded, Wp, Wp * d.C};
}

// dst[0, n) = src[0, n) for a pixel's few channels: an inline loop, where a memcpy call per
// pixel costs more than the copy.
inline void copy_floats(float* __restrict dst, const float* __restrict src, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) std::memcpy(dst + i, src + i, 64);  // fixed size: inline moves
    for (; i < n; ++i) dst[i] = src[i];
}

// db[k] += dy[p, k] over npix pixels of K channels, each channel's sum in pixel order. A target
// clone, so that it runs at the CPU's vector width (the library builds for the baseline ISA,
// where this loop, with db and dy possibly aliased, ran scalar: 1.75% of a ResNet-20 training
// step at one thread).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void add_pixel_sums(float* __restrict db, const float* __restrict dy, int64_t npix, int64_t K) {
    if (K == 16) {  // in registers: each pixel's add into db in memory waited on the last one's
        float acc[16];
        for (int64_t k = 0; k < 16; ++k) acc[k] = db[k];
        for (int64_t p = 0; p < npix; ++p)
            for (int64_t k = 0; k < 16; ++k) acc[k] += dy[p * 16 + k];
        for (int64_t k = 0; k < 16; ++k) db[k] = acc[k];
        return;
    }
    for (int64_t p = 0; p < npix; ++p)
        for (int64_t k = 0; k < K; ++k) db[k] += dy[p * K + k];
}

// Input rows the output rows of a band of `rows` rows read.
int64_t band_input_rows(const Conv2dDims& d, int64_t rows) { return (rows - 1) * d.stride_h + d.KH; }

// Units of work: N images x `bands` bands of `band_rows` output rows, on T threads.
struct DirectPlan {
    int T;
    int64_t band_rows, bands;
};

// A quarter of kMacsPerThread: a batch-1 convolution of 0.3-0.4M multiply-adds (the Keras
// MNIST CNN's first and last, about 2 us each) gains from a second thread already spinning
// between the calls of one forward pass (that network's batch-1 predict at 2 threads: 40.5 ->
// 38.0 us median).
constexpr int64_t kDirectMacsPerThread = kMacsPerThread / 4;

DirectPlan direct_plan(const Conv2dDims& d, bool whole_images) {
    const int64_t macs = d.N * d.OH * d.OW * d.K * d.KH * d.KW * d.C;
    const int Tmax = threads_for(macs / kDirectMacsPerThread);
    int64_t bands = 1;
    // Too few images to balance the threads: split images into bands of output rows.
    if (!whole_images && Tmax > 1 && d.N < 4 * Tmax)
        bands = std::min<int64_t>(d.OH, (4 * Tmax + d.N - 1) / d.N);
    const int64_t band_rows = (d.OH + bands - 1) / bands;
    bands = (d.OH + band_rows - 1) / band_rows;
    const int T = static_cast<int>(std::min<int64_t>(Tmax, d.N * bands));
    return {T, band_rows, bands};
}

// Whether threads should split a forward convolution by output channels rather than by images
// and bands: on several threads, with the weights larger than the whole batch's input and at
// least two blocks of 64 channels per thread (batch-1 inference of VGG's 4x4 and 2x2 maps,
// whose 4.7-9.4 MB kernels a band split made both threads stream: measured 1.1x from a second
// thread on VGG16-CIFAR batch 1, where weight traffic is nearly all the time).
bool weights_dominate(const Conv2dDims& d, int threads, int64_t k_blocks) {
    const int64_t weights = d.KH * d.KW * d.C * d.K, inputs = d.N * d.H * d.W * d.C;
    return threads > 1 && weights > inputs && k_blocks >= 2 * threads;
}

// The pixels of output rows [oh0, oh0+rows) of image n of x, reading x in place or from a
// zero-padded copy made in this thread's band scratch.
ConvPixels band_pixels(const Conv2dDims& d, const DirectGeometry& g, const float* x, int64_t n,
                       int64_t oh0, int64_t rows) {
    const float* img = x + n * d.H * d.W * d.C;
    if (!g.padded)
        return {const_cast<float*>(img + oh0 * d.stride_h * g.rs), d.stride_h * g.rs,
                d.stride_w * d.C, d.OW};
    const int64_t in_rows = band_input_rows(d, rows);
    float* band = workspace(Scratch::conv_band, in_rows * g.rs);
    const int64_t cols = std::min(d.W, g.Wp - d.pad_left);  // input columns inside the band
    for (int64_t r = 0; r < in_rows; ++r) {
        const int64_t ih = oh0 * d.stride_h - d.pad_top + r;
        float* row = band + r * g.rs;
        if (ih < 0 || ih >= d.H) {
            std::memset(row, 0, sizeof(float) * g.rs);
            continue;
        }
        std::memset(row, 0, sizeof(float) * d.pad_left * d.C);
        std::memcpy(row + d.pad_left * d.C, img + ih * d.W * d.C, sizeof(float) * cols * d.C);
        std::memset(row + (d.pad_left + cols) * d.C, 0,
                    sizeof(float) * (g.Wp - d.pad_left - cols) * d.C);
    }
    return {band, d.stride_h * g.rs, d.stride_w * d.C, d.OW};
}

// Convolutions the single-input-channel kernels (vectorised over output columns) take.
bool single_channel(const ConvDirectUkernels& uk, const Conv2dDims& d) {
    return d.C == 1 && d.K <= kConvC1MaxK && d.stride_h == 1 && d.stride_w == 1 &&
           uk.forward_c1 != nullptr;
}

// x (N,H,W,1); w (KH,KW,1,K); bias (K,) or null; y (N,OH,OW,K) overwritten.
void conv2d_forward_c1(const ConvDirectUkernels& uk, float* y, const float* x, const float* w,
                       const float* bias, const Conv2dDims& d, bool relu,
                       const BandActivation& act = {}) {
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, false);
    parallel_for_dynamic(plan.T, d.N * plan.bands, [&](int64_t u) {
        const int64_t n = u / plan.bands, oh0 = u % plan.bands * plan.band_rows;
        const int64_t rows = std::min(plan.band_rows, d.OH - oh0);
        const ConvPixels px = band_pixels(d, g, x, n, oh0, rows);
        float* yb = y + (n * d.OH + oh0) * d.OW * d.K;
        uk.forward_c1(yb, px, rows, d.KH, d.KW, g.rs, w, bias, relu, d.K);
        act(yb, rows * d.OW * d.K);
    });
}

// x (N,H,W,1); dy (N,OH,OW,K); dw (KH,KW,1,K), db (K,) or null: overwritten. Each thread's
// partial holds 16 lane partials per dw/db value (the micro-kernel's accumulators); they are
// summed lane by lane, then over threads in thread order.
void conv2d_backward_weights_c1(const ConvDirectUkernels& uk, float* dw, float* db,
                                const float* x, const float* dy, const Conv2dDims& d) {
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, false);
    const int64_t DW = d.KH * d.KW * d.K, items = DW + d.K, part_floats = items * 16;
    const int64_t OWp = (d.OW + 15) / 16 * 16;
    float* parts = workspace(Scratch::conv_lane_partials, std::max(plan.T, 1) * part_floats);
    reduce_over_threads(
        plan.T, d.N * plan.bands, parts, part_floats,
        [&](float* accv, int64_t u) {
            const int64_t n = u / plan.bands, oh0 = u % plan.bands * plan.band_rows;
            const int64_t rows = std::min(plan.band_rows, d.OH - oh0);
            const ConvPixels px = band_pixels(d, g, x, n, oh0, rows);
            float* dyt = workspace(Scratch::conv_columns, d.K * rows * OWp);
            uk.backward_weights_c1(accv, px, rows, d.KH, d.KW, g.rs,
                                   dy + (n * d.OH + oh0) * d.OW * d.K, dyt, d.K);
        },
        items,
        [&](int used, int64_t i) {
            write_summed_gradient(dw, db, DW, parts, part_floats, 16, used, i);
        });
}

}  // namespace

// x (N,H,W,C); w (KH,KW,C,K); bias (K,) or null; y (N,OH,OW,K) overwritten.
void conv2d_forward_direct(const ConvDirectUkernels& uk, float* y, const float* x, const float* w,
                           const float* bias, const Conv2dDims& d, bool relu,
                           const BandActivation& act) {
    if (single_channel(uk, d)) return conv2d_forward_c1(uk, y, x, w, bias, d, relu, act);
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, false);
    int64_t ldw;
    const float* wp = aligned_weight_rows(w, d.KH * d.KW * d.C, d.K, &ldw, Scratch::conv_shared);
    const int64_t k_blocks = (d.K + 63) / 64;
    if (weights_dominate(d, plan.T, k_blocks)) {
        // Each thread computes every pixel for its own blocks of 64 output channels, so it
        // reads only its share of the weights (every band would read all of them).
        parallel_for_dynamic(plan.T, d.N * k_blocks, [&](int64_t u) {
            const int64_t n = u / k_blocks, k0 = u % k_blocks * 64;
            const ConvPixels px = band_pixels(d, g, x, n, 0, d.OH);
            uk.forward(y + n * d.OH * d.OW * d.K + k0, d.K, px, 0, d.OH * d.OW, d.KH, g.rs,
                       d.KW * d.C, wp + k0, ldw, bias ? bias + k0 : nullptr, relu,
                       std::min<int64_t>(64, d.K - k0));
        });
        act(y, d.N * d.OH * d.OW * d.K);
        return;
    }
    parallel_for_dynamic(plan.T, d.N * plan.bands, [&](int64_t u) {
        const int64_t n = u / plan.bands, oh0 = u % plan.bands * plan.band_rows;
        const int64_t rows = std::min(plan.band_rows, d.OH - oh0);
        const ConvPixels px = band_pixels(d, g, x, n, oh0, rows);
        float* yb = y + (n * d.OH + oh0) * d.OW * d.K;
        for (int64_t k0 = 0; k0 < d.K; k0 += 64)
            uk.forward(yb + k0, d.K, px, 0, rows * d.OW, d.KH, g.rs, d.KW * d.C, wp + k0, ldw,
                       bias ? bias + k0 : nullptr, relu, std::min<int64_t>(64, d.K - k0));
        act(yb, rows * d.OW * d.K);
    });
}

// x (N,H,W,C); dy (N,OH,OW,K); dw (KH,KW,C,K), db (K,) or null: overwritten.
void conv2d_backward_weights_direct(const ConvDirectUkernels& uk, float* dw, float* db,
                                    const float* x, const float* dy, const Conv2dDims& d) {
    if (single_channel(uk, d)) return conv2d_backward_weights_c1(uk, dw, db, x, dy, d);
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, false);
    const int64_t seg = d.KW * d.C, Q = d.KH * seg, DW = Q * d.K, part_floats = DW + d.K;
    const int64_t ldk = (d.K + 15) / 16 * 16;
    const int64_t* off = conv_field_offsets(d, g.rs);
    float* parts = workspace(Scratch::conv_shared, std::max(plan.T, 1) * part_floats);
    // 8 or 16 output channels over fields whose rows are whole vectors (ResNet's 16 -> 16):
    // the kernel vectorised over the field (ResNet-20's 16-channel backward-weights at one
    // thread, batch 128, `bench.bench_conv_algorithms --only resnet`: 4.7-4.8 -> 3.4-3.5 ms).
    const bool narrow = uk.backward_weights_narrow != nullptr && d.K % 8 == 0 &&
                        d.K <= kConvNarrowK && seg % 16 == 0;
    auto unit = [&](float* part, float* dbp, int64_t u) {
        const int64_t n = u / plan.bands, oh0 = u % plan.bands * plan.band_rows;
        const int64_t rows = std::min(plan.band_rows, d.OH - oh0), npix = rows * d.OW;
        const ConvPixels px = band_pixels(d, g, x, n, oh0, rows);
        const float* dyb = dy + (n * d.OH + oh0) * d.OW * d.K;
        // Blocks of whole output rows whose dy (about 16 KiB) stays in L1 while every dw tile
        // sweeps it. The narrow kernel reads 8 channels of dy per pixel beside 3 vectors of the
        // field, which the L2 streams as well: the whole band, so that its transposed additions
        // into dw (8 x 48 per call) are made once per band (at 8 rows: 13% of its time).
        const int64_t block_rows =
            narrow ? rows : std::max<int64_t>(1, 4096 / std::min<int64_t>(64, d.K) / d.OW);
        for (int64_t r0 = 0; r0 < rows; r0 += block_rows) {
            ConvPixels pb = px;
            pb.base += r0 * px.row_step;
            const int64_t np = (std::min(rows, r0 + block_rows) - r0) * d.OW;
            // The block's dy in rows of whole 64-byte vectors, which every tile reloads: dy
            // itself when K is a multiple of 16 (measured: a memcpy call per pixel, 64 bytes
            // each for ResNet's 16 channels, took 9% of a ResNet-20 training step), else a copy.
            const float* dyp = dyb + r0 * d.OW * d.K;
            if (ldk != d.K) {
                float* padded = workspace(Scratch::conv_columns, np * ldk);
                for (int64_t p = 0; p < np; ++p)
                    copy_floats(padded + p * ldk, dyp + p * d.K, d.K);
                dyp = padded;
            }
            if (narrow) {
                uk.backward_weights_narrow(part, d.K, pb, np, d.KH, g.rs, seg, dyp, ldk);
                continue;
            }
            for (int64_t k0 = 0; k0 < d.K; k0 += 64) {
                const int64_t nc = std::min<int64_t>(64, d.K - k0);
                for_each_dw_tile(d.KH, seg, conv_bwdw_max_rows(nc), [&](int64_t q0, int64_t R) {
                    uk.backward_weights(part + q0 * d.K + k0, d.K, pb, np, off + q0, R, dyp + k0,
                                        ldk, nc);
                });
            }
        }
        // The band's dy is in cache: sum it here rather than in a second pass over dy.
        if (dbp) add_pixel_sums(dbp, dyb, npix, d.K);
    };
    // Static, for run-to-run reproducible sums (see conv2d_backward_weights_im2col).
    reduce_over_threads(
        plan.T, d.N * plan.bands, parts, part_floats,
        [&](float* part, int64_t u) { unit(part, db ? part + DW : nullptr, u); }, part_floats,
        [&](int used, int64_t i) {
            write_summed_gradient(dw, db, DW, parts, part_floats, 1, used, i);
        });
}

// dy (N,OH,OW,K); w (KH,KW,C,K); dx (N,H,W,C) overwritten.
void conv2d_backward_data_flipped(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                  const float* w, const Conv2dDims& d) {
    const int64_t KK = d.KH * d.KW;
    float* wf = workspace(Scratch::conv_weights, KK * d.K * d.C);
    for (int64_t t = 0; t < KK; ++t) {
        const float* src = w + (KK - 1 - t) * d.C * d.K;  // (C, K) block of tap KK-1-t
        float* dst = wf + t * d.K * d.C;                    // (K, C) block of tap t
        for (int64_t c = 0; c < d.C; ++c)
            for (int64_t k = 0; k < d.K; ++k) dst[k * d.C + c] = src[c * d.K + k];
    }
    conv2d_forward_direct(uk, dx, dy, wf, nullptr, backward_data_as_forward_dims(d), false);
}

// dy (N,OH,OW,K); w (KH,KW,C,K); dx (N,H,W,C) overwritten. Whole images per thread.
void conv2d_backward_data_direct(const ConvDirectUkernels& uk, float* dx, const float* dy,
                                 const float* w, const Conv2dDims& d) {
    const DirectGeometry g = direct_geometry(d);
    const DirectPlan plan = direct_plan(d, true);
    const int64_t Q = d.KH * d.KW * d.C, image_floats = d.H * d.W * d.C;
    const int64_t* off = conv_field_offsets(d, g.rs);
    // wT (K, Q): the micro-kernel's operand, vectorised over q.
    const int64_t ldq = (Q + 15) / 16 * 16;  // 64-byte-aligned rows
    float* wt = workspace(Scratch::conv_shared, ldq * d.K);
    for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < d.K; ++k) wt[k * ldq + q] = w[q * d.K + k];
    const int64_t in_rows = band_input_rows(d, d.OH);
    parallel_for_dynamic(plan.T, d.N, [&](int64_t n) {
        float* img = dx + n * image_floats;
        float* dst = g.padded ? workspace(Scratch::conv_band, in_rows * g.rs) : img;
        std::memset(dst, 0, sizeof(float) * (g.padded ? in_rows * g.rs : image_floats));
        const float* dyn = dy + n * d.OH * d.OW * d.K;
        // Chunks of q within one kernel row (a contiguous segment of the field) make every
        // vector one masked read-modify-write; a vector straddling two segments is added lane
        // by lane (LeNet C3, 6->16 5x5: 1.9x slower). Segments shorter than a vector are
        // chunked across rows instead, to keep the lanes busy.
        const int64_t seg = d.KW * d.C;
        const int64_t span = seg >= 16 ? seg : Q;
        // The fields of two pixels of a row less than `apart` columns apart overlap, and a
        // masked load cannot take its data from an overlapping masked store still in flight:
        // a tile of neighbouring pixels would wait on each read-modify-write of the one before
        // (measured 3x slower on LeNet C3). So the pixels go in `apart` groups of columns
        // cm, cm + apart, ..., whose fields in one kernel row are disjoint, each with its dy
        // rows gathered contiguous.
        const int64_t apart = std::min(d.OW, (d.KW + d.stride_w - 1) / d.stride_w);
        const int64_t group_cols = (d.OW + apart - 1) / apart;  // the widest group, cm = 0
        float* dyg =
            apart > 1 ? workspace(Scratch::conv_columns, d.OH * group_cols * d.K) : nullptr;
        for (int64_t cm = 0; cm < apart; ++cm) {
            const int64_t cols = (d.OW - cm + apart - 1) / apart, npix = d.OH * cols;
            ConvPixels px{dst + cm * d.stride_w * d.C, d.stride_h * g.rs, apart * d.stride_w * d.C,
                          cols};
            const float* dys = dyn;
            if (dyg) {  // this group's dy rows, consumed before the next group gathers its own
                for (int64_t r = 0; r < d.OH; ++r)
                    for (int64_t j = 0; j < cols; ++j)
                        copy_floats(dyg + (r * cols + j) * d.K,
                                    dyn + (r * d.OW + cm + j * apart) * d.K, d.K);
                dys = dyg;
            }
            for (int64_t s0 = 0; s0 < Q; s0 += span)
                for (int64_t q0 = s0; q0 < s0 + span; q0 += 64)
                    uk.backward_data(px, 0, npix, off + q0, std::min<int64_t>(64, s0 + span - q0),
                                     dys, d.K, d.K, wt + q0, ldq);
        }
        if (!g.padded) return;
        // Back from the padded image; rows and columns no window reaches get zeros.
        const int64_t cols = std::min(d.W, g.Wp - d.pad_left);
        for (int64_t ih = 0; ih < d.H; ++ih) {
            float* row = img + ih * d.W * d.C;
            const int64_t r = ih + d.pad_top;
            if (r >= in_rows) {
                std::memset(row, 0, sizeof(float) * d.W * d.C);
                continue;
            }
            std::memcpy(row, dst + r * g.rs + d.pad_left * d.C, sizeof(float) * cols * d.C);
            std::memset(row + cols * d.C, 0, sizeof(float) * (d.W - cols) * d.C);
        }
    });
}

}  // namespace cnnfast
