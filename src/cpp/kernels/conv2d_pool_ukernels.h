#pragma once
// Internal to conv2d_pool: the ISA-specific kernels of the fused Conv2D + ReLU + 2x2 max pooling
// block, which conv2d_pool.cpp drives. Nothing here is part of conv2d_pool.h.
#include <cstdint>

namespace cnnfast {

struct ConvPoolUkernels {
    const char* path;
    // Pooled pixels [i0, i1) of one image img (row stride rs, C channels; pooled rows PW wide),
    // channels [0, nc) of a block of nc <= 64: y, which (pixel stride K) = the maximum of
    // relu(bias + conv) over each 2x2 window and its position (conv2d_pool.h), from the kernel w
    // (KH segments of seg floats, rows of ldw floats, 64-byte aligned). bias may be null.
    void (*forward_rows)(float* y, int32_t* which, const float* img, int64_t i0, int64_t i1,
                         int64_t PW, int64_t K, int64_t KH, int64_t rs, int64_t C, int64_t seg,
                         const float* w, int64_t ldw, const float* bias, int64_t nc);
    // One image's pooled gradient dy (npix, K) expanded into g[j] (npix, ldk), j < 4, ldk = K
    // rounded up to 16: dy where window position j won (which) and y > 0, else 0 (also in lanes
    // K..ldk), rounded to bfloat16 (round_to_bf16, gemm_bf16.h) when bf16; db (ldk floats) +=
    // dy where y > 0, unrounded.
    void (*expand_gradient)(float* g, float* db, const float* dy, const float* y,
                            const int32_t* which, int64_t npix, int64_t K, bool bf16);
};

// The kernels this CPU runs (chosen once, capped by CNNFAST_SIMD), or null without AVX-512.
const ConvPoolUkernels* conv2d_pool_ukernels();
// The AVX-512 table (conv2d_pool_avx512.cpp); null when the build lacks AVX-512.
const ConvPoolUkernels* conv2d_pool_avx512();

}  // namespace cnnfast
