// _core.Network: the C++ inference executor (network.h). Each add_* method checks its arrays
// and keeps a reference to them, so the borrowed weight pointers stay valid as long as the
// Network lives; forward releases the GIL, so Python threads can run it concurrently.
#include <pybind11/stl.h>

#include <memory>
#include <vector>

#include "bind_util.h"
#include "bind_window.h"
#include "network.h"

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
    const float* keep_optional(const py::object& a, const char* what, int ndim) {
        if (a.is_none()) return nullptr;
        if (!py::isinstance<py::array>(a))
            throw std::invalid_argument(std::string(what) + ": expected a float32 array or None");
        return keep(a.cast<py::array>(), what, ndim);
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
        .def(py::init([](const std::vector<int64_t>& input_shape) {
                 auto h = std::make_unique<NetworkHandle>();
                 h->net = std::make_unique<Network>(input_shape);
                 return h;
             }),
             py::arg("input_shape"))
        // kernel (KH,KW,C/groups,K) and bias (K,) or None, kept alive and read at each forward.
        .def(
            "add_conv2d",
            [](NetworkHandle& h, const py::array& kernel, const py::object& bias,
               int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
               int64_t out_h, int64_t out_w, int64_t groups, const std::string& activation,
               float alpha) {
                const float* w = h.keep(kernel, "Network.add_conv2d kernel", 4);
                const int64_t K = dim(kernel, 3);
                const auto& in = h.net->output_shape();
                if (in.size() == 3 && dim(kernel, 2) * groups != in[2])
                    throw std::invalid_argument(
                        "Network.add_conv2d: kernel " + shape_str(kernel) + " with groups " +
                        std::to_string(groups) + " does not match input channels " +
                        std::to_string(in[2]));
                const float* b = h.keep_optional(bias, "Network.add_conv2d bias", 1);
                if (b) expect_shape(bias.cast<py::array>(), "Network.add_conv2d bias", {K});
                h.net->add_conv2d(w, b, dim(kernel, 0), dim(kernel, 1), K, stride_h, stride_w,
                                  pad_top, pad_left, out_h, out_w, groups, activation, alpha);
            },
            py::arg("kernel"), py::arg("bias"), py::arg("stride_h"), py::arg("stride_w"),
            py::arg("pad_top"), py::arg("pad_left"), py::arg("out_h"), py::arg("out_w"),
            py::arg("groups") = 1, py::arg("activation") = "linear", py::arg("alpha") = 1.0f)
        .def(
            "add_max_pool2d",
            [](NetworkHandle& h, int64_t pool_h, int64_t pool_w, int64_t stride_h,
               int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t out_h,
               int64_t out_w) {
                h.net->add_pool2d(true, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                                  out_h, out_w);
            },
            py::arg("pool_h"), py::arg("pool_w"), py::arg("stride_h"), py::arg("stride_w"),
            py::arg("pad_top"), py::arg("pad_left"), py::arg("out_h"), py::arg("out_w"))
        .def(
            "add_avg_pool2d",
            [](NetworkHandle& h, int64_t pool_h, int64_t pool_w, int64_t stride_h,
               int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t out_h,
               int64_t out_w) {
                h.net->add_pool2d(false, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                                  out_h, out_w);
            },
            py::arg("pool_h"), py::arg("pool_w"), py::arg("stride_h"), py::arg("stride_w"),
            py::arg("pad_top"), py::arg("pad_left"), py::arg("out_h"), py::arg("out_w"))
        // kernel (IN,OUT) on the last axis, bias (OUT,) or None.
        .def(
            "add_dense",
            [](NetworkHandle& h, const py::array& kernel, const py::object& bias,
               const std::string& activation, float alpha) {
                const float* w = h.keep(kernel, "Network.add_dense kernel", 2);
                const float* b = h.keep_optional(bias, "Network.add_dense bias", 1);
                if (b) expect_shape(bias.cast<py::array>(), "Network.add_dense bias", {dim(kernel, 1)});
                h.net->add_dense(w, b, dim(kernel, 0), dim(kernel, 1), activation, alpha);
            },
            py::arg("kernel"), py::arg("bias"), py::arg("activation") = "linear",
            py::arg("alpha") = 1.0f)
        .def(
            "add_activation",
            [](NetworkHandle& h, const std::string& activation, float alpha) {
                h.net->add_activation(activation, alpha);
            },
            py::arg("activation"), py::arg("alpha") = 1.0f)
        // alpha of any shape whose size divides the sample size (repeats over the flat sample).
        .def(
            "add_prelu",
            [](NetworkHandle& h, const py::array& alpha) {
                const float* a = h.keep(alpha, "Network.add_prelu alpha", -1);
                h.net->add_prelu(a, static_cast<int64_t>(alpha.size()));
            },
            py::arg("alpha"))
        .def(
            "add_lrn",
            [](NetworkHandle& h, int64_t depth_radius, float bias, float alpha, float beta) {
                h.net->add_lrn(depth_radius, bias, alpha, beta);
            },
            py::arg("depth_radius"), py::arg("bias"), py::arg("alpha"), py::arg("beta"))
        .def("add_flatten", [](NetworkHandle& h) { h.net->add_flatten(); })
        // Dropout is the identity at inference.
        .def("add_dropout", [](NetworkHandle&) {})
        .def_property_readonly("input_shape",
                               [](const NetworkHandle& h) { return to_tuple(h.net->input_shape()); })
        .def_property_readonly("output_shape",
                               [](const NetworkHandle& h) { return to_tuple(h.net->output_shape()); })
        .def_property_readonly("num_steps",
                               [](const NetworkHandle& h) { return h.net->num_steps(); })
        // x (N, input_shape...); out (N, output_shape...) written in place.
        .def(
            "forward",
            [](const NetworkHandle& h, py::array out, const py::array& x) {
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
                py::gil_scoped_release release;
                net.forward(po, px, n);
            },
            py::arg("out"), py::arg("x"));
}

}  // namespace cnnfast::bind
