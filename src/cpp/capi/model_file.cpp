#include "model_file.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
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
};

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + (s.size() == 1 ? ",)" : ")");
}

// The file's tensors as the builder's weight lookup; remembers which ones the architecture used.
class TensorTable {
public:
    TensorTable(const std::map<std::string, Tensor>& tensors, const float* data)
        : tensors_(tensors), data_(data) {}

    // The weight `key` ("layer/name") with exactly `shape`; marks it used.
    const float* weight(const std::string& key, const std::vector<int64_t>& shape) {
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

        TensorTable weights(tensors, model->data.data());
        model->network = build_network(
            meta.at("architecture", "__metadata__").string,
            [&weights](const std::string& key, const std::vector<int64_t>& shape) {
                return weights.weight(key, shape);
            });
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
