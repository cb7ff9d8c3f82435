#pragma once
// Internal: the element-wise loops that need transcendental functions (activations, softmax rows,
// dropout hashing) are compiled twice from activation_loops.h - once for the baseline ISA
// (activation.cpp), with AVX2+FMA flags (activation_avx2.cpp) and with AVX-512 flags
// (activation_avx512.cpp) - and one table is chosen
// at run time from the CPU's features. Each entry is single-threaded; callers split the work.
#include <cstdint>

namespace cnnfast::detail {

struct ElementwiseSimd {
    const char* name;
    // y, x (n,); kind is an Activation. y may alias x.
    void (*act_forward)(float* y, const float* x, int64_t n, int kind, float alpha);
    // dx, x, y, dy (n,). dx may alias any input (same index read before write).
    void (*act_backward)(float* dx, const float* x, const float* y, const float* dy, int64_t n,
                         int kind, float alpha);
    // x, y (rows, C), C >= 1: row-wise softmax. y may alias x.
    void (*softmax_rows)(float* y, const float* x, int64_t rows, int64_t C);
    // Fused softmax cross-entropy of logits (rows, C) against labels (rows, C) or, if labels is
    // null, int_labels (rows,): returns the sum of the row losses (see softmax_xent.h for the
    // clip) and writes probs and dlogits = (probs - labels) * inv_rows where non-null.
    // probs and dlogits may alias logits (not each other).
    double (*softmax_xent_rows)(float* dlogits, float* probs, const float* logits,
                                const float* labels, const int32_t* int_labels, int64_t rows,
                                int64_t C, float inv_rows);
    // Inverted dropout on elements [lo, hi): mask[i] = (hash(key, i) >> 32) >= threshold,
    // y = mask ? x / keep : 0.
    void (*dropout_span)(float* y, uint8_t* mask, const float* x, int64_t lo, int64_t hi,
                         uint64_t key, uint64_t threshold, float keep);
    // Its gradient on elements [lo, hi): dx = mask ? dy / keep : 0. dx may alias dy.
    void (*dropout_backward_span)(float* dx, const float* dy, const uint8_t* mask, int64_t lo,
                                  int64_t hi, float keep);
};

// The tables of activation_avx2.cpp and activation_avx512.cpp, null when the build lacks the ISA
// (cpu_features.h: the dispatch idiom).
const ElementwiseSimd* elementwise_simd_avx2();
const ElementwiseSimd* elementwise_simd_avx512();

// The table in use (AVX-512, else AVX2+FMA, else baseline, by CPU support), chosen once.
const ElementwiseSimd& elementwise_simd();

// The counter-based hash behind dropout: splitmix64's finaliser of key + (i + 1) * golden ratio,
// i.e. the i-th output of a splitmix64 stream seeded with `key`.
inline uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ULL;

// Keras clips cross-entropy probabilities to [epsilon, 1 - epsilon] with epsilon = 1e-7 applied
// to float32 tensors, so the bounds are the float32 values of those numbers.
constexpr double kXentClipLo = static_cast<double>(1e-7f);
constexpr double kXentClipHi = static_cast<double>(static_cast<float>(1.0 - 1e-7));

}  // namespace cnnfast::detail
