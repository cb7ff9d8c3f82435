// C++ unit tests of the kernels, the inference Network and the model-file reader, written to
// run under AddressSanitizer + UndefinedBehaviorSanitizer (tests/sanitize/run.sh) and valgrind.
// Every fast kernel is compared with its naive version on odd shapes (edges, tails, padding);
// the reader gets a valid file and thousands of corrupted copies of it, each of which must load
// or throw std::exception, never crash or read out of bounds.
//
// usage: test_kernels [MODEL_FILE [MUTATIONS]]     exit status 0 when every check passes
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "activation.h"
#include "batchnorm.h"
#include "conv2d.h"
#include "conv2d_depthwise_simd.h"
#include "conv2d_pool.h"
#include "conv2d_winograd.h"
#include "cpu_features.h"
#include "dense.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "gemm_u8s8.h"
#include "lrn.h"
#include "model_file.h"
#include "network.h"
#include "optim.h"
#include "noise.h"
#include "parallel.h"
#include "pool2d.h"
#include "quantized.h"
#include "quantized_simd.h"
#include "random_affine.h"
#include "random_crop.h"
#include "rescaling.h"
#include "losses.h"
#include "softmax_xent.h"
#include "spatial.h"
#include "weight_digest.h"

using namespace cnnfast;

namespace {

int g_checks = 0, g_failures = 0;
std::mt19937 g_rng(12345);

std::vector<float> randn(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g_rng);
    return v;
}

// |a - b| <= atol + rtol |b| elementwise (float32 kernels against float32 naive loops, which
// sum in different orders: a few ulps of the sum of |terms|, bounded here by atol/rtol).
void expect_close(const char* what, const std::vector<float>& a, const std::vector<float>& b,
                  float rtol = 1e-4f, float atol = 1e-4f) {
    ++g_checks;
    if (a.size() != b.size()) {
        std::printf("FAIL %s: sizes %zu vs %zu\n", what, a.size(), b.size());
        ++g_failures;
        return;
    }
    for (size_t i = 0; i < a.size(); ++i) {
        if (!(std::fabs(a[i] - b[i]) <= atol + rtol * std::fabs(b[i]))) {
            std::printf("FAIL %s: [%zu] %g vs %g\n", what, i, a[i], b[i]);
            ++g_failures;
            return;
        }
    }
}

void expect(const char* what, bool ok) {
    ++g_checks;
    if (!ok) {
        std::printf("FAIL %s\n", what);
        ++g_failures;
    }
}

void test_gemm() {
    // {37, 70, 300} and {61, 64, 700} take the unpacked narrow route when A is transposed
    // (16 <= N <= 128); {60, 1400, 700} needs two packed B blocks (L2 up to 2 MiB) and two A
    // blocks, so the second column block reuses the kept packed A.
    const int64_t shapes[][3] = {{1, 1, 1},     {7, 5, 3},     {33, 17, 65},
                                 {14, 32, 9},   {100, 3, 250}, {37, 70, 300},
                                 {61, 64, 700}, {60, 1400, 700}};
    for (const auto& s : shapes)
        for (int ta = 0; ta < 2; ++ta)
            for (int tb = 0; tb < 2; ++tb) {
                const int64_t M = s[0], N = s[1], K = s[2];
                auto A = randn(M * K), B = randn(K * N), C0 = randn(M * N);
                auto C1 = C0, C2 = C0;
                const int64_t lda = ta ? M : K, ldb = tb ? K : N;
                sgemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, C1.data(), N);
                sgemm_naive(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, C2.data(), N);
                expect_close("sgemm vs naive", C1, C2);
            }
    // Sub-matrices (leading dimensions wider than the rows), as grouped im2col convolutions pass
    // them: the narrow route (A^T B, N = 40) and the packed one (N = 130), into a wider C.
    for (const int64_t N : {40, 130}) {
        const int64_t M = 37, K = 300, lda = M + 7, ldb = N + 3, ldc = N + 5;
        auto A = randn(K * lda), B = randn(K * ldb), C0 = randn(M * ldc);
        auto C1 = C0, C2 = C0;
        sgemm(true, false, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, C1.data(), ldc);
        sgemm_naive(true, false, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, C2.data(),
                    ldc);
        expect_close("sgemm sub-matrices vs naive", C1, C2);
    }
    // The bench's micro-kernel ceiling runs the kernels on its own buffers: in bounds, aligned.
    expect("sgemm micro-kernel rate", measure_sgemm_ukernel_gflops(1) > 0.0);
    expect("sgemm micro-kernel rate in L1", measure_sgemm_ukernel_gflops(1, true) > 0.0);
}

std::vector<float> small_integers(size_t n) {
    std::uniform_int_distribution<int> d(-4, 4);
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(d(g_rng));
    return v;
}

// bf16: mixed-precision training's products (gemm_bf16.h), on small integers, which bfloat16
// and Winograd's transforms of them hold exactly and float32 sums add exactly: every path must
// then give the naive loops' values to the bit.
void test_conv(const char* algorithm, bool bf16 = false) {
    if (!set_conv2d_algorithm(algorithm)) return;
    const Bf16ProductsScope products(bf16);
    auto values = [&](size_t n) { return bf16 ? small_integers(n) : randn(n); };
    const float rtol = bf16 ? 0.0f : 1e-4f, atol = bf16 ? 0.0f : 1e-3f;
    struct Case { int64_t N, H, W, C, KH, KW, K, sh, sw, pt, pl, g, dh = 1, dw = 1; };
    const Case cases[] = {{2, 7, 6, 3, 3, 3, 5, 1, 1, 1, 1, 1},  {1, 9, 9, 4, 1, 1, 8, 1, 1, 0, 0, 1},
                          {2, 8, 11, 6, 3, 2, 4, 2, 1, 1, 0, 2}, {1, 5, 5, 16, 5, 5, 32, 2, 2, 2, 2, 1},
                          {3, 4, 4, 2, 2, 2, 3, 3, 3, 1, 1, 1},  {1, 13, 13, 64, 3, 3, 64, 1, 1, 1, 1, 1},
                          {2, 9, 8, 5, 3, 3, 70, 1, 1, 0, 0, 1},
                          // One input channel (the column-vectorised kernels): LeNet C1's 5x5x6
                          // with a masked second strip, and K = 3 padded on an odd row count.
                          {2, 11, 21, 1, 5, 5, 6, 1, 1, 0, 0, 1},
                          {1, 7, 18, 1, 3, 3, 3, 1, 1, 1, 1, 1},
                          // Dilated (im2col and the naive loops only): a Winograd shape, unequal
                          // rates with groups and a stride.
                          {1, 12, 12, 16, 3, 3, 16, 1, 1, 2, 2, 1, 2, 2},
                          {2, 11, 13, 4, 3, 2, 6, 2, 1, 1, 2, 2, 2, 3},
                          // Depthwise (groups == C; the depthwise kernels unless im2col is
                          // forced): multiplier 2, and 20 channels (a block of 16 and a tail)
                          // with a stride and dilation.
                          {2, 9, 8, 6, 3, 3, 12, 1, 1, 1, 1, 6},
                          {1, 10, 10, 20, 3, 3, 20, 2, 2, 2, 2, 20, 2, 2},
                          // Winograd's position-major schedule (16 C K > 2^18), 144 = 4.5
                          // panels of the bfloat16 GEMM.
                          {4, 6, 6, 128, 3, 3, 144, 1, 1, 1, 1, 1},
                          // A single image's 2x2 map (every tap read by 1, 2 or 4 pixels), 200
                          // channels: three whole 64-channel blocks and a masked one of 8.
                          {1, 2, 2, 40, 3, 3, 200, 1, 1, 1, 1, 1}};
    for (const Case& c : cases) {
        Conv2dDims d{c.N, c.H, c.W, c.C, c.KH, c.KW, c.K, 0, 0, c.sh, c.sw, c.pt, c.pl, c.g,
                     c.dh, c.dw};
        d.OH = (c.H + 2 * c.pt - ((c.KH - 1) * c.dh + 1)) / c.sh + 1;
        d.OW = (c.W + 2 * c.pl - ((c.KW - 1) * c.dw + 1)) / c.sw + 1;
        auto x = values(c.N * c.H * c.W * c.C), w = values(c.KH * c.KW * (c.C / c.g) * c.K);
        auto b = values(c.K);
        const size_t ysz = c.N * d.OH * d.OW * c.K;
        std::vector<float> y1(ysz), y2(ysz);
        for (int relu = 0; relu < 2; ++relu) {
            conv2d_forward(y1.data(), x.data(), w.data(), b.data(), d, relu);
            conv2d_forward_naive(y2.data(), x.data(), w.data(), b.data(), d, relu);
            expect_close("conv2d forward vs naive", y1, y2, rtol, atol);
        }
        auto dy = values(ysz);
        std::vector<float> dx1(x.size()), dx2(x.size()), dw1(w.size()), dw2(w.size()), db1(c.K), db2(c.K);
        conv2d_backward_data(dx1.data(), dy.data(), w.data(), d);
        conv2d_backward_data_naive(dx2.data(), dy.data(), w.data(), d);
        expect_close("conv2d backward data vs naive", dx1, dx2, rtol, atol);
        conv2d_backward_weights(dw1.data(), db1.data(), x.data(), dy.data(), d);
        conv2d_backward_weights_naive(dw2.data(), db2.data(), x.data(), dy.data(), d);
        expect_close("conv2d backward weights vs naive", dw1, dw2, rtol, atol);
        expect_close("conv2d bias gradient vs naive", db1, db2, rtol, atol);
    }
    set_conv2d_algorithm("auto");
}

// The fused Conv2D + ReLU + 2x2 max pooling against the naive layers one after the other.
void test_conv_relu_maxpool() {
    Conv2dDims d{2, 9, 8, 3, 3, 3, 20, 7, 6, 1, 1, 0, 0, 1};
    if (!conv2d_relu_maxpool_supported(d)) return;
    const int64_t PH = d.OH / 2, PW = d.OW / 2, ysz = d.N * PH * PW * d.K;
    auto x = randn(d.N * d.H * d.W * d.C), w = randn(d.KH * d.KW * d.C * d.K), b = randn(d.K);
    std::vector<float> y1(ysz), y2(ysz), z(d.N * d.OH * d.OW * d.K), dz(z.size());
    std::vector<int32_t> which(ysz), argmax(ysz);
    conv2d_relu_maxpool_forward(y1.data(), which.data(), x.data(), w.data(), b.data(), d);
    conv2d_forward_naive(z.data(), x.data(), w.data(), b.data(), d, true);
    const Pool2dDims p{d.N, d.OH, d.OW, d.K, 2, 2, PH, PW, 2, 2, 0, 0};
    max_pool2d_forward_naive(y2.data(), argmax.data(), z.data(), p);
    expect_close("conv+relu+maxpool forward vs naive", y1, y2, 1e-4f, 1e-3f);
    auto dy = randn(ysz);
    std::vector<float> dw1(w.size()), dw2(w.size()), db1(d.K), db2(d.K), g(ysz);
    conv2d_relu_maxpool_backward_weights(dw1.data(), db1.data(), x.data(), dy.data(), y1.data(),
                                         which.data(), d);
    for (int64_t i = 0; i < ysz; ++i) g[i] = y2[i] > 0.0f ? dy[i] : 0.0f;  // ReLU'
    max_pool2d_backward_naive(dz.data(), g.data(), argmax.data(), p);
    conv2d_backward_weights_naive(dw2.data(), db2.data(), x.data(), dz.data(), d);
    expect_close("conv+relu+maxpool dw vs naive", dw1, dw2, 1e-4f, 1e-3f);
    expect_close("conv+relu+maxpool db vs naive", db1, db2, 1e-4f, 1e-3f);
}

void test_pool() {
    struct Case { int64_t N, H, W, C, PH, PW, sh, sw, pt, pl; };
    const Case cases[] = {{2, 6, 6, 3, 2, 2, 2, 2, 0, 0}, {1, 7, 5, 17, 3, 3, 2, 2, 1, 1},
                          {2, 5, 9, 33, 3, 2, 1, 2, 0, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 0, 0}};
    for (const Case& c : cases) {
        Pool2dDims d{c.N, c.H, c.W, c.C, c.PH, c.PW, 0, 0, c.sh, c.sw, c.pt, c.pl};
        d.OH = (c.H + 2 * c.pt - c.PH) / c.sh + 1;
        d.OW = (c.W + 2 * c.pl - c.PW) / c.sw + 1;
        auto x = randn(c.N * c.H * c.W * c.C);
        const size_t ysz = c.N * d.OH * d.OW * c.C;
        std::vector<float> y1(ysz), y2(ysz), dx1(x.size()), dx2(x.size());
        std::vector<int32_t> a1(ysz), a2(ysz);
        max_pool2d_forward(y1.data(), a1.data(), x.data(), d);
        max_pool2d_forward_naive(y2.data(), a2.data(), x.data(), d);
        expect_close("max_pool2d forward vs naive", y1, y2, 0, 0);
        expect("max_pool2d argmax vs naive", a1 == a2);
        auto dy = randn(ysz);
        expect("max_pool2d backward: argmax in range",
               max_pool2d_backward(dx1.data(), dy.data(), a1.data(), d) == 0);
        max_pool2d_backward_naive(dx2.data(), dy.data(), a2.data(), d);
        expect_close("max_pool2d backward vs naive", dx1, dx2);
        // Corrupted argmax entries are skipped and counted, never written out of bounds.
        a1[0] = -5;
        a1[ysz - 1] = 1 << 30;
        expect("max_pool2d backward counts bad argmax",
               max_pool2d_backward(dx1.data(), dy.data(), a1.data(), d) == (ysz > 1 ? 2 : 1));
        avg_pool2d_forward(y1.data(), x.data(), d);
        avg_pool2d_forward_naive(y2.data(), x.data(), d);
        expect_close("avg_pool2d forward vs naive", y1, y2);
        avg_pool2d_backward(dx1.data(), dy.data(), d);
        avg_pool2d_backward_naive(dx2.data(), dy.data(), d);
        expect_close("avg_pool2d backward vs naive", dx1, dx2);
    }
}

void test_activations() {
    const char* names[] = {"linear", "relu", "sigmoid", "tanh", "elu", "swish", "leaky_relu"};
    for (int64_t n : {int64_t(1), int64_t(17), int64_t(100003)}) {
        auto x = randn(n, 5.0f), dy = randn(n);
        x[0] = NAN;  // NaN must propagate, not crash
        for (const char* name : names) {
            Activation kind;
            expect("activation_from_name", activation_from_name(name, &kind));
            std::vector<float> y1(n), y2(n), dx1(n), dx2(n);
            activation_forward(y1.data(), x.data(), n, kind, 0.7f);
            activation_forward_naive(y2.data(), x.data(), n, kind, 0.7f);
            expect("activation forward propagates NaN", kind == Activation::relu || std::isnan(y1[0]));
            y1[0] = y2[0] = 0;
            expect_close(name, y1, y2, 1e-5f, 1e-6f);
            activation_backward(dx1.data(), x.data(), y2.data(), dy.data(), n, kind, 0.7f);
            activation_backward_naive(dx2.data(), x.data(), y2.data(), dy.data(), n, kind, 0.7f);
            dx1[0] = dx2[0] = 0;
            expect_close(name, dx1, dx2, 1e-5f, 1e-6f);
        }
        Activation bogus;
        expect("unknown activation name refused", !activation_from_name("bogus", &bogus));
        for (int64_t asz : {int64_t(1), n}) {
            auto alpha = randn(asz);
            std::vector<float> y(n), dx(n), da(asz);
            prelu_forward(y.data(), x.data(), alpha.data(), n, asz);
            prelu_backward(dx.data(), da.data(), x.data(), alpha.data(), dy.data(), n, asz);
            expect("prelu ran", true);
        }
    }
}

void test_softmax_and_losses() {
    for (int64_t rows : {int64_t(1), int64_t(5), int64_t(3000)})
        for (int64_t cols : {int64_t(1), int64_t(10), int64_t(37)}) {
            auto x = randn(rows * cols, 3.0f);
            std::vector<float> y1(x.size()), y2(x.size()), dx(x.size()), probs(x.size());
            softmax_forward(y1.data(), x.data(), rows, cols);
            softmax_forward_naive(y2.data(), x.data(), rows, cols);
            expect_close("softmax vs naive", y1, y2, 1e-5f, 1e-7f);
            softmax_backward(dx.data(), y1.data(), x.data(), rows, cols);
            std::vector<float> labels(x.size(), 0.0f);
            std::vector<int32_t> idx(rows);
            for (int64_t r = 0; r < rows; ++r) {
                idx[r] = static_cast<int32_t>(r % cols);
                labels[r * cols + idx[r]] = 1.0f;
            }
            const double l1 = softmax_xent_forward_backward(dx.data(), probs.data(), x.data(),
                                                            labels.data(), rows, cols);
            const double l2 = softmax_xent_sparse_forward_backward(dx.data(), probs.data(), x.data(),
                                                                   idx.data(), rows, cols);
            expect("softmax-xent dense == sparse", std::fabs(l1 - l2) <= 1e-9 * (1 + std::fabs(l1)));
            const double l3 = categorical_xent(dx.data(), y1.data(), labels.data(), rows, cols);
            expect("categorical_xent finite", std::isfinite(l3));
            const double m = mse(dx.data(), x.data(), y1.data(), rows * cols);
            expect("mse finite", std::isfinite(m));
        }
}

void test_lrn() {
    for (int64_t C : {int64_t(1), int64_t(5), int64_t(96)})
        for (int64_t r : {int64_t(0), int64_t(2), int64_t(7)}) {
            LrnDims d{11, C, r, 1.0f, 1e-2f, 0.75f};
            auto x = randn(d.rows * C), dy = randn(d.rows * C);
            std::vector<float> y1(x.size()), y2(x.size()), s1(x.size()), s2(x.size());
            std::vector<float> dx1(x.size()), dx2(x.size());
            lrn_forward(y1.data(), s1.data(), x.data(), d);
            lrn_forward_naive(y2.data(), s2.data(), x.data(), d);
            expect_close("lrn forward vs naive", y1, y2, 1e-5f, 1e-6f);
            lrn_backward(dx1.data(), x.data(), y1.data(), s1.data(), dy.data(), d);
            lrn_backward_naive(dx2.data(), x.data(), y2.data(), s2.data(), dy.data(), d);
            expect_close("lrn backward vs naive", dx1, dx2, 1e-4f, 1e-5f);
        }
}

void test_dense() {
    for (int64_t n : {int64_t(1), int64_t(9)}) {
        DenseDims d{n, 37, 11};
        auto x = randn(n * 37), w = randn(37 * 11), b = randn(11), dy = randn(n * 11);
        std::vector<float> y1(n * 11), y2(n * 11), dx1(x.size()), dx2(x.size()), dw1(w.size()),
            dw2(w.size()), db1(11), db2(11);
        dense_forward(y1.data(), x.data(), w.data(), b.data(), d, true);
        dense_forward_naive(y2.data(), x.data(), w.data(), b.data(), d, true);
        expect_close("dense forward vs naive", y1, y2);
        dense_backward(dx1.data(), dw1.data(), db1.data(), x.data(), w.data(), dy.data(), d);
        dense_backward_naive(dx2.data(), dw2.data(), db2.data(), x.data(), w.data(), dy.data(), d);
        expect_close("dense backward dx", dx1, dx2);
        expect_close("dense backward dw", dw1, dw2);
        expect_close("dense backward db", db1, db2);
    }
}

void test_network() {
    // conv(3x3 same, relu) -> maxpool 2 -> flatten -> dense(softmax), against the kernels.
    auto w = randn(3 * 3 * 2 * 4), b = randn(4), wd = randn(4 * 4 * 4 * 3), bd = randn(3);
    Network net({8, 8, 2});
    net.add_conv2d(w.data(), b.data(), 3, 3, 4, 1, 1, 1, 1, 8, 8, 1, "relu", 1.0f);
    net.add_pool2d(true, 2, 2, 2, 2, 0, 0, 4, 4);
    net.add_flatten();
    net.add_dense(wd.data(), bd.data(), 64, 3, "softmax", 1.0f);
    bool threw = false;
    try {
        net.add_dense(wd.data(), bd.data(), 5, 3, "relu", 1.0f);  // does not fit (3,)
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    expect("network rejects a mismatched step", threw);
    const int64_t n = 3;
    auto x = randn(n * 128);
    std::vector<float> out(n * 3), z(n * 256), p(n * 64), ref(n * 3);
    net.forward(out.data(), x.data(), n);
    conv2d_forward_naive(z.data(), x.data(), w.data(), b.data(),
                         Conv2dDims{n, 8, 8, 2, 3, 3, 4, 8, 8, 1, 1, 1, 1, 1}, true);
    max_pool2d_forward_naive(p.data(), nullptr, z.data(), Pool2dDims{n, 8, 8, 4, 2, 2, 4, 4, 2, 2, 0, 0});
    dense_forward_naive(ref.data(), p.data(), wd.data(), bd.data(), DenseDims{n, 64, 3});
    softmax_forward_naive(ref.data(), ref.data(), n, 3);
    expect_close("network forward vs kernels", out, ref, 1e-4f, 1e-5f);
}

void test_network_kept_winograd_kernels() {
    // 13x13x64 -> 11x11x40 (F(4x4, 3x3) kept: 9 tiles per image), 10x10x128 -> 10x10x128
    // "same" (F(2x2, 3x3) kept), single 8x8x128 -> 8x8x200 and 16x16x64 -> 16x16x128 "same"
    // images (16 tiles of a 1.6 MiB F(2x2, 3x3) and a 1.1 MiB F(4x4, 3x3) kernel, streamed),
    // each followed by an edit of its weights in place:
    // a network sees it, a network with fixed weights (the C API's) keeps the kernel it made
    // first (where Winograd runs: on AVX-512).
    struct Case {
        int64_t hw, C, K, pad, n;
    };
    for (const Case c : {Case{13, 64, 40, 0, 2}, Case{10, 128, 128, 1, 2},
                         Case{8, 128, 200, 1, 1}, Case{16, 64, 128, 1, 1}}) {
        const int64_t o = c.hw + 2 * c.pad - 2, n = c.n;
        const Conv2dDims d{n, c.hw, c.hw, c.C, 3, 3, c.K, o, o, 1, 1, c.pad, c.pad, 1};
        auto w = randn(9 * c.C * c.K, 0.1f), b = randn(c.K), x = randn(n * c.hw * c.hw * c.C);
        Network net({c.hw, c.hw, c.C}), fixed({c.hw, c.hw, c.C});
        for (Network* m : {&net, &fixed})
            m->add_conv2d(w.data(), b.data(), 3, 3, c.K, 1, 1, c.pad, c.pad, o, o, 1, "relu", 1.0f);
        fixed.fix_weights();
        std::vector<float> out(n * o * o * c.K), ref(out.size()), first(out.size());
        for (int edit = 0; edit < 2; ++edit) {
            conv2d_forward_naive(ref.data(), x.data(), w.data(), b.data(), d, true);
            for (int call = 0; call < 2; ++call) {
                net.forward(out.data(), x.data(), n);
                expect_close("network kept Winograd kernel vs naive", out, ref, 1e-4f, 1e-4f);
            }
            const std::vector<float> seen = out;  // net's output on these weights
            fixed.forward(out.data(), x.data(), n);
            if (edit == 0) {  // the same kernel as net's, made the same way: the same bits
                expect_close("fixed weights: as the network that compares", out, seen, 0.0f,
                             0.0f);
                first = out;
            } else if (conv2d_forward_reads_winograd_kernel(d)) {
                expect_close("fixed weights: the kernel made at the first call", out, first,
                             0.0f, 0.0f);
            } else {  // no kept kernel (no AVX-512, or CNNFAST_SIMD caps it): current weights
                expect_close("fixed weights without a kept kernel", out, ref, 1e-4f, 1e-4f);
            }
            for (float& v : w) v = -v;  // in place, as training or set_weights write
        }
    }
}

void test_batchnorm() {
    for (int64_t rows : {int64_t(1), int64_t(7), int64_t(1500)})
        for (int64_t C : {int64_t(1), int64_t(16)}) {
            BatchNormDims d{rows, C, 1e-3f};
            auto x = randn(rows * C, 2.0f), dy = randn(rows * C), g = randn(C), b = randn(C);
            std::vector<float> y1(x.size()), y2(x.size()), m1(C), m2(C), v1(C), v2(C);
            batchnorm_forward_training(y1.data(), m1.data(), v1.data(), x.data(), g.data(),
                                       b.data(), d);
            batchnorm_forward_training_naive(y2.data(), m2.data(), v2.data(), x.data(), g.data(),
                                             b.data(), d);
            // float64 sums in chunks vs in one loop: the same float32 rounding but a few ulps.
            expect_close("batchnorm mean vs naive", m1, m2, 1e-6f, 1e-6f);
            expect_close("batchnorm var vs naive", v1, v2, 1e-6f, 1e-6f);
            expect_close("batchnorm forward vs naive", y1, y2, 1e-5f, 1e-5f);
            std::vector<float> dx1(x.size()), dx2(x.size()), dg1(C), dg2(C), db1(C), db2(C);
            batchnorm_backward_training(dx1.data(), dg1.data(), db1.data(), x.data(), dy.data(),
                                        m1.data(), v1.data(), g.data(), d);
            batchnorm_backward_training_naive(dx2.data(), dg2.data(), db2.data(), x.data(),
                                              dy.data(), m1.data(), v1.data(), g.data(), d);
            expect_close("batchnorm dx vs naive", dx1, dx2, 1e-4f, 1e-5f);
            expect_close("batchnorm dgamma vs naive", dg1, dg2, 1e-5f, 1e-4f);
            expect_close("batchnorm dbeta vs naive", db1, db2, 1e-5f, 1e-4f);
        }
}

void test_spatial() {
    // Padding then cropping returns the input; upsampling's backward of a constant block sum.
    const Pad2dDims pd{2, 3, 4, 5, 1, 2, 0, 3};
    auto x = randn(2 * 3 * 4 * 5);
    std::vector<float> big(2 * 6 * 7 * 5), back(x.size());
    zero_pad2d(big.data(), x.data(), pd);
    crop2d(back.data(), big.data(), pd);
    expect_close("pad then crop", back, x, 0.0f, 0.0f);
    const Upsample2dDims ud{2, 3, 4, 5, 2, 3};
    std::vector<float> up(2 * 6 * 12 * 5), dx(x.size()), want(x.size());
    upsample2d_nearest_forward(up.data(), x.data(), ud);
    upsample2d_nearest_backward(dx.data(), up.data(), ud);
    for (size_t i = 0; i < x.size(); ++i) want[i] = 6.0f * x[i];
    expect_close("upsample backward of upsample", dx, want, 1e-6f, 1e-6f);
    const GlobalPoolDims gd{2, 3, 4, 5};
    std::vector<float> avg(10), mx(10);
    std::vector<int32_t> am(10);
    global_avg_pool2d_forward(avg.data(), x.data(), gd);
    global_max_pool2d_forward(mx.data(), am.data(), x.data(), gd);
    bool ok = true;
    for (int64_t n = 0; n < 2; ++n)
        for (int64_t c = 0; c < 5; ++c) {
            double s = 0.0;
            float m = -INFINITY;
            for (int64_t p = 0; p < 12; ++p) {
                s += x[(n * 12 + p) * 5 + c];
                m = std::max(m, x[(n * 12 + p) * 5 + c]);
            }
            ok = ok && std::fabs(avg[n * 5 + c] - s / 12) < 1e-6 && mx[n * 5 + c] == m &&
                 x[(n * 12 + am[n * 5 + c]) * 5 + c] == m;
        }
    expect("global average and max pooling", ok);
}

void test_network_batchnorm_step() {
    // A BatchNormalization step at inference equals x * scale + shift.
    auto g = randn(3), b = randn(3), m = randn(3), x = randn(4 * 3);
    std::vector<float> v{0.5f, 1.0f, 2.0f}, out(x.size()), ref(x.size());
    Network net({3});
    net.add_batchnorm(g.data(), b.data(), m.data(), v.data(), 1e-3f);
    net.forward(out.data(), x.data(), 4);
    for (size_t i = 0; i < x.size(); ++i)
        ref[i] = (x[i] - m[i % 3]) / std::sqrt(v[i % 3] + 1e-3f) * g[i % 3] + b[i % 3];
    expect_close("network batchnorm step", out, ref, 1e-5f, 1e-5f);
}

std::string read_file(const char* path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// Valid file: loads and predicts. Then `mutations` corrupted copies: bit flips, byte
// overwrites, truncations, insertions, header-length edits; each loads or throws.
void test_model_reader(const char* path, int mutations) {
    const std::string good = read_file(path);
    expect("model file is readable", good.size() > 8);
    try {
        auto model = parse_model_bytes(good, path);
        std::vector<float> x(2 * model->network->input_size(), 0.5f);
        std::vector<float> y(2 * model->network->output_size());
        model->network->forward(y.data(), x.data(), 2);
        expect("valid model predicts finite values", std::isfinite(y[0]));
    } catch (const std::exception& e) {
        std::printf("FAIL valid model: %s\n", e.what());
        ++g_failures;
    }
    std::uniform_int_distribution<int> op(0, 5), byte(0, 255);
    int loaded = 0, refused = 0;
    for (int i = 0; i < mutations; ++i) {
        std::string bad = good;
        const int edits = 1 + i % 4;
        for (int e = 0; e < edits && !bad.empty(); ++e) {
            std::uniform_int_distribution<size_t> at(0, bad.size() - 1);
            // Most edits go into the 8-byte length and the JSON header, where the parsing is.
            const size_t header_end = std::min(bad.size(), size_t(8) + 4096);
            std::uniform_int_distribution<size_t> at_header(0, header_end - 1);
            const size_t pos = (i % 3) ? at_header(g_rng) : at(g_rng);
            switch (op(g_rng)) {
                case 0: bad[pos] ^= static_cast<char>(1 << (byte(g_rng) % 8)); break;
                case 1: bad[pos] = static_cast<char>(byte(g_rng)); break;
                case 2: bad.resize(pos); break;
                case 3: bad.insert(pos, 1, static_cast<char>(byte(g_rng))); break;
                case 4: bad[pos] = "{}[],:\"0123456789-e.ntf"[byte(g_rng) % 23]; break;
                default: bad[byte(g_rng) % 8] = static_cast<char>(byte(g_rng)); break;
            }
        }
        try {
            auto model = parse_model_bytes(bad, "mutant");
            ++loaded;
            // A file that still loads must also run (its shapes were validated).
            if (model->network->input_size() <= (1 << 20) && model->network->output_size() <= (1 << 20)) {
                std::vector<float> x(model->network->input_size(), 0.25f);
                std::vector<float> y(model->network->output_size());
                model->network->forward(y.data(), x.data(), 1);
            }
        } catch (const std::exception&) {
            ++refused;
        }
    }
    std::printf("model reader: %d mutated files, %d loaded, %d refused with an exception\n",
                mutations, loaded, refused);
    g_checks += mutations;
}

}  // namespace

// Keras's rule of one optimizer step for element i, in double: the oracle of optimizer_update.
struct OptimizerOracle {
    std::vector<double> w, s0, s1, s2;
    void step(const OptimizerSettings& o, const std::vector<float>& g) {
        const double lr = o.lr, b1 = o.beta_1, b2 = o.beta_2, eps = o.epsilon, rho = o.rho;
        const double t = static_cast<double>(o.iteration);
        for (size_t i = 0; i < w.size(); ++i) {
            const double gi = g[i];
            w[i] -= w[i] * o.weight_decay * lr;
            switch (o.kind) {
                case OptimizerKind::rmsprop: {
                    s0[i] = rho * s0[i] + (1 - rho) * gi * gi;
                    s2[i] = rho * s2[i] + (1 - rho) * gi;
                    const double inc = lr * gi / std::sqrt(s0[i] - s2[i] * s2[i] + eps);
                    s1[i] = o.momentum * s1[i] + inc;
                    w[i] -= s1[i];
                    break;
                }
                case OptimizerKind::adagrad:
                    s0[i] += gi * gi;
                    w[i] -= lr * gi / std::sqrt(s0[i] + eps);
                    break;
                case OptimizerKind::adadelta: {
                    s0[i] = rho * s0[i] + (1 - rho) * gi * gi;
                    const double d = -std::sqrt(s1[i] + eps) * gi / std::sqrt(s0[i] + eps);
                    s1[i] = rho * s1[i] + (1 - rho) * d * d;
                    w[i] += lr * d;
                    break;
                }
                case OptimizerKind::adamax:
                    s0[i] += (gi - s0[i]) * (1 - b1);
                    s1[i] = std::max(b2 * s1[i], std::fabs(gi));
                    w[i] -= lr * s0[i] / ((1 - std::pow(b1, t)) * (s1[i] + eps));
                    break;
                case OptimizerKind::nadam: {
                    const double u_t = nadam_momentum(b1, o.iteration);
                    const double u_next = nadam_momentum(b1, o.iteration + 1);
                    s0[i] += (gi - s0[i]) * (1 - b1);
                    s1[i] += (gi * gi - s1[i]) * (1 - b2);
                    const double m_hat = u_next * s0[i] / (1 - o.u_product * u_next) +
                                         (1 - u_t) * gi / (1 - o.u_product);
                    w[i] -= m_hat * lr / (std::sqrt(s1[i] / (1 - std::pow(b2, t))) + eps);
                    break;
                }
                default:
                    break;
            }
        }
    }
};

void test_optimizers() {
    const int64_t n = 70001;  // above the threading grain, with a tail
    for (OptimizerKind kind : {OptimizerKind::rmsprop, OptimizerKind::adagrad,
                               OptimizerKind::adadelta, OptimizerKind::adamax,
                               OptimizerKind::nadam}) {
        OptimizerSettings o;
        o.kind = kind;
        o.lr = 0.01f;
        o.weight_decay = 0.01f;
        o.momentum = 0.5f;
        o.centered = true;
        std::vector<float> w = randn(n), a(n, 0.0f), b(n, 0.0f), c(n, 0.0f);
        OptimizerOracle ref{std::vector<double>(w.begin(), w.end()), std::vector<double>(n),
                            std::vector<double>(n), std::vector<double>(n)};
        expect("optimizer slots present", !optimizer_missing_slot(o, a.data(), b.data(),
                                                                  c.data()));
        double u_product = 1.0;
        for (int64_t t = 1; t <= 3; ++t) {
            std::vector<float> g = randn(n);
            o.iteration = t;
            u_product *= nadam_momentum(o.beta_1, t);
            o.u_product = u_product;
            ref.step(o, g);
            optimizer_update(w.data(), g.data(), a.data(), b.data(), c.data(), n, nullptr, 0, o);
        }
        // A handful of float32 roundings per step of O(1) values over 3 steps.
        expect_close("optimizer_update against Keras's rule in double", w,
                     std::vector<float>(ref.w.begin(), ref.w.end()), 1e-5f, 1e-6f);
    }
    OptimizerSettings rms;
    rms.kind = OptimizerKind::rmsprop;
    expect("rmsprop without its velocity is refused",
           optimizer_missing_slot(rms, nullptr, nullptr, nullptr) != nullptr);
    // global_clipnorm: the gradients scaled to norm 1 (plain SGD shows them in w).
    std::vector<float> g = randn(n), w(n, 0.0f);
    double norm = 0.0;
    for (float v : g) norm += static_cast<double>(v) * v;
    norm = std::sqrt(norm);
    OptimizerSettings sgd;
    sgd.lr = 1.0f;
    sgd.global_clipnorm = 1.0f;
    std::vector<float> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = static_cast<float>(-g[i] / norm);
    optimizer_update(w.data(), g.data(), nullptr, nullptr, nullptr, n, nullptr, 0, sgd);
    expect_close("global_clipnorm", w, want, 1e-6f, 1e-9f);
}

// Issue 19's kernels against their naive loops (and the adjoint of the resampling).
void test_issue19_kernels() {
    // Every depthwise table the CPU runs, against the naive loops: multipliers 1 and 3, a tail
    // of channels past a block of 16, stride, padding and dilation.
    const detail::DepthwiseSimd* tables[] = {
        detail::depthwise_simd_baseline(),
        cpu_has_avx2() ? detail::depthwise_simd_avx2() : nullptr,
        cpu_has_avx512() ? detail::depthwise_simd_avx512() : nullptr};
    for (const detail::DepthwiseSimd* k : tables) {
        if (!k) continue;
        for (int64_t M : {int64_t(1), int64_t(3)}) {
            const Conv2dDims d{2, 9, 8, 19, 3, 3, 19 * M, 5, 8, 2, 1, 2, 1, 19, 2, 1};
            auto x = randn(d.N * d.H * d.W * d.C), w = randn(9 * d.K), b = randn(d.K);
            std::vector<float> y1(d.N * d.OH * d.OW * d.K), y2(y1.size());
            k->forward_rows(y1.data(), x.data(), w.data(), b.data(), d, true, 0, d.N * d.OH);
            conv2d_forward_naive(y2.data(), x.data(), w.data(), b.data(), d, true);
            expect_close(k->name, y1, y2, 1e-5f, 1e-5f);
            auto dy = randn(y1.size());
            std::vector<float> dx1(x.size()), dx2(x.size()), dw1(w.size()), dw2(w.size()),
                db1(d.K), db2(d.K);
            k->backward_data_rows(dx1.data(), dy.data(), w.data(), d, 0, d.N * d.H);
            conv2d_backward_data_naive(dx2.data(), dy.data(), w.data(), d);
            expect_close(k->name, dx1, dx2, 1e-5f, 1e-5f);
            k->backward_weights_channels(dw1.data(), db1.data(), x.data(), dy.data(), d, 0, d.C);
            conv2d_backward_weights_naive(dw2.data(), db2.data(), x.data(), dy.data(), d);
            expect_close(k->name, dw1, dw2, 1e-4f, 1e-4f);
            expect_close(k->name, db1, db2, 1e-5f, 1e-5f);
        }
    }
    for (int64_t period : {int64_t(1), int64_t(7)}) {
        const int64_t n = 7 * 40001;
        auto x = randn(n), s = randn(period), o = randn(period);
        std::vector<float> y1(n), y2(n);
        rescaling_forward(y1.data(), x.data(), s.data(), o.data(), n, period);
        rescaling_forward_naive(y2.data(), x.data(), s.data(), o.data(), n, period);
        expect_close("rescaling forward vs naive", y1, y2, 0.0f, 0.0f);
        rescaling_backward(y1.data(), x.data(), s.data(), n, period);
        rescaling_backward_naive(y2.data(), x.data(), s.data(), n, period);
        expect_close("rescaling backward vs naive", y1, y2, 0.0f, 0.0f);
    }
    {
        const int64_t N = 3, HW = 20, C = 40, n = N * HW * C;
        auto x = randn(n);
        std::vector<float> y1(n), y2(n);
        gaussian_noise_forward(y1.data(), x.data(), n, 0.5, 7);
        gaussian_noise_forward_naive(y2.data(), x.data(), n, 0.5, 7);
        expect_close("gaussian noise vs naive", y1, y2, 0.0f, 0.0f);
        std::vector<uint8_t> m1(N * C), m2(N * C);
        spatial_dropout_forward(y1.data(), m1.data(), x.data(), N, HW, C, 0.3, 9);
        spatial_dropout_forward_naive(y2.data(), m2.data(), x.data(), N, HW, C, 0.3, 9);
        expect_close("spatial dropout vs naive", y1, y2, 0.0f, 0.0f);
        expect("spatial dropout masks agree", m1 == m2);
    }
    {
        const CropDims d{2, 9, 7, 3, 5, 11};
        auto x = randn(d.N * d.H * d.W * d.C);
        std::vector<float> y1(d.N * d.OH * d.OW * d.C), y2(y1.size());
        resize_bilinear_forward(y1.data(), x.data(), d);
        resize_bilinear_forward_naive(y2.data(), x.data(), d);
        expect_close("bilinear resize vs naive", y1, y2, 1e-5f, 1e-5f);
    }
    {
        const AffineDims d{2, 6, 5, 3};
        const int64_t n = d.N * d.H * d.W * d.C;
        std::vector<float> t(d.N * 8), y(n), dx(n);
        random_rotation_transforms(t.data(), d, -0.3f, 0.3f, 5);
        auto x = randn(n), dy = randn(n);
        for (FillMode fill : {FillMode::reflect, FillMode::wrap, FillMode::constant,
                              FillMode::nearest}) {
            affine_transform_forward(y.data(), x.data(), t.data(), d, fill, true, 0.0f);
            affine_transform_backward(dx.data(), dy.data(), t.data(), d, fill, true);
            double lhs = 0, rhs = 0, mag = 1;
            for (int64_t i = 0; i < n; ++i) {
                lhs += double(y[i]) * dy[i];
                rhs += double(x[i]) * dx[i];
                mag += std::fabs(double(x[i]) * dx[i]);
            }
            expect("affine backward is the adjoint", std::fabs(lhs - rhs) <= 1e-5 * mag);
        }
    }
}

// The Keras losses (losses.h) against naive double loops of their formulas, and the same
// results for any thread count (n above the threading grain).
void test_losses() {
    for (int64_t rows : {int64_t(1), int64_t(7), int64_t(9000)}) {
        const int64_t cols = 13, n = rows * cols;
        std::uniform_real_distribution<float> unit(0.0f, 1.0f);
        std::vector<float> p(n), t(n), z = randn(n, 3.0f), y = randn(n), g(n), want(n);
        for (int64_t i = 0; i < n; ++i) {
            p[i] = unit(g_rng);
            t[i] = unit(g_rng) < 0.3f ? 1.0f : 0.0f;
        }
        p[0] = 0.0f;  // clipped: no gradient, a finite loss
        const double s = 0.1, delta = 0.5;
        // Binary cross-entropy from probabilities, and from logits.
        double ref = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double ts = t[i] * (1 - s) + 0.5 * s;
            const double c = std::min(std::max(double(p[i]), 1e-7), 1 - 1e-7);
            ref += -(ts * std::log(c) + (1 - ts) * std::log(1 - c));
            want[i] = (p[i] >= 1e-7 && p[i] <= 1 - 1e-7)
                          ? float((c - ts) / (c * (1 - c)) / double(n)) : 0.0f;
        }
        double got = binary_xent(g.data(), p.data(), t.data(), n, s);
        expect("binary_xent value", std::fabs(got - ref / n) <= 1e-12 * std::fabs(ref / n));
        expect_close("binary_xent gradient", g, want, 1e-6f, 0.0f);
        ref = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double zi = z[i], ts = t[i] * (1 - s) + 0.5 * s;
            ref += std::max(zi, 0.0) - zi * ts + std::log1p(std::exp(-std::fabs(zi)));
            want[i] = float((1 / (1 + std::exp(-zi)) - ts) / double(n));
        }
        got = binary_xent_logits(g.data(), z.data(), t.data(), n, s, false);
        expect("binary_xent_logits value", std::fabs(got - ref / n) <= 1e-12 * (ref / n));
        expect_close("binary_xent_logits gradient", g, want, 1e-6f, 1e-12f);
        // Mean absolute error and Huber.
        double ref_mae = 0.0, ref_huber = 0.0;
        std::vector<float> want_huber(n);
        for (int64_t i = 0; i < n; ++i) {
            const double e = double(z[i]) - double(y[i]), a = std::fabs(e);
            ref_mae += a;
            ref_huber += a <= delta ? 0.5 * e * e : delta * a - 0.5 * delta * delta;
            want[i] = float((e > 0 ? 1.0 : e < 0 ? -1.0 : 0.0) / double(n));
            want_huber[i] = float(std::min(std::max(e, -delta), delta) / double(n));
        }
        got = mean_absolute_error(g.data(), z.data(), y.data(), n);
        expect("mean_absolute_error value", std::fabs(got - ref_mae / n) <= 1e-12 * (ref_mae / n));
        expect_close("mean_absolute_error gradient", g, want, 1e-6f, 0.0f);
        got = huber(g.data(), z.data(), y.data(), n, delta);
        expect("huber value", std::fabs(got - ref_huber / n) <= 1e-12 * (ref_huber / n));
        expect_close("huber gradient", g, want_huber, 1e-6f, 0.0f);
        // KL divergence and categorical hinge, per row of `cols`.
        double ref_kl = 0.0, ref_hinge = 0.0;
        std::vector<float> want_hinge(n);
        for (int64_t r = 0; r < rows; ++r) {
            double pos = 0.0, neg = -1e300;
            int64_t arg = 0;
            for (int64_t j = 0; j < cols; ++j) {
                const int64_t i = r * cols + j;
                const double tc = std::min(std::max(double(p[i]), 1e-7), 1.0);
                const double pc = std::min(std::max(double(t[i]), 1e-7), 1.0);
                ref_kl += tc * std::log(tc / pc);  // target p, prediction t: both in [0, 1]
                want[i] = (t[i] >= 1e-7f) ? float(-tc / pc / double(rows)) : 0.0f;
                pos += double(t[i]) * z[i];
                const double x = (1 - double(t[i])) * z[i];
                if (x > neg) neg = x, arg = j;
            }
            const double margin = neg - pos + 1;
            ref_hinge += std::max(margin, 0.0);
            for (int64_t j = 0; j < cols; ++j) {
                const double tj = t[r * cols + j];
                want_hinge[r * cols + j] = margin >= 0
                    ? float((-tj + (j == arg ? 1 - tj : 0.0)) / double(rows)) : 0.0f;
            }
        }
        got = kl_divergence(g.data(), t.data(), p.data(), rows, cols);
        expect("kl_divergence value", std::fabs(got - ref_kl / rows) <= 1e-12 * (ref_kl / rows));
        expect_close("kl_divergence gradient", g, want, 1e-6f, 0.0f);
        got = categorical_hinge(g.data(), z.data(), t.data(), rows, cols);
        expect("categorical_hinge value",
               std::fabs(got - ref_hinge / rows) <= 1e-12 * (1 + ref_hinge / rows));
        expect_close("categorical_hinge gradient", g, want_hinge, 1e-6f, 0.0f);
        // Bit-identical for 1 and 2 threads.
        const int before = get_num_threads();
        set_num_threads(1);
        const double one = huber(nullptr, z.data(), y.data(), n, delta) +
                           kl_divergence(nullptr, t.data(), p.data(), rows, cols);
        set_num_threads(2);
        const double two = huber(nullptr, z.data(), y.data(), n, delta) +
                           kl_divergence(nullptr, t.data(), p.data(), rows, cols);
        set_num_threads(before);
        expect("losses independent of the thread count", one == two);
    }
}

// The int8 convolution and dense layers (quantized.h) against their naive loops on odd shapes
// (padding, strides, dilation, 1x1, several row chunks), on every int8 GEMM path and every
// element-wise path: the integer sums are exact and the epilogue is the same float operations,
// so every output must be equal to the bit.
void test_int8() {
    std::mt19937 rng(77);
    std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127);
    const Conv2dDims convs[] = {
        {2, 7, 9, 3, 3, 3, 5, 7, 9, 1, 1, 1, 1, 1, 1, 1},
        {3, 11, 10, 7, 2, 3, 33, 6, 3, 2, 3, 1, 2, 1, 1, 1},
        {2, 9, 9, 5, 3, 3, 17, 9, 9, 1, 1, 2, 2, 1, 2, 2},
        {4, 6, 5, 19, 1, 1, 40, 6, 5, 1, 1, 0, 0, 1, 1, 1},
        {40, 8, 8, 16, 3, 3, 32, 8, 8, 1, 1, 1, 1, 1, 1, 1},
        {3, 28, 28, 1, 3, 3, 64, 26, 26, 1, 1, 0, 0, 1, 1, 1},  // the Keras MNIST CNN's first
        // At most 16 filters: the narrow-layer sums (conv2d_int8_narrow.h) on AVX512-VNNI
        {2, 28, 28, 1, 5, 5, 6, 28, 28, 1, 1, 2, 2, 1, 1, 1},   // LeNet-5 C1
        {2, 14, 14, 6, 5, 5, 16, 10, 10, 1, 1, 0, 0, 1, 1, 1},  // LeNet-5 C3
        {3, 12, 37, 20, 3, 3, 12, 5, 37, 2, 1, 1, 1, 1, 2, 1},  // 16 + 16 + 5 pixels a row
        // Their pixels-in-lanes form (pixel step C * stride_w <= 4, at most 8 filters)
        {2, 9, 40, 2, 3, 3, 8, 9, 40, 1, 1, 1, 1, 1, 1, 1},     // step 2, 16 + 16 + 8 pixels
        {2, 8, 23, 1, 2, 5, 1, 7, 8, 1, 3, 0, 2, 1, 1, 1},      // step 3, 8 pixels
        {1, 6, 70, 4, 3, 2, 7, 6, 69, 1, 1, 1, 0, 1, 1, 1},     // step 4, 4 x 16 + 5 pixels
        {1, 4, 18, 1, 1, 3, 1, 4, 18, 1, 1, 0, 1, 1, 1, 1},     // 16 + 2 pixels
        // The pooled AMX form (pixel step > 4): spans of two 64-byte chunks, and a dilated
        // kernel (the rows of the two output rows not shared)
        {2, 10, 12, 16, 3, 5, 10, 8, 8, 1, 1, 0, 0, 1, 1, 1},
        {1, 11, 11, 5, 3, 3, 9, 7, 9, 1, 1, 0, 0, 1, 2, 1},
        // A kernel covering the whole input: its rows are the columns (LeNet-5's C5)
        {3, 4, 5, 7, 4, 5, 33, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    };
    for (const char* gemm_path : {"portable", "avx512_vnni", "amx_int8"}) {
        if (!set_gemm_u8s8_path(gemm_path)) continue;
        for (const char* ew_path : {"baseline", "avx512"}) {
            if (!set_int8_elementwise_path(ew_path)) continue;
            for (const Conv2dDims& d : convs) {
                std::vector<uint8_t> xq(static_cast<size_t>(d.N * d.H * d.W * d.C));
                std::vector<int8_t> w(static_cast<size_t>(d.KH * d.KW * d.C * d.K));
                for (auto& v : xq) v = static_cast<uint8_t>(u8(rng));
                for (auto& v : w) v = static_cast<int8_t>(s8(rng));
                const std::vector<float> bias = randn(d.K), w_scale = randn(d.K, 0.01f);
                const Int8PackedKernel packed(w.data(), d.KH * d.KW * d.C, d.K);
                const Int8Epilogue e{packed.sums(), w_scale.data(), bias.data(), 0.013f, 97,
                                     Activation::relu};
                const size_t out = static_cast<size_t>(d.N * d.OH * d.OW * d.K);
                std::vector<int32_t> s(out), s_ref(out);
                conv2d_sums_int8(s.data(), xq.data(), packed.packed(), packed.sums(), 97, d);
                conv2d_sums_int8_naive(s_ref.data(), xq.data(), w.data(), 97, d);
                expect("conv2d_sums_int8 equals the naive sums", s == s_ref);
                std::vector<float> y(out), y_ref(out);
                conv2d_forward_int8(y.data(), xq.data(), packed.packed(), e, d);
                conv2d_forward_int8_naive(y_ref.data(), xq.data(), w.data(), e, d);
                expect("conv2d_forward_int8 equals the naive loops", y == y_ref);
                // The input quantized with its padding (quantize_u8_padded) and read in place
                // (dims without padding, the slack promised): the outputs of the copying route.
                {
                    std::vector<float> xf = randn(xq.size());
                    std::vector<uint8_t> xq2(xq.size());
                    quantize_u8(xq2.data(), xf.data(), static_cast<int64_t>(xf.size()), 0.01f,
                                97);
                    Conv2dDims dp = d;
                    dp.H = conv2d_int8_padded_rows(d);
                    dp.W = conv2d_int8_padded_cols(d);
                    dp.pad_top = dp.pad_left = 0;
                    Int8Epilogue ecopy = e;  // the copying route: no slack promised
                    ecopy.act = Activation::tanh;
                    Int8Epilogue ein = ecopy;
                    ein.x_slack = conv2d_int8_input_slack(d);
                    std::vector<uint8_t> xp(static_cast<size_t>(d.N * dp.H * dp.W * d.C +
                                                                ein.x_slack));
                    quantize_u8_padded(xp.data(), xf.data(), d.N, d.H, d.W, d.C, d.pad_top,
                                       d.pad_left, dp.H, dp.W, 0.01f, 97);
                    std::vector<float> y1(out), y2(out);
                    conv2d_forward_int8(y1.data(), xq2.data(), packed.packed(), ecopy, d);
                    conv2d_forward_int8(y2.data(), xp.data(), packed.packed(), ein, dp);
                    expect("conv2d_forward_int8 reads a padded input in place", y1 == y2);
                    const Int8Output oq{0.02f, 5};
                    const size_t pooled = static_cast<size_t>(d.N * (d.OH / 2) * (d.OW / 2) * d.K);
                    std::vector<uint8_t> p1(pooled), p2(pooled);
                    conv2d_forward_int8_u8_avgpool2(p1.data(), xq2.data(), packed.packed(), ecopy,
                                                    oq, d);
                    conv2d_forward_int8_u8_avgpool2(p2.data(), xp.data(), packed.packed(), ein, oq,
                                                    dp);
                    expect("conv2d_forward_int8_u8_avgpool2 reads a padded input in place",
                           p1 == p2);
                }
                // The uint8 outputs, and 2x2 poolings fused into them: the bytes of the steps
                // they replace, for both signs of the scales (randn), with ReLU, none, and
                // activations applied on the float tiles (max pooling runs inside the
                // convolution after ReLU or none only).
                const Int8Output oq{0.02f, 5};
                const Pool2dDims pd{d.N, d.OH, d.OW, d.K, 2, 2, d.OH / 2, d.OW / 2, 2, 2, 0, 0};
                const size_t pooled_size = static_cast<size_t>(d.N * pd.OH * pd.OW * d.K);
                for (Activation act : {Activation::relu, Activation::linear, Activation::tanh,
                                       Activation::sigmoid, Activation::elu}) {
                    Int8Epilogue ep = e;
                    ep.act = act;
                    ep.act_alpha = 1.0f;
                    std::vector<float> yf(out), yf_pooled(pooled_size);
                    std::vector<uint8_t> full(out), full_ref(out), pooled(pooled_size),
                        pooled_ref(pooled_size);
                    conv2d_forward_int8(yf.data(), xq.data(), packed.packed(), ep, d);
                    quantize_u8(full_ref.data(), yf.data(), static_cast<int64_t>(out), oq.scale,
                                oq.zero_point);
                    conv2d_forward_int8_u8(full.data(), xq.data(), packed.packed(), ep, oq, d);
                    expect("conv2d_forward_int8_u8 equals quantize_u8 of the float output",
                           full == full_ref);
                    if (act == Activation::relu || act == Activation::linear) {
                        max_pool2d_u8_forward(pooled_ref.data(), full.data(), pd);
                        conv2d_forward_int8_u8_maxpool2(pooled.data(), xq.data(),
                                                        packed.packed(), ep, oq, d);
                        expect("conv2d_forward_int8_u8_maxpool2 equals the two steps",
                               pooled == pooled_ref);
                    }
                    avg_pool2d_forward(yf_pooled.data(), yf.data(), pd);
                    quantize_u8(pooled_ref.data(), yf_pooled.data(),
                                static_cast<int64_t>(pooled_size), oq.scale, oq.zero_point);
                    conv2d_forward_int8_u8_avgpool2(pooled.data(), xq.data(), packed.packed(), ep,
                                                    oq, d);
                    expect("conv2d_forward_int8_u8_avgpool2 equals the three steps",
                           pooled == pooled_ref);
                }
            }
            const DenseDims dd{37, 300, 45};
            std::vector<uint8_t> xq(static_cast<size_t>(dd.N * dd.IN));
            std::vector<int8_t> w(static_cast<size_t>(dd.IN * dd.OUT));
            for (auto& v : xq) v = static_cast<uint8_t>(u8(rng));
            for (auto& v : w) v = static_cast<int8_t>(s8(rng));
            const std::vector<float> w_scale = randn(dd.OUT, 0.01f);
            const Int8PackedKernel packed(w.data(), dd.IN, dd.OUT);
            const Int8Epilogue e{packed.sums(), w_scale.data(), nullptr, 0.02f, 3};
            std::vector<float> y(static_cast<size_t>(dd.N * dd.OUT)), y_ref(y.size());
            dense_forward_int8(y.data(), xq.data(), packed.packed(), e, dd);
            dense_forward_int8_naive(y_ref.data(), xq.data(), w.data(), e, dd);
            expect("dense_forward_int8 equals the naive loops", y == y_ref);
            // Quantization: every path against the naive loop, ties and clamps included.
            std::vector<float> x = randn(5003, 3.0f);
            x[0] = 0.5f * 0.04f;
            x[1] = 1e30f;
            x[2] = -1e30f;
            std::vector<uint8_t> q(x.size()), q_ref(x.size());
            quantize_u8(q.data(), x.data(), static_cast<int64_t>(x.size()), 0.04f, 128);
            quantize_u8_naive(q_ref.data(), x.data(), static_cast<int64_t>(x.size()), 0.04f, 128);
            expect("quantize_u8 equals the naive loop", q == q_ref);
        }
    }
    set_gemm_u8s8_path("auto");
    set_int8_elementwise_path("auto");
}

// The weights' digest (weight_digest.h): the same on every SIMD path, on equal arrays, and
// changed by the edits a user makes in place, at the array's start, end, partial last block and
// a whole block's boundary.
void test_weight_digest() {
    for (int64_t count : {int64_t{1}, int64_t{127}, int64_t{128}, int64_t{129}, int64_t{1000},
                          int64_t{37 * 1024 + 5}}) {
        const std::vector<float> w = randn(static_cast<size_t>(count));
        expect("digest: baseline path", detail::set_weight_digest_path("baseline"));
        const WeightDigest spec = weight_digest(w.data(), count);
        if (detail::set_weight_digest_path("avx512"))
            expect("digest: AVX-512 equals baseline", weight_digest(w.data(), count) == spec);
        detail::set_weight_digest_path("auto");
        const WeightDigest now = weight_digest(w.data(), count);
        std::vector<float> copy = w;
        expect("digest: equal arrays", weight_digest(copy.data(), count) == now);
        auto changed = [&](const char* what, auto edit) {
            std::vector<float> e = w;
            edit(e);
            expect(what, weight_digest(e.data(), count) != now);
        };
        for (int64_t i : {int64_t{0}, count / 2, count - 1, std::min<int64_t>(count - 1, 128)}) {
            changed("digest: one value", [&](std::vector<float>& e) { e[i] += 0.5f; });
            changed("digest: one sign", [&](std::vector<float>& e) { e[i] = -e[i]; });
            changed("digest: one ulp", [&](std::vector<float>& e) {
                e[i] = std::nextafter(e[i], INFINITY);
            });
        }
        changed("digest: every value negated", [&](std::vector<float>& e) {
            for (float& v : e) v = -v;
        });
        changed("digest: all zero", [&](std::vector<float>& e) {
            std::fill(e.begin(), e.end(), 0.0f);
        });
        if (count >= 2)
            changed("digest: two values swapped", [&](std::vector<float>& e) {
                std::swap(e[0], e[static_cast<size_t>(count - 1)]);
            });
        if (count >= 256)  // whole blocks swapped: every lane's sum stays, the mixes must not
            changed("digest: two blocks swapped", [&](std::vector<float>& e) {
                std::swap_ranges(e.begin(), e.begin() + 128, e.begin() + 128);
            });
        if (count >= 32)  // stripes swapped within a block: same lanes, other keys
            changed("digest: two stripes swapped", [&](std::vector<float>& e) {
                std::swap_ranges(e.begin(), e.begin() + 16, e.begin() + 16);
            });
    }
}

// Winograd's bfloat16 input transform (mixed-precision training): the AVX512-BF16 rounding and
// the AVX-512F one write the same bits, both round_to_bf16 of the float32 transform, on inputs
// that hit the rounding's cases: mostly zeros (so many outputs are one input exactly), exact
// ties to even and odd, values just off a tie, subnormals, infinities, NaN; channel counts that
// fill 32-channel stores, leave a 16-channel half, or end inside one.
void test_winograd_bf16_input() {
    const WinogradTransforms* tf = conv2d_winograd_transforms();
    const WinogradInputBf16 native = conv2d_winograd_input_avx512bf16();
    if (!tf || !native || !cpu_has_avx512_bf16()) return;
    auto bits_of = [](uint32_t u) {
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    };
    const float specials[] = {bits_of(0x3f808000u), bits_of(0x3f818000u), bits_of(0x3f807fffu),
                              bits_of(0x3f808001u), bits_of(0x00000001u), bits_of(0x807fffffu),
                              bits_of(0x7f7fffffu), INFINITY, -INFINITY, NAN, -0.0f, 1e-39f};
    std::uniform_int_distribution<int> pick(0, 20);
    for (int64_t C : {int64_t{2}, int64_t{16}, int64_t{34}, int64_t{48}, int64_t{64}})
        for (int64_t pad : {int64_t{0}, int64_t{1}}) {
            Conv2dDims d{};
            d.N = 2, d.H = 9, d.W = 8, d.C = C, d.K = 16, d.KH = d.KW = 3;
            d.stride_h = d.stride_w = 1, d.dilation_h = d.dilation_w = 1, d.groups = 1;
            d.pad_top = d.pad_left = pad;
            d.OH = d.H + 2 * pad - 2, d.OW = d.W + 2 * pad - 2;
            std::vector<float> x = randn(static_cast<size_t>(d.N * d.H * d.W * C));
            for (float& v : x) {
                const int k = pick(g_rng);
                v = k < 12 ? specials[k] : k < 18 ? 0.0f : v;
            }
            const TileGrid g = winograd_tile_grid(d);
            const int64_t ldpos = g.total * C;
            std::vector<float> f(static_cast<size_t>(16 * ldpos));
            std::vector<uint16_t> emulated(f.size()), fast(f.size());
            tf->input(f.data(), ldpos, x.data(), 0, g.total, d, g);
            tf->input_bf16(emulated.data(), ldpos, x.data(), 0, g.total, d, g);
            native(fast.data(), ldpos, x.data(), 0, g.total, d, g);
            bool same = true, spec = true;
            for (size_t i = 0; i < f.size(); ++i) {
                same = same && fast[i] == emulated[i];
                const float r = round_to_bf16(f[i]);
                uint32_t u;
                std::memcpy(&u, &r, 4);
                spec = spec && (std::isnan(r) ? std::isnan(bits_of(uint32_t(emulated[i]) << 16))
                                              : (u >> 16) == emulated[i]);
            }
            expect("winograd bf16 input: AVX512-BF16 = AVX-512F rounding", same);
            expect("winograd bf16 input: round_to_bf16 of the float32 transform", spec);
        }
}

int main(int argc, char** argv) {
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        test_gemm();
        test_conv("im2col");
        test_conv("direct");
        test_conv("winograd");
        test_conv("streamed");
        for (const char* algorithm : {"auto", "im2col", "winograd"}) test_conv(algorithm, true);
        test_conv_relu_maxpool();
        test_pool();
        test_activations();
        test_softmax_and_losses();
        test_losses();
        test_lrn();
        test_dense();
        test_network();
        test_network_kept_winograd_kernels();
        test_winograd_bf16_input();
        test_optimizers();
        test_batchnorm();
        test_spatial();
        test_network_batchnorm_step();
        test_issue19_kernels();
        test_int8();
    }
    test_weight_digest();
    if (argc > 1) test_model_reader(argv[1], argc > 2 ? std::atoi(argv[2]) : 2000);
    std::printf("test_kernels: %d checks, %d failures\n", g_checks, g_failures);
    return g_failures ? 1 : 0;
}
