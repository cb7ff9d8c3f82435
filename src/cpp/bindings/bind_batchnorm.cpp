// Batch normalization kernels (batchnorm.h) on (..., C) arrays.
#include <cmath>

#include "batchnorm.h"
#include "bind_util.h"

namespace cnnfast::bind {

namespace {

// rows = prod(leading axes) of x (..., C); `other` arrays must have x's shape.
BatchNormDims bn_dims(const std::string& op, const py::array& x, double epsilon) {
    if (x.ndim() < 1)
        throw std::invalid_argument(op + ": x must have a channel axis, got shape " + shape_str(x));
    if (!(epsilon >= 0.0) || !std::isfinite(epsilon))
        throw std::invalid_argument(op + ": epsilon must be finite and >= 0, got " +
                                    std::to_string(epsilon));
    const int64_t C = dim(x, static_cast<int>(x.ndim() - 1));
    return {C ? static_cast<int64_t>(x.size()) / C : 0, C, static_cast<float>(epsilon)};
}

void same_shape(const std::string& op, const py::array& a, const char* an, const py::array& x) {
    bool same = a.ndim() == x.ndim();
    for (py::ssize_t i = 0; same && i < x.ndim(); ++i) same = a.shape(i) == x.shape(i);
    if (!same)
        throw std::invalid_argument(op + ": " + an + " must have the shape of x " + shape_str(x) +
                                    ", got " + shape_str(a));
}

// A (C,) float32 vector, or null for None when `optional`.
const float* channel_vector(const std::string& op, const py::object& v, const char* what,
                            int64_t C, bool optional) {
    if (v.is_none()) {
        if (optional) return nullptr;
        throw std::invalid_argument(op + ": " + what + " is required");
    }
    if (!py::isinstance<py::array>(v))
        throw std::invalid_argument(op + ": " + what + " must be a numpy array" +
                                    (optional ? " or None" : ""));
    py::array a = v.cast<py::array>();
    const std::string name = op + " " + what;
    const float* p = in_f32(a, name.c_str(), 1);
    expect_shape(a, name.c_str(), {C});
    return p;
}

float* channel_output(const std::string& op, const py::object& v, const char* what, int64_t C) {
    if (v.is_none()) return nullptr;
    if (!py::isinstance<py::array>(v))
        throw std::invalid_argument(op + ": " + what + " must be a numpy array or None");
    py::array a = v.cast<py::array>();
    const std::string name = op + " " + what;
    float* p = out_f32(a, name.c_str(), 1);
    expect_shape(a, name.c_str(), {C});
    return p;
}

// The output of a ReLU fused after the normalization (None: no ReLU), shaped like `like`.
const float* relu_output(const std::string& op, const py::object& relu_y, const py::array& like) {
    if (relu_y.is_none()) return nullptr;
    if (!py::isinstance<py::array>(relu_y))
        throw std::invalid_argument(op + ": relu_y must be a numpy array or None");
    py::array a = relu_y.cast<py::array>();
    const float* p = in_f32(a, (op + " relu_y").c_str());
    same_shape(op, a, "relu_y", like);
    return p;
}

}  // namespace

void bind_batchnorm(py::module_& m) {
    // x (..., C); y like x (may be x); mean, var (C,) overwritten with the batch statistics.
    m.def(
        "batchnorm_forward_training",
        [](py::array y, py::array mean, py::array var, const py::array& x, const py::object& gamma,
           const py::object& beta, double epsilon, bool naive, bool relu) {
            const std::string op = "batchnorm_forward_training";
            const float* px = in_f32(x, "batchnorm_forward_training x");
            float* py_ = out_f32(y, "batchnorm_forward_training y");
            const BatchNormDims d = bn_dims(op, x, epsilon);
            same_shape(op, y, "y", x);
            float* pm = channel_output(op, mean, "mean", d.C);
            float* pv = channel_output(op, var, "var", d.C);
            if (!pm || !pv) throw std::invalid_argument(op + ": mean and var are required");
            const float* pg = channel_vector(op, gamma, "gamma", d.C, true);
            const float* pb = channel_vector(op, beta, "beta", d.C, true);
            if (naive && py_ == px)
                throw std::invalid_argument(op + ": the naive kernel needs y apart from x");
            if (naive && relu)
                throw std::invalid_argument(op + ": the naive kernel has no fused relu");
            py::gil_scoped_release release;
            if (naive)
                batchnorm_forward_training_naive(py_, pm, pv, px, pg, pb, d);
            else
                batchnorm_forward_training(py_, pm, pv, px, pg, pb, d, relu);
        },
        py::arg("y"), py::arg("mean"), py::arg("var"), py::arg("x"), py::arg("gamma"),
        py::arg("beta"), py::arg("epsilon") = 1e-3, py::kw_only(), py::arg("naive") = false,
        py::arg("relu") = false);

    // x (..., C); y like x (may be x); mean, var (C,) the moving statistics.
    m.def(
        "batchnorm_forward_inference",
        [](py::array y, const py::array& x, const py::object& gamma, const py::object& beta,
           const py::array& mean, const py::array& var, double epsilon, bool relu) {
            const std::string op = "batchnorm_forward_inference";
            const float* px = in_f32(x, "batchnorm_forward_inference x");
            float* py_ = out_f32(y, "batchnorm_forward_inference y");
            const BatchNormDims d = bn_dims(op, x, epsilon);
            same_shape(op, y, "y", x);
            const float* pg = channel_vector(op, gamma, "gamma", d.C, true);
            const float* pb = channel_vector(op, beta, "beta", d.C, true);
            const float* pm = channel_vector(op, mean, "mean", d.C, false);
            const float* pv = channel_vector(op, var, "var", d.C, false);
            py::gil_scoped_release release;
            batchnorm_forward_inference(py_, px, pg, pb, pm, pv, d, relu);
        },
        py::arg("y"), py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("mean"),
        py::arg("var"), py::arg("epsilon") = 1e-3, py::kw_only(), py::arg("relu") = false);

    // moving_mean, moving_var (C,) updated in place from the batch's mean, var (C,).
    m.def(
        "batchnorm_update_moving",
        [](py::array moving_mean, py::array moving_var, const py::array& mean,
           const py::array& var, double momentum) {
            const std::string op = "batchnorm_update_moving";
            float* pmm = out_f32(moving_mean, "batchnorm_update_moving moving_mean", 1);
            const int64_t C = dim(moving_mean, 0);
            float* pmv = channel_output(op, moving_var, "moving_var", C);
            const float* pm = channel_vector(op, mean, "mean", C, false);
            const float* pv = channel_vector(op, var, "var", C, false);
            batchnorm_update_moving(pmm, pmv, pm, pv, C, static_cast<float>(momentum));
        },
        py::arg("moving_mean"), py::arg("moving_var"), py::arg("mean"), py::arg("var"),
        py::arg("momentum") = 0.99);

    // x, dy (..., C); mean, var (C,) from the forward; dx like x (may be dy) or None;
    // dgamma, dbeta (C,) overwritten or None.
    m.def(
        "batchnorm_backward_training",
        [](const py::object& dx, const py::object& dgamma, const py::object& dbeta,
           const py::array& x, const py::array& dy, const py::array& mean, const py::array& var,
           const py::object& gamma, double epsilon, bool naive, const py::object& relu_y) {
            const std::string op = "batchnorm_backward_training";
            const float* px = in_f32(x, "batchnorm_backward_training x");
            const float* pdy = in_f32(dy, "batchnorm_backward_training dy");
            const BatchNormDims d = bn_dims(op, x, epsilon);
            same_shape(op, dy, "dy", x);
            float* pdx = nullptr;
            if (!dx.is_none()) {
                if (!py::isinstance<py::array>(dx))
                    throw std::invalid_argument(op + ": dx must be a numpy array or None");
                py::array a = dx.cast<py::array>();
                pdx = out_f32(a, "batchnorm_backward_training dx");
                same_shape(op, a, "dx", x);
                if (naive && pdx == pdy)
                    throw std::invalid_argument(op + ": the naive kernel needs dx apart from dy");
            }
            float* pdg = channel_output(op, dgamma, "dgamma", d.C);
            float* pdb = channel_output(op, dbeta, "dbeta", d.C);
            const float* pm = channel_vector(op, mean, "mean", d.C, false);
            const float* pv = channel_vector(op, var, "var", d.C, false);
            const float* pg = channel_vector(op, gamma, "gamma", d.C, true);
            const float* pr = relu_output(op, relu_y, x);
            if (naive && pr)
                throw std::invalid_argument(op + ": the naive kernel has no fused relu");
            py::gil_scoped_release release;
            if (naive)
                batchnorm_backward_training_naive(pdx, pdg, pdb, px, pdy, pm, pv, pg, d);
            else
                batchnorm_backward_training(pdx, pdg, pdb, px, pdy, pm, pv, pg, d, pr);
        },
        py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"), py::arg("x"), py::arg("dy"),
        py::arg("mean"), py::arg("var"), py::arg("gamma"), py::arg("epsilon") = 1e-3,
        py::kw_only(), py::arg("naive") = false, py::arg("relu_y") = py::none());

    // dy (..., C); dx like dy (may be dy); gamma (C,) or None, var (C,) the moving variance.
    m.def(
        "batchnorm_backward_inference",
        [](py::array dx, const py::array& dy, const py::object& gamma, const py::array& var,
           double epsilon, const py::object& relu_y) {
            const std::string op = "batchnorm_backward_inference";
            const float* pdy = in_f32(dy, "batchnorm_backward_inference dy");
            float* pdx = out_f32(dx, "batchnorm_backward_inference dx");
            const BatchNormDims d = bn_dims(op, dy, epsilon);
            same_shape(op, dx, "dx", dy);
            const float* pg = channel_vector(op, gamma, "gamma", d.C, true);
            const float* pv = channel_vector(op, var, "var", d.C, false);
            const float* pr = relu_output(op, relu_y, dy);
            py::gil_scoped_release release;
            batchnorm_backward_inference(pdx, pdy, pg, pv, d, pr);
        },
        py::arg("dx"), py::arg("dy"), py::arg("gamma"), py::arg("var"), py::arg("epsilon") = 1e-3,
        py::kw_only(), py::arg("relu_y") = py::none());
}

}  // namespace cnnfast::bind
