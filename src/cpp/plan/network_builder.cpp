#include "network_builder.h"

#include <stdexcept>

#include "layer_config.h"

namespace cnnfast {

using namespace config;

namespace {

void add_layer(Network& net, const WeightLookup& weights, const json::Value& layer) {
    const std::string cls = layer.at("class_name", "layer").as_string("layer class_name");
    const json::Value& cfg = layer.at("config", cls.c_str());
    const std::string name = cfg.at("name", cls.c_str()).as_string((cls + " name").c_str());
    const std::string who = cls + " '" + name + "'";
    const std::vector<int64_t>& shape = net.output_shape();

    if (cls == "Conv2D") {
        const Conv2dConfig c = read_conv2d(cfg, shape, who);
        const Conv2dDims& d = c.dims;
        const float* w = weights(name + "/kernel", c.kernel_shape);
        const float* b = c.use_bias ? weights(name + "/bias", {d.K}) : nullptr;
        net.add_conv2d(w, b, d.KH, d.KW, d.K, d.stride_h, d.stride_w, d.pad_top, d.pad_left, d.OH,
                       d.OW, d.groups, c.activation, 1.0f);
    } else if (cls == "MaxPooling2D" || cls == "AveragePooling2D") {
        const Pool2dDims p = read_pool2d(cfg, shape, who);
        net.add_pool2d(cls == "MaxPooling2D", p.PH, p.PW, p.stride_h, p.stride_w, p.pad_top,
                       p.pad_left, p.OH, p.OW);
    } else if (cls == "Dense") {
        const DenseConfig d = read_dense(cfg, shape, who);
        const float* w = weights(name + "/kernel", {shape.back(), d.units});
        const float* b = d.use_bias ? weights(name + "/bias", {d.units}) : nullptr;
        net.add_dense(w, b, shape.back(), d.units, d.activation, 1.0f);
    } else if (cls == "Flatten") {
        net.add_flatten();
    } else if (cls == "Dropout" || cls == "InputLayer") {
        // Identity at inference.
    } else if (cls == "Activation") {
        net.add_activation(activation_of(cfg, who), 1.0f);
    } else if (cls == "ReLU") {
        net.add_activation("relu", 1.0f);
    } else if (cls == "Softmax") {
        net.add_activation("softmax", 1.0f);
    } else if (cls == "ELU") {
        const json::Value* a = cfg.find("alpha");
        net.add_activation("elu", a ? static_cast<float>(a->as_number((who + " alpha").c_str())) : 1.0f);
    } else if (cls == "PReLU") {
        const std::vector<int64_t> alpha_shape = read_prelu_alpha_shape(cfg, shape, who);
        int64_t size = 1;
        for (int64_t d : alpha_shape) size *= d;
        net.add_prelu(weights(name + "/alpha", alpha_shape), size);
    } else if (cls == "LocalResponseNormalization") {
        const LrnDims d = read_lrn(cfg, shape, who);
        net.add_lrn(d.depth_radius, d.bias, d.alpha, d.beta);
    } else {
        fail("unknown layer class \"" + cls + "\"");
    }
}

// One call of `layer` on the values `inputs`: a merge step, or select + the layer's step.
void add_call(Network& net, const WeightLookup& weights, const json::Value& layer,
              const std::vector<int>& inputs) {
    const std::string cls = layer.at("class_name", "layer").as_string("layer class_name");
    MergeOp op = MergeOp::add;
    if (merge_op_of(cls, &op) || cls == "Concatenate") {
        if (cls == "Concatenate") {
            const json::Value* axis = layer.at("config", cls.c_str()).find("axis");
            // Keras counts the batch axis: the last axis is -1 or the per-sample rank.
            const int64_t rank = static_cast<int64_t>(net.value_shape(inputs[0]).size());
            const int64_t a = axis ? axis->as_int("Concatenate axis", -rank - 1, rank) : -1;
            if (a != -1 && a != rank)
                fail("Concatenate joins on the last axis (channels) only, got axis " +
                     std::to_string(a));
            net.add_concat(inputs);
        } else {
            net.add_merge(inputs, op);
        }
        return;
    }
    if (inputs.size() != 1)
        fail("takes one input, got " + std::to_string(inputs.size()));
    net.select(inputs[0]);
    add_layer(net, weights, layer);
}

}  // namespace

std::unique_ptr<Network> build_network(const json::Value& arch, const WeightLookup& weight) {
    const CallOrder order = order_calls(arch);
    auto net = std::make_unique<Network>(order.input_shape);
    // The Network's value for each call's output (identity layers add no step).
    std::vector<int> value_of{0};
    for (const LayerCall& call : order.calls) {
        std::vector<int> inputs;
        for (int v : call.inputs) inputs.push_back(value_of[v]);
        if (order.graph) {
            try {
                add_call(*net, weight, *call.layer, inputs);
            } catch (const std::exception& e) {
                fail(label_of(*call.layer) + ": " + e.what());
            }
        } else {
            try {
                add_layer(*net, weight, *call.layer);
            } catch (const std::invalid_argument& e) {
                // The Network's own shape checks: say which layer of the config they refused.
                fail(label_of(*call.layer) + ": " + e.what());
            }
        }
        value_of.push_back(net->current());
    }
    net->select(value_of[order.output]);
    return net;
}

std::unique_ptr<Network> build_network(const std::string& architecture_json,
                                       const WeightLookup& weight) {
    return build_network(json::parse(architecture_json), weight);
}

}  // namespace cnnfast
