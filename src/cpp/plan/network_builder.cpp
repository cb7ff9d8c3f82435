#include "network_builder.h"

#include <stdexcept>

#include "layer_config.h"
#include "plan.h"

namespace cnnfast {

namespace {

const float* weight_of(const WeightLookup& weights, const WeightRef& ref) {
    return ref.present() ? weights(ref.key, ref.shape) : nullptr;
}

// One plan step on the Network, reading `inputs` (Network values); returns the value it writes.
int lower_step(Network& net, const WeightLookup& weights, const PlanStep& s,
               const std::vector<int>& inputs, const std::vector<int64_t>& out_shape) {
    switch (s.kind) {
        case PlanOp::merge: net.add_merge(inputs, s.merge_op); return net.current();
        case PlanOp::concat: net.add_concat(inputs); return net.current();
        // Identity at inference.
        case PlanOp::dropout:
        case PlanOp::gaussian_noise:
        case PlanOp::spatial_dropout:
        case PlanOp::random_flip:
        case PlanOp::random_translation:
        case PlanOp::random_rotation: return inputs[0];
        default: break;
    }
    net.select(inputs[0]);
    const float* w = weight_of(weights, s.kernel);
    const float* b = weight_of(weights, s.bias);
    switch (s.kind) {
        case PlanOp::conv2d: {
            const Conv2dDims& d = s.conv;
            net.add_conv2d(w, b, d.KH, d.KW, d.K, d.stride_h, d.stride_w, d.pad_top, d.pad_left,
                           d.OH, d.OW, d.groups, activation_name(s), s.act_alpha, d.dilation_h,
                           d.dilation_w);
            break;
        }
        case PlanOp::dense:
            net.add_dense(w, b, s.dense.IN, s.dense.OUT, activation_name(s), s.act_alpha);
            break;
        case PlanOp::max_pool2d:
        case PlanOp::avg_pool2d: {
            const Pool2dDims& p = s.pool;
            net.add_pool2d(s.kind == PlanOp::max_pool2d, p.PH, p.PW, p.stride_h, p.stride_w,
                           p.pad_top, p.pad_left, p.OH, p.OW);
            break;
        }
        case PlanOp::activation:
        case PlanOp::softmax: net.add_activation(activation_name(s), s.act_alpha); break;
        case PlanOp::prelu: net.add_prelu(w, s.alpha_size); break;
        case PlanOp::lrn: net.add_lrn(s.lrn.depth_radius, s.lrn.bias, s.lrn.alpha, s.lrn.beta); break;
        case PlanOp::rescaling: net.add_rescaling(s.scale, s.offset); break;
        case PlanOp::random_crop:
            // Inference resizes to the window's size; an equal size is the identity.
            if (net.output_shape() == out_shape) return inputs[0];
            net.add_resize_bilinear(out_shape[0], out_shape[1]);
            break;
        case PlanOp::view:
            // Flatten and Reshape change the shape (a view of the same buffer); the identities
            // do not.
            if (net.output_shape() == out_shape) return inputs[0];
            net.add_reshape(out_shape);
            break;
        case PlanOp::batchnorm:
            net.add_batchnorm(w, b, weight_of(weights, s.moving_mean),
                              weight_of(weights, s.moving_variance), s.bn.epsilon);
            break;
        case PlanOp::global_avg_pool2d:
        case PlanOp::global_max_pool2d:
            net.add_global_pool2d(s.kind == PlanOp::global_max_pool2d, out_shape.size() == 3);
            break;
        case PlanOp::zero_pad2d:
        case PlanOp::crop2d:
            net.add_pad2d(s.kind == PlanOp::zero_pad2d, s.pad.top, s.pad.bottom, s.pad.left,
                          s.pad.right);
            break;
        case PlanOp::upsample2d: net.add_upsample2d(s.up.SH, s.up.SW); break;
        default: throw std::logic_error(s.label + ": a training fusion reached inference");
    }
    return net.current();
}

// The only step reading value v (none when it is the network's output), else -1.
int only_reader(const Plan& plan, int v) {
    if (v == plan.output) return -1;
    int reader = -1;
    for (size_t j = 0; j < plan.steps.size(); ++j)
        for (int r : plan.steps[j].inputs)
            if (r == v) {
                if (reader >= 0 && reader != static_cast<int>(j)) return -1;
                reader = static_cast<int>(j);
            }
    return reader;
}

// A linear Conv2D whose only reader is a BatchNormalization (neither shared, the conv's output
// not the network's): the step of that batch normalization, else -1.
int folded_batchnorm(const Plan& plan, size_t i) {
    const PlanStep& conv = plan.steps[i];
    if (conv.kind != PlanOp::conv2d || conv.softmax || conv.act != Activation::linear ||
        conv.first_call >= 0)
        return -1;
    const int reader = only_reader(plan, conv.output);
    if (reader < 0) return -1;
    const PlanStep& bn = plan.steps[reader];
    return bn.kind == PlanOp::batchnorm && bn.first_call < 0 ? reader : -1;
}

// The activation step (not softmax, not shared) that alone reads a folded batch
// normalization's output, which the convolution's epilogue then applies; else -1.
int folded_activation(const Plan& plan, int bn) {
    const int reader = only_reader(plan, plan.steps[bn].output);
    if (reader < 0) return -1;
    const PlanStep& act = plan.steps[reader];
    return act.kind == PlanOp::activation && act.first_call < 0 ? reader : -1;
}

// The convolution with the batch normalization after it folded into its weights, at build
// time into weights the Network owns (the model's own are not changed):
//   w'[..., k] = w[..., k] * scale_k, b'_k = b_k * scale_k + shift_k,
// scale = gamma / sqrt(moving_variance + epsilon), shift = beta - moving_mean * scale.
void add_folded_conv2d(Network& net, const WeightLookup& weights, const PlanStep& s,
                       const PlanStep& bn, const PlanStep* act) {
    const Conv2dDims& d = s.conv;
    const int64_t K = d.K;
    std::vector<float> scale(K), shift(K);
    batchnorm_scale_shift(scale.data(), shift.data(), weight_of(weights, bn.kernel),
                          weight_of(weights, bn.bias), weight_of(weights, bn.moving_mean),
                          weight_of(weights, bn.moving_variance), K, bn.bn.epsilon);
    const float* w = weight_of(weights, s.kernel);
    const float* b = weight_of(weights, s.bias);
    std::vector<float> fw(static_cast<size_t>(d.KH * d.KW * (d.C / d.groups) * K));
    for (size_t i = 0; i < fw.size(); ++i) fw[i] = w[i] * scale[i % K];
    std::vector<float> fb(K);
    for (int64_t k = 0; k < K; ++k) fb[k] = (b ? b[k] : 0.0f) * scale[k] + shift[k];
    net.add_conv2d(net.own(std::move(fw)), net.own(std::move(fb)), d.KH, d.KW, K, d.stride_h,
                   d.stride_w, d.pad_top, d.pad_left, d.OH, d.OW, d.groups,
                   act ? activation_name(*act) : "linear", act ? act->act_alpha : 1.0f);
}

// "name" of a "name/kernel" key.
std::string layer_of(const WeightRef& ref) { return ref.key.substr(0, ref.key.rfind('/')); }

// A Conv2D or Dense run in int8 (`q`), with the activation step `act` after a folded batch
// normalization (or -1: the layer's own activation; a folded one follows a linear convolution).
void add_int8_step(Network& net, const Plan& plan, const PlanStep& s, const Int8Layer& q,
                   int act) {
    const PlanStep& a = act >= 0 ? plan.steps[act] : s;
    const std::string activation = activation_name(a);
    if (s.kind == PlanOp::dense) {
        net.add_dense_int8(q.kernel, q.kernel_scale, q.bias, q.input_scale, q.input_zero_point,
                           s.dense.IN, s.dense.OUT, activation, a.act_alpha);
        return;
    }
    const Conv2dDims& d = s.conv;
    if (d.groups != 1)
        config::fail(s.label + ": groups = " + std::to_string(d.groups) +
                     "; the int8 convolution takes one group");
    net.add_conv2d_int8(q.kernel, q.kernel_scale, q.bias, q.input_scale, q.input_zero_point, d.KH,
                        d.KW, d.K, d.stride_h, d.stride_w, d.pad_top, d.pad_left, d.OH, d.OW,
                        activation, a.act_alpha, d.dilation_h, d.dilation_w);
}

}  // namespace

std::unique_ptr<Network> build_network(const json::Value& arch, const WeightLookup& weight) {
    return build_network(arch, weight, nullptr);
}

std::unique_ptr<Network> build_network(const json::Value& arch, const WeightLookup& weight,
                                       const Int8Lookup& int8) {
    const Plan plan = build_plan(arch);
    auto net = std::make_unique<Network>(plan.values[0].shape);
    // The Network's value for each plan value.
    std::vector<int> value_of(plan.values.size(), -1);
    value_of[0] = 0;
    std::vector<char> folded(plan.steps.size(), 0);
    for (size_t i = 0; i < plan.steps.size(); ++i) {
        const PlanStep& s = plan.steps[i];
        if (folded[i]) continue;  // folded into the convolution before it
        std::vector<int> inputs;
        for (int v : s.inputs) inputs.push_back(value_of[v]);
        try {
            Int8Layer q;
            if (int8 && (s.kind == PlanOp::conv2d || s.kind == PlanOp::dense) &&
                int8(layer_of(s.kernel), s.kernel.shape, &q)) {
                // The quantizer folded this batch normalization (and so its activation) into
                // the int8 weights and bias exactly when the float build folds it.
                const int bn = s.kind == PlanOp::conv2d ? folded_batchnorm(plan, i) : -1;
                const std::string bn_name = bn >= 0 ? layer_of(plan.steps[bn].moving_mean) : "";
                if (!q.folded_batchnorm.empty() && q.folded_batchnorm != bn_name)
                    config::fail(s.label + ": the int8 weights fold BatchNormalization '" +
                                 q.folded_batchnorm + "', which is not the one that alone " +
                                 "reads this linear convolution" +
                                 (bn_name.empty() ? "" : " ('" + bn_name + "')"));
                const int folded_bn = q.folded_batchnorm.empty() ? -1 : bn;
                const int act = folded_bn >= 0 ? folded_activation(plan, folded_bn) : -1;
                net->select(inputs[0]);
                add_int8_step(*net, plan, s, q, act);
                value_of[s.output] = net->current();
                if (folded_bn >= 0) {
                    folded[folded_bn] = 1;
                    value_of[plan.steps[folded_bn].output] = net->current();
                }
                if (act >= 0) {
                    folded[act] = 1;
                    value_of[plan.steps[act].output] = net->current();
                }
                continue;
            }
            const int bn = folded_batchnorm(plan, i);
            if (bn >= 0) {
                // Conv2D + BatchNormalization (+ its activation) as one convolution step.
                const int act = folded_activation(plan, bn);
                net->select(inputs[0]);
                add_folded_conv2d(*net, weight, s, plan.steps[bn], act >= 0 ? &plan.steps[act]
                                                                            : nullptr);
                folded[bn] = 1;
                value_of[s.output] = value_of[plan.steps[bn].output] = net->current();
                if (act >= 0) {
                    folded[act] = 1;
                    value_of[plan.steps[act].output] = net->current();
                }
                continue;
            }
            value_of[s.output] = lower_step(*net, weight, s, inputs, plan.values[s.output].shape);
        } catch (const std::invalid_argument& e) {
            // The Network's own shape checks: say which layer of the config they refused.
            config::fail(s.label + ": " + e.what());
        }
    }
    net->select(value_of[plan.output]);
    return net;
}

std::unique_ptr<Network> build_network(const std::string& architecture_json,
                                       const WeightLookup& weight, const Int8Lookup& int8) {
    return build_network(json::parse(architecture_json), weight, int8);
}

}  // namespace cnnfast
