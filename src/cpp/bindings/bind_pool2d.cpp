#include <limits>

#include "bind_util.h"
#include "bind_window.h"
#include "pool2d.h"

namespace cnnfast::bind {

namespace {

// Dims of a pooling op from its (N,H,W,C)-shaped input-side array `x` (x or dx) and its
// (N,OH,OW,C)-shaped output-side array `y` (y or dy). Validates that they fit.
Pool2dDims pool_dims(const char* op, const py::array& x, const char* xn, const py::array& y,
                     const char* yn, int64_t pool_h, int64_t pool_w, int64_t stride_h,
                     int64_t stride_w, int64_t pad_top, int64_t pad_left) {
    const std::string ctx =
        std::string(op) + " with " + xn + " " + shape_str(x) + ", " + yn + " " + shape_str(y);
    if (x.ndim() != 4 || y.ndim() != 4)
        throw std::invalid_argument(ctx + ": both arrays must be 4-D");
    Pool2dDims d{dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), pool_h,   pool_w,
                 dim(y, 1), dim(y, 2), stride_h,  stride_w,  pad_top,  pad_left};
    if (dim(y, 0) != d.N || dim(y, 3) != d.C)
        throw std::invalid_argument(ctx + ": " + yn + " must be (N, OH, OW, C) = (" +
                                    std::to_string(d.N) + ", OH, OW, " + std::to_string(d.C) + ")");
    if (d.C < 1) throw std::invalid_argument(ctx + ": channel count must be positive");
    check_window_axis(ctx, "height", d.H, d.PH, stride_h, pad_top, d.OH);
    check_window_axis(ctx, "width", d.W, d.PW, stride_w, pad_left, d.OW);
    return d;
}

}  // namespace

void bind_pool2d(py::module_& m) {
    m.def("pool2d_simd_path", &pool2d_simd_path);
    m.def(
        "set_pool2d_simd_path", [](const std::string& name) { return set_pool2d_simd_path(name.c_str()); },
        py::arg("name"));

    // x (N,H,W,C); y (N,OH,OW,C) and argmax (N,OH,OW,C) int32 or None written in place.
    m.def(
        "max_pool2d_forward",
        [](py::array y, const py::object& argmax, const py::array& x, int64_t pool_h,
           int64_t pool_w, int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
           bool naive) {
            const float* px = in_f32(x, "max_pool2d_forward x", 4);
            float* py_ = out_f32(y, "max_pool2d_forward y", 4);
            Pool2dDims d = pool_dims("max_pool2d_forward", x, "x", y, "y", pool_h, pool_w,
                                     stride_h, stride_w, pad_top, pad_left);
            expect_disjoint("max_pool2d_forward", y, "y", x, "x");
            int32_t* pam = nullptr;
            if (!argmax.is_none()) {
                if (!py::isinstance<py::array>(argmax))
                    throw std::invalid_argument("max_pool2d_forward argmax: expected an array or None");
                py::array am = argmax.cast<py::array>();
                pam = out_i32(am, "max_pool2d_forward argmax", 4);
                expect_shape(am, "max_pool2d_forward argmax", {d.N, d.OH, d.OW, d.C});
                if (d.H * d.W * d.C > std::numeric_limits<int32_t>::max())
                    throw std::invalid_argument("max_pool2d_forward: x " + shape_str(x) +
                                                " has more than 2^31-1 elements per sample; "
                                                "int32 argmax cannot index it");
                expect_disjoint("max_pool2d_forward", am, "argmax", x, "x");
                expect_disjoint("max_pool2d_forward", am, "argmax", y, "y");
            }
            auto fn = naive ? &max_pool2d_forward_naive : &max_pool2d_forward;
            py::gil_scoped_release release;
            fn(py_, pam, px, d);
        },
        py::arg("y"), py::arg("argmax"), py::arg("x"), py::arg("pool_h") = 2,
        py::arg("pool_w") = 2, py::arg("stride_h") = 2, py::arg("stride_w") = 2,
        py::arg("pad_top") = 0, py::arg("pad_left") = 0, py::kw_only(), py::arg("naive") = false);

    // dy, argmax (N,OH,OW,C) from max_pool2d_forward; dx (N,H,W,C) overwritten.
    m.def(
        "max_pool2d_backward",
        [](py::array dx, const py::array& dy, const py::array& argmax, int64_t pool_h,
           int64_t pool_w, int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
           bool naive) {
            const float* pdy = in_f32(dy, "max_pool2d_backward dy", 4);
            const int32_t* pam = in_i32(argmax, "max_pool2d_backward argmax", 4);
            float* pdx = out_f32(dx, "max_pool2d_backward dx", 4);
            Pool2dDims d = pool_dims("max_pool2d_backward", dx, "dx", dy, "dy", pool_h, pool_w,
                                     stride_h, stride_w, pad_top, pad_left);
            expect_shape(argmax, "max_pool2d_backward argmax", {d.N, d.OH, d.OW, d.C});
            expect_disjoint("max_pool2d_backward", dx, "dx", dy, "dy");
            expect_disjoint("max_pool2d_backward", dx, "dx", argmax, "argmax");
            auto fn = naive ? &max_pool2d_backward_naive : &max_pool2d_backward;
            int64_t bad;
            {
                py::gil_scoped_release release;
                bad = fn(pdx, pdy, pam, d);
            }
            if (bad)
                throw std::invalid_argument(
                    "max_pool2d_backward: " + std::to_string(bad) +
                    " argmax entries lie outside [0, H*W*C) of dx " + shape_str(dx) +
                    " (argmax must come from max_pool2d_forward on the same shapes)");
        },
        py::arg("dx"), py::arg("dy"), py::arg("argmax"), py::arg("pool_h") = 2,
        py::arg("pool_w") = 2, py::arg("stride_h") = 2, py::arg("stride_w") = 2,
        py::arg("pad_top") = 0, py::arg("pad_left") = 0, py::kw_only(), py::arg("naive") = false);

    // x (N,H,W,C); y (N,OH,OW,C) written in place.
    m.def(
        "avg_pool2d_forward",
        [](py::array y, const py::array& x, int64_t pool_h, int64_t pool_w, int64_t stride_h,
           int64_t stride_w, int64_t pad_top, int64_t pad_left, bool naive) {
            const float* px = in_f32(x, "avg_pool2d_forward x", 4);
            float* py_ = out_f32(y, "avg_pool2d_forward y", 4);
            Pool2dDims d = pool_dims("avg_pool2d_forward", x, "x", y, "y", pool_h, pool_w,
                                     stride_h, stride_w, pad_top, pad_left);
            expect_disjoint("avg_pool2d_forward", y, "y", x, "x");
            auto fn = naive ? &avg_pool2d_forward_naive : &avg_pool2d_forward;
            py::gil_scoped_release release;
            fn(py_, px, d);
        },
        py::arg("y"), py::arg("x"), py::arg("pool_h") = 2, py::arg("pool_w") = 2,
        py::arg("stride_h") = 2, py::arg("stride_w") = 2, py::arg("pad_top") = 0,
        py::arg("pad_left") = 0, py::kw_only(), py::arg("naive") = false);

    // dy (N,OH,OW,C); dx (N,H,W,C) overwritten.
    m.def(
        "avg_pool2d_backward",
        [](py::array dx, const py::array& dy, int64_t pool_h, int64_t pool_w, int64_t stride_h,
           int64_t stride_w, int64_t pad_top, int64_t pad_left, bool naive) {
            const float* pdy = in_f32(dy, "avg_pool2d_backward dy", 4);
            float* pdx = out_f32(dx, "avg_pool2d_backward dx", 4);
            Pool2dDims d = pool_dims("avg_pool2d_backward", dx, "dx", dy, "dy", pool_h, pool_w,
                                     stride_h, stride_w, pad_top, pad_left);
            expect_disjoint("avg_pool2d_backward", dx, "dx", dy, "dy");
            auto fn = naive ? &avg_pool2d_backward_naive : &avg_pool2d_backward;
            py::gil_scoped_release release;
            fn(pdx, pdy, d);
        },
        py::arg("dx"), py::arg("dy"), py::arg("pool_h") = 2, py::arg("pool_w") = 2,
        py::arg("stride_h") = 2, py::arg("stride_w") = 2, py::arg("pad_top") = 0,
        py::arg("pad_left") = 0, py::kw_only(), py::arg("naive") = false);
}

}  // namespace cnnfast::bind
