// 2-D convolution: chooses, per call and pass, the algorithm that computes it, and dispatches.
// The algorithms live in files of their own: conv2d_im2col.cpp, conv2d_direct.cpp (drivers) with
// conv2d_direct_avx512.cpp (micro-kernels), conv2d_winograd.cpp (drivers) with
// conv2d_winograd_avx512.cpp (transforms), and the spec, conv2d_naive.cpp.
#include "conv2d.h"

#include <atomic>
#include <cstdint>
#include <cstring>

#include "conv2d_direct.h"
#include "conv2d_winograd.h"
#include "dense.h"
#include "gemm_bf16.h"
#include "workspace.h"

namespace cnnfast {

namespace {

std::atomic<int> g_conv_algorithm{0};  // 0 auto, 1 im2col, 2 direct, 3 winograd, 4 streamed

int64_t winograd_tiles(const Conv2dDims& d) { return d.N * ((d.OH + 1) / 2) * ((d.OW + 1) / 2); }

// Maps of at most 16 outputs that Winograd still computes faster than im2col (direct_applies): even
// sizes, whose 2x2 tiles hold no cropped outputs, of 32 or more input channels (measured from 64
// to 512), over at least 64 tiles (VGG16-CIFAR's 4x4 and 2x2 blocks at batch 64). At 2 threads,
// 512 -> 512 channels, forward / backward-data / backward-weights took 0.63x / 0.94x / 0.67x
// im2col's time on 4x4 maps at batch 16 (64 tiles) and 0.63x / 0.94x / 0.65x on 2x2 maps at
// batch 64, but 1.25x / 1.85x / 1.13x on 2x2 maps at batch 16, where the per-call kernel
// transform (16 C K floats) outweighs the saved multiplies (python -m bench.bench_conv_algorithms;
// at 1 thread backward-data took 1.3x im2col's time on the first two).
// In mixed-precision training (gemm_bf16.h) maps of one tile per image go to im2col, whose
// bfloat16 GEMM over the batch then beats Winograd's (the per-call kernel transform is
// float32): VGG16-CIFAR's 512 -> 512 2x2 maps at batch 64, forward / backward-data /
// backward-weights 3.1 / 3.1 / 2.7 ms against Winograd's 2.6 / 4.8 / 2.8 on one thread, 1.8 /
// 1.9 / 1.6 against 1.8 / 2.5 / 1.8 on two (python -m bench.bench_conv_algorithms --threads 1 2
// --only 2x2 --precision bfloat16).
bool winograd_on_small_map(const Conv2dDims& d) {
    if (bf16_products() && d.OH * d.OW <= 4) return false;
    return d.OH % 2 == 0 && d.OW % 2 == 0 && d.C >= 32 && winograd_tiles(d) >= 64;
}

// Whether Winograd F(2x2, 3x3) (conv2d_winograd.h) computes this pass of a convolution: always
// where it can when forced ("winograd"); under "auto" only where it measured faster than the
// direct kernels (1 and 2 threads): both channel counts >= 16 (fewer leave the GEMMs' vectors
// mostly idle), maps of more than 16 outputs (smaller ones go to im2col, see direct_applies, unless
// winograd_on_small_map) and at least 32 output tiles in the batch, over which the per-call
// kernel transform (16 C K floats) is spread: a single Keras-CNN image (13x13 64->64, 36 tiles)
// ran 0.8x the direct time forward, while 16 tiles of 16->16 or 32->64 channels ran 1.15-1.5x
// (python -m bench.bench_conv_algorithms). Backward-data's GEMMs produce C channels: at C = 16
// it was level with the direct scatter (1.06x), from 32 faster (0.7-0.8x for 32->64 at b128).
// On an AMD EPYC (AVX-512, 1 thread) ResNet-20's 16->16 32x32 maps at batch 128 ran the direct
// kernels faster in the other passes too: forward 3.9 vs 6.0 ms, backward-weights 5.2 vs 6.7 ms
// (alternating rounds; 32->32 16x16 and 64->64 8x8 stay faster in Winograd, 0.6-0.7x), so
// "auto" takes Winograd from 32 input channels in every pass.
enum class ConvPass { forward, backward_data, backward_weights };
bool use_winograd(const Conv2dDims& d, ConvPass pass) {
    const int algorithm = g_conv_algorithm.load(std::memory_order_relaxed);
    if (algorithm == 3) return winograd_computes(d);
    (void)pass;
    return algorithm == 0 && winograd_computes(d) && d.C >= 32 && d.K >= 16 &&
           (d.OH * d.OW > 16 || winograd_on_small_map(d)) && winograd_tiles(d) >= 32;
}

// Whether the direct kernels (which Winograd's GEMMs also run on) may compute this pass of a
// convolution; if not, im2col + GEMM does: grouped convolutions and those whose column matrix is
// the input itself (plain GEMMs) take the GEMM path, and so does every convolution without the
// AVX-512 micro-kernels.
bool direct_applies(const Conv2dDims& d, ConvPass pass) {
    const int algorithm = g_conv_algorithm.load(std::memory_order_relaxed);
    if (algorithm == 1) return false;
    if (d.groups != 1 || d.N == 0 || conv2d_input_is_columns(d) || conv2d_dilated(d)) return false;
    // Maps of at most 4x4 outputs (VGG's last blocks) are mostly padding for the direct kernels'
    // tiles, while their im2col GEMM over the batch is large and efficient (measured 3-4x faster
    // on VGG16-CIFAR block5), unless Winograd computes this pass. Forcing "direct" still takes
    // the direct path.
    if (algorithm == 0 && d.OH * d.OW <= 16 && d.N * d.OH * d.OW >= 64 && !use_winograd(d, pass))
        return false;
    return conv2d_direct_ukernels() != nullptr;
}

// Whether the direct path computes backward-data as the forward convolution of dy
// (conv2d_backward_data_flipped: a gather, each dx element written once, from registers) rather
// than by the scatter-add of conv2d_backward_data_direct. Measured (Xeon AVX-512, 1 thread): 13%
// faster for VGG's 128->128 3x3 16x16, equal for 64->64 32x32 and 256->256 8x8, but 1.2x slower
// for 32->64 3x3 13x13 and 5x slower for LeNet's 6->16 5x5 (the forward kernel uses C/16 of its
// lanes and falls off a cliff on some widths), so it is taken only for inputs of whole
// vectors: from 16 channels since the forward tile addresses a row from one pointer (AMD EPYC,
// ResNet-20's 16->16 32x32 at batch 128: 3.56 ms against the scatter's 3.9-4.0 at 1 thread,
// 1.70 against 1.93 at 2; python -m bench.bench_conv_algorithms).
bool backward_data_as_forward(const Conv2dDims& d) {
    return d.stride_h == 1 && d.stride_w == 1 && d.pad_top < d.KH && d.pad_left < d.KW &&
           d.C >= 16 && d.C % 16 == 0;
}

// Whether the weight-streaming forward (conv2d_streamed.cpp) computes this forward: under "auto"
// for at most 64 output pixels in all (a single image's maps of up to 8x8) and a kernel of more
// than 1 MiB (one core's L2), which then comes from L3 or memory on every call. One thread,
// weights from memory (OMP_PROC_BIND=close PYTHONPATH=. python dev/vgg_batch1_layers.py),
// against the direct kernels: VGG16-CIFAR's 2x2 512 -> 512 0.27-0.31 ms against 0.75, 4x4
// 512 -> 512 0.53 against 1.02, 4x4 256 -> 512 0.27 against 0.49, 8x8 256 -> 256 0.40 against
// 0.49, 8x8 128 -> 256 0.20 against 0.24. Forcing "streamed" runs it on every forward of one
// group (backward passes as under "direct").
bool use_streamed(const Conv2dDims& d) {
    const int algorithm = g_conv_algorithm.load(std::memory_order_relaxed);
    if (d.groups != 1 || d.N == 0 || !conv2d_direct_ukernels()) return false;
    if (algorithm == 4) return true;
    return algorithm == 0 && !conv2d_input_is_columns(d) && d.N * d.OH * d.OW <= 64 &&
           d.KH * d.KW * d.C * d.K > (int64_t(1) << 18);
}

enum class ConvAlgorithm { im2col, direct, direct_gather, winograd, depthwise, streamed };

// The algorithm that computes this pass of a convolution (every choice above, in one place).
ConvAlgorithm choose_algorithm(const Conv2dDims& d, ConvPass pass) {
    // Depthwise: im2col would run C GEMMs of width M (forced "im2col" still does, for tests).
    if (conv2d_is_depthwise(d) && g_conv_algorithm.load(std::memory_order_relaxed) != 1)
        return ConvAlgorithm::depthwise;
    if (pass == ConvPass::forward && use_streamed(d)) return ConvAlgorithm::streamed;
    if (!direct_applies(d, pass)) return ConvAlgorithm::im2col;
    if (use_winograd(d, pass)) return ConvAlgorithm::winograd;
    if (pass == ConvPass::backward_data && backward_data_as_forward(d))
        return ConvAlgorithm::direct_gather;
    return ConvAlgorithm::direct;
}

// A pass's algorithm, and whether it runs on operands rounded to bfloat16 first.
struct PassPlan {
    ConvAlgorithm algorithm;
    bool round_operands;
};

// In mixed-precision training (gemm_bf16.h) Winograd's and im2col's products run on the
// bfloat16 GEMM. Elsewhere the convolution keeps its float32 kernels, run on operands rounded to
// bfloat16 first: the products bfloat16 hardware makes (exact in float32), summed in float32.
// That is
//  - sums too short (fewer than 16 input channels per group: a network's first convolution, of
//    1 or 3 channels, and depthwise ones): the Keras MNIST CNN's first convolution, 1 -> 64
//    channels at batch 128, one thread, took 6.2 ms for backward-weights through the bfloat16
//    im2col GEMM against 0.8 ms direct;
//  - convolutions whose float32 algorithm is the direct kernels (fewer than 32 input channels
//    for Winograd, strided ones, maps or batches too small for it), where im2col's bfloat16
//    GEMM (9 copies of each input value, products 16 or 32 wide) ran ResNet-20's training step
//    at 0.67x float32's, now level with it (dev/profile_step.py train resnet20).
PassPlan plan_pass(const Conv2dDims& d, ConvPass pass) {
    const ConvAlgorithm algorithm = choose_algorithm(d, pass);
    const bool direct = algorithm == ConvAlgorithm::direct ||
                        algorithm == ConvAlgorithm::direct_gather ||
                        algorithm == ConvAlgorithm::streamed;
    return {algorithm, bf16_products() && (d.C / d.groups < 16 || direct)};
}

int64_t input_floats(const Conv2dDims& d) { return d.N * d.H * d.W * d.C; }
int64_t output_floats(const Conv2dDims& d) { return d.N * d.OH * d.OW * d.K; }
int64_t kernel_floats(const Conv2dDims& d) { return d.KH * d.KW * (d.C / d.groups) * d.K; }

void forward_by(ConvAlgorithm algorithm, float* y, const float* x, const float* w,
                const float* bias, const Conv2dDims& d, Activation act, float alpha) {
    const bool relu = act == Activation::relu;
    const BandActivation band{relu ? Activation::linear : act, alpha};
    if (algorithm == ConvAlgorithm::direct)
        return conv2d_forward_direct(*conv2d_direct_ukernels(), y, x, w, bias, d, relu, band);
    if (algorithm == ConvAlgorithm::streamed)
        return conv2d_forward_streamed(*conv2d_direct_ukernels(), y, x, w, bias, d, relu, band);
    if (algorithm == ConvAlgorithm::depthwise)
        conv2d_forward_depthwise(y, x, w, bias, d, relu);
    else if (algorithm == ConvAlgorithm::winograd)
        conv2d_forward_winograd(*conv2d_direct_ukernels(), y, x, w, bias, d, relu);
    else
        conv2d_forward_im2col(y, x, w, bias, d, relu);
    band(y, output_floats(d));
}

void backward_data_by(ConvAlgorithm algorithm, float* dx, const float* dy, const float* w,
                      const Conv2dDims& d) {
    switch (algorithm) {
        case ConvAlgorithm::im2col: return conv2d_backward_data_im2col(dx, dy, w, d);
        case ConvAlgorithm::depthwise: return conv2d_backward_data_depthwise(dx, dy, w, d);
        case ConvAlgorithm::direct:
        case ConvAlgorithm::streamed:  // forward only (choose_algorithm)
            return conv2d_backward_data_direct(*conv2d_direct_ukernels(), dx, dy, w, d);
        case ConvAlgorithm::direct_gather:
            return conv2d_backward_data_flipped(*conv2d_direct_ukernels(), dx, dy, w, d);
        case ConvAlgorithm::winograd:
            return conv2d_backward_data_winograd(*conv2d_direct_ukernels(), dx, dy, w, d);
    }
}

void backward_weights_by(ConvAlgorithm algorithm, float* dw, float* db, const float* x,
                         const float* dy, const Conv2dDims& d) {
    if (algorithm == ConvAlgorithm::winograd)
        return conv2d_backward_weights_winograd(*conv2d_direct_ukernels(), dw, db, x, dy, d);
    if (algorithm == ConvAlgorithm::direct)
        return conv2d_backward_weights_direct(*conv2d_direct_ukernels(), dw, db, x, dy, d);
    if (algorithm == ConvAlgorithm::depthwise)
        return conv2d_backward_weights_depthwise(dw, db, x, dy, d);
    conv2d_backward_weights_im2col(dw, db, x, dy, d);
}

}  // namespace

bool set_conv2d_algorithm(const char* name) {
    int a = -1;
    if (std::strcmp(name, "auto") == 0) a = 0;
    if (std::strcmp(name, "im2col") == 0) a = 1;
    if (std::strcmp(name, "direct") == 0 && conv2d_direct_ukernels()) a = 2;
    if (std::strcmp(name, "winograd") == 0 && conv2d_direct_ukernels() &&
        conv2d_winograd_transforms())
        a = 3;
    if (std::strcmp(name, "streamed") == 0 && conv2d_direct_ukernels()) a = 4;
    if (a < 0) return false;
    g_conv_algorithm.store(a, std::memory_order_relaxed);
    return true;
}

const char* conv2d_algorithm() {
    const int a = g_conv_algorithm.load(std::memory_order_relaxed);
    if (a == 1 || !conv2d_direct_ukernels()) return "im2col";
    return a == 2 ? "direct" : a == 3 ? "winograd" : a == 4 ? "streamed" : "auto";
}

void conv2d_forward(float* y, const float* x, const float* w, const float* bias,
                    const Conv2dDims& d, bool relu) {
    conv2d_forward(y, x, w, bias, d, relu ? Activation::relu : Activation::linear, 0.0f);
}

void conv2d_forward(float* y, const float* x, const float* w, const float* bias,
                    const Conv2dDims& d, Activation act, float alpha) {
    const PassPlan p = plan_pass(d, ConvPass::forward);
    if (p.round_operands) {
        x = bf16_rounded_copy(x, input_floats(d), Scratch::conv_bf16_input);
        w = bf16_rounded_copy(w, kernel_floats(d), Scratch::conv_bf16_weights);
    }
    forward_by(p.algorithm, y, x, w, bias, d, act, alpha);
}

bool conv2d_forward_reads_winograd_kernel(const Conv2dDims& d) {
    if (bf16_products()) return false;
    if (g_conv_algorithm.load(std::memory_order_relaxed) == 0 && conv2d_direct_ukernels() &&
        winograd_streams_kept_kernel(d))
        return true;
    const PassPlan p = plan_pass(d, ConvPass::forward);
    return p.algorithm == ConvAlgorithm::winograd && winograd_kernel_fits_l2(d.C, d.K);
}

void conv2d_forward(float* y, const float* x, const WinogradKernel& U, const float* bias,
                    const Conv2dDims& d, Activation act, float alpha) {
    const bool relu = act == Activation::relu;
    conv2d_forward_winograd(*conv2d_direct_ukernels(), y, x, U, bias, d, relu);
    BandActivation{relu ? Activation::linear : act, alpha}(y, output_floats(d));
}

void conv2d_backward_data(float* dx, const float* dy, const float* w, const Conv2dDims& d) {
    const PassPlan p = plan_pass(d, ConvPass::backward_data);
    if (p.round_operands) {
        dy = bf16_rounded_copy(dy, output_floats(d), Scratch::conv_bf16_input);
        w = bf16_rounded_copy(w, kernel_floats(d), Scratch::conv_bf16_weights);
    }
    backward_data_by(p.algorithm, dx, dy, w, d);
}

void conv2d_backward_weights(float* dw, float* db, const float* x, const float* dy,
                             const Conv2dDims& d) {
    const PassPlan p = plan_pass(d, ConvPass::backward_weights);
    if (p.round_operands) {
        // The bias gradient is a sum, not a product: from dy as it is.
        if (db) dense_bias_grad(db, dy, d.N * d.OH * d.OW, d.K);
        db = nullptr;
        x = bf16_rounded_copy(x, input_floats(d), Scratch::conv_bf16_input);
        dy = bf16_rounded_copy(dy, output_floats(d), Scratch::conv_bf16_gradient);
    }
    backward_weights_by(p.algorithm, dw, db, x, dy, d);
}

}  // namespace cnnfast
