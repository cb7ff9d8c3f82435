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
            // Flatten changes the shape (a view of the same buffer); the identities do not.
            if (net.output_shape() == out_shape) return inputs[0];
            net.add_flatten();
            break;
        default: throw std::logic_error(s.label + ": a training fusion reached inference");
    }
    return net.current();
}

}  // namespace

std::unique_ptr<Network> build_network(const json::Value& arch, const WeightLookup& weight) {
    const Plan plan = build_plan(arch);
    auto net = std::make_unique<Network>(plan.values[0].shape);
    // The Network's value for each plan value.
    std::vector<int> value_of(plan.values.size(), -1);
    value_of[0] = 0;
    for (const PlanStep& s : plan.steps) {
        std::vector<int> inputs;
        for (int v : s.inputs) inputs.push_back(value_of[v]);
        try {
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
                                       const WeightLookup& weight) {
    return build_network(json::parse(architecture_json), weight);
}

}  // namespace cnnfast
