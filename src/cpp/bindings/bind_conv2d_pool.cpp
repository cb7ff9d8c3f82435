// Bindings of the fused first block, Conv2D + ReLU + 2x2 max pooling (conv2d_pool.h).
#include "bind_util.h"
#include "bind_window.h"
#include "conv2d_pool.h"

namespace cnnfast::bind {

namespace {

// Dims of the fused block from x (N,H,W,C), w (KH,KW,C,K) and a pooled (N,PH,PW,K) array;
// the convolution is "valid" with stride 1, so PH = (H-KH+1)/2 and PW = (W-KW+1)/2.
Conv2dDims fused_dims(const char* op, const py::array& x, const py::array& w,
                      const py::array& pooled, const char* pn) {
    const std::string ctx = std::string(op) + " with x " + shape_str(x) + ", w " + shape_str(w) +
                            ", " + pn + " " + shape_str(pooled);
    for (const py::array* a : {&x, &w, &pooled})
        if (a->ndim() != 4) throw std::invalid_argument(ctx + ": every array must be 4-D");
    Conv2dDims d{dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), dim(w, 0), dim(w, 1), dim(w, 3),
                 dim(x, 1) - dim(w, 0) + 1, dim(x, 2) - dim(w, 1) + 1, 1, 1, 0, 0, 1};
    if (dim(w, 2) != d.C)
        throw std::invalid_argument(ctx + ": kernel input channels must equal x's " +
                                    std::to_string(d.C));
    if (d.KH < 1 || d.KW < 1 || d.OH < 2 || d.OW < 2)
        throw std::invalid_argument(ctx + ": the kernel must fit x with at least a 2x2 output");
    expect_shape(pooled, (std::string(op) + " " + pn).c_str(), {d.N, d.OH / 2, d.OW / 2, d.K});
    if (!conv2d_relu_maxpool_supported(d))
        throw std::invalid_argument(ctx + ": not supported here (needs the AVX-512 kernels); "
                                          "run the layers unfused");
    return d;
}

}  // namespace

void bind_conv2d_pool(py::module_& m) {
    // Whether the fused kernels take a batch of x (N,H,W,C) with kernel (KH,KW,C,K).
    m.def(
        "conv2d_relu_maxpool_supported",
        [](int64_t N, int64_t H, int64_t W, int64_t C, int64_t KH, int64_t KW, int64_t K) {
            const Conv2dDims d{N, H, W, C, KH, KW, K, H - KH + 1, W - KW + 1, 1, 1, 0, 0, 1};
            return N > 0 && KH > 0 && KW > 0 && conv2d_relu_maxpool_supported(d);
        },
        py::arg("n"), py::arg("h"), py::arg("w"), py::arg("c"), py::arg("kh"), py::arg("kw"),
        py::arg("k"));

    // x (N,H,W,C); w (KH,KW,C,K); b (K,) or None; y and which (N,PH,PW,K) written in place.
    m.def(
        "conv2d_relu_maxpool_forward",
        [](py::array y, py::array which, const py::array& x, const py::array& w,
           const py::object& b) {
            const char* op = "conv2d_relu_maxpool_forward";
            const float* px = in_f32(x, "conv2d_relu_maxpool_forward x", 4);
            const float* pw = in_f32(w, "conv2d_relu_maxpool_forward w", 4);
            float* py_ = out_f32(y, "conv2d_relu_maxpool_forward y", 4);
            int32_t* pwh = out_i32(which, "conv2d_relu_maxpool_forward which", 4);
            const Conv2dDims d = fused_dims(op, x, w, y, "y");
            expect_shape(which, "conv2d_relu_maxpool_forward which",
                         {d.N, d.OH / 2, d.OW / 2, d.K});
            const float* pb = nullptr;
            if (!b.is_none()) {
                const py::array ba = b.cast<py::array>();
                pb = in_f32(ba, "conv2d_relu_maxpool_forward b", 1);
                expect_shape(ba, "conv2d_relu_maxpool_forward b", {d.K});
            }
            expect_disjoint(op, y, "y", x, "x");
            expect_disjoint(op, which, "which", x, "x");
            expect_disjoint(op, which, "which", y, "y");
            py::gil_scoped_release release;
            conv2d_relu_maxpool_forward(py_, pwh, px, pw, pb, d);
        },
        py::arg("y"), py::arg("which"), py::arg("x"), py::arg("w"), py::arg("b"));

    // dy, y, which (N,PH,PW,K) from the forward; dw (KH,KW,C,K) and db (K,) or None overwritten.
    m.def(
        "conv2d_relu_maxpool_backward_weights",
        [](py::array dw, const py::object& db, const py::array& x, const py::array& dy,
           const py::array& y, const py::array& which) {
            const char* op = "conv2d_relu_maxpool_backward_weights";
            const float* px = in_f32(x, "conv2d_relu_maxpool_backward_weights x", 4);
            const float* pdy = in_f32(dy, "conv2d_relu_maxpool_backward_weights dy", 4);
            const float* py_ = in_f32(y, "conv2d_relu_maxpool_backward_weights y", 4);
            const int32_t* pwh = in_i32(which, "conv2d_relu_maxpool_backward_weights which", 4);
            float* pdw = out_f32(dw, "conv2d_relu_maxpool_backward_weights dw", 4);
            const Conv2dDims d = fused_dims(op, x, dw, dy, "dy");
            expect_shape(y, "conv2d_relu_maxpool_backward_weights y",
                         {d.N, d.OH / 2, d.OW / 2, d.K});
            expect_shape(which, "conv2d_relu_maxpool_backward_weights which",
                         {d.N, d.OH / 2, d.OW / 2, d.K});
            float* pdb = nullptr;
            if (!db.is_none()) {
                py::array dba = db.cast<py::array>();
                pdb = out_f32(dba, "conv2d_relu_maxpool_backward_weights db", 1);
                expect_shape(dba, "conv2d_relu_maxpool_backward_weights db", {d.K});
                expect_disjoint(op, dba, "db", dw, "dw");
            }
            for (const py::array* a : {&x, &dy, &y, &which})
                expect_disjoint(op, dw, "dw", *a, "an input");
            py::gil_scoped_release release;
            conv2d_relu_maxpool_backward_weights(pdw, pdb, px, pdy, py_, pwh, d);
        },
        py::arg("dw"), py::arg("db"), py::arg("x"), py::arg("dy"), py::arg("y"), py::arg("which"));
}

}  // namespace cnnfast::bind
