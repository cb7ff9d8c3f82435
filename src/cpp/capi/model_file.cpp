#include "model_file.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <map>
#include <stdexcept>

#include "json.h"
#include "network_builder.h"

namespace cnnfast {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100000000;  // as the Python reader: larger is corrupt
constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;

struct Tensor {
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;
    std::string dtype;  // "F32", or in quantized files (version 2) "I32" or "I8"
    uint64_t placed = 0;  // its byte offset in LoadedModel::data, a multiple of 64
};

// Bytes per element of a dtype the format allows (0: not allowed).
uint64_t dtype_size(const std::string& dtype, bool quantized) {
    if (dtype == "F32") return 4;
    if (quantized && dtype == "I32") return 4;
    if (quantized && dtype == "I8") return 1;
    return 0;
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + (s.size() == 1 ? ",)" : ")");
}

// The file's tensors as the builder's weight lookups; remembers which ones the architecture used.
class TensorTable {
public:
    // data: the tensors, each at its `placed` offset (64-byte aligned).
    TensorTable(const std::map<std::string, Tensor>& tensors, const char* data)
        : tensors_(tensors), data_(data) {}

    // The F32 weight `key` ("layer/name") with exactly `shape`; marks it used.
    const float* weight(const std::string& key, const std::vector<int64_t>& shape) {
        return static_cast<const float*>(typed(key, shape, "F32"));
    }
    const int8_t* weight_i8(const std::string& key, const std::vector<int64_t>& shape) {
        return static_cast<const int8_t*>(typed(key, shape, "I8"));
    }
    int32_t scalar_i32(const std::string& key) {
        int32_t v;
        std::memcpy(&v, typed(key, {}, "I32"), 4);
        return v;
    }
    bool has(const std::string& key) const { return tensors_.count(key) != 0; }

    void check_all_used() const {
        for (const auto& kv : tensors_) {
            if (kv.first.rfind("optimizer/", 0) == 0) continue;
            if (std::find(used_.begin(), used_.end(), kv.first) == used_.end())
                fail("tensor \"" + kv.first + "\" is not used by the architecture");
        }
    }

private:
    const void* typed(const std::string& key, const std::vector<int64_t>& shape,
                      const char* dtype) {
        auto it = tensors_.find(key);
        if (it == tensors_.end()) fail("tensor \"" + key + "\" is missing");
        const Tensor& t = it->second;
        if (t.shape != shape)
            fail("tensor \"" + key + "\" has shape " + shape_str(t.shape) +
                 ", the architecture needs " + shape_str(shape));
        if (t.dtype != dtype)
            fail("tensor \"" + key + "\" has dtype " + t.dtype + ", expected " + dtype);
        used_.push_back(key);
        return data_ + t.placed;
    }

    const std::map<std::string, Tensor>& tensors_;
    const char* data_;
    std::vector<std::string> used_;
};

// The int8 layers of a quantized file (docs/model-format.md, section 8): the "quantization"
// metadata's layers, their tensors read from `table`.
class Int8Tensors {
public:
    Int8Tensors(const json::Value& quantization, TensorTable& table) : table_(table) {
        if (!quantization.is_object()) fail("quantization metadata is not a JSON object");
        if (quantization.at("scheme", "quantization").as_string("quantization scheme") != "int8")
            fail("quantization scheme must be \"int8\"");
        const json::Value& layers = quantization.at("layers", "quantization");
        if (!layers.is_object()) fail("quantization layers is not a JSON object");
        for (const auto& kv : layers.object) {
            const json::Value* folded = kv.second.find("folded_batchnorm");
            if (!kv.second.is_object() || !folded || kv.second.object.size() != 1 ||
                !(folded->is_string() || folded->kind == json::Value::Kind::Null))
                fail("quantization layer \"" + kv.first +
                     "\" must be {\"folded_batchnorm\": null or a name}");
            folded_[kv.first] = folded->is_string() ? folded->string : "";
        }
    }

    // The builder's Int8Lookup.
    bool lookup(const std::string& layer, const std::vector<int64_t>& kernel_shape,
                Int8Layer* q) {
        auto it = folded_.find(layer);
        if (it == folded_.end()) return false;
        const int64_t K = kernel_shape.back();
        q->kernel = table_.weight_i8(layer + "/kernel", kernel_shape);
        q->kernel_scale = table_.weight(layer + "/kernel_scale", {K});
        q->bias = table_.has(layer + "/bias") ? table_.weight(layer + "/bias", {K}) : nullptr;
        q->input_scale = *table_.weight(layer + "/input_scale", {});
        q->input_zero_point = table_.scalar_i32(layer + "/input_zero_point");
        if (!(q->input_scale > 0.0f) || !std::isfinite(q->input_scale) ||
            q->input_zero_point < 0 || q->input_zero_point > 255)
            fail("layer \"" + layer + "\": input scale " + std::to_string(q->input_scale) +
                 " and zero point " + std::to_string(q->input_zero_point) +
                 " must be positive and finite, and in [0, 255]");
        q->folded_batchnorm = it->second;
        used_.push_back(layer);
        return true;
    }

    void check_all_used() const {
        for (const auto& kv : folded_)
            if (std::find(used_.begin(), used_.end(), kv.first) == used_.end())
                fail("quantization names layer \"" + kv.first +
                     "\", which is not a Conv2D or Dense layer of the architecture");
    }

private:
    TensorTable& table_;
    std::map<std::string, std::string> folded_;  // layer -> folded batch norm (or empty)
    std::vector<std::string> used_;
};

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
        const std::string& version = meta.at("format_version", "__metadata__").string;
        if (version != "1" && version != "2")
            fail("unsupported format_version \"" + version + "\"");
        // Version 2: a quantized model (int8 and int32 tensors, the quantization entry).
        const bool quantized = version == "2";
        if (quantized != (meta.find("quantization") != nullptr))
            fail("format_version \"" + version + "\" " +
                 (quantized ? "needs" : "does not allow") + " a quantization entry");

        std::map<std::string, Tensor> tensors;
        std::vector<std::pair<uint64_t, uint64_t>> ranges;
        for (const auto& kv : header.object) {
            if (kv.first == "__metadata__") continue;
            const std::string what = "tensor \"" + kv.first + "\"";
            const json::Value& t = kv.second;
            if (kv.first.empty() || !t.is_object() || t.object.size() != 3)
                fail(what + ": expected {dtype, shape, data_offsets}");
            const std::string& dtype = t.at("dtype", what.c_str()).as_string(what.c_str());
            const uint64_t size = dtype_size(dtype, quantized);
            if (!size)
                fail(what + ": dtype must be F32" + (quantized ? ", I32 or I8" : ""));
            const json::Value& shape = t.at("shape", what.c_str());
            const json::Value& offsets = t.at("data_offsets", what.c_str());
            if (!shape.is_array() || !offsets.is_array() || offsets.array.size() != 2)
                fail(what + ": bad shape or data_offsets");
            Tensor tensor;
            tensor.dtype = dtype;
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
            if (tensor.begin > tensor.end || tensor.end > data_size ||
                tensor.end - tensor.begin != size * count)
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

        // Each tensor copied to a 64-byte boundary: the direct convolution reads its kernel in
        // place only from one (else it copies the kernel on every call: VGG16-CIFAR's 61 MB
        // made the C API's batch-1 predict 1.5x slower than Python's on two threads), and a
        // 4-byte tensor at an unaligned file offset needs moving anyway.
        uint64_t placed = 0;
        for (auto& kv : tensors) {
            kv.second.placed = placed;
            placed += (kv.second.end - kv.second.begin + 63) / 64 * 64;
        }
        auto model = std::make_unique<LoadedModel>();
        model->data.resize(placed / 4 + 16);
        char* base = reinterpret_cast<char*>(model->data.data());
        base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;  // floats: a multiple of 4
        for (const auto& kv : tensors)
            std::memcpy(base + kv.second.placed, bytes.data() + 8 + n + kv.second.begin,
                        kv.second.end - kv.second.begin);

        TensorTable weights(tensors, base);
        const WeightLookup lookup = [&weights](const std::string& key,
                                               const std::vector<int64_t>& shape) {
            return weights.weight(key, shape);
        };
        const std::string& architecture = meta.at("architecture", "__metadata__").string;
        if (quantized) {
            Int8Tensors int8(json::parse(meta.at("quantization", "__metadata__").string), weights);
            model->network = build_network(
                architecture, lookup,
                [&int8](const std::string& layer, const std::vector<int64_t>& shape,
                        Int8Layer* q) { return int8.lookup(layer, shape, q); });
            int8.check_all_used();
            model->network->fuse_int8_chains();  // as QuantizedModel.predict runs it
        } else {
            model->network = build_network(architecture, lookup);
        }
        weights.check_all_used();
        model->network->fix_weights();  // its weights live in model->data, which nothing writes
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
