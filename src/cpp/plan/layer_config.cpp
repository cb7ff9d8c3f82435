#include "layer_config.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace cnnfast::config {

void fail(const std::string& what) { throw std::runtime_error(what); }

std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + (s.size() == 1 ? ",)" : ")");
}

std::pair<int64_t, int64_t> axis_geometry(int64_t n, int64_t k, int64_t s,
                                          const json::Value& padding, int axis,
                                          const std::string& who) {
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

std::pair<int64_t, int64_t> int_pair(const json::Value& cfg, const char* key,
                                     const std::string& who) {
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

namespace {

// A reference [layer_name, node_index] to the output of one call of a layer.
std::pair<std::string, int64_t> node_ref(const json::Value& ref, const std::string& who) {
    if (!ref.is_array() || ref.array.size() < 2)
        fail(who + ": a node reference must be [layer_name, node_index]");
    return {ref.array[0].as_string((who + " node reference").c_str()),
            ref.array[1].as_int((who + " node index").c_str(), 0, kMaxDim)};
}

// A graph's calls: every layer lists its calls in "inbound_nodes", each a list of
// [layer_name, node_index] references; "input_layers" and "output_layers" name one node each.
void order_graph(CallOrder& order, const json::Value& arch) {
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
    std::map<std::pair<std::string, int64_t>, int> value_of;  // node -> value
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
    // Take every call whose inputs exist, until none is left; what remains waits on a cycle or
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
            order.calls.push_back({c.layer, std::move(in)});
            value_of[{c.name, c.index}] = static_cast<int>(order.calls.size());
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
    order.output = it->second;

    // Reorder the calls depth-first from the output, each call after its inputs taken in
    // order (cnnfast.graph.collect, the order of Model._forward): the training plan then sums
    // gradients and draws dropout seeds in the Python walk's order, also where a shared
    // layer's later call waits on layers listed after it. Calls the output does not read keep
    // their order above, after the others.
    const size_t count = order.calls.size();
    std::vector<int> post;  // call indices in the new order
    std::vector<char> done(count, 0);
    auto visit = [&](int root) {
        std::vector<std::pair<int, bool>> stack{{root, false}};
        while (!stack.empty()) {
            const auto [v, expanded] = stack.back();
            stack.pop_back();
            const int c = v - 1;
            if (expanded) {
                done[c] = 1;
                post.push_back(c);
                continue;
            }
            if (done[c]) continue;
            stack.push_back({v, true});
            const std::vector<int>& in = order.calls[c].inputs;
            for (auto r = in.rbegin(); r != in.rend(); ++r)
                if (*r != 0 && !done[*r - 1]) stack.push_back({*r, false});
        }
    };
    if (order.output != 0) visit(order.output);
    for (size_t c = 0; c < count; ++c)
        if (!done[c]) visit(static_cast<int>(c) + 1);
    std::vector<int> value_at(count + 1, 0);  // old value -> new value
    for (size_t k = 0; k < count; ++k) value_at[post[k] + 1] = static_cast<int>(k) + 1;
    std::vector<LayerCall> calls;
    for (int c : post) {
        LayerCall call = order.calls[c];
        for (int& r : call.inputs) r = value_at[r];
        calls.push_back(std::move(call));
    }
    order.calls = std::move(calls);
    order.output = value_at[order.output];
}

}  // namespace

CallOrder order_calls(const json::Value& arch) {
    if (!arch.is_object()) fail("architecture is not a JSON object");
    const json::Value& layers = arch.at("layers", "architecture");
    if (!layers.is_array() || layers.array.empty()) fail("architecture: no layers");
    CallOrder order;
    order.graph = arch.find("input_layers") != nullptr;
    // A graph's input shape is its InputLayer's; a stack's is the architecture's.
    const json::Value* input = nullptr;
    if (order.graph) {
        for (const json::Value& layer : layers.array)
            if (layer.find("class_name") && layer.find("class_name")->is_string() &&
                layer.find("class_name")->string == "InputLayer")
                input = &layer.at("config", "InputLayer").at("shape", "InputLayer config");
        if (!input) fail("architecture: a graph needs an InputLayer");
    } else {
        input = &arch.at("input_shape", "architecture");
    }
    if (!input->is_array() || input->array.empty()) fail("architecture: input shape must be a list");
    for (const json::Value& d : input->array)
        order.input_shape.push_back(d.as_int("architecture input shape", 1, kMaxDim));
    if (order.graph) {
        order_graph(order, arch);
    } else {
        for (const json::Value& layer : layers.array) {
            const int before = static_cast<int>(order.calls.size());
            order.calls.push_back({&layer, {before}});
        }
        order.output = static_cast<int>(order.calls.size());
    }
    return order;
}

Conv2dConfig read_conv2d(const json::Value& cfg, const std::vector<int64_t>& shape,
                         const std::string& who) {
    if (shape.size() != 3) fail(who + ": needs (H, W, C) input, got " + shape_str(shape));
    const auto [kh, kw] = int_pair(cfg, "kernel_size", who);
    const auto [sh, sw] = int_pair(cfg, "strides", who);
    const int64_t filters =
        cfg.at("filters", who.c_str()).as_int((who + " filters").c_str(), 1, kMaxDim);
    const json::Value* g = cfg.find("groups");
    const int64_t groups = g ? g->as_int((who + " groups").c_str(), 1, kMaxDim) : 1;
    if (shape[2] % groups || filters % groups) fail(who + ": groups do not divide the channels");
    const json::Value& padding = cfg.at("padding", who.c_str());
    // dilation_rate (Keras; absent in older configs): the window spans (k - 1) * d + 1.
    const auto [dh, dw] = cfg.find("dilation_rate") ? int_pair(cfg, "dilation_rate", who)
                                                    : std::pair<int64_t, int64_t>{1, 1};
    const auto [top, oh] = axis_geometry(shape[0], (kh - 1) * dh + 1, sh, padding, 0, who);
    const auto [left, ow] = axis_geometry(shape[1], (kw - 1) * dw + 1, sw, padding, 1, who);
    const json::Value* ub = cfg.find("use_bias");
    Conv2dConfig c;
    c.dims = {1,  shape[0], shape[1], shape[2], kh,     kw,   filters, oh,
              ow, sh,       sw,       top,      left,   groups, dh,      dw};
    c.use_bias = ub ? ub->as_bool((who + " use_bias").c_str()) : true;
    c.activation = activation_of(cfg, who);
    c.kernel_shape = {kh, kw, shape[2] / groups, filters};
    return c;
}

Pool2dDims read_pool2d(const json::Value& cfg, const std::vector<int64_t>& shape,
                       const std::string& who) {
    if (shape.size() != 3) fail(who + ": needs (H, W, C) input, got " + shape_str(shape));
    const auto [ph, pw] = int_pair(cfg, "pool_size", who);
    const auto [sh, sw] = int_pair(cfg, "strides", who);
    const json::Value& padding = cfg.at("padding", who.c_str());
    if (!padding.is_string()) fail(who + ": padding must be \"valid\" or \"same\"");
    const auto [top, oh] = axis_geometry(shape[0], ph, sh, padding, 0, who);
    const auto [left, ow] = axis_geometry(shape[1], pw, sw, padding, 1, who);
    return {1, shape[0], shape[1], shape[2], ph, pw, oh, ow, sh, sw, top, left};
}

DenseConfig read_dense(const json::Value& cfg, const std::vector<int64_t>& shape,
                       const std::string& who) {
    if (shape.empty()) fail(who + ": needs a feature axis");
    DenseConfig d;
    d.units = cfg.at("units", who.c_str()).as_int((who + " units").c_str(), 1, kMaxDim);
    const json::Value* ub = cfg.find("use_bias");
    d.use_bias = ub ? ub->as_bool((who + " use_bias").c_str()) : true;
    d.activation = activation_of(cfg, who);
    return d;
}

std::vector<int64_t> read_prelu_alpha_shape(const json::Value& cfg,
                                            const std::vector<int64_t>& shape,
                                            const std::string& who) {
    std::vector<int64_t> alpha_shape = shape;
    const json::Value* axes = cfg.find("shared_axes");
    if (axes && axes->kind != json::Value::Kind::Null) {
        if (!axes->is_array()) fail(who + ": shared_axes must be a list");
        for (const json::Value& a : axes->array)
            alpha_shape[a.as_int((who + " shared_axes").c_str(), 1,
                                 static_cast<int64_t>(shape.size())) - 1] = 1;
    }
    size_t kept = 0;
    while (kept < shape.size() && alpha_shape[kept] == 1) ++kept;
    for (size_t i = kept; i < shape.size(); ++i)
        if (alpha_shape[i] != shape[i])
            fail(who + ": shared axes must lead, got alpha " + shape_str(alpha_shape) +
                 " for input " + shape_str(shape));
    return alpha_shape;
}

LrnDims read_lrn(const json::Value& cfg, const std::vector<int64_t>& shape,
                 const std::string& who) {
    if (shape.empty()) fail(who + ": needs a channel axis");
    auto number = [&](const char* key) {
        return static_cast<float>(cfg.at(key, who.c_str()).as_number((who + " " + key).c_str()));
    };
    const int64_t radius = cfg.at("depth_radius", who.c_str())
                               .as_int((who + " depth_radius").c_str(), 0, kMaxDim);
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
    return {rows, shape.back(), radius, number("bias"), number("alpha"), number("beta")};
}

}  // namespace cnnfast::config
