#pragma once
// Inference executor: a Sequential model as an ordered list of layer steps run in one call,
// through ping-pong activation buffers, on the existing kernels. Weights are borrowed pointers
// that the owner keeps alive (the Python model's float32 arrays, which the optimizer updates in
// place, so the network always sees the current weights and never copies them).
//
// forward() is const and keeps no state in the Network: its buffers come from the calling
// thread's workspace (workspace.h), as the kernels' scratch does, so any number of threads may
// run forward on one Network at once. Adding steps is not thread-safe.
#include <cstdint>
#include <string>
#include <vector>

#include "activation.h"
#include "conv2d.h"
#include "dense.h"
#include "lrn.h"
#include "pool2d.h"

namespace cnnfast {

enum class StepKind : int { conv2d, max_pool2d, avg_pool2d, dense, activation, softmax, prelu, lrn };

// One layer step. Dims hold per-sample geometry (N = 1); forward sets the batch size.
struct NetworkStep {
    StepKind kind;
    Conv2dDims conv{};
    Pool2dDims pool{};
    DenseDims dense{};  // N = rows per sample (product of the leading axes)
    LrnDims lrn{};      // rows = rows per sample
    const float* weight = nullptr;  // conv/dense kernel, PReLU alpha
    const float* bias = nullptr;    // conv/dense bias or null
    int64_t alpha_size = 0;         // PReLU alpha elements
    int64_t rows = 0;               // softmax rows per sample (product of the leading axes)
    // Activation applied after conv/dense, or the activation of an activation step.
    bool fused_softmax = false;
    Activation act = Activation::linear;
    float act_alpha = 1.0f;
    int64_t in_size = 0, out_size = 0;  // floats per sample
};

class Network {
public:
    // input_shape: one sample's shape, e.g. (H, W, C) or (F,).
    explicit Network(std::vector<int64_t> input_shape);

    // Steps append to the end and check against the current shape; they throw
    // std::invalid_argument (with the shapes) when they do not fit.
    // w (KH,KW,C/groups,K), bias (K,) or null; out_h/out_w from the layer's padding.
    void add_conv2d(const float* w, const float* bias, int64_t KH, int64_t KW, int64_t K,
                    int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
                    int64_t out_h, int64_t out_w, int64_t groups, const std::string& activation,
                    float act_alpha);
    void add_pool2d(bool max, int64_t PH, int64_t PW, int64_t stride_h, int64_t stride_w,
                    int64_t pad_top, int64_t pad_left, int64_t out_h, int64_t out_w);
    // w (IN,OUT) acting on the last axis, bias (OUT,) or null.
    void add_dense(const float* w, const float* bias, int64_t IN, int64_t OUT,
                   const std::string& activation, float act_alpha);
    // "linear", "relu", "sigmoid", "tanh", "elu", "swish" or "softmax" (over the last axis).
    void add_activation(const std::string& activation, float act_alpha);
    // alpha of alpha_size elements repeating over the flat sample (Keras PReLU, leading shared axes).
    void add_prelu(const float* alpha, int64_t alpha_size);
    void add_lrn(int64_t depth_radius, float bias, float alpha, float beta);
    // Row-major flatten: changes the shape only.
    void add_flatten();

    const std::vector<int64_t>& input_shape() const { return input_shape_; }
    const std::vector<int64_t>& output_shape() const { return shape_; }
    int64_t input_size() const { return input_size_; }
    int64_t output_size() const { return size_of(shape_); }
    size_t num_steps() const { return steps_.size(); }

    // x (n, input_shape...); out (n, output_shape...), must not overlap x.
    void forward(float* out, const float* x, int64_t n) const;

private:
    static int64_t size_of(const std::vector<int64_t>& s);
    void push(NetworkStep step, std::vector<int64_t> out_shape);
    std::string shape_str() const;

    std::vector<int64_t> input_shape_, shape_;
    int64_t input_size_ = 0;
    int64_t max_size_ = 0;  // floats per sample of the largest intermediate
    std::vector<NetworkStep> steps_;
};

}  // namespace cnnfast
