// _core.TrainPlan: one training step (forward, loss, backward, regularizers, optimizer update) in
// one call (train_plan.h), built from a model config. It keeps a reference to every array it
// borrows (weights, gradients, the two arenas), so its pointers stay valid while it lives.
#include <pybind11/stl.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "bind_optim.h"
#include "bind_util.h"
#include "layer_config.h"
#include "train_plan.h"

namespace cnnfast::bind {

namespace {

struct TrainPlanHandle {
    std::unique_ptr<TrainPlan> plan;
    std::vector<py::object> keep_alive;
    int64_t trainable_floats = 0;
    int64_t last_n = 0;  // batch size of the last step that ran to the end (last_output)
};

std::string dims_text(const std::vector<int64_t>& v) {
    std::string s = "(N";
    for (int64_t d : v) s += ", " + std::to_string(d);
    return s + ")";
}

// a has shape (n, per_sample...).
bool has_batch_shape(const py::array& a, int64_t n, const std::vector<int64_t>& per_sample) {
    if (a.ndim() != static_cast<py::ssize_t>(per_sample.size() + 1) || dim(a, 0) != n)
        return false;
    for (size_t i = 0; i < per_sample.size(); ++i)
        if (dim(a, static_cast<int>(i + 1)) != per_sample[i]) return false;
    return true;
}

TrainLoss loss_of(const std::string& name) {
    if (name == "categorical_crossentropy") return TrainLoss::categorical_crossentropy;
    if (name == "sparse_categorical_crossentropy")
        return TrainLoss::sparse_categorical_crossentropy;
    if (name == "mean_squared_error") return TrainLoss::mse;
    if (name == "mean_absolute_error") return TrainLoss::mean_absolute_error;
    if (name == "huber") return TrainLoss::huber;
    if (name == "kl_divergence") return TrainLoss::kl_divergence;
    if (name == "categorical_hinge") return TrainLoss::categorical_hinge;
    if (name == "binary_crossentropy") return TrainLoss::binary_crossentropy;
    throw std::invalid_argument("TrainPlan.from_config: unknown loss '" + name + "'");
}

}  // namespace

void bind_train_plan(py::module_& m) {
    py::class_<TrainPlanHandle>(m, "TrainPlan",
                                "One training step in one C++ call (train_plan.h).")
        // architecture: Model.get_config() JSON; weights, grads: {"layer/name": float32 view
        // of the arenas}; weight_arena, grad_arena: the arenas, the first trainable_floats
        // updated by the optimizer; regularizers: [("layer/name", l1, l2)]; loss: its Keras name.
        .def_static(
            "from_config",
            [](const std::string& architecture, const py::dict& weights, const py::dict& grads,
               py::array weight_arena, py::array grad_arena, int64_t trainable_floats,
               const std::vector<std::tuple<std::string, double, double>>& regularizers,
               const std::string& loss, bool bf16_products) {
                auto h = std::make_unique<TrainPlanHandle>();
                float* pw = out_f32(weight_arena, "TrainPlan.from_config weight_arena", 1);
                float* pg = out_f32(grad_arena, "TrainPlan.from_config grad_arena", 1);
                if (trainable_floats < 0 || trainable_floats > dim(weight_arena, 0) ||
                    dim(grad_arena, 0) != dim(weight_arena, 0))
                    throw std::invalid_argument(
                        "TrainPlan.from_config: arenas " + shape_str(weight_arena) + " and " +
                        shape_str(grad_arena) + " do not hold " +
                        std::to_string(trainable_floats) + " trainable floats");
                h->keep_alive = {weight_arena, grad_arena};
                h->trainable_floats = trainable_floats;
                auto lookup = [&h](const py::dict& arrays, const char* kind) {
                    return [&h, &arrays, kind](const std::string& key,
                                               const std::vector<int64_t>& shape) -> float* {
                        const std::string what =
                            std::string("TrainPlan.from_config ") + kind + " '" + key + "'";
                        if (!arrays.contains(key))
                            throw std::invalid_argument(what + " is missing");
                        py::array a = arrays[py::str(key)].cast<py::array>();
                        float* p = out_f32(a, what.c_str());
                        bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
                        for (size_t i = 0; same && i < shape.size(); ++i)
                            same = dim(a, static_cast<int>(i)) == shape[i];
                        if (!same)
                            throw std::invalid_argument(what + " has shape " + shape_str(a) +
                                                        ", the architecture needs " +
                                                        config::shape_str(shape));
                        h->keep_alive.push_back(a);
                        return p;
                    };
                };
                try {
                    h->plan = build_train_plan(architecture, lookup(weights, "weight"),
                                               lookup(grads, "gradient"), loss_of(loss), pw, pg,
                                               trainable_floats, bf16_products);
                } catch (const std::runtime_error& e) {
                    throw std::invalid_argument(std::string("TrainPlan.from_config: ") + e.what());
                }
                for (const auto& [key, l1, l2] : regularizers) {
                    const std::string what = "TrainPlan.from_config regularized weight '" + key + "'";
                    if (!weights.contains(key) || !grads.contains(key))
                        throw std::invalid_argument(what + " is missing");
                    py::array w = weights[py::str(key)].cast<py::array>();
                    py::array g = grads[py::str(key)].cast<py::array>();
                    float* pwk = out_f32(w, what.c_str());
                    float* pgk = out_f32(g, what.c_str());
                    if (w.size() != g.size())
                        throw std::invalid_argument(what + ": weight and gradient sizes differ");
                    h->plan->add_regularizer(
                        {pwk, pgk, static_cast<int64_t>(w.size()), l1, l2});
                    h->keep_alive.push_back(w);
                    h->keep_alive.push_back(g);
                }
                return h;
            },
            py::arg("architecture"), py::arg("weights"), py::arg("grads"),
            py::arg("weight_arena"), py::arg("grad_arena"), py::arg("trainable_floats"),
            py::arg("regularizers"), py::arg("loss"), py::arg("bf16_products") = false)
        .def_property_readonly(
            "bf16_products", [](const TrainPlanHandle& h) { return h.plan->bf16_products(); })
        .def_property_readonly(
            "input_shape", [](const TrainPlanHandle& h) { return h.plan->input_shape(); })
        .def_property_readonly(
            "output_shape", [](const TrainPlanHandle& h) { return h.plan->output_shape(); })
        // "Class 'name'" per step in run order (a fused pair reads "A + B").
        .def_property_readonly("steps",
                               [](const TrainPlanHandle& h) {
                                   std::vector<std::string> labels;
                                   for (const TrainStep& s : h.plan->steps())
                                       labels.push_back(s.label);
                                   return labels;
                               })
        // Each layer call's "Class 'name'" in run order, before fusion.
        .def_property_readonly(
            "calls", [](const TrainPlanHandle& h) { return h.plan->calls(); })
        // What the builder fused for training (fuse_for_training), one line each.
        .def_property_readonly(
            "fusions", [](const TrainPlanHandle& h) { return h.plan->fusions(); })
        // A copy of the model's output (n, output...) of the last step, whose batch had n
        // rows (n as given to step; no step yet: undefined, so refused).
        .def(
            "last_output",
            [](const TrainPlanHandle& h, int64_t n) {
                if (n < 1 || n != h.last_n)
                    throw std::invalid_argument("TrainPlan.last_output: n must be the last "
                                                "step's batch size " + std::to_string(h.last_n) +
                                                ", got " + std::to_string(n));
                std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(n)};
                for (int64_t d : h.plan->output_shape()) shape.push_back(d);
                py::array_t<float> out(shape);
                std::memcpy(out.mutable_data(), h.plan->last_output(),
                            sizeof(float) * static_cast<size_t>(out.size()));
                return out;
            },
            py::arg("n"))
        // The Dropout steps that draw a mask, in the order step() reads their seeds.
        .def_property_readonly(
            "dropout_layers", [](const TrainPlanHandle& h) { return h.plan->dropout_labels(); })
        // x (N, input...); y int32 (N,) for sparse cross-entropy, else float32 (N, output...);
        // sample_weight float64 (N,) or None; dropout_seeds uint64, one per dropout layer;
        // slot0..2: the optimizer's slot arenas (trainable_floats each, None where unused);
        // optimizer and its settings as for _core.optimizer_update (bind_optim.h). Returns
        // (loss, correct, updated); updated is False when the loss was not finite (nothing
        // was changed). update=False stops once the gradients are in the arena (no optimizer
        // step; the slots may then be None): data-parallel training reduces them first.
        // on_gradients(offset, count), if given, is called (with the GIL) during backward as
        // each layer's weight gradients become final: floats of the gradient arena.
        .def(
            "step",
            [](TrainPlanHandle& h, const py::array& x, const py::array& y,
               const py::object& sample_weight, const py::array& dropout_seeds,
               const py::object& slot0, const py::object& slot1, const py::object& slot2,
               const std::string& optimizer, float lr, float weight_decay, int64_t iteration,
               float momentum, bool nesterov, float beta_1, float beta_2, float epsilon, float rho,
               bool centered, double u_product, float clipnorm, float clipvalue,
               float global_clipnorm, const py::object& clip_bounds, bool update,
               const py::object& on_gradients) {
                TrainPlan& plan = *h.plan;
                const float* px = in_f32(x, "TrainPlan.step x");
                const int64_t n = x.ndim() ? dim(x, 0) : 0;
                if (n < 1 || !has_batch_shape(x, n, plan.input_shape()))
                    throw std::invalid_argument("TrainPlan.step: x must have shape " +
                                                dims_text(plan.input_shape()) + " with N >= 1, got " +
                                                shape_str(x));
                const void* labels = nullptr;
                if (plan.loss() == TrainLoss::sparse_categorical_crossentropy) {
                    labels = in_i32(y, "TrainPlan.step y", 1);
                    expect_shape(y, "TrainPlan.step y", {n});
                } else {
                    labels = in_f32(y, "TrainPlan.step y");
                    if (!has_batch_shape(y, n, plan.output_shape()))
                        throw std::invalid_argument("TrainPlan.step: y must have shape " +
                                                    dims_text(plan.output_shape()) + ", got " +
                                                    shape_str(y));
                }
                const double* pw = nullptr;
                if (!sample_weight.is_none()) {
                    py::array w = sample_weight.cast<py::array>();
                    check_buffer<double>(w, "TrainPlan.step sample_weight", 1, false);
                    expect_shape(w, "TrainPlan.step sample_weight", {n});
                    pw = static_cast<const double*>(w.data());
                }
                check_buffer<uint64_t>(dropout_seeds, "TrainPlan.step dropout_seeds", 1, false);
                if (dim(dropout_seeds, 0) != static_cast<int64_t>(plan.dropout_labels().size()))
                    throw std::invalid_argument(
                        "TrainPlan.step: " + std::to_string(plan.dropout_labels().size()) +
                        " dropout seeds needed, got " + shape_str(dropout_seeds));
                OptimizerUpdate u = optimizer_update_args(
                    "TrainPlan.step", h.trainable_floats, slot0, slot1, slot2, optimizer, lr,
                    weight_decay, iteration, momentum, nesterov, beta_1, beta_2, epsilon, rho,
                    centered, u_product, clipnorm, clipvalue, global_clipnorm, clip_bounds);
                u.apply = update;
                const auto* seeds = static_cast<const uint64_t*>(dropout_seeds.data());
                GradientsReady ready;
                if (!on_gradients.is_none())
                    ready = [&on_gradients](int64_t offset, int64_t count) {
                        py::gil_scoped_acquire with_gil;
                        on_gradients(offset, count);
                    };
                TrainStepResult r;
                {
                    py::gil_scoped_release release;
                    r = plan.step(px, labels, pw, n, seeds, u, ready);
                }
                h.last_n = r.updated ? n : 0;
                return py::make_tuple(r.loss, r.correct, r.updated);
            },
            py::arg("x"), py::arg("y"), py::arg("sample_weight").none(true),
            py::arg("dropout_seeds"), py::arg("slot0").none(true) = py::none(),
            py::arg("slot1").none(true) = py::none(), py::arg("slot2").none(true) = py::none(),
            CNNFAST_OPTIMIZER_ARGS, py::arg("update") = true,
            py::arg("on_gradients").none(true) = py::none());
}

}  // namespace cnnfast::bind
