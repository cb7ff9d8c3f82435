// Fused Conv2D + ReLU + 2x2 max pooling (contracts in conv2d_pool.h): the drivers, threading over
// pooled rows (forward) and images (backward-weights) around the AVX-512 kernels of
// conv2d_pool_avx512.cpp and the direct convolution's backward-weights micro-kernel.
//
// Backward-weights: the pooled gradient is expanded, per image, into four masked gradients, one
// per window position (nonzero where that position won and y > 0); each is then a plain
// backward-weights sweep over the positions' receptive fields, run on the direct micro-kernel.
#include "conv2d_pool.h"

#include <algorithm>

#include "conv2d_direct.h"
#include "conv2d_pool_ukernels.h"
#include "cpu_features.h"
#include "gemm_bf16.h"
#include "parallel.h"
#include "workspace.h"

namespace cnnfast {

const ConvPoolUkernels* conv2d_pool_ukernels() {
    static SimdTables<ConvPoolUkernels> tables(nullptr, nullptr, conv2d_pool_avx512());
    return tables.current();
}

bool conv2d_relu_maxpool_supported(const Conv2dDims& d) {
    return conv2d_direct_ukernels() && conv2d_pool_ukernels() && !conv2d_dilated(d) &&
           d.groups == 1 && d.stride_h == 1 &&
           d.stride_w == 1 && d.pad_top == 0 && d.pad_left == 0 && d.OH == d.H - d.KH + 1 &&
           d.OW == d.W - d.KW + 1 && d.OH >= 2 && d.OW >= 2 && d.N > 0 && d.C > 0 && d.K > 0;
}

namespace {

// Mixed-precision training (gemm_bf16.h): these kernels keep float32 multiply-adds, run on
// operands rounded to bfloat16 (as conv2d.cpp does for convolutions of few input channels, which
// this fused head of a network's input mostly is).
const float* maybe_rounded(const float* x, int64_t n, Scratch slot) {
    return bf16_products() ? bf16_rounded_copy(x, n, slot) : x;
}

}  // namespace

void conv2d_relu_maxpool_forward(float* y, int32_t* which, const float* x_in, const float* w_in,
                                 const float* bias, const Conv2dDims& d) {
    const ConvPoolUkernels& uk = *conv2d_pool_ukernels();
    const float* x = maybe_rounded(x_in, d.N * d.H * d.W * d.C, Scratch::conv_bf16_input);
    const float* w = maybe_rounded(w_in, d.KH * d.KW * d.C * d.K, Scratch::conv_bf16_weights);
    const int64_t PH = d.OH / 2, PW = d.OW / 2, K = d.K, seg = d.KW * d.C, rs = d.W * d.C;
    int64_t ldw;
    const float* wp = aligned_weight_rows(w, d.KH * seg, K, &ldw, Scratch::conv_weights);
    const int64_t units = d.N * PH;  // one pooled row each
    const int T = threads_for(units * PW * 4 * K * d.KH * seg / kMacsPerThread);
    auto row = [&](int64_t u) {
        const int64_t n = u / PH, ph = u % PH;
        const float* img = x + n * d.H * rs;
        const int64_t i0 = ph * PW, i1 = i0 + PW;
        float* yn = y + n * PH * PW * K;
        int32_t* wn = which + n * PH * PW * K;
        for (int64_t k0 = 0; k0 < K; k0 += 64) {
            const int64_t nc = std::min<int64_t>(64, K - k0);
            uk.forward_rows(yn + k0, wn + k0, img, i0, i1, PW, K, d.KH, rs, d.C, seg, wp + k0, ldw,
                            bias ? bias + k0 : nullptr, nc);
        }
    };
    parallel_for(T, units, row);
}

void conv2d_relu_maxpool_backward_weights(float* dw, float* db, const float* x_in,
                                          const float* dy, const float* y, const int32_t* which,
                                          const Conv2dDims& d) {
    const bool bf16 = bf16_products();
    const float* x = maybe_rounded(x_in, d.N * d.H * d.W * d.C, Scratch::conv_bf16_input);
    const ConvDirectUkernels& direct = *conv2d_direct_ukernels();
    const ConvPoolUkernels& uk = *conv2d_pool_ukernels();
    const int64_t PH = d.OH / 2, PW = d.OW / 2, K = d.K, ldk = (K + 15) / 16 * 16;
    const int64_t seg = d.KW * d.C, Q = d.KH * seg, rs = d.W * d.C, npix = PH * PW;
    const int64_t DW = Q * K, part_floats = DW + ldk;
    const int T = static_cast<int>(std::min<int64_t>(
        threads_for(d.N * npix * 4 * K * Q / kMacsPerThread), d.N));
    float* parts = workspace(Scratch::conv_shared, std::max(T, 1) * part_floats);
    const int64_t* off = conv_field_offsets(d, rs);
    auto image = [&](float* part, int64_t n) {
        // g[j] (npix, ldk): the pooled gradient where window position j won and y > 0.
        float* g = workspace(Scratch::winograd_products, 4 * npix * ldk);
        float* dbp = part + DW;
        const float* dyn = dy + n * npix * K;
        const float* yn = y + n * npix * K;
        const int32_t* wn = which + n * npix * K;
        uk.expand_gradient(g, dbp, dyn, yn, wn, npix, K, bf16);  // db from dy as it is
        const float* img = x + n * d.H * rs;
        for (int j = 0; j < 4; ++j) {
            // Position j of every window: fields at (2 ph + j / 2, 2 pw + j % 2).
            const ConvPixels px{const_cast<float*>(img + (j / 2) * rs + (j % 2) * d.C), 2 * rs,
                                2 * d.C, PW};
            for (int64_t k0 = 0; k0 < K; k0 += 64) {
                const int64_t nc = std::min<int64_t>(64, K - k0);
                for_each_dw_tile(d.KH, seg, conv_bwdw_max_rows(nc), [&](int64_t q0, int64_t R) {
                    direct.backward_weights(part + q0 * K + k0, K, px, npix, off + q0, R,
                                            g + j * npix * ldk + k0, ldk, nc);
                });
            }
        }
    };
    // Static, so the sums depend on the thread count only.
    reduce_over_threads(T, d.N, parts, part_floats, image, DW + K, [&](int used, int64_t i) {
        write_summed_gradient(dw, db, DW, parts, part_floats, 1, used, i);
    });
}

}  // namespace cnnfast
