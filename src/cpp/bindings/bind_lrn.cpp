#include <cmath>

#include "bind_util.h"
#include "lrn.h"

namespace cnnfast::bind {

namespace {

// x and every other array share one shape (..., C) of rank >= 1; returns rows = prod(leading).
LrnDims lrn_dims(const std::string& op, const py::array& x, int64_t depth_radius, double bias,
                 double alpha, double beta) {
    if (x.ndim() < 1)
        throw std::invalid_argument(op + ": x must have a channel axis, got shape " + shape_str(x));
    if (depth_radius < 0)
        throw std::invalid_argument(op + ": depth_radius must be >= 0, got " +
                                    std::to_string(depth_radius));
    if (!std::isfinite(bias) || !std::isfinite(alpha) || !std::isfinite(beta))
        throw std::invalid_argument(op + ": bias, alpha and beta must be finite");
    int64_t C = dim(x, static_cast<int>(x.ndim() - 1));
    int64_t rows = C ? static_cast<int64_t>(x.size()) / C : 0;
    return {rows, C, depth_radius, static_cast<float>(bias), static_cast<float>(alpha),
            static_cast<float>(beta)};
}

void expect_same_shape(const std::string& op, const py::array& a, const char* an,
                       const py::array& x) {
    bool same = a.ndim() == x.ndim();
    for (py::ssize_t i = 0; same && i < x.ndim(); ++i) same = a.shape(i) == x.shape(i);
    if (!same)
        throw std::invalid_argument(op + ": " + an + " must have the shape of x " + shape_str(x) +
                                    ", got " + shape_str(a));
}

bool overlaps(const py::array& a, const py::array& b) {
    const char* p = static_cast<const char*>(a.data());
    const char* q = static_cast<const char*>(b.data());
    return a.nbytes() && b.nbytes() && p < q + b.nbytes() && q < p + a.nbytes();
}

}  // namespace

void bind_lrn(py::module_& m) {
    // x (..., C); y (..., C) overwritten; scale (..., C) overwritten, or None at inference.
    m.def(
        "lrn_forward",
        [](py::array y, const py::object& scale, const py::array& x, int64_t depth_radius,
           double bias, double alpha, double beta, bool naive) {
            const std::string op = "lrn_forward";
            const float* px = in_f32(x, "lrn_forward x");
            float* py_ = out_f32(y, "lrn_forward y");
            LrnDims d = lrn_dims(op, x, depth_radius, bias, alpha, beta);
            expect_same_shape(op, y, "y", x);
            if (overlaps(y, x)) throw std::invalid_argument(op + ": output y overlaps input x");
            float* ps = nullptr;
            if (!scale.is_none()) {
                if (!py::isinstance<py::array>(scale))
                    throw std::invalid_argument(op + ": scale must be a numpy array or None");
                py::array s = scale.cast<py::array>();
                ps = out_f32(s, "lrn_forward scale");
                expect_same_shape(op, s, "scale", x);
                if (overlaps(s, x) || overlaps(s, y))
                    throw std::invalid_argument(op + ": scale overlaps x or y");
            }
            auto fn = naive ? &lrn_forward_naive : &lrn_forward;
            py::gil_scoped_release release;
            fn(py_, ps, px, d);
        },
        py::arg("y"), py::arg("scale"), py::arg("x"), py::arg("depth_radius"), py::arg("bias"),
        py::arg("alpha"), py::arg("beta"), py::arg("naive") = false,
        "LRN across the last (channel) axis, TensorFlow's parametrisation (alpha not divided by "
        "the window size). Writes y and, unless None, scale = bias + alpha * window sum of x^2.");

    // x, y, scale, dy (..., C) from lrn_forward; dx (..., C) overwritten (may be dy itself).
    m.def(
        "lrn_backward",
        [](py::array dx, const py::array& x, const py::array& y, const py::array& scale,
           const py::array& dy, int64_t depth_radius, double bias, double alpha, double beta,
           bool naive) {
            const std::string op = "lrn_backward";
            const float* px = in_f32(x, "lrn_backward x");
            const float* py_ = in_f32(y, "lrn_backward y");
            const float* ps = in_f32(scale, "lrn_backward scale");
            const float* pdy = in_f32(dy, "lrn_backward dy");
            float* pdx = out_f32(dx, "lrn_backward dx");
            LrnDims d = lrn_dims(op, x, depth_radius, bias, alpha, beta);
            expect_same_shape(op, y, "y", x);
            expect_same_shape(op, scale, "scale", x);
            expect_same_shape(op, dy, "dy", x);
            expect_same_shape(op, dx, "dx", x);
            for (const py::array* a : {&x, &y, &scale})
                if (overlaps(dx, *a))
                    throw std::invalid_argument(op + ": output dx overlaps x, y or scale");
            if (overlaps(dx, dy) && dx.data() != dy.data())
                throw std::invalid_argument(op + ": dx must be dy itself or not overlap it");
            auto fn = naive ? &lrn_backward_naive : &lrn_backward;
            py::gil_scoped_release release;
            fn(pdx, px, py_, ps, pdy, d);
        },
        py::arg("dx"), py::arg("x"), py::arg("y"), py::arg("scale"), py::arg("dy"),
        py::arg("depth_radius"), py::arg("bias"), py::arg("alpha"), py::arg("beta"),
        py::arg("naive") = false,
        "Gradient of lrn_forward: dx from x, y, scale and dy (dx may be dy itself).");
}

}  // namespace cnnfast::bind
