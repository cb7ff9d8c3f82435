#pragma once
// Inference executor: a model's layer steps run in one call, on the existing kernels. A step
// reads one or more values (the network input or earlier steps' outputs) and writes one, so
// graphs with branches and joins (merge steps) run as well as stacks; the builder
// (network_builder.h) adds the steps in topological order. Activation buffers are assigned once
// per added step: in-place steps reuse their input's buffer when nothing later reads it, and the
// rest share one per-sample arena by lifetime. Weights are borrowed pointers
// that the owner keeps alive (the Python model's float32 arrays, which the optimizer updates in
// place, so the network always sees the current weights and never copies them).
//
// forward() is const and keeps no state in the Network: its buffers come from the calling
// thread's workspace (workspace.h), as the kernels' scratch does, so any number of threads may
// run forward on one Network at once. Adding steps is not thread-safe.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "activation.h"
#include "batchnorm.h"
#include "conv2d.h"
#include "dense.h"
#include "lrn.h"
#include "merge.h"
#include "pool2d.h"
#include "quantized.h"
#include "spatial.h"
#include "weight_digest.h"

namespace cnnfast {

enum class StepKind : int {
    conv2d, max_pool2d, avg_pool2d, dense, activation, softmax, prelu, lrn, merge, concat,
    batchnorm, global_avg_pool2d, global_max_pool2d, zero_pad2d, crop2d, upsample2d,
    rescaling, resize_bilinear,
    // int8 inference (quantized.h): the input quantized per tensor, int8 weights packed once.
    conv2d_int8, dense_int8,
    // Max pooling on the uint8 values between two int8 steps (fuse_int8_chains).
    max_pool2d_u8
};

// A conv step's Winograd kernels (conv2d.h's conv2d_winograd_kernel, one per tile size the calls'
// dims take), each made on first use and kept while the borrowed weights keep their values: each
// use compares their digest (weight_digest.h) with that of the weights it was made from and
// makes it again when they changed (training, set_weights, an edit in place), so the network
// still sees the current weights. Thread-safe; shared by copies of the step.
class KeptWinogradKernel {
public:
    // U of w (3,3,C,K) as its values are now; with fixed (Network::fix_weights), as they were
    // at the first call.
    std::shared_ptr<const WinogradKernel> get(const float* w, const Conv2dDims& d,
                                              bool fixed) const;

private:
    struct Kept {
        WeightDigest made_from;
        std::shared_ptr<const WinogradKernel> kernel;
    };
    mutable std::mutex mutex_;
    mutable Kept kept_[2];  // F(2x2, 3x3)'s, F(4x4, 3x3)'s
};

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
    MergeOp merge_op = MergeOp::add;
    std::vector<int64_t> widths;        // concat: each input's last-axis width
    std::vector<float> scale, offset;   // rescaling: owned copies, one period each
    int64_t in_size = 0, out_size = 0;  // floats per sample
    std::vector<int> inputs;            // the values read
    int output = 0;                     // the value written
    // BatchNormalization at inference (moving statistics, borrowed; gamma/beta may be null),
    // global pooling, padding/cropping and upsampling geometry (per sample, N = 1).
    BatchNormDims bn{};
    const float *bn_gamma = nullptr, *bn_beta = nullptr, *bn_mean = nullptr, *bn_var = nullptr;
    GlobalPoolDims gpool{};
    Pad2dDims pad{};
    Upsample2dDims up{};
    // conv2d_int8 / dense_int8: the packed kernel (owned, shared by copies of the step), the
    // per-channel weight scales (borrowed) and the input's quantization; `bias` as above.
    std::shared_ptr<const Int8PackedKernel> int8_kernel;
    // conv2d: its Winograd kernel, where a forward runs Winograd (made on first use).
    std::shared_ptr<KeptWinogradKernel> winograd;
    const float* w_scale = nullptr;
    float x_scale = 1.0f;
    int32_t x_zero_point = 0;
    // fuse_int8_chains: the input is already uint8 (the previous int8 step's output), or the
    // output is written as uint8 in the next int8 step's quantization (out_q).
    bool input_u8 = false, output_u8 = false;
    Int8Output out_q{};
    // conv2d_int8 writing uint8: the 2x2 stride-2 max or average pooling after it is fused in
    // (its output is the pooling's; conv2d_forward_int8_u8_maxpool2 / _avgpool2).
    bool maxpool2_fused = false, avgpool2_fused = false;
};

// A value: the network input (id 0), a step's output, or a reshaped view of another value
// (Flatten), which shares its buffer.
struct NetworkValue {
    std::vector<int64_t> shape;
    int64_t size = 0;  // floats per sample
    int view_of = -1;  // the value whose buffer this one reads, or -1
    bool u8 = false;   // holds uint8 values (size bytes per sample): fuse_int8_chains
};

class Network {
public:
    // input_shape: one sample's shape, e.g. (H, W, C) or (F,).
    explicit Network(std::vector<int64_t> input_shape);

    // Steps append to the end, read the current value (initially the input) and make their
    // output current; they check against its shape and throw std::invalid_argument (with the
    // shapes) when they do not fit. The network's output is the current value.
    // w (KH,KW,C/groups,K), bias (K,) or null; out_h/out_w from the layer's padding.
    void add_conv2d(const float* w, const float* bias, int64_t KH, int64_t KW, int64_t K,
                    int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
                    int64_t out_h, int64_t out_w, int64_t groups, const std::string& activation,
                    float act_alpha, int64_t dilation_h = 1, int64_t dilation_w = 1);
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
    // y = x * scale + offset (Keras Rescaling); scale and offset of one length, 1 or the last
    // axis, repeating over the flat sample. Copied into the step.
    void add_rescaling(const std::vector<float>& scale, const std::vector<float>& offset);
    // (H, W, C) -> (out_h, out_w, C) bilinear, half-pixel centres (RandomCrop at inference).
    void add_resize_bilinear(int64_t out_h, int64_t out_w);
    // Row-major flatten: a view of the current value with shape (size,).
    void add_flatten();
    // Merge steps read `values` (all of one shape; subtract takes two) or concatenate them on
    // the last axis (equal on every other axis).
    void add_merge(const std::vector<int>& values, MergeOp op);
    void add_concat(const std::vector<int>& values);

    // Normalization and spatial steps (issue 19). gamma/beta (C,) or null; mean, var (C,) the
    // moving statistics, borrowed like every weight.
    void add_batchnorm(const float* gamma, const float* beta, const float* mean, const float* var,
                       float epsilon);
    // (H, W, C) -> (C,), or (1, 1, C) with keepdims.
    void add_global_pool2d(bool max, bool keepdims);
    // ZeroPadding2D (pad) or Cropping2D (crop) on an (H, W, C) value.
    void add_pad2d(bool pad, int64_t top, int64_t bottom, int64_t left, int64_t right);
    void add_upsample2d(int64_t size_h, int64_t size_w);
    // Row-major reshape: a view of the current value with `shape` (same size).
    void add_reshape(std::vector<int64_t> shape);
    // int8 steps (issue 23): the current value quantized to uint8 with x_scale and
    // x_zero_point (in [0, 255]), then the int8 convolution or dense product and the fused float
    // epilogue (quantized.h). w int8 (KH,KW,C,K) or (IN,OUT), symmetric per output channel with
    // w_scale (K,) (borrowed); bias (K,) or null (borrowed). The kernel is packed into the step
    // at this call (later changes to w are not seen). One group; activations as add_conv2d.
    void add_conv2d_int8(const int8_t* w, const float* w_scale, const float* bias, float x_scale,
                         int32_t x_zero_point, int64_t KH, int64_t KW, int64_t K,
                         int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
                         int64_t out_h, int64_t out_w, const std::string& activation,
                         float act_alpha, int64_t dilation_h = 1, int64_t dilation_w = 1);
    void add_dense_int8(const int8_t* w, const float* w_scale, const float* bias, float x_scale,
                        int32_t x_zero_point, int64_t IN, int64_t OUT,
                        const std::string& activation, float act_alpha);
    // Joins chains of int8 steps: an int8 step (any activation but softmax) whose output reaches
    // another int8 step through max poolings and views alone (nothing else reads it, and it is
    // not the network's output) writes that step's uint8 input directly, the poolings run on
    // uint8, and the next step skips its quantization. A first pooling of 2x2 windows, stride
    // 2, unpadded, after a convolution runs inside it: max pooling after ReLU or no activation
    // (maxpool2_fused), average pooling after any (avgpool2_fused; the average of float outputs
    // is not that of uint8 ones, so no other average pooling joins a chain). Quantization is
    // monotonic and the fused kernels do the float operations of the steps they replace, so the
    // result is the same to the bit; the float activations between them are never written.
    // Call once the network is complete (the builders' callers do).
    void fuse_int8_chains();
    // Promises that the weights keep their values (the C API's, which its model owns and never
    // changes): the kept Winograd kernels are then made once and not compared on each use.
    void fix_weights() { weights_fixed_ = true; }
    // Keeps `values` alive as long as the Network and returns them: weights made at build time
    // (a convolution with the batch normalization after it folded in).
    const float* own(std::vector<float> values);

    // The current value's id, and making an earlier value current (to branch from it).
    int current() const { return current_; }
    const std::vector<int64_t>& value_shape(int value) const { return values_.at(value).shape; }
    void select(int value);

    const std::vector<int64_t>& input_shape() const { return input_shape_; }
    const std::vector<int64_t>& output_shape() const { return values_[current_].shape; }
    int64_t input_size() const { return input_size_; }
    int64_t output_size() const { return values_[current_].size; }
    size_t num_steps() const { return steps_.size(); }
    // The steps forward runs: describe()'s lines, forward's step_seconds entries.
    size_t num_run_steps() const { return run_.size(); }
    // The plan, one line per step that runs: the kernel, its shapes, what is fused into it
    // and where its output lives (in place, an arena offset, or the caller's out).
    std::vector<std::string> describe() const;

    // x (n, input_shape...); out (n, output_shape...), must not overlap x. With step_seconds
    // (one per describe() line), adds each step's wall time to its entry (for profiling:
    // dev/network_step_times.py).
    // weights_unchanged: the caller's promise that no borrowed weight changed since the last
    // forward (cnnfast.Model.predict's sealed weights): the kept Winograd kernels are then used
    // without comparing the weights' digest, as under fix_weights, for this call.
    void forward(float* out, const float* x, int64_t n, double* step_seconds = nullptr,
                 bool weights_unchanged = false) const;

private:
    static int64_t size_of(const std::vector<int64_t>& s);
    void push(NetworkStep step, std::vector<int64_t> out_shape);
    int add_value(std::vector<int64_t> shape, int view_of);
    void plan_buffers();
    std::string shape_str() const;
    const std::vector<int64_t>& dense_input_shape(const std::string& ctx, int64_t IN,
                                                  int64_t OUT) const;
    const std::vector<int64_t>& image_input(const std::string& ctx) const;
    Conv2dDims conv_dims(const std::string& ctx, int64_t KH, int64_t KW, int64_t K,
                         int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
                         int64_t out_h, int64_t out_w, int64_t groups, int64_t dilation_h,
                         int64_t dilation_w) const;

    const std::vector<int64_t>& cur_shape() const { return values_[current_].shape; }

    std::vector<int64_t> input_shape_;
    int64_t input_size_ = 0;
    std::vector<NetworkStep> steps_;
    std::vector<std::unique_ptr<std::vector<float>>> owned_;
    std::vector<NetworkValue> values_;
    int current_ = 0;
    // The buffer plan for the steps producing the current value (plan_buffers): which steps
    // run, and where each value lives: kInput (x), kOutput (out) or a per-sample arena offset.
    static constexpr int64_t kInput = -1, kOutput = -2;
    std::vector<size_t> run_;
    std::vector<int64_t> offset_;
    int64_t arena_size_ = 0;  // floats per sample
    bool weights_fixed_ = false;
};

}  // namespace cnnfast
