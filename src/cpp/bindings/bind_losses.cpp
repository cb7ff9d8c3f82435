// Bindings of the Keras losses (kernels/losses.h). Each takes the gradient output first (None to
// compute only the loss), then the prediction and target of one shape, and returns the batch loss.
#include <cmath>
#include <stdexcept>
#include <string>

#include "bind_util.h"
#include "losses.h"

namespace cnnfast::bind {

namespace {

// The pointers of one loss call: pred and target of one non-empty shape, grad (same shape) or
// None. Errors name the kernel and the shapes.
struct LossArrays {
    float* grad = nullptr;
    const float* pred = nullptr;
    const float* target = nullptr;
    int64_t n = 0;     // all elements
    int64_t cols = 0;  // the last axis
};

LossArrays loss_arrays(const char* op, py::object grad, const py::array& pred,
                       const py::array& target, const char* pred_name) {
    const std::string name(op);
    LossArrays a;
    a.pred = in_f32(pred, (name + " " + pred_name).c_str());
    a.target = in_f32(target, (name + " target").c_str());
    bool same = pred.ndim() == target.ndim();
    for (py::ssize_t i = 0; same && i < pred.ndim(); ++i) same = pred.shape(i) == target.shape(i);
    if (!same)
        throw std::invalid_argument(name + ": target " + shape_str(target) + " and " + pred_name +
                                    " " + shape_str(pred) + " must have the same shape");
    if (pred.ndim() < 1 || pred.size() < 1)
        throw std::invalid_argument(name + ": " + pred_name + " " + shape_str(pred) +
                                    " must be a non-empty array of rank >= 1");
    if (!grad.is_none()) {
        py::array g = grad.cast<py::array>();
        a.grad = out_f32(g, (name + " gradient").c_str());
        bool ok = g.ndim() == pred.ndim();
        for (py::ssize_t i = 0; ok && i < pred.ndim(); ++i) ok = g.shape(i) == pred.shape(i);
        if (!ok)
            throw std::invalid_argument(name + ": gradient " + shape_str(g) + " and " +
                                        pred_name + " " + shape_str(pred) +
                                        " must have the same shape");
    }
    a.n = static_cast<int64_t>(pred.size());
    a.cols = dim(pred, static_cast<int>(pred.ndim() - 1));
    return a;
}

void check_label_smoothing(const char* op, double s) {
    if (!(s >= 0.0 && s <= 1.0))
        throw std::invalid_argument(std::string(op) + ": label_smoothing must be in [0, 1], got " +
                                    std::to_string(s));
}

}  // namespace

void bind_losses(py::module_& m) {
    // pred, target, dpred (any same shape, non-empty); dpred may be None.
    m.def(
        "binary_xent",
        [](py::object dpred, const py::array& pred, const py::array& target,
           double label_smoothing) -> double {
            LossArrays a = loss_arrays("binary_xent", dpred, pred, target, "pred");
            check_label_smoothing("binary_xent", label_smoothing);
            py::gil_scoped_release release;
            return binary_xent(a.grad, a.pred, a.target, a.n, label_smoothing);
        },
        py::arg("dpred").none(true), py::arg("pred"), py::arg("target"),
        py::arg("label_smoothing") = 0.0);

    // logits, target, dlogits (any same shape, non-empty); dlogits may be None.
    m.def(
        "binary_xent_logits",
        [](py::object dlogits, const py::array& logits, const py::array& target,
           double label_smoothing, bool clip_probabilities) -> double {
            LossArrays a = loss_arrays("binary_xent_logits", dlogits, logits, target, "logits");
            check_label_smoothing("binary_xent_logits", label_smoothing);
            py::gil_scoped_release release;
            return binary_xent_logits(a.grad, a.pred, a.target, a.n, label_smoothing,
                                      clip_probabilities);
        },
        py::arg("dlogits").none(true), py::arg("logits"), py::arg("target"),
        py::arg("label_smoothing") = 0.0, py::arg("clip_probabilities") = false);

    // pred, target, dpred (any same shape, non-empty); dpred may be None.
    m.def(
        "mean_absolute_error",
        [](py::object dpred, const py::array& pred, const py::array& target) -> double {
            LossArrays a = loss_arrays("mean_absolute_error", dpred, pred, target, "pred");
            py::gil_scoped_release release;
            return mean_absolute_error(a.grad, a.pred, a.target, a.n);
        },
        py::arg("dpred").none(true), py::arg("pred"), py::arg("target"));

    // pred, target, dpred (any same shape, non-empty); dpred may be None. delta > 0.
    m.def(
        "huber",
        [](py::object dpred, const py::array& pred, const py::array& target,
           double delta) -> double {
            LossArrays a = loss_arrays("huber", dpred, pred, target, "pred");
            if (!(delta > 0.0 && std::isfinite(delta)))
                throw std::invalid_argument("huber: delta must be a positive number, got " +
                                            std::to_string(delta));
            py::gil_scoped_release release;
            return huber(a.grad, a.pred, a.target, a.n, delta);
        },
        py::arg("dpred").none(true), py::arg("pred"), py::arg("target"), py::arg("delta") = 1.0);

    // pred, target, dpred (..., C), rows = size / C; dpred may be None.
    m.def(
        "kl_divergence",
        [](py::object dpred, const py::array& pred, const py::array& target) -> double {
            LossArrays a = loss_arrays("kl_divergence", dpred, pred, target, "pred");
            py::gil_scoped_release release;
            return kl_divergence(a.grad, a.pred, a.target, a.n / a.cols, a.cols);
        },
        py::arg("dpred").none(true), py::arg("pred"), py::arg("target"));

    // pred, target, dpred (..., C), rows = size / C; dpred may be None.
    m.def(
        "categorical_hinge",
        [](py::object dpred, const py::array& pred, const py::array& target) -> double {
            LossArrays a = loss_arrays("categorical_hinge", dpred, pred, target, "pred");
            py::gil_scoped_release release;
            return categorical_hinge(a.grad, a.pred, a.target, a.n / a.cols, a.cols);
        },
        py::arg("dpred").none(true), py::arg("pred"), py::arg("target"));
}

}  // namespace cnnfast::bind
