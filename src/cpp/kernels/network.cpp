#include "network.h"

#include <cstring>
#include <stdexcept>
#include <utility>

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
           s.kind == StepKind::prelu;
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

Network::Network(std::vector<int64_t> input_shape)
    : input_shape_(std::move(input_shape)), shape_(input_shape_) {
    if (input_shape_.empty())
        throw std::invalid_argument("Network: the input shape needs at least one axis");
    for (int64_t d : input_shape_)
        if (d < 1)
            throw std::invalid_argument("Network: input shape " + dims_str(input_shape_) +
                                        " must have positive sizes");
    input_size_ = size_of(input_shape_);
    max_size_ = input_size_;
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

std::string Network::shape_str() const { return dims_str(shape_); }

void Network::push(NetworkStep step, std::vector<int64_t> out_shape) {
    step.in_size = size_of(shape_);
    step.out_size = size_of(out_shape);
    steps_.push_back(step);
    shape_ = std::move(out_shape);
    max_size_ = std::max(max_size_, step.out_size);
}

void Network::add_conv2d(const float* w, const float* bias, int64_t KH, int64_t KW, int64_t K,
                         int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
                         int64_t out_h, int64_t out_w, int64_t groups,
                         const std::string& activation, float act_alpha) {
    const std::string ctx = "Network.add_conv2d on input " + shape_str();
    if (shape_.size() != 3) throw std::invalid_argument(ctx + ": needs an (H, W, C) input");
    const int64_t H = shape_[0], W = shape_[1], C = shape_[2];
    if (!w) throw std::invalid_argument(ctx + ": kernel is null");
    if (groups < 1 || C % groups || K < 1 || K % groups)
        throw std::invalid_argument(ctx + ": groups " + std::to_string(groups) +
                                    " must divide input channels " + std::to_string(C) +
                                    " and filters " + std::to_string(K));
    check_axis(ctx, "height", H, KH, stride_h, pad_top, out_h);
    check_axis(ctx, "width", W, KW, stride_w, pad_left, out_w);
    NetworkStep s{};
    s.kind = StepKind::conv2d;
    s.conv = Conv2dDims{1, H, W, C, KH, KW, K, out_h, out_w, stride_h, stride_w, pad_top, pad_left,
                        groups};
    s.weight = w;
    s.bias = bias;
    s.rows = out_h * out_w;
    s.act_alpha = act_alpha;
    parse_activation(ctx, activation, s);
    push(s, {out_h, out_w, K});
}

void Network::add_pool2d(bool max, int64_t PH, int64_t PW, int64_t stride_h, int64_t stride_w,
                         int64_t pad_top, int64_t pad_left, int64_t out_h, int64_t out_w) {
    const std::string ctx = std::string("Network.add_") + (max ? "max" : "avg") +
                            "_pool2d on input " + shape_str();
    if (shape_.size() != 3) throw std::invalid_argument(ctx + ": needs an (H, W, C) input");
    const int64_t H = shape_[0], W = shape_[1], C = shape_[2];
    check_axis(ctx, "height", H, PH, stride_h, pad_top, out_h);
    check_axis(ctx, "width", W, PW, stride_w, pad_left, out_w);
    NetworkStep s{};
    s.kind = max ? StepKind::max_pool2d : StepKind::avg_pool2d;
    s.pool = Pool2dDims{1, H, W, C, PH, PW, out_h, out_w, stride_h, stride_w, pad_top, pad_left};
    push(s, {out_h, out_w, C});
}

void Network::add_dense(const float* w, const float* bias, int64_t IN, int64_t OUT,
                        const std::string& activation, float act_alpha) {
    const std::string ctx = "Network.add_dense on input " + shape_str();
    if (!w) throw std::invalid_argument(ctx + ": kernel is null");
    if (shape_.back() != IN || OUT < 1)
        throw std::invalid_argument(ctx + ": kernel (" + std::to_string(IN) + ", " +
                                    std::to_string(OUT) + ") needs the last axis to be " +
                                    std::to_string(IN));
    NetworkStep s{};
    s.kind = StepKind::dense;
    s.rows = size_of(shape_) / IN;
    s.dense = DenseDims{s.rows, IN, OUT};
    s.weight = w;
    s.bias = bias;
    s.act_alpha = act_alpha;
    parse_activation(ctx, activation, s);
    std::vector<int64_t> out = shape_;
    out.back() = OUT;
    push(s, std::move(out));
}

void Network::add_activation(const std::string& activation, float act_alpha) {
    NetworkStep s{};
    s.act_alpha = act_alpha;
    parse_activation("Network.add_activation on input " + shape_str(), activation, s);
    s.kind = s.fused_softmax ? StepKind::softmax : StepKind::activation;
    s.rows = size_of(shape_) / shape_.back();
    if (s.kind == StepKind::activation && s.act == Activation::linear) return;  // identity
    push(s, shape_);
}

void Network::add_prelu(const float* alpha, int64_t alpha_size) {
    const std::string ctx = "Network.add_prelu on input " + shape_str();
    if (!alpha || alpha_size < 1 || size_of(shape_) % alpha_size)
        throw std::invalid_argument(ctx + ": alpha of " + std::to_string(alpha_size) +
                                    " elements must divide the sample size " +
                                    std::to_string(size_of(shape_)));
    NetworkStep s{};
    s.kind = StepKind::prelu;
    s.weight = alpha;
    s.alpha_size = alpha_size;
    push(s, shape_);
}

void Network::add_lrn(int64_t depth_radius, float bias, float alpha, float beta) {
    const std::string ctx = "Network.add_lrn on input " + shape_str();
    if (depth_radius < 0 || !(bias > 0.0f) || !(alpha >= 0.0f))
        throw std::invalid_argument(ctx + ": needs depth_radius >= 0, bias > 0, alpha >= 0");
    NetworkStep s{};
    s.kind = StepKind::lrn;
    s.lrn = LrnDims{size_of(shape_) / shape_.back(), shape_.back(), depth_radius, bias, alpha, beta};
    push(s, shape_);
}

void Network::add_flatten() { shape_ = {size_of(shape_)}; }

// x (n, input...) -> out (n, output...). Out-of-place steps alternate between the two arena
// buffers, the last of them writes straight into `out`; in-place steps (activations, PReLU)
// then run on whatever holds the current activations.
void Network::forward(float* out, const float* x, int64_t n) const {
    if (n <= 0) return;
    const size_t count = steps_.size();
    size_t last_oop = count;  // index of the last out-of-place step
    for (size_t i = 0; i < count; ++i)
        if (!in_place(steps_[i])) last_oop = i;
    if (count == 0) {
        std::memcpy(out, x, sizeof(float) * n * input_size_);
        return;
    }
    // Two activation buffers of the calling thread, which out-of-place steps before the last
    // alternate between, so concurrent calls on other threads never share one.
    float* arena[2] = {nullptr, nullptr};
    if (last_oop != count && last_oop > 0) {
        arena[0] = workspace(Scratch::network_ping, n * max_size_);
        arena[1] = workspace(Scratch::network_pong, n * max_size_);
    }
    const float* cur = x;
    int next = 0;  // arena buffer the next out-of-place step writes
    for (size_t i = 0; i < count; ++i) {
        const NetworkStep& s = steps_[i];
        // Destination: `out` for the last out-of-place step (or the first in-place step when
        // there is none), a fresh arena buffer before it; in-place steps keep the current
        // buffer unless that is the caller's input.
        float* dst;
        if (in_place(s) && cur != x) {
            dst = const_cast<float*>(cur);
        } else if (last_oop == count || i >= last_oop) {
            dst = out;
        } else {
            dst = arena[next];
            next ^= 1;
        }
        switch (s.kind) {
            case StepKind::conv2d: {
                Conv2dDims d = s.conv;
                d.N = n;
                if (s.fused_softmax) {
                    conv2d_forward(dst, cur, s.weight, s.bias, d, false);
                    apply_activation(s, dst, n * s.out_size, n * s.rows);
                } else {  // the activation on each band of output while it is in cache
                    conv2d_forward(dst, cur, s.weight, s.bias, d, s.act, s.act_alpha);
                }
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
        }
        cur = dst;
    }
}

}  // namespace cnnfast
