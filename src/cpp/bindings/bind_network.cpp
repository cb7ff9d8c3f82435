// _core.Network: the C++ inference executor (network.h), built from a model config by the one
// builder (network_builder.h). It keeps a reference to every weight array it borrows, so the
// pointers stay valid as long as the Network lives; forward releases the GIL, so Python
// threads can run it concurrently.
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "bind_util.h"
#include "bind_window.h"
#include "network.h"
#include "network_builder.h"

namespace cnnfast::bind {

namespace {

struct NetworkHandle {
    std::unique_ptr<Network> net;
    std::vector<py::object> keep_alive;  // the weight arrays the steps point into

    const float* keep(const py::array& a, const char* what, int ndim) {
        const float* p = in_f32(a, what, ndim);
        keep_alive.push_back(a);
        return p;
    }
};

py::tuple to_tuple(const std::vector<int64_t>& v) {
    py::tuple t(v.size());
    for (size_t i = 0; i < v.size(); ++i) t[i] = v[i];
    return t;
}

}  // namespace

void bind_network(py::module_& m) {
    py::class_<NetworkHandle>(m, "Network",
                              "Inference executor: layer steps run in one C++ call (network.h).")
        // architecture: the JSON of Model.get_config(); weights: {"layer/name": float32 array}.
        // Built by network_builder.cpp, the builder the C API's model-file reader uses too. The
        // arrays are borrowed (kept alive here, read at each forward, never copied), so in-place
        // updates by optimizers and set_weights are seen; every array must be used.
        .def_static(
            "from_config",
            [](const std::string& architecture, const py::dict& weights,
               const py::object& quantization, bool int8_chains) {
                auto h = std::make_unique<NetworkHandle>();
                std::map<std::string, py::array> arrays;
                for (const auto& kv : weights) {
                    const std::string key = py::str(kv.first);
                    if (!py::isinstance<py::array>(kv.second))
                        throw std::invalid_argument("Network.from_config: weight '" + key +
                                                    "' is not a NumPy array");
                    arrays.emplace(key, kv.second.cast<py::array>());
                }
                std::set<std::string> used;
                auto lookup = [&](const std::string& key, const std::vector<int64_t>& shape) {
                    auto it = arrays.find(key);
                    if (it == arrays.end())
                        throw std::invalid_argument("Network.from_config: weight '" + key +
                                                    "' is missing");
                    const py::array& a = it->second;
                    const std::string what = "Network.from_config weight '" + key + "'";
                    bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
                    for (size_t i = 0; same && i < shape.size(); ++i)
                        same = dim(a, static_cast<int>(i)) == shape[i];
                    if (!same) {
                        std::string want = "(";
                        for (size_t i = 0; i < shape.size(); ++i)
                            want += (i ? ", " : "") + std::to_string(shape[i]);
                        want += shape.size() == 1 ? ",)" : ")";
                        throw std::invalid_argument(what + " has shape " + shape_str(a) +
                                                    ", the architecture needs " + want);
                    }
                    used.insert(key);
                    return h->keep(a, what.c_str(), -1);
                };
                // quantization: {"layer": {"kernel": int8 array, "kernel_scale": float32 (K,),
                // "bias": float32 (K,) or None, "input_scale": float, "input_zero_point": int,
                // "folded_batchnorm": str or None}} for the layers run in int8.
                std::map<std::string, py::dict> int8_layers;
                if (!quantization.is_none())
                    for (const auto& kv : quantization.cast<py::dict>())
                        int8_layers.emplace(py::str(kv.first), kv.second.cast<py::dict>());
                std::set<std::string> int8_used;
                auto int8_lookup = [&](const std::string& layer,
                                       const std::vector<int64_t>& kernel_shape, Int8Layer* q) {
                    auto it = int8_layers.find(layer);
                    if (it == int8_layers.end()) return false;
                    const py::dict& d = it->second;
                    const std::string what = "Network.from_config int8 layer '" + layer + "'";
                    for (const char* key : {"kernel", "kernel_scale", "bias", "input_scale",
                                            "input_zero_point", "folded_batchnorm"})
                        if (!d.contains(key))
                            throw std::invalid_argument(what + " has no '" + key + "'");
                    const py::array kernel = d["kernel"].cast<py::array>();
                    check_buffer<int8_t>(kernel, (what + " kernel").c_str(), -1, false);
                    bool same = kernel.ndim() == static_cast<py::ssize_t>(kernel_shape.size());
                    for (size_t i = 0; same && i < kernel_shape.size(); ++i)
                        same = dim(kernel, static_cast<int>(i)) == kernel_shape[i];
                    if (!same) {
                        std::string want = "(";
                        for (size_t i = 0; i < kernel_shape.size(); ++i)
                            want += (i ? ", " : "") + std::to_string(kernel_shape[i]);
                        throw std::invalid_argument(what + " kernel has shape " +
                                                    shape_str(kernel) +
                                                    ", the architecture needs " + want + ")");
                    }
                    const int64_t K = kernel_shape.back();
                    const py::array scale = d["kernel_scale"].cast<py::array>();
                    expect_shape(scale, (what + " kernel_scale").c_str(), {K});
                    q->kernel = static_cast<const int8_t*>(kernel.data());
                    h->keep_alive.push_back(kernel);
                    q->kernel_scale = h->keep(scale, (what + " kernel_scale").c_str(), 1);
                    if (!d["bias"].is_none()) {
                        const py::array bias = d["bias"].cast<py::array>();
                        expect_shape(bias, (what + " bias").c_str(), {K});
                        q->bias = h->keep(bias, (what + " bias").c_str(), 1);
                    }
                    q->input_scale = d["input_scale"].cast<float>();
                    q->input_zero_point = d["input_zero_point"].cast<int32_t>();
                    if (!d["folded_batchnorm"].is_none())
                        q->folded_batchnorm = d["folded_batchnorm"].cast<std::string>();
                    int8_used.insert(layer);
                    return true;
                };
                try {
                    h->net = int8_layers.empty()
                                 ? build_network(architecture, lookup)
                                 : build_network(architecture, lookup, int8_lookup);
                } catch (const std::runtime_error& e) {
                    throw std::invalid_argument(std::string("Network.from_config: ") + e.what());
                }
                for (const auto& kv : arrays)
                    if (!used.count(kv.first))
                        throw std::invalid_argument("Network.from_config: weight '" + kv.first +
                                                    "' is not used by the architecture");
                // int8_chains=False keeps float32 between int8 steps (tests compare the two).
                if (int8_chains && !int8_layers.empty()) h->net->fuse_int8_chains();
                for (const auto& kv : int8_layers)
                    if (!int8_used.count(kv.first))
                        throw std::invalid_argument("Network.from_config: int8 layer '" +
                                                    kv.first +
                                                    "' is not a Conv2D or Dense of the "
                                                    "architecture");
                return h;
            },
            py::arg("architecture"), py::arg("weights"), py::arg("quantization") = py::none(),
            py::arg("int8_chains") = true)
        .def_property_readonly("input_shape",
                               [](const NetworkHandle& h) { return to_tuple(h.net->input_shape()); })
        .def_property_readonly("output_shape",
                               [](const NetworkHandle& h) { return to_tuple(h.net->output_shape()); })
        .def_property_readonly("num_steps",
                               [](const NetworkHandle& h) { return h.net->num_steps(); })
        // One line per step that runs: kernel, shapes, fusions, where the output lives.
        .def("describe", [](const NetworkHandle& h) { return h.net->describe(); })
        // x (N, input_shape...); out (N, output_shape...) written in place.
        .def(
            "forward",
            [](const NetworkHandle& h, py::array out, const py::array& x,
               const py::object& step_seconds, bool weights_unchanged) {
                const Network& net = *h.net;
                const float* px = in_f32(x, "Network.forward x");
                float* po = out_f32(out, "Network.forward out");
                const auto& in_s = net.input_shape();
                const auto& out_s = net.output_shape();
                bool ok = x.ndim() == static_cast<py::ssize_t>(in_s.size() + 1);
                for (size_t i = 0; ok && i < in_s.size(); ++i) ok = dim(x, i + 1) == in_s[i];
                const int64_t n = x.ndim() ? dim(x, 0) : 0;
                std::vector<int64_t> want_in{-1}, want_out{n};
                want_in.insert(want_in.end(), in_s.begin(), in_s.end());
                want_out.insert(want_out.end(), out_s.begin(), out_s.end());
                auto vec_str = [](const std::vector<int64_t>& v) {
                    std::string s = "(";
                    for (size_t i = 0; i < v.size(); ++i)
                        s += (i ? ", " : "") + (v[i] < 0 ? std::string("N") : std::to_string(v[i]));
                    return s + ")";
                };
                if (!ok)
                    throw std::invalid_argument("Network.forward: x must have shape " +
                                                vec_str(want_in) + ", got " + shape_str(x));
                bool out_ok = out.ndim() == static_cast<py::ssize_t>(want_out.size());
                for (size_t i = 0; out_ok && i < want_out.size(); ++i)
                    out_ok = dim(out, i) == want_out[i];
                if (!out_ok)
                    throw std::invalid_argument("Network.forward: out must have shape " +
                                                vec_str(want_out) + " for x " + shape_str(x) +
                                                ", got " + shape_str(out));
                expect_disjoint("Network.forward", out, "out", x, "x");
                double* seconds = nullptr;
                if (!step_seconds.is_none()) {
                    if (!py::isinstance<py::array>(step_seconds))
                        throw std::invalid_argument(
                            "Network.forward: step_seconds must be a float64 array or None");
                    auto t = step_seconds.cast<py::array>();
                    const auto steps = static_cast<int64_t>(net.num_run_steps());
                    if (t.dtype().kind() != 'f' || t.itemsize() != 8 || t.ndim() != 1 ||
                        dim(t, 0) != steps || !(t.flags() & py::array::c_style) ||
                        !t.writeable())
                        throw std::invalid_argument(
                            "Network.forward: step_seconds must be a writeable contiguous "
                            "float64 array of " + std::to_string(steps) +
                            " (one per describe() line), got " + shape_str(t));
                    seconds = static_cast<double*>(t.mutable_data());
                }
                py::gil_scoped_release release;
                net.forward(po, px, n, seconds, weights_unchanged);
            },
            py::arg("out"), py::arg("x"), py::arg("step_seconds") = py::none(),
            py::arg("weights_unchanged") = false);
}

}  // namespace cnnfast::bind
