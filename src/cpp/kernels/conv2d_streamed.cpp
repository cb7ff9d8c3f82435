// Weight-streaming forward convolution: for a few output pixels (a single image's maps of up to
// 8x8) whose kernel does not fit in the caches (VGG16-CIFAR's last three blocks: 1.2-9.4 MB of
// weights per layer, 58 MB in all, more than the L3), reading the weights is most of the layer's
// time (4x4 and 2x2 maps) or a large part of it (8x8). The direct kernels read them one
// 64-channel block at a time (256 bytes of every 2 KB row of a 512-channel kernel), which one
// core streams at about half the rate of a read in address order (dev/weight_streaming.cpp).
// Here the kernel is walked a chunk of rows at a time, in address order, every 64-channel block
// of a chunk is applied to every pixel that reads it while it is in L2, and the next chunk is
// prefetched meanwhile; the pixels' partial sums live in y (P x K floats, in L1 or L2) between
// chunks. A tap no pixel reads (padding) is not read at all; pixels are paired with the taps
// their receptive field holds, so the padding's zeros cost no multiply-adds either. Each output
// starts from its bias and adds its products in (kh, kw, c) order in one FMA chain, as the
// direct micro-kernels do (whose padding taps add exact zeros): the same bits, at any thread
// count. The walk itself (streamed_products) also runs a kept Winograd kernel's position
// products on a single image's 8x8 and 16x16 maps (conv2d_winograd.h's
// winograd_streams_kept_kernel), each position a tap that every tile reads.
#include <algorithm>

#include "conv2d_direct.h"
#include "workspace.h"

namespace cnnfast {

namespace {

// Chunks of 32 rows (64 KB of a 512-channel kernel: in L2, not L1), each 64-channel block of a
// chunk applied to every reader in turn, so each accumulator goes through memory once per 32
// multiply-adds. The next chunk is prefetched in address order, its lines shared out over the
// chunk's tiles and each tile's share issued a row at a time, between its multiply-adds: a
// burst of prefetches before each block (as an earlier schedule issued them) filled the core's
// outstanding-miss slots and stalled its multiply-adds, so a layer took the sum of its read and
// its arithmetic instead of the larger. VGG16-CIFAR's batch-1 forward through the C API ran
// 7-16 % faster than under that schedule (8-row chunks for at most 16 readers a tap, 32-row
// chunks with each block's slice prefetched for more): dev/capi_ab.py against a build of
// f85d0c2. 16- and 64-row chunks were slower than 32 (a temporary switch, not kept).
constexpr int64_t kStreamRows = 32;

// The pixels that read each tap of the kernel, in the calling thread's scratch, as streamed
// products' readers: tap t's readers are [begin[t], begin[t + 1]); a reader writes output pixel
// y_at / K of N*OH*OW and reads input offset x_at (floats into x).
StreamReaders tap_readers(const Conv2dDims& d) {
    const int64_t taps = d.KH * d.KW, most = taps * d.N * d.OH * d.OW;
    int64_t* begin = workspace<int64_t>(Scratch::conv_stream_readers, 2 * taps + 1 + 2 * most);
    int64_t *used = begin + taps + 1, *y_at = used + taps, *x_at = y_at + most;
    int64_t n = 0, n_used = 0;
    begin[0] = 0;
    for (int64_t kh = 0; kh < d.KH; ++kh)
        for (int64_t kw = 0; kw < d.KW; ++kw) {
            for (int64_t img = 0; img < d.N; ++img)
                for (int64_t oh = 0; oh < d.OH; ++oh) {
                    const int64_t ih = oh * d.stride_h - d.pad_top + kh * d.dilation_h;
                    if (ih < 0 || ih >= d.H) continue;
                    for (int64_t ow = 0; ow < d.OW; ++ow) {
                        const int64_t iw = ow * d.stride_w - d.pad_left + kw * d.dilation_w;
                        if (iw < 0 || iw >= d.W) continue;
                        y_at[n] = ((img * d.OH + oh) * d.OW + ow) * d.K;
                        x_at[n++] = ((img * d.H + ih) * d.W + iw) * d.C;
                    }
                }
            const int64_t t = kh * d.KW + kw;
            begin[t + 1] = n;
            if (n > begin[t]) used[n_used++] = t;
        }
    return {begin, y_at, x_at, used, n_used};
}

// Rows [c0, c0 + rows) of tap `tap`'s rows, all read by the same readers.
struct Chunk {
    int64_t tap, c0, rows;
};

// The ends of n items split into `parts` runs, floor(n * (i + 1) / parts) for i = 0, 1, ...,
// one after another without a division each (per-tile divisions were about a fifth of the
// walk's own time, itself 4% of VGG16-CIFAR's batch-1 predict, by perf on
// dev/profile_step.py predict vgg16_cifar).
class EvenSplit {
public:
    EvenSplit(int64_t n, int64_t parts) : base_(n / parts), extra_(n % parts), parts_(parts) {}
    int64_t next() {
        end_ += base_;
        rem_ += extra_;
        if (rem_ >= parts_) rem_ -= parts_, ++end_;
        return end_;
    }

private:
    int64_t base_, extra_, parts_, end_ = 0, rem_ = 0;
};

}  // namespace

void streamed_products(const ConvDirectUkernels& uk, float* y, const float* x, const float* w,
                       int64_t tap_stride, int64_t ldw, int64_t C, int64_t K,
                       const StreamReaders& readers) {
    int64_t reads = 0;  // all taps' readers
    for (int64_t u = 0; u < readers.n_used; ++u)
        reads += readers.begin[readers.used[u] + 1] - readers.begin[readers.used[u]];
    // The walk: each tap some reader reads, in chunks of kStreamRows input channels.
    const int64_t per_tap = (C + kStreamRows - 1) / kStreamRows;
    const int64_t n_chunks = readers.n_used * per_tap;
    auto chunk = [&](int64_t i) {
        const int64_t c0 = i % per_tap * kStreamRows;
        return Chunk{readers.used[i / per_tap], c0, std::min(kStreamRows, C - c0)};
    };
    // Threads take contiguous runs of 64-channel blocks: every thread walks all the chunks, the
    // threads' reads together still in address order, and each sum is the same at any T.
    const int64_t k_blocks = (K + 63) / 64;
    const int T = std::min<int64_t>(threads_for(reads * C * K / kMacsPerThread), k_blocks);
    parallel_for(T, T, [&](int64_t t) {
        const int64_t b0 = k_blocks * t / T, b1 = k_blocks * (t + 1) / T;
        const int64_t k_lo = 64 * b0, k_hi = std::min(K, 64 * b1);
        const int64_t lines_per_row = (k_hi - k_lo + 15) / 16;  // of this thread's columns
        float* ys[kConvStreamPixels];
        const float* as[kConvStreamPixels];
        for (int64_t i = 0; i < n_chunks; ++i) {
            const Chunk c = chunk(i);
            const float* wc = w + c.tap * tap_stride + c.c0 * ldw;
            // The next chunk's rows, this thread's columns (none after the last chunk).
            const Chunk nx = i + 1 < n_chunks ? chunk(i + 1) : Chunk{0, 0, 0};
            StreamPrefetch pf;
            pf.row = w + nx.tap * tap_stride + nx.c0 * ldw + k_lo;
            pf.ldw = ldw;
            pf.per_row = lines_per_row;
            const int64_t r0 = readers.begin[c.tap], n = readers.begin[c.tap + 1] - r0;
            const int64_t groups = (n + kConvStreamPixels - 1) / kConvStreamPixels;
            // The next chunk's lines shared out over this chunk's tiles, in order.
            EvenSplit pf_split(nx.rows * lines_per_row, (b1 - b0) * groups);
            int64_t pf_end = 0;
            // Balanced groups: 9 readers as 5 + 4, not 6 + 3 (a 3-pixel tile loads 7 vectors
            // per 12 FMAs).
            const EvenSplit group_split(n, groups);
            for (int64_t b = b0; b < b1; ++b) {
                const int64_t k0 = 64 * b, nc = std::min<int64_t>(64, K - k0);
                EvenSplit group_ends = group_split;
                for (int64_t gi = 0, g0 = r0; gi < groups; ++gi) {
                    const int64_t pf_begin = pf_end;
                    pf_end = pf_split.next();
                    pf.left = pf_end - pf_begin;
                    const int64_t g1 = r0 + group_ends.next(), G = g1 - g0;
                    for (int64_t j = 0; j < G; ++j) {
                        ys[j] = y + readers.y_at[g0 + j] + k0;
                        as[j] = x + readers.x_at[g0 + j] + c.c0;
                    }
                    uk.forward_streamed(ys, as, G, wc + k0, ldw, c.rows, nc, pf);
                    g0 = g1;
                }
            }
        }
    });
}

void conv2d_forward_streamed(const ConvDirectUkernels& uk, float* y, const float* x,
                             const float* w, const float* bias, const Conv2dDims& d, bool relu,
                             const BandActivation& act) {
    const int64_t P = d.N * d.OH * d.OW, K = d.K;
    for (int64_t p = 0; p < P; ++p) {
        if (bias)
            std::copy(bias, bias + K, y + p * K);
        else
            std::fill(y + p * K, y + (p + 1) * K, 0.0f);
    }
    streamed_products(uk, y, x, w, d.C * K, K, d.C, K, tap_readers(d));
    if (relu) activation_forward(y, y, P * K, Activation::relu, 0.0f);
    act(y, P * K);
}

}  // namespace cnnfast
