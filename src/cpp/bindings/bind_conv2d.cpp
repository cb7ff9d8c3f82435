#include "bind_util.h"
#include "bind_window.h"
#include "conv2d.h"
#include "dense.h"

namespace cnnfast::bind {

namespace {

// Optional float32 array argument: nullptr for None.
const float* opt_in_f32(const py::object& o, const char* what, int ndim) {
    if (o.is_none()) return nullptr;
    if (!py::isinstance<py::array>(o))
        throw std::invalid_argument(std::string(what) + ": expected a numpy array or None");
    return in_f32(o.cast<py::array>(), what, ndim);
}
float* opt_out_f32(const py::object& o, const char* what, int ndim) {
    if (o.is_none()) return nullptr;
    if (!py::isinstance<py::array>(o))
        throw std::invalid_argument(std::string(what) + ": expected a numpy array or None");
    py::array a = o.cast<py::array>();
    return out_f32(a, what, ndim);
}

// Dims of a convolution from its three 4-D arrays: `x` (N,H,W,C)-shaped (x or dx), `w`
// (KH,KW,C/groups,K)-shaped (w or dw), `y` (N,OH,OW,K)-shaped (y or dy). Validates that they fit.
Conv2dDims conv_dims(const char* op, const py::array& x, const char* xn, const py::array& w,
                     const char* wn, const py::array& y, const char* yn, int64_t stride_h,
                     int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t groups,
                     int64_t dilation_h, int64_t dilation_w) {
    const std::string ctx = std::string(op) + " with " + xn + " " + shape_str(x) + ", " + wn +
                            " " + shape_str(w) + ", " + yn + " " + shape_str(y);
    for (const py::array* a : {&x, &w, &y})
        if (a->ndim() != 4) throw std::invalid_argument(ctx + ": every array must be 4-D");
    Conv2dDims d{dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), dim(w, 0), dim(w, 1), dim(w, 3),
                 dim(y, 1), dim(y, 2), stride_h, stride_w, pad_top, pad_left, groups,
                 dilation_h, dilation_w};
    if (dilation_h < 1 || dilation_w < 1)
        throw std::invalid_argument(ctx + ": dilation must be >= 1, got (" +
                                    std::to_string(dilation_h) + ", " +
                                    std::to_string(dilation_w) + ")");
    if (groups < 1) throw std::invalid_argument(ctx + ": groups must be >= 1, got " +
                                                std::to_string(groups));
    if (d.C < 1 || d.K < 1 || dim(w, 2) < 1)
        throw std::invalid_argument(ctx + ": channel counts must be positive");
    if (dim(w, 2) * groups != d.C)
        throw std::invalid_argument(ctx + ": kernel input channels " + std::to_string(dim(w, 2)) +
                                    " x groups " + std::to_string(groups) +
                                    " must equal the input channels " + std::to_string(d.C));
    if (d.K % groups)
        throw std::invalid_argument(ctx + ": groups " + std::to_string(groups) +
                                    " must divide the output channels " + std::to_string(d.K));
    if (dim(y, 0) != d.N || dim(y, 3) != d.K)
        throw std::invalid_argument(ctx + ": " + yn + " must be (N, OH, OW, K) = (" +
                                    std::to_string(d.N) + ", OH, OW, " + std::to_string(d.K) + ")");
    // A dilated kernel spans (K - 1) * dilation + 1 input positions.
    check_window_axis(ctx, "height", d.H, (d.KH - 1) * dilation_h + 1, stride_h, pad_top, d.OH);
    check_window_axis(ctx, "width", d.W, (d.KW - 1) * dilation_w + 1, stride_w, pad_left, d.OW);
    return d;
}

// Fused activation name -> relu flag ("linear" / "relu" only).
bool parse_activation(const char* op, const std::string& activation) {
    if (activation == "relu") return true;
    if (activation == "linear") return false;
    throw std::invalid_argument(std::string(op) + ": activation must be \"linear\" or \"relu\", got \"" +
                                activation + "\"");
}

void check_bias(const std::string& op, const py::object& b, const char* name, int64_t K) {
    if (b.is_none()) return;
    expect_shape(b.cast<py::array>(), (op + " " + name).c_str(), {K});
}

}  // namespace

void bind_conv2d(py::module_& m) {
    // x (N,H,W,C); w (KH,KW,C/groups,K); b (K,) or None; y (N,OH,OW,K) written in place, then
    // the activation (any Keras name; alpha is ELU's) applied.
    m.def(
        "conv2d_forward",
        [](py::array y, const py::array& x, const py::array& w, const py::object& b,
           int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t groups,
           int64_t dilation_h, int64_t dilation_w, bool naive, const std::string& activation,
           float alpha) {
            const Activation act = activation_kind(activation, "conv2d_forward");
            const float* px = in_f32(x, "conv2d_forward x", 4);
            const float* pw = in_f32(w, "conv2d_forward w", 4);
            const float* pb = opt_in_f32(b, "conv2d_forward b", 1);
            float* py_ = out_f32(y, "conv2d_forward y", 4);
            Conv2dDims d = conv_dims("conv2d_forward", x, "x", w, "w", y, "y", stride_h, stride_w,
                                     pad_top, pad_left, groups, dilation_h, dilation_w);
            check_bias("conv2d_forward", b, "b", d.K);
            expect_disjoint("conv2d_forward", y, "y", x, "x");
            expect_disjoint("conv2d_forward", y, "y", w, "w");
            py::gil_scoped_release release;
            if (!naive) return conv2d_forward(py_, px, pw, pb, d, act, alpha);
            conv2d_forward_naive(py_, px, pw, pb, d, act == Activation::relu);
            if (act != Activation::relu && act != Activation::linear)
                activation_forward_naive(py_, py_, d.N * d.OH * d.OW * d.K, act, alpha);
        },
        py::arg("y"), py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride_h") = 1,
        py::arg("stride_w") = 1, py::arg("pad_top") = 0, py::arg("pad_left") = 0,
        py::arg("groups") = 1, py::arg("dilation_h") = 1, py::arg("dilation_w") = 1,
        py::kw_only(), py::arg("naive") = false, py::arg("activation") = "linear",
        py::arg("alpha") = 1.0f);

    // Force the convolution algorithm ("auto", "im2col", "direct", "winograd", "streamed");
    // False if unknown or unavailable.
    m.def("set_conv2d_algorithm",
          [](const std::string& name) { return set_conv2d_algorithm(name.c_str()); },
          py::arg("name"));
    m.def("conv2d_algorithm", [] { return std::string(conv2d_algorithm()); });

    // dy (N,OH,OW,K); w (KH,KW,C/groups,K); dx (N,H,W,C) overwritten.
    m.def(
        "conv2d_backward_data",
        [](py::array dx, const py::array& dy, const py::array& w, int64_t stride_h,
           int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t groups,
           int64_t dilation_h, int64_t dilation_w, bool naive) {
            const float* pdy = in_f32(dy, "conv2d_backward_data dy", 4);
            const float* pw = in_f32(w, "conv2d_backward_data w", 4);
            float* pdx = out_f32(dx, "conv2d_backward_data dx", 4);
            Conv2dDims d = conv_dims("conv2d_backward_data", dx, "dx", w, "w", dy, "dy", stride_h,
                                     stride_w, pad_top, pad_left, groups, dilation_h, dilation_w);
            expect_disjoint("conv2d_backward_data", dx, "dx", dy, "dy");
            expect_disjoint("conv2d_backward_data", dx, "dx", w, "w");
            auto fn = naive ? &conv2d_backward_data_naive : &conv2d_backward_data;
            py::gil_scoped_release release;
            fn(pdx, pdy, pw, d);
        },
        py::arg("dx"), py::arg("dy"), py::arg("w"), py::arg("stride_h") = 1,
        py::arg("stride_w") = 1, py::arg("pad_top") = 0, py::arg("pad_left") = 0,
        py::arg("groups") = 1, py::arg("dilation_h") = 1, py::arg("dilation_w") = 1,
        py::kw_only(), py::arg("naive") = false);

    // x (N,H,W,C); dy (N,OH,OW,K); dw (KH,KW,C/groups,K) and db (K,) or None overwritten.
    m.def(
        "conv2d_backward_weights",
        [](py::array dw, const py::object& db, const py::array& x, const py::array& dy,
           int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t groups,
           int64_t dilation_h, int64_t dilation_w, bool naive) {
            const float* px = in_f32(x, "conv2d_backward_weights x", 4);
            const float* pdy = in_f32(dy, "conv2d_backward_weights dy", 4);
            float* pdw = out_f32(dw, "conv2d_backward_weights dw", 4);
            float* pdb = opt_out_f32(db, "conv2d_backward_weights db", 1);
            Conv2dDims d = conv_dims("conv2d_backward_weights", x, "x", dw, "dw", dy, "dy",
                                     stride_h, stride_w, pad_top, pad_left, groups, dilation_h,
                                     dilation_w);
            check_bias("conv2d_backward_weights", db, "db", d.K);
            expect_disjoint("conv2d_backward_weights", dw, "dw", x, "x");
            expect_disjoint("conv2d_backward_weights", dw, "dw", dy, "dy");
            if (pdb) {
                const py::array dba = db.cast<py::array>();
                expect_disjoint("conv2d_backward_weights", dba, "db", dy, "dy");
                expect_disjoint("conv2d_backward_weights", dba, "db", dw, "dw");
            }
            auto fn = naive ? &conv2d_backward_weights_naive : &conv2d_backward_weights;
            py::gil_scoped_release release;
            fn(pdw, pdb, px, pdy, d);
        },
        py::arg("dw"), py::arg("db"), py::arg("x"), py::arg("dy"), py::arg("stride_h") = 1,
        py::arg("stride_w") = 1, py::arg("pad_top") = 0, py::arg("pad_left") = 0,
        py::arg("groups") = 1, py::arg("dilation_h") = 1, py::arg("dilation_w") = 1,
        py::kw_only(), py::arg("naive") = false);

    // Floats of per-thread im2col scratch a conv of these sizes uses (0: none).
    m.def(
        "conv2d_workspace_size",
        [](int64_t N, int64_t H, int64_t W, int64_t C, int64_t KH, int64_t KW, int64_t K,
           int64_t OH, int64_t OW, int64_t stride_h, int64_t stride_w, int64_t pad_top,
           int64_t pad_left, int64_t groups, int64_t dilation_h, int64_t dilation_w) {
            return conv2d_workspace_size({N, H, W, C, KH, KW, K, OH, OW, stride_h, stride_w,
                                          pad_top, pad_left, groups, dilation_h, dilation_w});
        },
        py::arg("N"), py::arg("H"), py::arg("W"), py::arg("C"), py::arg("KH"), py::arg("KW"),
        py::arg("K"), py::arg("OH"), py::arg("OW"), py::arg("stride_h") = 1,
        py::arg("stride_w") = 1, py::arg("pad_top") = 0, py::arg("pad_left") = 0,
        py::arg("groups") = 1, py::arg("dilation_h") = 1, py::arg("dilation_w") = 1);

    // x (N,IN); w (IN,OUT); b (OUT,) or None; y (N,OUT) written in place.
    m.def(
        "dense_forward",
        [](py::array y, const py::array& x, const py::array& w, const py::object& b, bool naive,
           const std::string& activation) {
            const bool relu = parse_activation("dense_forward", activation);
            const float* px = in_f32(x, "dense_forward x", 2);
            const float* pw = in_f32(w, "dense_forward w", 2);
            const float* pb = opt_in_f32(b, "dense_forward b", 1);
            float* py_ = out_f32(y, "dense_forward y", 2);
            const DenseDims d{dim(x, 0), dim(x, 1), dim(w, 1)};
            if (dim(w, 0) != d.IN)
                throw std::invalid_argument("dense_forward: x " + shape_str(x) + " and w " +
                                            shape_str(w) + " disagree on the input features");
            expect_shape(y, "dense_forward y", {d.N, d.OUT});
            check_bias("dense_forward", b, "b", d.OUT);
            expect_disjoint("dense_forward", y, "y", x, "x");
            expect_disjoint("dense_forward", y, "y", w, "w");
            auto fn = naive ? &dense_forward_naive : &dense_forward;
            py::gil_scoped_release release;
            fn(py_, px, pw, pb, d, relu);
        },
        py::arg("y"), py::arg("x"), py::arg("w"), py::arg("b"), py::kw_only(),
        py::arg("naive") = false, py::arg("activation") = "linear");

    // x (N,IN); w (IN,OUT); dy (N,OUT); dx (N,IN) or None, dw (IN,OUT), db (OUT,) or None overwritten.
    m.def(
        "dense_backward",
        [](const py::object& dx, py::array dw, const py::object& db, const py::array& x,
           const py::array& w, const py::array& dy, bool naive) {
            const float* px = in_f32(x, "dense_backward x", 2);
            const float* pw = in_f32(w, "dense_backward w", 2);
            const float* pdy = in_f32(dy, "dense_backward dy", 2);
            float* pdx = opt_out_f32(dx, "dense_backward dx", 2);
            float* pdw = out_f32(dw, "dense_backward dw", 2);
            float* pdb = opt_out_f32(db, "dense_backward db", 1);
            const DenseDims d{dim(x, 0), dim(x, 1), dim(w, 1)};
            if (dim(w, 0) != d.IN)
                throw std::invalid_argument("dense_backward: x " + shape_str(x) + " and w " +
                                            shape_str(w) + " disagree on the input features");
            expect_shape(dy, "dense_backward dy", {d.N, d.OUT});
            expect_shape(dw, "dense_backward dw", {d.IN, d.OUT});
            if (pdx) expect_shape(dx.cast<py::array>(), "dense_backward dx", {d.N, d.IN});
            check_bias("dense_backward", db, "db", d.OUT);
            const std::string ctx = "dense_backward";
            for (const py::object* o : {&dx, &db}) {
                if (o->is_none()) continue;
                const py::array a = o->cast<py::array>();
                expect_disjoint(ctx, a, "dx/db", dy, "dy");
                expect_disjoint(ctx, a, "dx/db", dw, "dw");
            }
            expect_disjoint(ctx, dw, "dw", x, "x");
            expect_disjoint(ctx, dw, "dw", dy, "dy");
            if (pdx) {
                const py::array dxa = dx.cast<py::array>();
                expect_disjoint(ctx, dxa, "dx", w, "w");
                expect_disjoint(ctx, dxa, "dx", x, "x");
            }
            auto fn = naive ? &dense_backward_naive : &dense_backward;
            py::gil_scoped_release release;
            fn(pdx, pdw, pdb, px, pw, pdy, d);
        },
        py::arg("dx"), py::arg("dw"), py::arg("db"), py::arg("x"), py::arg("w"), py::arg("dy"),
        py::kw_only(), py::arg("naive") = false);
}

}  // namespace cnnfast::bind
