#include "model_file.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>

#include "json.h"

namespace cnnfast {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100000000;  // as the Python reader: larger is corrupt
constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;

struct Tensor {
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;
};

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

class Builder {
public:
    Builder(const std::map<std::string, Tensor>& tensors, const float* data, const std::string& src)
        : tensors_(tensors), data_(data), src_(src) {}

    // The weight `layer/name` with exactly `shape`; marks it used.
    const float* weight(const std::string& layer, const std::string& name,
                        const std::vector<int64_t>& shape) {
        const std::string key = layer + "/" + name;
        auto it = tensors_.find(key);
        if (it == tensors_.end()) fail("tensor \"" + key + "\" is missing");
        if (it->second.shape != shape)
            fail("tensor \"" + key + "\" has shape " + shape_str(it->second.shape) +
                 ", the architecture needs " + shape_str(shape));
        used_.push_back(key);
        return data_ + it->second.begin / 4;
    }

    void check_all_used() const {
        for (const auto& kv : tensors_) {
            if (kv.first.rfind("optimizer/", 0) == 0) continue;
            if (std::find(used_.begin(), used_.end(), kv.first) == used_.end())
                fail("tensor \"" + kv.first + "\" is not used by the architecture");
        }
    }

private:
    const std::map<std::string, Tensor>& tensors_;
    const float* data_;
    std::string src_;
    std::vector<std::string> used_;
};

std::string activation_of(const json::Value& cfg, const std::string& who) {
    const json::Value* a = cfg.find("activation");
    if (!a || a->kind == json::Value::Kind::Null) return "linear";
    return a->as_string((who + " activation").c_str());
}

void add_layer(Network& net, Builder& weights, const json::Value& layer) {
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
        const float* w = weights.weight(name, "kernel", {kh, kw, shape[2] / groups, filters});
        const float* b = use_bias ? weights.weight(name, "bias", {filters}) : nullptr;
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
        const float* w = weights.weight(name, "kernel", {shape.back(), units});
        const float* b = use_bias ? weights.weight(name, "bias", {units}) : nullptr;
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
        net.add_prelu(weights.weight(name, "alpha", alpha_shape), size);
    } else if (cls == "LocalResponseNormalization") {
        const int64_t radius = cfg.at("depth_radius", who.c_str()).as_int((who + " depth_radius").c_str(), 0, kMaxDim);
        net.add_lrn(radius, static_cast<float>(cfg.at("bias", who.c_str()).as_number(who.c_str())),
                    static_cast<float>(cfg.at("alpha", who.c_str()).as_number(who.c_str())),
                    static_cast<float>(cfg.at("beta", who.c_str()).as_number(who.c_str())));
    } else {
        fail("unknown layer class \"" + cls + "\"");
    }
}

uint64_t read_u64_le(const unsigned char* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

}  // namespace

std::unique_ptr<LoadedModel> parse_model_bytes(const std::string& bytes, const std::string& source) {
    try {
        if (bytes.size() < 8) fail("file is only " + std::to_string(bytes.size()) + " bytes");
        const uint64_t n = read_u64_le(reinterpret_cast<const unsigned char*>(bytes.data()));
        if (n > kMaxHeaderBytes || n > bytes.size() - 8)
            fail("header length " + std::to_string(n) + " does not fit the file of " +
                 std::to_string(bytes.size()) + " bytes");
        const json::Value header = json::parse(bytes.substr(8, n));
        if (!header.is_object()) fail("header is not a JSON object");
        const uint64_t data_size = bytes.size() - 8 - n;

        const json::Value& meta = header.at("__metadata__", "header");
        if (!meta.is_object()) fail("__metadata__ is not an object");
        for (const auto& kv : meta.object)
            if (!kv.second.is_string()) fail("__metadata__ entry \"" + kv.first + "\" is not a string");
        if (meta.at("format", "__metadata__").string != "cnnfast") fail("not a cnnfast model file");
        if (meta.at("format_version", "__metadata__").string != "1")
            fail("unsupported format_version \"" + meta.at("format_version", "").string + "\"");

        std::map<std::string, Tensor> tensors;
        std::vector<std::pair<uint64_t, uint64_t>> ranges;
        for (const auto& kv : header.object) {
            if (kv.first == "__metadata__") continue;
            const std::string what = "tensor \"" + kv.first + "\"";
            const json::Value& t = kv.second;
            if (kv.first.empty() || !t.is_object() || t.object.size() != 3)
                fail(what + ": expected {dtype, shape, data_offsets}");
            if (t.at("dtype", what.c_str()).as_string(what.c_str()) != "F32")
                fail(what + ": dtype must be F32");
            const json::Value& shape = t.at("shape", what.c_str());
            const json::Value& offsets = t.at("data_offsets", what.c_str());
            if (!shape.is_array() || !offsets.is_array() || offsets.array.size() != 2)
                fail(what + ": bad shape or data_offsets");
            Tensor tensor;
            uint64_t count = 1;
            for (const json::Value& d : shape.array) {
                int64_t dim = d.as_int((what + " shape").c_str(), 0, kMaxDim);
                tensor.shape.push_back(dim);
                if (dim && count > (uint64_t(1) << 40) / static_cast<uint64_t>(dim))
                    fail(what + ": shape too large");
                count *= static_cast<uint64_t>(dim);
            }
            tensor.begin = static_cast<uint64_t>(offsets.array[0].as_int(what.c_str(), 0, int64_t(1) << 50));
            tensor.end = static_cast<uint64_t>(offsets.array[1].as_int(what.c_str(), 0, int64_t(1) << 50));
            if (tensor.begin > tensor.end || tensor.end > data_size || tensor.end - tensor.begin != 4 * count)
                fail(what + ": data_offsets [" + std::to_string(tensor.begin) + ", " +
                     std::to_string(tensor.end) + "] do not match its shape or the data section of " +
                     std::to_string(data_size) + " bytes");
            if (!tensors.emplace(kv.first, tensor).second) fail(what + ": duplicate name");
            ranges.emplace_back(tensor.begin, tensor.end);
        }
        // The tensors must tile the data section exactly.
        std::sort(ranges.begin(), ranges.end());
        uint64_t at = 0;
        for (const auto& r : ranges) {
            if (r.first != at) fail("tensor data has gaps or overlaps at byte " + std::to_string(at));
            at = r.second;
        }
        if (at != data_size) fail("trailing bytes after the last tensor");

        auto model = std::make_unique<LoadedModel>();
        model->data.resize(data_size / 4 + 1);
        if (data_size) std::memcpy(model->data.data(), bytes.data() + 8 + n, data_size);

        const json::Value arch = json::parse(meta.at("architecture", "__metadata__").string);
        const json::Value& input = arch.at("input_shape", "architecture");
        if (!input.is_array() || input.array.empty()) fail("architecture: input_shape must be a list");
        std::vector<int64_t> input_shape;
        for (const json::Value& d : input.array)
            input_shape.push_back(d.as_int("architecture input_shape", 1, kMaxDim));
        model->network = std::make_unique<Network>(input_shape);
        const json::Value& layers = arch.at("layers", "architecture");
        if (!layers.is_array() || layers.array.empty()) fail("architecture: no layers");
        Builder weights(tensors, model->data.data(), source);
        for (const json::Value& layer : layers.array) add_layer(*model->network, weights, layer);
        weights.check_all_used();
        return model;
    } catch (const std::exception& e) {
        throw std::runtime_error(source + ": " + e.what());
    }
}

std::unique_ptr<LoadedModel> load_model_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw std::runtime_error(path + ": cannot open (" + std::strerror(errno) + ")");
    std::string bytes;
    char buf[1 << 16];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, got);
    const bool failed = std::ferror(f);
    std::fclose(f);
    if (failed) throw std::runtime_error(path + ": read error");
    return parse_model_bytes(bytes, path);
}

}  // namespace cnnfast
