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
        if (shape.size() != 3) fail(who + ": needs (H, W, C) input, got " + shape_str(shape));
        const auto [kh, kw] = int_pair(cfg, "kernel_size", who);
        const auto [sh, sw] = int_pair(cfg, "strides", who);
        const int64_t filters = cfg.at("filters", who.c_str()).as_int((who + " filters").c_str(), 1, kMaxDim);
        const json::Value* g = cfg.find("groups");
        const int64_t groups = g ? g->as_int((who + " groups").c_str(), 1, kMaxDim) : 1;
        if (shape[2] % groups || filters % groups) fail(who + ": groups do not divide the channels");
        const json::Value& padding = cfg.at("padding", who.c_str());
        const auto [top, oh] = axis_geometry(shape[0], kh, sh, padding, 0, who);
        const auto [left, ow] = axis_geometry(shape[1], kw, sw, padding, 1, who);
        const json::Value* ub = cfg.find("use_bias");
        const bool use_bias = ub ? ub->as_bool((who + " use_bias").c_str()) : true;
        const float* w = weights(name + "/kernel", {kh, kw, shape[2] / groups, filters});
        const float* b = use_bias ? weights(name + "/bias", {filters}) : nullptr;
        net.add_conv2d(w, b, kh, kw, filters, sh, sw, top, left, oh, ow, groups,
                       activation_of(cfg, who), 1.0f);
    } else if (cls == "MaxPooling2D" || cls == "AveragePooling2D") {
        if (shape.size() != 3) fail(who + ": needs (H, W, C) input, got " + shape_str(shape));
        const auto [ph, pw] = int_pair(cfg, "pool_size", who);
        const auto [sh, sw] = int_pair(cfg, "strides", who);
        const json::Value& padding = cfg.at("padding", who.c_str());
        if (!padding.is_string()) fail(who + ": padding must be \"valid\" or \"same\"");
        const auto [top, oh] = axis_geometry(shape[0], ph, sh, padding, 0, who);
        const auto [left, ow] = axis_geometry(shape[1], pw, sw, padding, 1, who);
        net.add_pool2d(cls == "MaxPooling2D", ph, pw, sh, sw, top, left, oh, ow);
    } else if (cls == "Dense") {
        const int64_t units = cfg.at("units", who.c_str()).as_int((who + " units").c_str(), 1, kMaxDim);
        const json::Value* ub = cfg.find("use_bias");
        const bool use_bias = ub ? ub->as_bool((who + " use_bias").c_str()) : true;
        if (shape.empty()) fail(who + ": needs a feature axis");
        const float* w = weights(name + "/kernel", {shape.back(), units});
        const float* b = use_bias ? weights(name + "/bias", {units}) : nullptr;
        net.add_dense(w, b, shape.back(), units, activation_of(cfg, who), 1.0f);
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
        std::vector<int64_t> alpha_shape = shape;
        if (const json::Value* axes = cfg.find("shared_axes"); axes && axes->is_array()) {
            for (const json::Value& a : axes->array) {
                int64_t axis = a.as_int((who + " shared_axes").c_str(), 1, static_cast<int64_t>(shape.size()));
                alpha_shape[axis - 1] = 1;
            }
        }
        int64_t size = 1;
        for (int64_t s : alpha_shape) size *= s;
        net.add_prelu(weights(name + "/alpha", alpha_shape), size);
    } else if (cls == "LocalResponseNormalization") {
        const int64_t radius = cfg.at("depth_radius", who.c_str()).as_int((who + " depth_radius").c_str(), 0, kMaxDim);
        net.add_lrn(radius, static_cast<float>(cfg.at("bias", who.c_str()).as_number(who.c_str())),
                    static_cast<float>(cfg.at("alpha", who.c_str()).as_number(who.c_str())),
                    static_cast<float>(cfg.at("beta", who.c_str()).as_number(who.c_str())));
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
