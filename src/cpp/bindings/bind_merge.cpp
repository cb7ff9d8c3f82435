// Merge kernels (merge.h): the joins of graph networks. Inputs come as lists of arrays.
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bind_util.h"
#include "bind_window.h"
#include "merge.h"

namespace cnnfast::bind {

namespace {

MergeOp merge_op(const std::string& name, const char* ctx) {
    if (name == "add") return MergeOp::add;
    if (name == "subtract") return MergeOp::subtract;
    if (name == "multiply") return MergeOp::multiply;
    if (name == "average") return MergeOp::average;
    if (name == "maximum") return MergeOp::maximum;
    throw std::invalid_argument(std::string(ctx) + ": unknown merge op '" + name +
                                "'; expected add, subtract, multiply, average or maximum");
}

bool same_shape(const py::array& a, const py::array& b) {
    bool ok = a.ndim() == b.ndim();
    for (py::ssize_t i = 0; ok && i < a.ndim(); ++i) ok = a.shape(i) == b.shape(i);
    return ok;
}

// The inputs' data pointers, after checking they are float32 arrays of `like`'s shape.
std::vector<const float*> same_shaped_inputs(const std::vector<py::array>& inputs,
                                             const py::array& like, const std::string& ctx) {
    std::vector<const float*> ptrs;
    for (size_t k = 0; k < inputs.size(); ++k) {
        const std::string what = ctx + " inputs[" + std::to_string(k) + "]";
        ptrs.push_back(in_f32(inputs[k], what.c_str()));
        if (!same_shape(inputs[k], like))
            throw std::invalid_argument(what + " has shape " + shape_str(inputs[k]) +
                                        ", expected " + shape_str(like));
    }
    return ptrs;
}

void check_count(size_t count, MergeOp op, const char* ctx) {
    if (count < 1 || (op == MergeOp::subtract && count != 2))
        throw std::invalid_argument(std::string(ctx) + ": got " + std::to_string(count) +
                                    " inputs; " + (op == MergeOp::subtract ? "subtract takes 2"
                                                                           : "need at least 1"));
}

// (rows, last-axis width) of each input, which must agree on every axis but the last.
std::vector<int64_t> concat_widths(const std::vector<py::array>& parts, const py::array& whole,
                                   const std::string& ctx, int64_t* rows) {
    if (parts.empty()) throw std::invalid_argument(ctx + ": needs at least one input");
    const py::ssize_t nd = whole.ndim();
    if (nd < 1) throw std::invalid_argument(ctx + ": arrays need a last axis");
    std::vector<int64_t> widths;
    int64_t total = 0;
    for (size_t k = 0; k < parts.size(); ++k) {
        bool ok = parts[k].ndim() == nd;
        for (py::ssize_t i = 0; ok && i + 1 < nd; ++i) ok = parts[k].shape(i) == whole.shape(i);
        if (!ok)
            throw std::invalid_argument(ctx + ": input " + std::to_string(k) + " " +
                                        shape_str(parts[k]) + " does not match " +
                                        shape_str(whole) + " on every axis but the last");
        widths.push_back(dim(parts[k], static_cast<int>(nd - 1)));
        total += widths.back();
    }
    if (total != dim(whole, static_cast<int>(nd - 1)))
        throw std::invalid_argument(ctx + ": the inputs' last axes sum to " + std::to_string(total) +
                                    ", the concatenation " + shape_str(whole) + " has " +
                                    std::to_string(dim(whole, static_cast<int>(nd - 1))));
    *rows = total ? static_cast<int64_t>(whole.size()) / total : 0;
    return widths;
}

}  // namespace

void bind_merge(py::module_& m) {
    // out = inputs[0] op inputs[1] op ..., all of one shape; out may be inputs[0].
    m.def(
        "merge_forward",
        [](py::array out, const std::vector<py::array>& inputs, const std::string& op,
           bool relu) {
            const MergeOp kind = merge_op(op, "merge_forward");
            check_count(inputs.size(), kind, "merge_forward");
            float* po = out_f32(out, "merge_forward out");
            auto ptrs = same_shaped_inputs(inputs, out, "merge_forward");
            for (size_t k = 1; k < inputs.size(); ++k)
                expect_disjoint("merge_forward", out, "out", inputs[k], "inputs[k>0]");
            py::gil_scoped_release release;
            merge_forward(po, ptrs.data(), static_cast<int64_t>(ptrs.size()),
                          static_cast<int64_t>(out.size()), kind, relu);
        },
        py::arg("out"), py::arg("inputs"), py::arg("op"), py::kw_only(), py::arg("relu") = false);
    // dinputs[k] (shape of dy, or None) = d out / d inputs[k] * dy.
    m.def(
        "merge_backward",
        [](const std::vector<py::object>& dinputs, const py::array& dy,
           const std::vector<py::array>& inputs, const std::string& op,
           const py::object& relu_y) {
            const MergeOp kind = merge_op(op, "merge_backward");
            check_count(inputs.size(), kind, "merge_backward");
            if (dinputs.size() != inputs.size())
                throw std::invalid_argument("merge_backward: " + std::to_string(dinputs.size()) +
                                            " gradients for " + std::to_string(inputs.size()) +
                                            " inputs");
            const float* pdy = in_f32(dy, "merge_backward dy");
            auto ptrs = same_shaped_inputs(inputs, dy, "merge_backward");
            std::vector<float*> douts;
            for (size_t k = 0; k < dinputs.size(); ++k) {
                if (dinputs[k].is_none()) {
                    douts.push_back(nullptr);
                    continue;
                }
                const std::string what = "merge_backward dinputs[" + std::to_string(k) + "]";
                py::array d = dinputs[k].cast<py::array>();
                douts.push_back(out_f32(d, what.c_str()));
                if (!same_shape(d, dy))
                    throw std::invalid_argument(what + " has shape " + shape_str(d) +
                                                ", expected " + shape_str(dy));
                for (const py::array& x : inputs) expect_disjoint(what, d, "dinput", x, "input");
            }
            const float* pr = nullptr;
            if (!relu_y.is_none()) {
                if (kind != MergeOp::add)
                    throw std::invalid_argument("merge_backward: relu_y only for op 'add'");
                py::array r = relu_y.cast<py::array>();
                pr = in_f32(r, "merge_backward relu_y");
                if (!same_shape(r, dy))
                    throw std::invalid_argument("merge_backward relu_y has shape " +
                                                shape_str(r) + ", expected " + shape_str(dy));
            }
            py::gil_scoped_release release;
            merge_backward(douts.data(), pdy, ptrs.data(), static_cast<int64_t>(ptrs.size()),
                           static_cast<int64_t>(dy.size()), kind, pr);
        },
        py::arg("dinputs"), py::arg("dy"), py::arg("inputs"), py::arg("op"), py::kw_only(),
        py::arg("relu_y") = py::none());
    // out (..., sum of widths) = the inputs (..., width_k) side by side on the last axis.
    m.def(
        "concat_forward",
        [](py::array out, const std::vector<py::array>& inputs) {
            float* po = out_f32(out, "concat_forward out");
            int64_t rows = 0;
            auto widths = concat_widths(inputs, out, "concat_forward", &rows);
            std::vector<const float*> ptrs;
            for (size_t k = 0; k < inputs.size(); ++k) {
                const std::string what = "concat_forward inputs[" + std::to_string(k) + "]";
                ptrs.push_back(in_f32(inputs[k], what.c_str()));
                expect_disjoint("concat_forward", out, "out", inputs[k], "an input");
            }
            py::gil_scoped_release release;
            concat_forward(po, ptrs.data(), widths.data(), static_cast<int64_t>(ptrs.size()), rows);
        },
        py::arg("out"), py::arg("inputs"));
    m.def(
        "concat_backward",
        [](const std::vector<py::array>& dinputs, const py::array& dy) {
            const float* pdy = in_f32(dy, "concat_backward dy");
            int64_t rows = 0;
            auto widths = concat_widths(dinputs, dy, "concat_backward", &rows);
            std::vector<float*> douts;
            for (size_t k = 0; k < dinputs.size(); ++k) {
                const std::string what = "concat_backward dinputs[" + std::to_string(k) + "]";
                py::array d = dinputs[k];
                douts.push_back(out_f32(d, what.c_str()));
                expect_disjoint("concat_backward", d, what.c_str(), dy, "dy");
            }
            py::gil_scoped_release release;
            concat_backward(douts.data(), pdy, widths.data(), static_cast<int64_t>(douts.size()),
                            rows);
        },
        py::arg("dinputs"), py::arg("dy"));
}

}  // namespace cnnfast::bind
