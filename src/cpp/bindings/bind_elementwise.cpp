// Bindings of the element-wise families: activations, PReLU, softmax, losses, dropout, optimizers.
#include <cstring>
#include <string>

#include "activation.h"
#include "bind_optim.h"
#include "bind_util.h"
#include "dropout.h"
#include "optim.h"
#include "softmax_xent.h"

namespace cnnfast::bind {

namespace {

// Throws unless a and b have the same shape.
void expect_same_shape(const py::array& a, const char* a_what, const py::array& b,
                       const char* b_what) {
    bool ok = a.ndim() == b.ndim();
    for (py::ssize_t i = 0; ok && i < a.ndim(); ++i) ok = a.shape(i) == b.shape(i);
    if (!ok)
        throw std::invalid_argument(std::string(a_what) + " " + shape_str(a) + " and " + b_what +
                                    " " + shape_str(b) + " must have the same shape");
}

uint8_t* out_u8(py::array& a, const char* what) {
    if (a.dtype().kind() != 'u' || a.itemsize() != 1)
        throw std::invalid_argument(std::string(what) + ": expected dtype uint8, got " +
                                    std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(what) + ": array must be C-contiguous");
    if (!a.writeable())
        throw std::invalid_argument(std::string(what) + ": output array is read-only");
    return static_cast<uint8_t*>(a.mutable_data());
}
const uint8_t* in_u8(const py::array& a, const char* what) {
    if (a.dtype().kind() != 'u' || a.itemsize() != 1)
        throw std::invalid_argument(std::string(what) + ": expected dtype uint8, got " +
                                    std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(what) + ": array must be C-contiguous");
    return static_cast<const uint8_t*>(a.data());
}

// (rows, cols) of an array whose last axis is the row: cols = last dim, rows = the rest.
void rows_cols(const py::array& a, const char* what, int64_t* rows, int64_t* cols) {
    if (a.ndim() < 1)
        throw std::invalid_argument(std::string(what) + ": expected rank >= 1, got shape " +
                                    shape_str(a));
    *cols = dim(a, static_cast<int>(a.ndim() - 1));
    *rows = *cols ? static_cast<int64_t>(a.size()) / *cols : 0;
}

// Loss inputs must be (N, C) with N, C >= 1.
void expect_loss_2d(const py::array& a, const char* what) {
    if (a.ndim() != 2 || a.shape(0) < 1 || a.shape(1) < 1)
        throw std::invalid_argument(std::string(what) +
                                    ": expected a non-empty (N, C) array, got " + shape_str(a));
}

}  // namespace

void bind_elementwise(py::module_& m) {
    m.def("elementwise_simd_path", &elementwise_simd_path);
    m.def(
        "set_elementwise_simd_path",
        [](const std::string& name) {
            if (!set_elementwise_simd_path(name.c_str()))
                throw std::invalid_argument("set_elementwise_simd_path: '" + name +
                                            "' is not available (baseline, avx2, avx512, auto)");
        },
        py::arg("name"));

    // x, y (any shape, same); y may be x.
    m.def(
        "activation_forward",
        [](py::array y, const py::array& x, const std::string& kind, float alpha, bool naive) {
            const Activation k = activation_kind(kind, "activation_forward");
            const float* px = in_f32(x, "activation_forward x");
            float* py_ = out_f32(y, "activation_forward y");
            expect_same_shape(y, "activation_forward y", x, "x");
            const int64_t n = static_cast<int64_t>(x.size());
            auto fn = naive ? &activation_forward_naive : &activation_forward;
            py::gil_scoped_release release;
            fn(py_, px, n, k, alpha);
        },
        py::arg("y"), py::arg("x"), py::arg("kind"), py::arg("alpha") = 1.0f,
        py::arg("naive") = false);

    // dx, x, y, dy (same shape); x the forward input, y the forward output; dx may be dy.
    m.def(
        "activation_backward",
        [](py::array dx, const py::array& x, const py::array& y, const py::array& dy,
           const std::string& kind, float alpha, bool naive) {
            const Activation k = activation_kind(kind, "activation_backward");
            const float* px = in_f32(x, "activation_backward x");
            const float* py_ = in_f32(y, "activation_backward y");
            const float* pdy = in_f32(dy, "activation_backward dy");
            float* pdx = out_f32(dx, "activation_backward dx");
            expect_same_shape(y, "activation_backward y", x, "x");
            expect_same_shape(dy, "activation_backward dy", x, "x");
            expect_same_shape(dx, "activation_backward dx", x, "x");
            const int64_t n = static_cast<int64_t>(x.size());
            auto fn = naive ? &activation_backward_naive : &activation_backward;
            py::gil_scoped_release release;
            fn(pdx, px, py_, pdy, n, k, alpha);
        },
        py::arg("dx"), py::arg("x"), py::arg("y"), py::arg("dy"), py::arg("kind"),
        py::arg("alpha") = 1.0f, py::arg("naive") = false);

    // x, y (..., *alpha.shape without its leading 1s); alpha used at flat index % alpha.size.
    auto check_prelu_alpha = [](const py::array& x, const py::array& alpha, const char* op) {
        py::ssize_t lead = 0;
        while (lead < alpha.ndim() && alpha.shape(lead) == 1) ++lead;
        const py::ssize_t k = alpha.ndim() - lead;
        bool ok = alpha.size() >= 1 && k <= x.ndim();
        for (py::ssize_t i = 0; ok && i < k; ++i)
            ok = alpha.shape(lead + i) == x.shape(x.ndim() - k + i);
        if (!ok)
            throw std::invalid_argument(std::string(op) + ": alpha " + shape_str(alpha) +
                                        " must match the trailing dimensions of x " +
                                        shape_str(x) + " (leading 1s allowed)");
    };
    m.def(
        "prelu_forward",
        [check_prelu_alpha](py::array y, const py::array& x, const py::array& alpha) {
            const float* px = in_f32(x, "prelu_forward x");
            const float* pa = in_f32(alpha, "prelu_forward alpha");
            float* py_ = out_f32(y, "prelu_forward y");
            expect_same_shape(y, "prelu_forward y", x, "x");
            check_prelu_alpha(x, alpha, "prelu_forward");
            const int64_t n = static_cast<int64_t>(x.size());
            const int64_t A = static_cast<int64_t>(alpha.size());
            py::gil_scoped_release release;
            prelu_forward(py_, px, pa, n, A);
        },
        py::arg("y"), py::arg("x"), py::arg("alpha"));

    // dx, x, dy (same shape); dalpha, alpha (same shape). dalpha overwritten.
    m.def(
        "prelu_backward",
        [check_prelu_alpha](py::array dx, py::array dalpha, const py::array& x,
                            const py::array& alpha, const py::array& dy) {
            const float* px = in_f32(x, "prelu_backward x");
            const float* pa = in_f32(alpha, "prelu_backward alpha");
            const float* pdy = in_f32(dy, "prelu_backward dy");
            float* pdx = out_f32(dx, "prelu_backward dx");
            float* pda = out_f32(dalpha, "prelu_backward dalpha");
            expect_same_shape(dy, "prelu_backward dy", x, "x");
            expect_same_shape(dx, "prelu_backward dx", x, "x");
            expect_same_shape(dalpha, "prelu_backward dalpha", alpha, "alpha");
            check_prelu_alpha(x, alpha, "prelu_backward");
            const int64_t n = static_cast<int64_t>(x.size());
            const int64_t A = static_cast<int64_t>(alpha.size());
            py::gil_scoped_release release;
            prelu_backward(pdx, pda, px, pa, pdy, n, A);
        },
        py::arg("dx"), py::arg("dalpha"), py::arg("x"), py::arg("alpha"), py::arg("dy"));

    // x, y (..., C): softmax over the last axis. y may be x.
    m.def(
        "softmax_forward",
        [](py::array y, const py::array& x, bool naive) {
            const float* px = in_f32(x, "softmax_forward x");
            float* py_ = out_f32(y, "softmax_forward y");
            expect_same_shape(y, "softmax_forward y", x, "x");
            int64_t rows, cols;
            rows_cols(x, "softmax_forward x", &rows, &cols);
            auto fn = naive ? &softmax_forward_naive : &softmax_forward;
            py::gil_scoped_release release;
            fn(py_, px, rows, cols);
        },
        py::arg("y"), py::arg("x"), py::arg("naive") = false);

    // dx, y, dy (..., C); y the softmax output. dx may be dy.
    m.def(
        "softmax_backward",
        [](py::array dx, const py::array& y, const py::array& dy) {
            const float* py_ = in_f32(y, "softmax_backward y");
            const float* pdy = in_f32(dy, "softmax_backward dy");
            float* pdx = out_f32(dx, "softmax_backward dx");
            expect_same_shape(dy, "softmax_backward dy", y, "y");
            expect_same_shape(dx, "softmax_backward dx", y, "y");
            int64_t rows, cols;
            rows_cols(y, "softmax_backward y", &rows, &cols);
            py::gil_scoped_release release;
            softmax_backward(pdx, py_, pdy, rows, cols);
        },
        py::arg("dx"), py::arg("y"), py::arg("dy"));

    // logits (N,C); labels float32 (N,C) or int32 (N,); dlogits, probs (N,C) or None.
    m.def(
        "softmax_xent",
        [](py::object dlogits, py::object probs, const py::array& logits,
           const py::array& labels) -> double {
            const float* px = in_f32(logits, "softmax_xent logits", 2);
            expect_loss_2d(logits, "softmax_xent logits");
            const int64_t N = dim(logits, 0), C = dim(logits, 1);
            float* pdl = nullptr;
            float* ppr = nullptr;
            if (!dlogits.is_none()) {
                py::array a = dlogits.cast<py::array>();
                pdl = out_f32(a, "softmax_xent dlogits", 2);
                expect_shape(a, "softmax_xent dlogits", {N, C});
            }
            if (!probs.is_none()) {
                py::array a = probs.cast<py::array>();
                ppr = out_f32(a, "softmax_xent probs", 2);
                expect_shape(a, "softmax_xent probs", {N, C});
            }
            if (pdl && pdl == ppr)
                throw std::invalid_argument(
                    "softmax_xent: dlogits and probs must be different arrays");
            if (labels.dtype().kind() == 'i') {
                const int32_t* pl = in_i32(labels, "softmax_xent labels", 1);
                expect_shape(labels, "softmax_xent labels", {N});
                for (int64_t r = 0; r < N; ++r)
                    if (pl[r] < 0 || pl[r] >= C)
                        throw std::invalid_argument(
                            "softmax_xent: label " + std::to_string(pl[r]) + " at row " +
                            std::to_string(r) + " is out of range [0, " + std::to_string(C) +
                            ") for logits " + shape_str(logits));
                py::gil_scoped_release release;
                return softmax_xent_sparse_forward_backward(pdl, ppr, px, pl, N, C);
            }
            const float* pl = in_f32(labels, "softmax_xent labels", 2);
            expect_shape(labels, "softmax_xent labels", {N, C});
            py::gil_scoped_release release;
            return softmax_xent_forward_backward(pdl, ppr, px, pl, N, C);
        },
        py::arg("dlogits").none(true), py::arg("probs").none(true), py::arg("logits"),
        py::arg("labels"));

    // probs, labels (N,C); dprobs (N,C) or None.
    m.def(
        "categorical_xent",
        [](py::object dprobs, const py::array& probs, const py::array& labels) -> double {
            const float* pp = in_f32(probs, "categorical_xent probs", 2);
            expect_loss_2d(probs, "categorical_xent probs");
            const int64_t N = dim(probs, 0), C = dim(probs, 1);
            const float* pl = in_f32(labels, "categorical_xent labels", 2);
            expect_shape(labels, "categorical_xent labels", {N, C});
            float* pd = nullptr;
            if (!dprobs.is_none()) {
                py::array a = dprobs.cast<py::array>();
                pd = out_f32(a, "categorical_xent dprobs", 2);
                expect_shape(a, "categorical_xent dprobs", {N, C});
            }
            py::gil_scoped_release release;
            return categorical_xent(pd, pp, pl, N, C);
        },
        py::arg("dprobs").none(true), py::arg("probs"), py::arg("labels"));

    // pred, target, dpred (same shape, non-empty); dpred may be None.
    m.def(
        "mse",
        [](py::object dpred, const py::array& pred, const py::array& target) -> double {
            const float* pp = in_f32(pred, "mse pred");
            const float* pt = in_f32(target, "mse target");
            expect_same_shape(target, "mse target", pred, "pred");
            if (pred.size() < 1)
                throw std::invalid_argument("mse: pred " + shape_str(pred) + " is empty");
            float* pd = nullptr;
            if (!dpred.is_none()) {
                py::array a = dpred.cast<py::array>();
                pd = out_f32(a, "mse dpred");
                expect_same_shape(a, "mse dpred", pred, "pred");
            }
            const int64_t n = static_cast<int64_t>(pred.size());
            py::gil_scoped_release release;
            return mse(pd, pp, pt, n);
        },
        py::arg("dpred").none(true), py::arg("pred"), py::arg("target"));

    // x, y (same shape) float32; mask uint8 (same shape). y may be x.
    m.def(
        "dropout_forward",
        [](py::array y, py::array mask, const py::array& x, double rate, uint64_t seed) {
            const float* px = in_f32(x, "dropout_forward x");
            float* py_ = out_f32(y, "dropout_forward y");
            uint8_t* pm = out_u8(mask, "dropout_forward mask");
            expect_same_shape(y, "dropout_forward y", x, "x");
            expect_same_shape(mask, "dropout_forward mask", x, "x");
            if (!(rate >= 0.0 && rate <= 1.0))
                throw std::invalid_argument("dropout_forward: rate must be in [0, 1], got " +
                                            std::to_string(rate));
            const int64_t n = static_cast<int64_t>(x.size());
            py::gil_scoped_release release;
            dropout_forward(py_, pm, px, n, rate, seed);
        },
        py::arg("y"), py::arg("mask"), py::arg("x"), py::arg("rate"), py::arg("seed"));

    // dx, dy (same shape) float32; mask uint8 (same shape). dx may be dy.
    m.def(
        "dropout_backward",
        [](py::array dx, const py::array& dy, const py::array& mask, double rate) {
            const float* pdy = in_f32(dy, "dropout_backward dy");
            const uint8_t* pm = in_u8(mask, "dropout_backward mask");
            float* pdx = out_f32(dx, "dropout_backward dx");
            expect_same_shape(dx, "dropout_backward dx", dy, "dy");
            expect_same_shape(mask, "dropout_backward mask", dy, "dy");
            if (!(rate >= 0.0 && rate <= 1.0))
                throw std::invalid_argument("dropout_backward: rate must be in [0, 1], got " +
                                            std::to_string(rate));
            const int64_t n = static_cast<int64_t>(dy.size());
            py::gil_scoped_release release;
            dropout_backward(pdx, pdy, pm, n, rate);
        },
        py::arg("dx"), py::arg("dy"), py::arg("mask"), py::arg("rate"));

    // w, g, velocity (same shape), updated in place; velocity may be None when momentum == 0.
    m.def(
        "sgd_update",
        [](py::array w, const py::array& g, py::object velocity, float lr, float momentum,
           bool nesterov, float weight_decay) {
            float* pw = out_f32(w, "sgd_update w");
            const float* pg = in_f32(g, "sgd_update g");
            expect_same_shape(g, "sgd_update g", w, "w");
            float* pv = nullptr;
            if (!velocity.is_none()) {
                py::array a = velocity.cast<py::array>();
                pv = out_f32(a, "sgd_update velocity");
                expect_same_shape(a, "sgd_update velocity", w, "w");
            }
            if (momentum != 0.0f && !pv)
                throw std::invalid_argument(
                    "sgd_update: momentum != 0 needs a velocity array of shape " + shape_str(w));
            const int64_t n = static_cast<int64_t>(w.size());
            py::gil_scoped_release release;
            sgd_update(pw, pg, pv, n, lr, momentum, nesterov, weight_decay);
        },
        py::arg("w"), py::arg("g"), py::arg("velocity").none(true), py::arg("lr"),
        py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"));

    // w, g, m, v (same shape), updated in place; step >= 1.
    m.def(
        "adam_update",
        [](py::array w, const py::array& g, py::array m_, py::array v, int64_t step, float lr,
           float beta_1, float beta_2, float epsilon, float weight_decay) {
            float* pw = out_f32(w, "adam_update w");
            const float* pg = in_f32(g, "adam_update g");
            float* pm = out_f32(m_, "adam_update m");
            float* pv = out_f32(v, "adam_update v");
            expect_same_shape(g, "adam_update g", w, "w");
            expect_same_shape(m_, "adam_update m", w, "w");
            expect_same_shape(v, "adam_update v", w, "w");
            if (step < 1)
                throw std::invalid_argument("adam_update: step must be >= 1 (1-based), got " +
                                            std::to_string(step));
            const int64_t n = static_cast<int64_t>(w.size());
            py::gil_scoped_release release;
            adam_update(pw, pg, pm, pv, n, step, lr, beta_1, beta_2, epsilon, weight_decay);
        },
        py::arg("w"), py::arg("g"), py::arg("m"), py::arg("v"), py::arg("step"), py::arg("lr"),
        py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"), py::arg("weight_decay"));

    // w, g (n,) float32, updated in place (g clipped, when clipping is set); slot0..2 (n,) the
    // optimizer's state or None where the optimizer does not use it (optim.h names them);
    // clip_bounds int64 (variables + 1,): the variables' offsets for clipnorm.
    m.def(
        "optimizer_update",
        [](py::array w, py::array g, const py::object& slot0, const py::object& slot1,
           const py::object& slot2, const std::string& optimizer, float lr, float weight_decay,
           int64_t iteration, float momentum, bool nesterov, float beta_1, float beta_2,
           float epsilon, float rho, bool centered, double u_product, float clipnorm,
           float clipvalue, float global_clipnorm, const py::object& clip_bounds) {
            float* pw = out_f32(w, "optimizer_update w");
            float* pg = out_f32(g, "optimizer_update g");
            expect_same_shape(g, "optimizer_update g", w, "w");
            const int64_t n = static_cast<int64_t>(w.size());
            const OptimizerUpdate u = optimizer_update_args(
                "optimizer_update", n, slot0, slot1, slot2, optimizer, lr, weight_decay,
                iteration, momentum, nesterov, beta_1, beta_2, epsilon, rho, centered, u_product,
                clipnorm, clipvalue, global_clipnorm, clip_bounds);
            py::gil_scoped_release release;
            optimizer_update(pw, pg, u.slot0, u.slot1, u.slot2, n, u.bounds, u.variables, u);
        },
        py::arg("w"), py::arg("g"), py::arg("slot0").none(true) = py::none(),
        py::arg("slot1").none(true) = py::none(), py::arg("slot2").none(true) = py::none(),
        CNNFAST_OPTIMIZER_ARGS);
}

}  // namespace cnnfast::bind
