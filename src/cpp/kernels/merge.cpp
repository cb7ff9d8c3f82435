#include "merge.h"

#include <algorithm>
#include <stdexcept>

#include "parallel.h"

namespace cnnfast {

namespace {

// Elements per thread: a few hundred KB of traffic, so small joins stay on one thread.
constexpr int64_t kMergeGrain = int64_t(1) << 15;

// body(lo, hi) over [0, n) units of `unit` floats each, one block per thread (parallel.h).
template <class Body>
void for_chunks(int64_t n, Body body, int64_t unit = 1) {
    const int threads = threads_for((n * unit + kMergeGrain - 1) / kMergeGrain);
    parallel_blocks(n, threads, [&](int64_t lo, int64_t hi) {
        if (lo < hi) body(lo, hi);
        return int64_t{0};
    });
}

// The loops of the residual join and of gradient sums, as target clones: the library builds for
// the baseline ISA, where they ran at SSE width (the join and the sums of ResNet-20's training
// step: 5% of it at one thread). Each clone does the same float operations in the same order.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CNNFAST_MERGE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CNNFAST_MERGE_CLONES
#endif

// out = max(a + b, 0) (the activation kernel's relu: -0 and NaN pass through).
CNNFAST_MERGE_CLONES
void add_relu(float* out, const float* a, const float* b, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
        const float v = a[i] + b[i];
        out[i] = v < 0.0f ? 0.0f : v;
    }
}

// out += b.
CNNFAST_MERGE_CLONES
void add_into(float* out, const float* b, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] += b[i];
}

// dx = dy where relu_y > 0, else 0.
CNNFAST_MERGE_CLONES
void relu_masked(float* dx, const float* dy, const float* relu_y, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
        const float v = dy[i];  // loaded unconditionally: a blend, no branch
        dx[i] = relu_y[i] > 0.0f ? v : 0.0f;
    }
}

// Whether an add's input gradient k shares its buffer with an earlier one (train_plan.cpp's
// share_join_gradients): the same values, written once.
bool written_before(float* const* dinputs, int64_t k) {
    for (int64_t j = 0; j < k; ++j)
        if (dinputs[j] == dinputs[k]) return true;
    return false;
}

}  // namespace

void merge_forward(float* out, const float* const* inputs, int64_t count, int64_t n, MergeOp op,
                   bool relu) {
    if (relu && (op != MergeOp::add || count != 2))
        throw std::invalid_argument("merge_forward: a ReLU after the join only for a 2-input add");
    for_chunks(n, [&](int64_t lo, int64_t hi) {
        if (relu) {
            // The residual join: both inputs and the ReLU in one pass.
            add_relu(out, inputs[0], inputs[1], lo, hi);
            return;
        }
        const float* a = inputs[0];
        if (op == MergeOp::subtract) {
            const float* b = inputs[1];
            for (int64_t i = lo; i < hi; ++i) out[i] = a[i] - b[i];
            return;
        }
        // Accumulate input by input (in order, as Keras sums), each pass streaming one array.
        if (out != a) std::copy(a + lo, a + hi, out + lo);
        for (int64_t k = 1; k < count; ++k) {
            const float* b = inputs[k];
            switch (op) {
                case MergeOp::multiply:
                    for (int64_t i = lo; i < hi; ++i) out[i] *= b[i];
                    break;
                case MergeOp::maximum:
                    for (int64_t i = lo; i < hi; ++i) out[i] = std::max(out[i], b[i]);
                    break;
                default:  // add, average
                    add_into(out, b, lo, hi);
            }
        }
        if (op == MergeOp::average) {
            const float scale = 1.0f / static_cast<float>(count);
            for (int64_t i = lo; i < hi; ++i) out[i] *= scale;
        }
    });
}

void merge_backward(float* const* dinputs, const float* dy, const float* const* inputs,
                    int64_t count, int64_t n, MergeOp op, const float* relu_y) {
    if (relu_y && op != MergeOp::add)
        throw std::invalid_argument("merge_backward: a ReLU after the join only for add");
    for_chunks(n, [&](int64_t lo, int64_t hi) {
        if (relu_y) {
            // Each input's gradient is dy where the ReLU passed (relu_y > 0), else 0.
            for (int64_t k = 0; k < count; ++k) {
                float* dx = dinputs[k];
                if (dx && !written_before(dinputs, k)) relu_masked(dx, dy, relu_y, lo, hi);
            }
            return;
        }
        for (int64_t k = 0; k < count; ++k) {
            float* dx = dinputs[k];
            if (!dx) continue;
            switch (op) {
                case MergeOp::add:
                    if (dx != dy && !written_before(dinputs, k))
                        std::copy(dy + lo, dy + hi, dx + lo);
                    break;
                case MergeOp::subtract:
                    if (k == 0) {
                        if (dx != dy) std::copy(dy + lo, dy + hi, dx + lo);
                    } else {
                        for (int64_t i = lo; i < hi; ++i) dx[i] = -dy[i];
                    }
                    break;
                case MergeOp::average: {
                    const float scale = 1.0f / static_cast<float>(count);
                    for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * scale;
                    break;
                }
                case MergeOp::multiply:
                    // d/dx_k of the product: dy times every other input, multiplied in order.
                    std::copy(dy + lo, dy + hi, dx + lo);
                    for (int64_t j = 0; j < count; ++j) {
                        if (j == k) continue;
                        const float* b = inputs[j];
                        for (int64_t i = lo; i < hi; ++i) dx[i] *= b[i];
                    }
                    break;
                case MergeOp::maximum:
                    for (int64_t i = lo; i < hi; ++i) {
                        // The winner is the first input holding the maximum.
                        int64_t winner = 0;
                        float best = inputs[0][i];
                        for (int64_t j = 1; j < count; ++j)
                            if (inputs[j][i] > best) best = inputs[j][i], winner = j;
                        dx[i] = winner == k ? dy[i] : 0.0f;
                    }
                    break;
            }
        }
    });
}

void concat_forward(float* out, const float* const* inputs, const int64_t* widths, int64_t count,
                    int64_t rows) {
    int64_t total = 0;
    for (int64_t k = 0; k < count; ++k) total += widths[k];
    for_chunks(rows, [&](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
            float* dst = out + r * total;
            for (int64_t k = 0; k < count; ++k) {
                std::copy(inputs[k] + r * widths[k], inputs[k] + (r + 1) * widths[k], dst);
                dst += widths[k];
            }
        }
    }, total);
}

void concat_backward(float* const* dinputs, const float* dy, const int64_t* widths,
                     int64_t count, int64_t rows) {
    int64_t total = 0;
    for (int64_t k = 0; k < count; ++k) total += widths[k];
    for_chunks(rows, [&](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
            const float* src = dy + r * total;
            for (int64_t k = 0; k < count; ++k) {
                if (dinputs[k]) std::copy(src, src + widths[k], dinputs[k] + r * widths[k]);
                src += widths[k];
            }
        }
    }, total);
}

}  // namespace cnnfast
