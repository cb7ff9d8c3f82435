#include "network.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>

#include "random_crop.h"
#include "rescaling.h"
#include "softmax_xent.h"
#include "workspace.h"

namespace cnnfast {

namespace {

std::string dims_str(const std::vector<int64_t>& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + (s.size() == 1 ? ",)" : ")");
}

// One spatial axis of a window step: stride >= 1, 0 <= pad < k, and `out` an output size some
// bottom/right padding in [0, k) gives (as the bindings' check_window_axis).
void check_axis(const std::string& ctx, const char* axis, int64_t n, int64_t k, int64_t stride,
                int64_t pad, int64_t out) {
    const std::string a(axis);
    if (k < 1 || stride < 1 || pad < 0 || pad >= k)
        throw std::invalid_argument(ctx + ": " + a + " window " + std::to_string(k) + ", stride " +
                                    std::to_string(stride) + ", padding " + std::to_string(pad) +
                                    " invalid (need window, stride >= 1, 0 <= padding < window)");
    const int64_t lo = n + pad >= k ? (n + pad - k) / stride + 1 : 1;
    const int64_t hi = (n + pad - 1) / stride + 1;
    if (out < lo || out > hi)
        throw std::invalid_argument(ctx + ": " + a + " output size " + std::to_string(out) +
                                    " does not fit input " + std::to_string(n) + ", window " +
                                    std::to_string(k) + ", stride " + std::to_string(stride) +
                                    ", padding " + std::to_string(pad));
}

void parse_activation(const std::string& ctx, const std::string& name, NetworkStep& s) {
    if (name == "softmax") {
        s.fused_softmax = true;
        return;
    }
    if (!activation_from_name(name.c_str(), &s.act))
        throw std::invalid_argument(ctx + ": unknown activation '" + name + "'");
}

// Steps that may write their output over their input (y may alias x).
bool in_place(const NetworkStep& s) {
    return s.kind == StepKind::activation || s.kind == StepKind::softmax ||
           s.kind == StepKind::prelu || s.kind == StepKind::batchnorm ||
           s.kind == StepKind::rescaling;
}

// ReLU runs in the conv/dense kernels' epilogue, on each tile while it is in registers.
bool kernel_relu(const NetworkStep& s) { return !s.fused_softmax && s.act == Activation::relu; }

// The activation fused into conv/dense, in place on y (n floats, `rows` rows for softmax),
// unless the kernel already applied it.
void apply_activation(const NetworkStep& s, float* y, int64_t n, int64_t rows) {
    if (kernel_relu(s)) return;
    if (s.fused_softmax)
        softmax_forward(y, y, rows, n / rows);
    else if (s.act != Activation::linear)
        activation_forward(y, y, n, s.act, s.act_alpha);
}

}  // namespace

Network::Network(std::vector<int64_t> input_shape) : input_shape_(std::move(input_shape)) {
    if (input_shape_.empty())
        throw std::invalid_argument("Network: the input shape needs at least one axis");
    for (int64_t d : input_shape_)
        if (d < 1)
            throw std::invalid_argument("Network: input shape " + dims_str(input_shape_) +
                                        " must have positive sizes");
    input_size_ = size_of(input_shape_);
    add_value(input_shape_, -1);
    plan_buffers();
}

int64_t Network::size_of(const std::vector<int64_t>& s) {
    // Checked: a model file may claim any shape, and a wrapped product would size buffers wrong.
    constexpr int64_t kMaxElements = int64_t(1) << 40;
    int64_t n = 1;
    for (int64_t d : s)
        if (d < 0 || __builtin_mul_overflow(n, d, &n) || n > kMaxElements)
            throw std::invalid_argument("Network: shape " + dims_str(s) +
                                        " has more than 2^40 elements per sample");
    return n;
}

std::string Network::shape_str() const { return dims_str(cur_shape()); }

int Network::add_value(std::vector<int64_t> shape, int view_of) {
    NetworkValue v;
    v.size = size_of(shape);
    v.shape = std::move(shape);
    v.view_of = view_of;
    values_.push_back(std::move(v));
    return static_cast<int>(values_.size()) - 1;
}

void Network::select(int value) {
    if (value < 0 || value >= static_cast<int>(values_.size()))
        throw std::invalid_argument("Network.select: no value " + std::to_string(value));
    current_ = value;
    plan_buffers();
}

// A step reading the current value (unless step.inputs is already set) and writing a new one.
void Network::push(NetworkStep step, std::vector<int64_t> out_shape) {
    if (step.inputs.empty()) step.inputs = {current_};
    step.in_size = values_[step.inputs[0]].size;
    step.output = add_value(std::move(out_shape), -1);
    step.out_size = values_[step.output].size;
    steps_.push_back(std::move(step));
    current_ = steps_.back().output;
    plan_buffers();
}

// The current shape, which a convolution needs to be (H, W, C).
const std::vector<int64_t>& Network::image_input(const std::string& ctx) const {
    const std::vector<int64_t>& shape = cur_shape();
    if (shape.size() != 3) throw std::invalid_argument(ctx + ": needs an (H, W, C) input");
    return shape;
}

// A convolution's dims on the current (H, W, C) input, its output size checked on both axes.
Conv2dDims Network::conv_dims(const std::string& ctx, int64_t KH, int64_t KW, int64_t K,
                              int64_t stride_h, int64_t stride_w, int64_t pad_top,
                              int64_t pad_left, int64_t out_h, int64_t out_w, int64_t groups,
                              int64_t dilation_h, int64_t dilation_w) const {
    const std::vector<int64_t>& shape = image_input(ctx);
    const int64_t H = shape[0], W = shape[1], C = shape[2];
    // A dilated kernel spans (K - 1) * dilation + 1 input positions.
    check_axis(ctx, "height", H, (KH - 1) * dilation_h + 1, stride_h, pad_top, out_h);
    check_axis(ctx, "width", W, (KW - 1) * dilation_w + 1, stride_w, pad_left, out_w);
    return Conv2dDims{1, H, W, C, KH, KW, K, out_h, out_w, stride_h, stride_w, pad_top,
                      pad_left, groups, dilation_h, dilation_w};
}

std::shared_ptr<const WinogradKernel> KeptWinogradKernel::get(const float* w,
                                                               const Conv2dDims& d,
                                                               bool fixed) const {
    // Comparing the 37K floats of the Keras MNIST CNN's 64 -> 64 kernel with a copy took 5-7% of
    // its batch-1 predict, transforming them on every call 10% (F(2x2, 3x3)), by perf on
    // dev/profile_step.py predict keras_mnist_cnn (dev/README.md, "Profiling a step"). A digest
    // reads the weights once where the comparison read them and the copy: VGG16-CIFAR's kept
    // kernels hold 6.9 MB of weights, from memory on every call.
    // One kernel per tile size (conv2d_winograd_kernel_tile: batch 1 and larger batches may
    // differ), each remembering the digest of the weights it was made from.
    const int64_t count = d.KH * d.KW * d.C * d.K;
    Kept& k = kept_[conv2d_winograd_kernel_tile(d) == 4];
    std::lock_guard<std::mutex> lock(mutex_);
    if (k.kernel && fixed) return k.kernel;
    const WeightDigest now = fixed ? WeightDigest{} : weight_digest(w, count);
    if (!k.kernel || now != k.made_from) {
        k.made_from = now;
        k.kernel = conv2d_winograd_kernel(w, d);
    }
    return k.kernel;
}

void Network::add_conv2d(const float* w, const float* bias, int64_t KH, int64_t KW, int64_t K,
                         int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
                         int64_t out_h, int64_t out_w, int64_t groups,
                         const std::string& activation, float act_alpha, int64_t dilation_h,
                         int64_t dilation_w) {
    const std::string ctx = "Network.add_conv2d on input " + shape_str();
    const int64_t C = image_input(ctx)[2];
    if (!w) throw std::invalid_argument(ctx + ": kernel is null");
    if (groups < 1 || C % groups || K < 1 || K % groups)
        throw std::invalid_argument(ctx + ": groups " + std::to_string(groups) +
                                    " must divide input channels " + std::to_string(C) +
                                    " and filters " + std::to_string(K));
    if (dilation_h < 1 || dilation_w < 1)
        throw std::invalid_argument(ctx + ": dilation must be >= 1");
    NetworkStep s{};
    s.kind = StepKind::conv2d;
    s.conv = conv_dims(ctx, KH, KW, K, stride_h, stride_w, pad_top, pad_left, out_h, out_w, groups,
                       dilation_h, dilation_w);
    s.weight = w;
    s.bias = bias;
    s.rows = out_h * out_w;
    s.act_alpha = act_alpha;
    s.winograd = std::make_shared<KeptWinogradKernel>();
    parse_activation(ctx, activation, s);
    push(s, {out_h, out_w, K});
}

void Network::add_pool2d(bool max, int64_t PH, int64_t PW, int64_t stride_h, int64_t stride_w,
                         int64_t pad_top, int64_t pad_left, int64_t out_h, int64_t out_w) {
    const std::string ctx = std::string("Network.add_") + (max ? "max" : "avg") +
                            "_pool2d on input " + shape_str();
    const std::vector<int64_t>& shape = cur_shape();
    if (shape.size() != 3) throw std::invalid_argument(ctx + ": needs an (H, W, C) input");
    const int64_t H = shape[0], W = shape[1], C = shape[2];
    check_axis(ctx, "height", H, PH, stride_h, pad_top, out_h);
    check_axis(ctx, "width", W, PW, stride_w, pad_left, out_w);
    NetworkStep s{};
    s.kind = max ? StepKind::max_pool2d : StepKind::avg_pool2d;
    s.pool = Pool2dDims{1, H, W, C, PH, PW, out_h, out_w, stride_h, stride_w, pad_top, pad_left};
    push(s, {out_h, out_w, C});
}

// The current shape, whose last axis a dense kernel (IN, OUT) must take.
const std::vector<int64_t>& Network::dense_input_shape(const std::string& ctx, int64_t IN,
                                                       int64_t OUT) const {
    const std::vector<int64_t>& shape = cur_shape();
    if (shape.back() != IN || OUT < 1)
        throw std::invalid_argument(ctx + ": kernel (" + std::to_string(IN) + ", " +
                                    std::to_string(OUT) + ") needs the last axis to be " +
                                    std::to_string(IN));
    return shape;
}

void Network::add_dense(const float* w, const float* bias, int64_t IN, int64_t OUT,
                        const std::string& activation, float act_alpha) {
    const std::string ctx = "Network.add_dense on input " + shape_str();
    if (!w) throw std::invalid_argument(ctx + ": kernel is null");
    const std::vector<int64_t>& shape = dense_input_shape(ctx, IN, OUT);
    NetworkStep s{};
    s.kind = StepKind::dense;
    s.rows = size_of(shape) / IN;
    s.dense = DenseDims{s.rows, IN, OUT};
    s.weight = w;
    s.bias = bias;
    s.act_alpha = act_alpha;
    parse_activation(ctx, activation, s);
    std::vector<int64_t> out = shape;
    out.back() = OUT;
    push(s, std::move(out));
}

namespace {

void check_int8_inputs(const std::string& ctx, const int8_t* w, const float* w_scale,
                       float x_scale, int32_t x_zero_point) {
    if (!w || !w_scale) throw std::invalid_argument(ctx + ": kernel or kernel scale is null");
    if (!(x_scale > 0.0f) || x_scale == std::numeric_limits<float>::infinity() ||
        x_zero_point < 0 || x_zero_point > 255)
        throw std::invalid_argument(ctx + ": input scale " + std::to_string(x_scale) +
                                    " and zero point " + std::to_string(x_zero_point) +
                                    " must be positive and finite, and in [0, 255]");
}

}  // namespace

void Network::add_conv2d_int8(const int8_t* w, const float* w_scale, const float* bias,
                              float x_scale, int32_t x_zero_point, int64_t KH, int64_t KW,
                              int64_t K, int64_t stride_h, int64_t stride_w, int64_t pad_top,
                              int64_t pad_left, int64_t out_h, int64_t out_w,
                              const std::string& activation, float act_alpha,
                              int64_t dilation_h, int64_t dilation_w) {
    const std::string ctx = "Network.add_conv2d_int8 on input " + shape_str();
    const int64_t C = image_input(ctx)[2];
    check_int8_inputs(ctx, w, w_scale, x_scale, x_zero_point);
    if (K < 1 || KH < 1 || KW < 1 || dilation_h < 1 || dilation_w < 1)
        throw std::invalid_argument(ctx + ": kernel sizes, filters and dilation must be >= 1");
    NetworkStep s{};
    s.kind = StepKind::conv2d_int8;
    s.conv = conv_dims(ctx, KH, KW, K, stride_h, stride_w, pad_top, pad_left, out_h, out_w, 1,
                       dilation_h, dilation_w);
    s.int8_kernel = std::make_shared<const Int8PackedKernel>(w, KH * KW * C, K);
    s.w_scale = w_scale;
    s.bias = bias;
    s.x_scale = x_scale;
    s.x_zero_point = x_zero_point;
    s.rows = out_h * out_w;
    s.act_alpha = act_alpha;
    parse_activation(ctx, activation, s);
    push(std::move(s), {out_h, out_w, K});
}

void Network::add_dense_int8(const int8_t* w, const float* w_scale, const float* bias,
                             float x_scale, int32_t x_zero_point, int64_t IN, int64_t OUT,
                             const std::string& activation, float act_alpha) {
    const std::string ctx = "Network.add_dense_int8 on input " + shape_str();
    check_int8_inputs(ctx, w, w_scale, x_scale, x_zero_point);
    const std::vector<int64_t>& shape = dense_input_shape(ctx, IN, OUT);
    NetworkStep s{};
    s.kind = StepKind::dense_int8;
    s.rows = size_of(shape) / IN;
    s.dense = DenseDims{s.rows, IN, OUT};
    s.int8_kernel = std::make_shared<const Int8PackedKernel>(w, IN, OUT);
    s.w_scale = w_scale;
    s.bias = bias;
    s.x_scale = x_scale;
    s.x_zero_point = x_zero_point;
    s.act_alpha = act_alpha;
    parse_activation(ctx, activation, s);
    std::vector<int64_t> out = shape;
    out.back() = OUT;
    push(std::move(s), std::move(out));
}

void Network::add_activation(const std::string& activation, float act_alpha) {
    NetworkStep s{};
    s.act_alpha = act_alpha;
    parse_activation("Network.add_activation on input " + shape_str(), activation, s);
    s.kind = s.fused_softmax ? StepKind::softmax : StepKind::activation;
    s.rows = size_of(cur_shape()) / cur_shape().back();
    if (s.kind == StepKind::activation && s.act == Activation::linear) return;  // identity
    push(s, cur_shape());
}

void Network::add_prelu(const float* alpha, int64_t alpha_size) {
    const std::string ctx = "Network.add_prelu on input " + shape_str();
    if (!alpha || alpha_size < 1 || size_of(cur_shape()) % alpha_size)
        throw std::invalid_argument(ctx + ": alpha of " + std::to_string(alpha_size) +
                                    " elements must divide the sample size " +
                                    std::to_string(size_of(cur_shape())));
    NetworkStep s{};
    s.kind = StepKind::prelu;
    s.weight = alpha;
    s.alpha_size = alpha_size;
    push(s, cur_shape());
}

void Network::add_lrn(int64_t depth_radius, float bias, float alpha, float beta) {
    const std::string ctx = "Network.add_lrn on input " + shape_str();
    if (depth_radius < 0 || !(bias > 0.0f) || !(alpha >= 0.0f))
        throw std::invalid_argument(ctx + ": needs depth_radius >= 0, bias > 0, alpha >= 0");
    NetworkStep s{};
    s.kind = StepKind::lrn;
    const std::vector<int64_t>& shape = cur_shape();
    s.lrn = LrnDims{size_of(shape) / shape.back(), shape.back(), depth_radius, bias, alpha, beta};
    push(s, shape);
}

void Network::add_rescaling(const std::vector<float>& scale, const std::vector<float>& offset) {
    const std::string ctx = "Network.add_rescaling on input " + shape_str();
    const int64_t last = cur_shape().back();
    const int64_t period = static_cast<int64_t>(scale.size());
    if (period < 1 || scale.size() != offset.size() || (period != 1 && period != last))
        throw std::invalid_argument(ctx + ": scale and offset need one length, 1 or " +
                                    std::to_string(last) + ", got " +
                                    std::to_string(scale.size()) + " and " +
                                    std::to_string(offset.size()));
    NetworkStep s{};
    s.kind = StepKind::rescaling;
    s.scale = scale;
    s.offset = offset;
    push(s, cur_shape());
}

void Network::add_resize_bilinear(int64_t out_h, int64_t out_w) {
    const std::vector<int64_t>& shape = cur_shape();
    if (shape.size() != 3 || out_h < 1 || out_w < 1)
        throw std::invalid_argument("Network.add_resize_bilinear on input " + shape_str() +
                                    ": needs an (H, W, C) input and a positive size");
    NetworkStep s{};
    s.kind = StepKind::resize_bilinear;
    push(s, {out_h, out_w, shape[2]});
}

void Network::add_flatten() {
    const int root = values_[current_].view_of >= 0 ? values_[current_].view_of : current_;
    current_ = add_value({values_[current_].size}, root);
    plan_buffers();
}

void Network::add_merge(const std::vector<int>& values, MergeOp op) {
    const std::string ctx = "Network.add_merge";
    if (values.empty() || (op == MergeOp::subtract && values.size() != 2))
        throw std::invalid_argument(ctx + ": got " + std::to_string(values.size()) + " inputs; " +
                                    (op == MergeOp::subtract ? "subtract takes 2" : "needs 1 or more"));
    for (int v : values) {
        if (v < 0 || v >= static_cast<int>(values_.size()))
            throw std::invalid_argument(ctx + ": no value " + std::to_string(v));
        if (values_[v].shape != values_[values[0]].shape)
            throw std::invalid_argument(ctx + ": inputs of shapes " +
                                        dims_str(values_[values[0]].shape) + " and " +
                                        dims_str(values_[v].shape) + " differ");
    }
    NetworkStep s{};
    s.kind = StepKind::merge;
    s.merge_op = op;
    s.inputs = values;
    push(s, values_[values[0]].shape);
}

void Network::add_concat(const std::vector<int>& values) {
    const std::string ctx = "Network.add_concat";
    if (values.empty()) throw std::invalid_argument(ctx + ": needs at least one input");
    std::vector<int64_t> out;
    NetworkStep s{};
    for (int v : values) {
        if (v < 0 || v >= static_cast<int>(values_.size()))
            throw std::invalid_argument(ctx + ": no value " + std::to_string(v));
        const std::vector<int64_t>& shape = values_[v].shape;
        if (out.empty()) {
            out = shape;
            out.back() = 0;
        }
        if (shape.size() != out.size() ||
            !std::equal(shape.begin(), shape.end() - 1, out.begin()))
            throw std::invalid_argument(ctx + ": inputs of shapes " +
                                        dims_str(values_[values[0]].shape) + " and " +
                                        dims_str(shape) + " differ on an axis but the last");
        s.widths.push_back(shape.back());
        out.back() += shape.back();
    }
    s.kind = StepKind::concat;
    s.inputs = values;
    s.rows = size_of(out) / out.back();
    push(s, out);
}

// -- normalization and spatial steps (issue 19) -----------------------------------------------

void Network::add_batchnorm(const float* gamma, const float* beta, const float* mean,
                            const float* var, float epsilon) {
    const std::string ctx = "Network.add_batchnorm on input " + shape_str();
    if (!mean || !var) throw std::invalid_argument(ctx + ": moving mean and variance are null");
    if (!(epsilon > 0.0f)) throw std::invalid_argument(ctx + ": epsilon must be > 0");
    const std::vector<int64_t>& shape = cur_shape();
    NetworkStep s{};
    s.kind = StepKind::batchnorm;
    s.bn = BatchNormDims{size_of(shape) / shape.back(), shape.back(), epsilon};
    s.bn_gamma = gamma;
    s.bn_beta = beta;
    s.bn_mean = mean;
    s.bn_var = var;
    push(s, shape);
}

void Network::add_global_pool2d(bool max, bool keepdims) {
    const std::string ctx = std::string("Network.add_global_") + (max ? "max" : "avg") +
                            "_pool2d on input " + shape_str();
    const std::vector<int64_t>& shape = cur_shape();
    if (shape.size() != 3) throw std::invalid_argument(ctx + ": needs an (H, W, C) input");
    NetworkStep s{};
    s.kind = max ? StepKind::global_max_pool2d : StepKind::global_avg_pool2d;
    s.gpool = GlobalPoolDims{1, shape[0], shape[1], shape[2]};
    const int64_t C = shape[2];
    push(s, keepdims ? std::vector<int64_t>{1, 1, C} : std::vector<int64_t>{C});
}

void Network::add_pad2d(bool pad, int64_t top, int64_t bottom, int64_t left, int64_t right) {
    const std::string ctx = std::string("Network.add_") + (pad ? "zero_pad2d" : "crop2d") +
                            " on input " + shape_str();
    const std::vector<int64_t>& shape = cur_shape();
    if (shape.size() != 3) throw std::invalid_argument(ctx + ": needs an (H, W, C) input");
    if (top < 0 || bottom < 0 || left < 0 || right < 0)
        throw std::invalid_argument(ctx + ": padding/cropping must be >= 0");
    const int64_t sign = pad ? 1 : -1;
    const int64_t OH = shape[0] + sign * (top + bottom), OW = shape[1] + sign * (left + right);
    if (OH < 1 || OW < 1) throw std::invalid_argument(ctx + ": leaves nothing");
    NetworkStep s{};
    s.kind = pad ? StepKind::zero_pad2d : StepKind::crop2d;
    s.pad = Pad2dDims{1, pad ? shape[0] : OH, pad ? shape[1] : OW, shape[2], top, bottom, left,
                      right};
    push(s, {OH, OW, shape[2]});
}

void Network::add_upsample2d(int64_t size_h, int64_t size_w) {
    const std::string ctx = "Network.add_upsample2d on input " + shape_str();
    const std::vector<int64_t>& shape = cur_shape();
    if (shape.size() != 3) throw std::invalid_argument(ctx + ": needs an (H, W, C) input");
    if (size_h < 1 || size_w < 1) throw std::invalid_argument(ctx + ": size must be >= 1");
    NetworkStep s{};
    s.kind = StepKind::upsample2d;
    s.up = Upsample2dDims{1, shape[0], shape[1], shape[2], size_h, size_w};
    push(s, {shape[0] * size_h, shape[1] * size_w, shape[2]});
}

void Network::add_reshape(std::vector<int64_t> shape) {
    if (size_of(shape) != values_[current_].size || shape.empty())
        throw std::invalid_argument("Network.add_reshape: cannot view " + shape_str() + " as " +
                                    dims_str(shape));
    const int root = values_[current_].view_of >= 0 ? values_[current_].view_of : current_;
    current_ = add_value(std::move(shape), root);
    plan_buffers();
}

const float* Network::own(std::vector<float> values) {
    owned_.push_back(std::make_unique<std::vector<float>>(std::move(values)));
    return owned_.back()->data();
}

// Where each value of the steps leading to the current value lives. Views share their
// source's buffer; an in-place step (activation, softmax, PReLU) writes over its input when no
// later step reads that buffer and it is not the caller's x; every other buffer gets an arena
// offset, first-fit among the buffers alive at its step, so a stack needs at most two of them.
// The buffer holding the current value is the caller's `out`.
void Network::plan_buffers() {
    const int nv = static_cast<int>(values_.size());
    auto root = [&](int v) { return values_[v].view_of >= 0 ? values_[v].view_of : v; };
    std::vector<int> producer(nv, -1);
    for (size_t i = 0; i < steps_.size(); ++i) producer[steps_[i].output] = static_cast<int>(i);

    // The steps the current value depends on, in order.
    std::vector<char> needed(nv, 0);
    needed[root(current_)] = 1;
    for (int i = static_cast<int>(steps_.size()) - 1; i >= 0; --i)
        if (needed[steps_[i].output])
            for (int v : steps_[i].inputs) needed[root(v)] = 1;
    run_.clear();
    for (size_t i = 0; i < steps_.size(); ++i)
        if (needed[steps_[i].output]) run_.push_back(i);

    // Buffers: union-find over root values; a buffer's last reader bounds its lifetime.
    constexpr int kForever = 1 << 30;
    std::vector<int> buffer(nv), last_read(nv, -1);
    for (int v = 0; v < nv; ++v) buffer[v] = v;
    auto find = [&](int v) {
        while (buffer[v] != v) v = buffer[v] = buffer[buffer[v]];
        return v;
    };
    for (size_t k = 0; k < run_.size(); ++k)
        for (int v : steps_[run_[k]].inputs) last_read[root(v)] = static_cast<int>(k);
    last_read[root(current_)] = kForever;
    for (size_t k = 0; k < run_.size(); ++k) {
        const NetworkStep& s = steps_[run_[k]];
        const int in = find(root(s.inputs[0]));
        if (in_place(s) && in != find(0) && last_read[in] == static_cast<int>(k)) {
            buffer[s.output] = in;
            last_read[in] = std::max(last_read[in], last_read[s.output]);
        }
    }

    // Offsets: place each buffer when its first writer runs, free it after its last reader.
    offset_.assign(nv, 0);
    const int out_buffer = find(root(current_));
    offset_[find(0)] = kInput;
    if (out_buffer != find(0)) offset_[out_buffer] = kOutput;
    std::vector<std::pair<int64_t, int64_t>> live;  // (offset, size) of placed buffers
    std::vector<int> placed;
    arena_size_ = 0;
    for (size_t k = 0; k < run_.size(); ++k) {
        const int b = find(steps_[run_[k]].output);
        if (b == steps_[run_[k]].output && b != out_buffer) {
            // First fit: the lowest gap between live buffers that holds this one.
            int64_t size = 0;
            for (int v = 0; v < nv; ++v)
                if (find(root(v)) == b)
                    size = std::max(size, values_[v].u8 ? (values_[v].size + 3) / 4
                                                        : values_[v].size);
            size = (size + 15) / 16 * 16;  // keep every buffer 64-byte aligned
            std::sort(live.begin(), live.end());
            int64_t at = 0;
            for (const auto& [o, sz] : live) {
                if (o - at >= size) break;
                at = std::max(at, o + sz);
            }
            offset_[b] = at;
            live.emplace_back(at, size);
            placed.push_back(b);
            arena_size_ = std::max(arena_size_, at + size);
        }
        // Free the buffers whose last reader is this step.
        for (size_t j = 0; j < placed.size();) {
            if (last_read[placed[j]] <= static_cast<int>(k)) {
                const int64_t o = offset_[placed[j]];
                live.erase(std::find_if(live.begin(), live.end(),
                                        [o](const auto& e) { return e.first == o; }));
                placed.erase(placed.begin() + static_cast<std::ptrdiff_t>(j));
            } else {
                ++j;
            }
        }
    }
    for (int v = 0; v < nv; ++v) offset_[v] = offset_[find(root(v))];
}

void Network::fuse_int8_chains() {
    auto root = [&](int v) { return values_[v].view_of >= 0 ? values_[v].view_of : v; };
    auto is_int8 = [](const NetworkStep& s) {
        return s.kind == StepKind::conv2d_int8 || s.kind == StepKind::dense_int8;
    };
    // The steps reading each value (through its views).
    std::vector<std::vector<size_t>> readers(values_.size());
    for (size_t i : run_)
        for (int v : steps_[i].inputs) readers[root(v)].push_back(i);
    const int out = root(current_);
    std::vector<size_t> fused_pools;
    for (size_t i : run_) {
        NetworkStep& a = steps_[i];
        // Any activation the epilogue applies (softmax needs whole rows: it runs on the float
        // output).
        if (!is_int8(a) || a.output_u8 || a.fused_softmax) continue;
        // A fusable 2x2 stride-2 unpadded pooling of a convolution's whole output.
        auto pools_in_pairs = [&](const NetworkStep& p) {
            const Pool2dDims& q = p.pool;
            return a.kind == StepKind::conv2d_int8 && q.PH == 2 && q.PW == 2 &&
                   q.stride_h == 2 && q.stride_w == 2 && q.pad_top == 0 && q.pad_left == 0 &&
                   q.OH == a.conv.OH / 2 && q.OW == a.conv.OW / 2;
        };
        std::vector<size_t> pools;
        int64_t avg_pool = -1;  // the average pooling right after a, fused into it
        int v = a.output, target = -1;
        while (root(v) != out && readers[root(v)].size() == 1) {
            const size_t j = readers[root(v)][0];
            NetworkStep& r = steps_[j];
            if (r.kind == StepKind::max_pool2d) {
                pools.push_back(j);
                v = r.output;
                continue;
            }
            if (r.kind == StepKind::avg_pool2d && v == a.output && pools_in_pairs(r)) {
                avg_pool = static_cast<int64_t>(j);
                v = r.output;
                continue;
            }
            if (is_int8(r) && !r.input_u8) target = static_cast<int>(j);
            break;
        }
        if (target < 0) continue;
        NetworkStep& b = steps_[target];
        a.output_u8 = true;
        a.out_q = Int8Output{b.x_scale, b.x_zero_point};
        values_[a.output].u8 = true;
        for (size_t j : pools) {
            steps_[j].kind = StepKind::max_pool2d_u8;
            values_[steps_[j].output].u8 = true;
        }
        b.input_u8 = true;
        if (avg_pool >= 0) {
            NetworkStep& p = steps_[static_cast<size_t>(avg_pool)];
            a.avgpool2_fused = true;
            a.output = p.output;
            a.out_size = p.out_size;
            values_[a.output].u8 = true;
            fused_pools.push_back(static_cast<size_t>(avg_pool));
        } else if (!pools.empty() && pools_in_pairs(steps_[pools[0]]) &&
                   (a.act == Activation::linear || a.act == Activation::relu)) {
            NetworkStep& p = steps_[pools[0]];
            a.maxpool2_fused = true;
            a.output = p.output;
            a.out_size = p.out_size;
            fused_pools.push_back(pools[0]);
        }
    }
    // The fused poolings' steps go (their outputs are the convolutions' now).
    std::sort(fused_pools.begin(), fused_pools.end());
    for (auto it = fused_pools.rbegin(); it != fused_pools.rend(); ++it)
        steps_.erase(steps_.begin() + static_cast<std::ptrdiff_t>(*it));
    for (NetworkValue& value : values_)
        if (value.view_of >= 0 && values_[value.view_of].u8) value.u8 = true;
    plan_buffers();
}

std::vector<std::string> Network::describe() const {
    static const char* kNames[] = {"conv2d", "max_pool2d", "avg_pool2d", "dense", "activation",
                                   "softmax", "prelu", "lrn", "merge", "concat",
                                   "batchnorm", "global_avg_pool2d", "global_max_pool2d",
                                   "zero_pad2d", "crop2d", "upsample2d", "rescaling",
                                   "resize_bilinear", "conv2d_int8", "dense_int8",
                                   "max_pool2d_u8"};
    static const char* kActs[] = {"linear", "relu", "sigmoid", "tanh", "elu", "swish",
                                  "leaky_relu"};
    static const char* kOps[] = {"add", "subtract", "multiply", "average", "maximum"};
    std::vector<std::string> lines;
    for (size_t i : run_) {
        const NetworkStep& s = steps_[i];
        std::string line = kNames[static_cast<int>(s.kind)];
        if (s.kind == StepKind::merge) line += std::string(" ") + kOps[static_cast<int>(s.merge_op)];
        if (s.kind == StepKind::activation) line += std::string(" ") + kActs[static_cast<int>(s.act)];
        std::string ins;
        for (int v : s.inputs) ins += (ins.empty() ? "" : " + ") + dims_str(values_[v].shape);
        line += " " + ins + " -> " + dims_str(values_[s.output].shape);
        const bool int8 = s.kind == StepKind::conv2d_int8 || s.kind == StepKind::dense_int8;
        if (int8 && s.input_u8)
            line += ", reads the uint8 the int8 step before wrote";
        else if (int8)
            line += ", input quantized to uint8 (scale " + std::to_string(s.x_scale) +
                    ", zero point " + std::to_string(s.x_zero_point) + ")";
        if (s.maxpool2_fused) line += ", 2x2 max pooling fused in";
        if (s.avgpool2_fused) line += ", 2x2 average pooling fused in";
        if (s.output_u8) line += ", writes uint8 for the next int8 step";
        if (s.kind == StepKind::conv2d || s.kind == StepKind::dense || int8) {
            if (s.fused_softmax)
                line += ", softmax on the output rows";
            else if (s.act != Activation::linear)
                line += std::string(", ") + kActs[static_cast<int>(s.act)] +
                        (s.kind == StepKind::conv2d || int8 || kernel_relu(s)
                             ? " in the kernel epilogue"
                             : " on the output");
        }
        const int64_t o = offset_[s.output];
        const int64_t in = offset_[s.inputs[0]];
        line += o == in ? std::string(", in place") + (o == kOutput ? " in out" : "")
                : o == kOutput ? std::string(", writes out")
                               : ", arena +" + std::to_string(o) + " floats/sample";
        lines.push_back(line);
    }
    return lines;
}

// x (n, input...) -> out (n, output...): the planned steps, each on its values' buffers.
void Network::forward(float* out, const float* x, int64_t n, double* step_seconds,
                      bool weights_unchanged) const {
    const bool fixed = weights_fixed_ || weights_unchanged;
    if (n <= 0) return;
    if (offset_[current_] == kInput) {  // no step computes anything (views of x only)
        std::memcpy(out, x, sizeof(float) * n * input_size_);
        return;
    }
    // The calling thread's activation arena, so concurrent calls never share one.
    float* arena = arena_size_ ? workspace(Scratch::network_values, n * arena_size_) : nullptr;
    auto at = [&](int v) -> float* {
        const int64_t o = offset_[v];
        return o == kInput ? const_cast<float*>(x) : o == kOutput ? out : arena + n * o;
    };
    std::vector<const float*> ins;
    for (size_t k = 0; k < run_.size(); ++k) {
        const auto start = step_seconds ? std::chrono::steady_clock::now()
                                        : std::chrono::steady_clock::time_point{};
        const NetworkStep& s = steps_[run_[k]];
        const float* cur = at(s.inputs[0]);
        float* dst = at(s.output);
        switch (s.kind) {
            case StepKind::conv2d: {
                Conv2dDims d = s.conv;
                d.N = n;
                // The activation on each band of output while it is in cache (softmax after).
                const Activation act = s.fused_softmax ? Activation::linear : s.act;
                if (s.winograd && conv2d_forward_reads_winograd_kernel(d)) {
                    const auto U = s.winograd->get(s.weight, d, fixed);
                    conv2d_forward(dst, cur, *U, s.bias, d, act, s.act_alpha);
                } else {
                    conv2d_forward(dst, cur, s.weight, s.bias, d, act, s.act_alpha);
                }
                if (s.fused_softmax) apply_activation(s, dst, n * s.out_size, n * s.rows);
                break;
            }
            case StepKind::conv2d_int8:
            case StepKind::dense_int8: {
                // The input quantized into the calling thread's workspace (unless the int8
                // step before wrote it; a convolution's with its padding, read in place), then
                // the int8 product with the activation (not softmax) in its epilogue, writing
                // float32 or the next step's uint8.
                const uint8_t* xq = reinterpret_cast<const uint8_t*>(cur);
                Int8Epilogue e{s.int8_kernel->sums(), s.w_scale, s.bias, s.x_scale,
                               s.x_zero_point, s.fused_softmax ? Activation::linear : s.act,
                               s.act_alpha};
                auto* yq = reinterpret_cast<uint8_t*>(dst);
                if (s.kind == StepKind::conv2d_int8) {
                    Conv2dDims d = s.conv;
                    d.N = n;
                    if (!s.input_u8) {
                        const int64_t Hp = conv2d_int8_padded_rows(d);
                        const int64_t Wp = conv2d_int8_padded_cols(d);
                        e.x_slack = conv2d_int8_input_slack(d);
                        auto* q = workspace<uint8_t>(Scratch::int8_input,
                                                     n * Hp * Wp * d.C + e.x_slack);
                        quantize_u8_padded(q, cur, n, d.H, d.W, d.C, d.pad_top, d.pad_left, Hp,
                                           Wp, s.x_scale, s.x_zero_point);
                        xq = q;
                        d.H = Hp;
                        d.W = Wp;
                        d.pad_top = d.pad_left = 0;
                    }
                    if (s.maxpool2_fused)
                        conv2d_forward_int8_u8_maxpool2(yq, xq, s.int8_kernel->packed(), e,
                                                        s.out_q, d);
                    else if (s.avgpool2_fused)
                        conv2d_forward_int8_u8_avgpool2(yq, xq, s.int8_kernel->packed(), e,
                                                        s.out_q, d);
                    else if (s.output_u8)
                        conv2d_forward_int8_u8(yq, xq, s.int8_kernel->packed(), e, s.out_q, d);
                    else
                        conv2d_forward_int8(dst, xq, s.int8_kernel->packed(), e, d);
                } else {
                    if (!s.input_u8) {
                        auto* q = workspace<uint8_t>(Scratch::int8_input, n * s.in_size);
                        quantize_u8(q, cur, n * s.in_size, s.x_scale, s.x_zero_point);
                        xq = q;
                    }
                    DenseDims d = s.dense;
                    d.N = n * s.rows;
                    if (s.output_u8)
                        dense_forward_int8_u8(yq, xq, s.int8_kernel->packed(), e, s.out_q, d);
                    else
                        dense_forward_int8(dst, xq, s.int8_kernel->packed(), e, d);
                }
                if (s.fused_softmax) apply_activation(s, dst, n * s.out_size, n * s.rows);
                break;
            }
            case StepKind::max_pool2d_u8: {
                Pool2dDims d = s.pool;
                d.N = n;
                max_pool2d_u8_forward(reinterpret_cast<uint8_t*>(dst),
                                      reinterpret_cast<const uint8_t*>(cur), d);
                break;
            }
            case StepKind::max_pool2d: {
                Pool2dDims d = s.pool;
                d.N = n;
                max_pool2d_forward(dst, nullptr, cur, d);
                break;
            }
            case StepKind::avg_pool2d: {
                Pool2dDims d = s.pool;
                d.N = n;
                avg_pool2d_forward(dst, cur, d);
                break;
            }
            case StepKind::dense: {
                DenseDims d = s.dense;
                d.N = n * s.rows;
                dense_forward(dst, cur, s.weight, s.bias, d, kernel_relu(s));
                apply_activation(s, dst, n * s.out_size, n * s.rows);
                break;
            }
            case StepKind::activation:
                activation_forward(dst, cur, n * s.out_size, s.act, s.act_alpha);
                break;
            case StepKind::softmax:
                softmax_forward(dst, cur, n * s.rows, s.out_size / s.rows);
                break;
            case StepKind::prelu:
                prelu_forward(dst, cur, s.weight, n * s.out_size, s.alpha_size);
                break;
            case StepKind::lrn: {
                LrnDims d = s.lrn;
                d.rows = n * s.lrn.rows;
                lrn_forward(dst, nullptr, cur, d);
                break;
            }
            case StepKind::resize_bilinear: {
                const auto& in = values_[s.inputs[0]].shape;
                const auto& o = values_[s.output].shape;
                resize_bilinear_forward(dst, cur, CropDims{n, in[0], in[1], in[2], o[0], o[1]});
                break;
            }
            case StepKind::rescaling:
                rescaling_forward(dst, cur, s.scale.data(), s.offset.data(), n * s.out_size,
                                  static_cast<int64_t>(s.scale.size()));
                break;
            case StepKind::merge:
            case StepKind::concat:
                ins.clear();
                for (int v : s.inputs) ins.push_back(at(v));
                if (s.kind == StepKind::merge)
                    merge_forward(dst, ins.data(), static_cast<int64_t>(ins.size()),
                                  n * s.out_size, s.merge_op);
                else
                    concat_forward(dst, ins.data(), s.widths.data(),
                                   static_cast<int64_t>(ins.size()), n * s.rows);
                break;
            case StepKind::batchnorm: {
                BatchNormDims d = s.bn;
                d.rows *= n;
                batchnorm_forward_inference(dst, cur, s.bn_gamma, s.bn_beta, s.bn_mean, s.bn_var,
                                            d);
                break;
            }
            case StepKind::global_avg_pool2d:
            case StepKind::global_max_pool2d: {
                GlobalPoolDims d = s.gpool;
                d.N = n;
                if (s.kind == StepKind::global_avg_pool2d) global_avg_pool2d_forward(dst, cur, d);
                else global_max_pool2d_forward(dst, nullptr, cur, d);
                break;
            }
            case StepKind::zero_pad2d:
            case StepKind::crop2d: {
                Pad2dDims d = s.pad;
                d.N = n;
                if (s.kind == StepKind::zero_pad2d) zero_pad2d(dst, cur, d);
                else crop2d(dst, cur, d);
                break;
            }
            case StepKind::upsample2d: {
                Upsample2dDims d = s.up;
                d.N = n;
                upsample2d_nearest_forward(dst, cur, d);
                break;
            }
        }
        if (step_seconds)
            step_seconds[k] += std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                             start).count();
    }
}

}  // namespace cnnfast
