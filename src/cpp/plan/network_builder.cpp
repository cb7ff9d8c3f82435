#include "network_builder.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace cnnfast {

namespace {

constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;  // dims fit the kernels' int32 sizes

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + (s.size() == 1 ? ",)" : ")");
}

// (before, out) of one spatial axis for padding "valid", "same" or an explicit symmetric pad,
// following cnnfast.shapes.conv_padding (TensorFlow's "same": odd padding at the end).
std::pair<int64_t, int64_t> axis_geometry(int64_t n, int64_t k, int64_t s, const json::Value& padding,
                                          int axis, const std::string& who) {
    int64_t before = 0, after = 0;
    if (padding.is_string()) {
        const std::string& mode = padding.string;
        if (mode == "same") {
            int64_t out = (n + s - 1) / s;
            int64_t total = std::max<int64_t>((out - 1) * s + k - n, 0);
            before = total / 2;
            after = total - before;
        } else if (mode != "valid") {
            fail(who + ": unknown padding \"" + mode + "\"");
        }
    } else if (padding.is_array() && padding.array.size() == 2) {
        before = after = padding.array[axis].as_int((who + " padding").c_str(), 0, kMaxDim);
    } else {
        fail(who + ": padding must be \"valid\", \"same\" or [ph, pw]");
    }
    if (k > n + before + after)
        fail(who + ": window " + std::to_string(k) + " larger than padded input " +
             std::to_string(n + before + after));
    return {before, (n + before + after - k) / s + 1};
}

std::pair<int64_t, int64_t> int_pair(const json::Value& cfg, const char* key, const std::string& who) {
    const json::Value& v = cfg.at(key, who.c_str());
    std::string what = who + " " + key;
    if (!v.is_array() || v.array.size() != 2) fail(what + ": expected [a, b]");
    return {v.array[0].as_int(what.c_str(), 1, kMaxDim), v.array[1].as_int(what.c_str(), 1, kMaxDim)};
}

std::string activation_of(const json::Value& cfg, const std::string& who) {
    const json::Value* a = cfg.find("activation");
    if (!a || a->kind == json::Value::Kind::Null) return "linear";
    return a->as_string((who + " activation").c_str());
}

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

// Merge layers by class name; Concatenate is handled apart.
bool merge_op_of(const std::string& cls, MergeOp* op) {
    static const std::pair<const char*, MergeOp> kOps[] = {
        {"Add", MergeOp::add}, {"Subtract", MergeOp::subtract}, {"Multiply", MergeOp::multiply},
        {"Average", MergeOp::average}, {"Maximum", MergeOp::maximum}};
    for (const auto& [name, kind] : kOps)
        if (cls == name) return *op = kind, true;
    return false;
}

std::string label_of(const json::Value& layer) {
    const json::Value* cfg = layer.find("config");
    const json::Value* name = cfg ? cfg->find("name") : nullptr;
    const json::Value* cls = layer.find("class_name");
    return (cls && cls->is_string() ? cls->string : std::string("layer")) + " '" +
           (name && name->is_string() ? name->string : std::string("?")) + "'";
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

// A stack: {"input_shape": [..], "layers": [..]} in order.
void build_stack(Network& net, const WeightLookup& weight, const json::Value& layers) {
    for (const json::Value& layer : layers.array) {
        try {
            add_layer(net, weight, layer);
        } catch (const std::invalid_argument& e) {
            // The Network's own shape checks: say which layer of the config they refused.
            fail(label_of(layer) + ": " + e.what());
        }
    }
}

// A reference [layer_name, node_index] to the output of one call of a layer.
std::pair<std::string, int64_t> node_ref(const json::Value& ref, const std::string& who) {
    if (!ref.is_array() || ref.array.size() < 2)
        fail(who + ": a node reference must be [layer_name, node_index]");
    return {ref.array[0].as_string((who + " node reference").c_str()),
            ref.array[1].as_int((who + " node index").c_str(), 0, kMaxDim)};
}

// A graph (Keras functional config): every layer lists its calls in "inbound_nodes", each a
// list of [layer_name, node_index] references; "input_layers" and "output_layers" name one
// node each. Calls are added in dependency order, whatever the order of the layers.
int build_graph(Network& net, const WeightLookup& weight, const json::Value& arch) {
    const json::Value& layers = arch.at("layers", "architecture");
    const auto inputs = arch.at("input_layers", "architecture");
    const auto outputs = arch.at("output_layers", "architecture");
    if (!inputs.is_array() || inputs.array.size() != 1 || !outputs.is_array() ||
        outputs.array.size() != 1)
        fail("architecture: a graph needs exactly one input and one output");
    const auto input = node_ref(inputs.array[0], "input_layers");
    const auto output = node_ref(outputs.array[0], "output_layers");

    struct Call {
        const json::Value* layer;
        std::string name;
        int64_t index;
        std::vector<std::pair<std::string, int64_t>> refs;
    };
    std::vector<Call> pending;
    std::map<std::pair<std::string, int64_t>, int> value_of;  // node -> Network value
    for (const json::Value& layer : layers.array) {
        const std::string who = label_of(layer);
        const std::string name = layer.at("config", who.c_str()).at("name", who.c_str())
                                     .as_string((who + " name").c_str());
        const std::string cls = layer.at("class_name", who.c_str()).as_string(who.c_str());
        if (cls == "InputLayer") {
            if (name != input.first) fail(who + " is not the graph's input " + input.first);
            value_of[{name, 0}] = 0;
            continue;
        }
        const json::Value& nodes = layer.at("inbound_nodes", who.c_str());
        if (!nodes.is_array()) fail(who + ": inbound_nodes must be a list");
        for (size_t k = 0; k < nodes.array.size(); ++k) {
            Call call{&layer, name, static_cast<int64_t>(k), {}};
            if (!nodes.array[k].is_array() || nodes.array[k].array.empty())
                fail(who + ": call " + std::to_string(k) + " has no inputs");
            for (const json::Value& ref : nodes.array[k].array)
                call.refs.push_back(node_ref(ref, who));
            pending.push_back(std::move(call));
        }
    }
    if (!value_of.count(input)) fail("architecture: no InputLayer named " + input.first);
    // Add every call whose inputs exist, until none is left; what remains waits on a cycle or
    // on a node that no layer produces.
    while (!pending.empty()) {
        bool progress = false;
        for (size_t i = 0; i < pending.size();) {
            Call& c = pending[i];
            std::vector<int> in;
            for (const auto& ref : c.refs) {
                auto it = value_of.find(ref);
                if (it == value_of.end()) break;
                in.push_back(it->second);
            }
            if (in.size() != c.refs.size()) {
                ++i;
                continue;
            }
            try {
                add_call(net, weight, *c.layer, in);
            } catch (const std::exception& e) {
                fail(label_of(*c.layer) + ": " + e.what());
            }
            value_of[{c.name, c.index}] = net.current();
            pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
            progress = true;
        }
        if (!progress) {
            std::string names;
            for (const Call& c : pending) {
                for (const auto& ref : c.refs)
                    if (!value_of.count(ref))
                        names += (names.empty() ? "" : ", ") + c.name + " <- " + ref.first + "[" +
                                 std::to_string(ref.second) + "]";
            }
            fail("architecture: these calls wait on nodes that never exist or on a cycle: " + names);
        }
    }
    auto it = value_of.find(output);
    if (it == value_of.end())
        fail("architecture: output_layers names " + output.first + "[" +
             std::to_string(output.second) + "], which no layer produces");
    return it->second;
}

}  // namespace

std::unique_ptr<Network> build_network(const json::Value& arch, const WeightLookup& weight) {
    if (!arch.is_object()) fail("architecture is not a JSON object");
    const json::Value& layers = arch.at("layers", "architecture");
    if (!layers.is_array() || layers.array.empty()) fail("architecture: no layers");
    const bool graph = arch.find("input_layers") != nullptr;
    // A graph's input shape is its InputLayer's; a stack's is the architecture's.
    const json::Value* input = nullptr;
    if (graph) {
        for (const json::Value& layer : layers.array)
            if (layer.find("class_name") && layer.find("class_name")->is_string() &&
                layer.find("class_name")->string == "InputLayer")
                input = &layer.at("config", "InputLayer").at("shape", "InputLayer config");
        if (!input) fail("architecture: a graph needs an InputLayer");
    } else {
        input = &arch.at("input_shape", "architecture");
    }
    if (!input->is_array() || input->array.empty()) fail("architecture: input shape must be a list");
    std::vector<int64_t> input_shape;
    for (const json::Value& d : input->array)
        input_shape.push_back(d.as_int("architecture input shape", 1, kMaxDim));
    auto net = std::make_unique<Network>(input_shape);
    if (graph)
        net->select(build_graph(*net, weight, arch));
    else
        build_stack(*net, weight, layers);
    return net;
}

std::unique_ptr<Network> build_network(const std::string& architecture_json,
                                       const WeightLookup& weight) {
    return build_network(json::parse(architecture_json), weight);
}

}  // namespace cnnfast
