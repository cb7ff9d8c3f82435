#pragma once
// The optimizer keyword arguments shared by _core.optimizer_update (the Python walk) and
// TrainPlan.step (the C++ step), read into one OptimizerUpdate, so both run the same update.
#include <string>

#include "bind_util.h"
#include "optim.h"
#include "train_plan.h"

namespace cnnfast::bind {

// The py::arg list after the slots, in order, with the defaults of an SGD step.
#define CNNFAST_OPTIMIZER_ARGS                                                                 \
    py::arg("optimizer") = "sgd", py::arg("lr") = 0.01f, py::arg("weight_decay") = 0.0f,       \
        py::arg("iteration") = 1, py::arg("momentum") = 0.0f, py::arg("nesterov") = false,     \
        py::arg("beta_1") = 0.9f, py::arg("beta_2") = 0.999f, py::arg("epsilon") = 1e-7f,      \
        py::arg("rho") = 0.9f, py::arg("centered") = false, py::arg("u_product") = 1.0,        \
        py::arg("clipnorm") = 0.0f, py::arg("clipvalue") = 0.0f,                               \
        py::arg("global_clipnorm") = 0.0f, py::arg("clip_bounds").none(true) = py::none()

inline float* optimizer_slot(const py::object& o, const std::string& what, int64_t floats) {
    if (o.is_none()) return nullptr;
    py::array a = o.cast<py::array>();
    float* p = out_f32(a, what.c_str());
    if (static_cast<int64_t>(a.size()) != floats)
        throw std::invalid_argument(what + ": expected " + std::to_string(floats) +
                                    " floats (the size of w), got " + shape_str(a));
    return p;
}

// slots: their arrays or None; clip_bounds: int64 (variables + 1,) offsets 0 .. floats,
// non-decreasing, or None. Throws std::invalid_argument naming `op` and the argument.
inline OptimizerUpdate optimizer_update_args(
    const std::string& op, int64_t floats, const py::object& slot0, const py::object& slot1,
    const py::object& slot2, const std::string& optimizer, float lr, float weight_decay,
    int64_t iteration, float momentum, bool nesterov, float beta_1, float beta_2, float epsilon,
    float rho, bool centered, double u_product, float clipnorm, float clipvalue,
    float global_clipnorm, const py::object& clip_bounds) {
    OptimizerUpdate u;
    try {
        u.kind = optimizer_kind(optimizer);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(op + ": " + e.what());
    }
    u.lr = lr;
    u.weight_decay = weight_decay;
    u.iteration = iteration;
    u.momentum = momentum;
    u.nesterov = nesterov;
    u.beta_1 = beta_1;
    u.beta_2 = beta_2;
    u.epsilon = epsilon;
    u.rho = rho;
    u.centered = centered;
    u.u_product = u_product;
    u.clipnorm = clipnorm;
    u.clipvalue = clipvalue;
    u.global_clipnorm = global_clipnorm;
    if (iteration < 1)
        throw std::invalid_argument(op + ": iteration must be >= 1 (1-based), got " +
                                    std::to_string(iteration));
    if ((clipnorm > 0.0f) + (clipvalue > 0.0f) + (global_clipnorm > 0.0f) > 1)
        throw std::invalid_argument(op + ": only one of clipnorm, clipvalue and "
                                         "global_clipnorm can be set");
    u.slot0 = optimizer_slot(slot0, op + " slot0", floats);
    u.slot1 = optimizer_slot(slot1, op + " slot1", floats);
    u.slot2 = optimizer_slot(slot2, op + " slot2", floats);
    if (const char* missing = optimizer_missing_slot(u, u.slot0, u.slot1, u.slot2))
        throw std::invalid_argument(op + ": " + optimizer + " needs its '" + missing +
                                    "' slot array");
    if (!clip_bounds.is_none()) {
        py::array b = clip_bounds.cast<py::array>();
        check_buffer<int64_t>(b, (op + " clip_bounds").c_str(), 1, false);
        const auto* p = static_cast<const int64_t*>(b.data());
        const int64_t count = dim(b, 0) - 1;
        bool ok = count >= 1 && p[0] == 0 && p[count] == floats;
        for (int64_t k = 0; ok && k < count; ++k) ok = p[k] <= p[k + 1];
        if (!ok)
            throw std::invalid_argument(op + ": clip_bounds must rise from 0 to " +
                                        std::to_string(floats) + ", got " + shape_str(b));
        u.bounds = p;
        u.variables = count;
    }
    return u;
}

}  // namespace cnnfast::bind
