// Spatial kernels (spatial.h): global pooling, zero padding, cropping, upsampling on NHWC.
#include "bind_util.h"
#include "spatial.h"

namespace cnnfast::bind {

namespace {

void expect_disjoint(const std::string& op, const py::array& a, const char* an,
                     const py::array& b, const char* bn) {
    const char* p = static_cast<const char*>(a.data());
    const char* q = static_cast<const char*>(b.data());
    if (a.nbytes() && b.nbytes() && p < q + b.nbytes() && q < p + a.nbytes())
        throw std::invalid_argument(op + ": " + an + " overlaps " + bn);
}

// x (N,H,W,C); y holds N*C values with N leading: (N,C) or (N,1,1,C).
GlobalPoolDims global_dims(const std::string& op, const py::array& x, const char* xn,
                           const py::array& y, const char* yn) {
    if (x.ndim() != 4)
        throw std::invalid_argument(op + ": " + xn + " must be (N, H, W, C), got " + shape_str(x));
    GlobalPoolDims d{dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3)};
    const bool ok = (y.ndim() == 2 && dim(y, 0) == d.N && dim(y, 1) == d.C) ||
                    (y.ndim() == 4 && dim(y, 0) == d.N && dim(y, 1) == 1 && dim(y, 2) == 1 &&
                     dim(y, 3) == d.C);
    if (!ok)
        throw std::invalid_argument(op + ": " + yn + " must be (" + std::to_string(d.N) + ", " +
                                    std::to_string(d.C) + ") or (N, 1, 1, C) for " + xn + " " +
                                    shape_str(x) + ", got " + shape_str(y));
    if (d.H * d.W < 1 || d.H * d.W > INT32_MAX)
        throw std::invalid_argument(op + ": " + xn + " " + shape_str(x) +
                                    " needs 1 <= H*W <= 2^31-1");
    return d;
}

// small (N,H,W,C) and big (N,H+top+bottom,W+left+right,C).
Pad2dDims pad_dims(const std::string& op, const py::array& small, const py::array& big,
                   int64_t top, int64_t bottom, int64_t left, int64_t right) {
    if (small.ndim() != 4 || big.ndim() != 4)
        throw std::invalid_argument(op + ": arrays must be (N, H, W, C), got " +
                                    shape_str(small) + " and " + shape_str(big));
    if (top < 0 || bottom < 0 || left < 0 || right < 0)
        throw std::invalid_argument(op + ": padding/cropping must be >= 0");
    Pad2dDims d{dim(small, 0), dim(small, 1), dim(small, 2), dim(small, 3), top, bottom, left,
                right};
    expect_shape(big, (op + " padded array").c_str(),
                 {d.N, d.H + top + bottom, d.W + left + right, d.C});
    return d;
}

Upsample2dDims up_dims(const std::string& op, const py::array& small, const py::array& big,
                       int64_t size_h, int64_t size_w) {
    if (small.ndim() != 4)
        throw std::invalid_argument(op + ": arrays must be (N, H, W, C), got " + shape_str(small));
    if (size_h < 1 || size_w < 1)
        throw std::invalid_argument(op + ": size must be >= 1");
    Upsample2dDims d{dim(small, 0), dim(small, 1), dim(small, 2), dim(small, 3), size_h, size_w};
    expect_shape(big, (op + " upsampled array").c_str(), {d.N, d.H * size_h, d.W * size_w, d.C});
    return d;
}

}  // namespace

void bind_spatial(py::module_& m) {
    // x (N,H,W,C); y (N,C) or (N,1,1,C) overwritten with the mean over H, W.
    m.def(
        "global_avg_pool2d_forward",
        [](py::array y, const py::array& x) {
            const float* px = in_f32(x, "global_avg_pool2d_forward x");
            float* py_ = out_f32(y, "global_avg_pool2d_forward y");
            const GlobalPoolDims d = global_dims("global_avg_pool2d_forward", x, "x", y, "y");
            expect_disjoint("global_avg_pool2d_forward", y, "y", x, "x");
            py::gil_scoped_release release;
            global_avg_pool2d_forward(py_, px, d);
        },
        py::arg("y"), py::arg("x"));
    // dy (N,C) or (N,1,1,C); dx (N,H,W,C) overwritten.
    m.def(
        "global_avg_pool2d_backward",
        [](py::array dx, const py::array& dy) {
            const float* pdy = in_f32(dy, "global_avg_pool2d_backward dy");
            float* pdx = out_f32(dx, "global_avg_pool2d_backward dx");
            const GlobalPoolDims d = global_dims("global_avg_pool2d_backward", dx, "dx", dy, "dy");
            expect_disjoint("global_avg_pool2d_backward", dx, "dx", dy, "dy");
            py::gil_scoped_release release;
            global_avg_pool2d_backward(pdx, pdy, d);
        },
        py::arg("dx"), py::arg("dy"));
    // x (N,H,W,C); y (N,C) or (N,1,1,C); argmax int32 like y, or None.
    m.def(
        "global_max_pool2d_forward",
        [](py::array y, const py::object& argmax, const py::array& x) {
            const std::string op = "global_max_pool2d_forward";
            const float* px = in_f32(x, "global_max_pool2d_forward x");
            float* py_ = out_f32(y, "global_max_pool2d_forward y");
            const GlobalPoolDims d = global_dims(op, x, "x", y, "y");
            expect_disjoint(op, y, "y", x, "x");
            int32_t* pam = nullptr;
            if (!argmax.is_none()) {
                if (!py::isinstance<py::array>(argmax))
                    throw std::invalid_argument(op + ": argmax must be a numpy array or None");
                py::array am = argmax.cast<py::array>();
                pam = out_i32(am, "global_max_pool2d_forward argmax");
                global_dims(op, x, "x", am, "argmax");
            }
            py::gil_scoped_release release;
            global_max_pool2d_forward(py_, pam, px, d);
        },
        py::arg("y"), py::arg("argmax"), py::arg("x"));
    // dy, argmax (N,C) or (N,1,1,C) from the forward; dx (N,H,W,C) overwritten.
    m.def(
        "global_max_pool2d_backward",
        [](py::array dx, const py::array& dy, const py::array& argmax) {
            const std::string op = "global_max_pool2d_backward";
            const float* pdy = in_f32(dy, "global_max_pool2d_backward dy");
            const int32_t* pam = in_i32(argmax, "global_max_pool2d_backward argmax");
            float* pdx = out_f32(dx, "global_max_pool2d_backward dx");
            const GlobalPoolDims d = global_dims(op, dx, "dx", dy, "dy");
            global_dims(op, dx, "dx", argmax, "argmax");
            expect_disjoint(op, dx, "dx", dy, "dy");
            for (int64_t i = 0; i < d.N * d.C; ++i)
                if (pam[i] < 0 || pam[i] >= d.H * d.W)
                    throw std::invalid_argument(op + ": argmax entry " + std::to_string(pam[i]) +
                                                " lies outside [0, H*W) of dx " + shape_str(dx));
            py::gil_scoped_release release;
            global_max_pool2d_backward(pdx, pdy, pam, d);
        },
        py::arg("dx"), py::arg("dy"), py::arg("argmax"));
    // small (N,H,W,C); big (N,H+top+bottom,W+left+right,C) overwritten.
    m.def(
        "zero_pad2d",
        [](py::array big, const py::array& small, int64_t top, int64_t bottom, int64_t left,
           int64_t right) {
            const float* ps = in_f32(small, "zero_pad2d small");
            float* pb = out_f32(big, "zero_pad2d big");
            const Pad2dDims d = pad_dims("zero_pad2d", small, big, top, bottom, left, right);
            expect_disjoint("zero_pad2d", big, "big", small, "small");
            py::gil_scoped_release release;
            zero_pad2d(pb, ps, d);
        },
        py::arg("big"), py::arg("small"), py::arg("top"), py::arg("bottom"), py::arg("left"),
        py::arg("right"));
    // big (N,H+top+bottom,W+left+right,C); small (N,H,W,C) overwritten.
    m.def(
        "crop2d",
        [](py::array small, const py::array& big, int64_t top, int64_t bottom, int64_t left,
           int64_t right) {
            const float* pb = in_f32(big, "crop2d big");
            float* ps = out_f32(small, "crop2d small");
            const Pad2dDims d = pad_dims("crop2d", small, big, top, bottom, left, right);
            expect_disjoint("crop2d", small, "small", big, "big");
            py::gil_scoped_release release;
            crop2d(ps, pb, d);
        },
        py::arg("small"), py::arg("big"), py::arg("top"), py::arg("bottom"), py::arg("left"),
        py::arg("right"));
    // x (N,H,W,C); y (N,H*size_h,W*size_w,C) overwritten.
    m.def(
        "upsample2d_nearest_forward",
        [](py::array y, const py::array& x, int64_t size_h, int64_t size_w) {
            const float* px = in_f32(x, "upsample2d_nearest_forward x");
            float* py_ = out_f32(y, "upsample2d_nearest_forward y");
            const Upsample2dDims d = up_dims("upsample2d_nearest_forward", x, y, size_h, size_w);
            expect_disjoint("upsample2d_nearest_forward", y, "y", x, "x");
            py::gil_scoped_release release;
            upsample2d_nearest_forward(py_, px, d);
        },
        py::arg("y"), py::arg("x"), py::arg("size_h"), py::arg("size_w"));
    // dy (N,H*size_h,W*size_w,C); dx (N,H,W,C) overwritten.
    m.def(
        "upsample2d_nearest_backward",
        [](py::array dx, const py::array& dy, int64_t size_h, int64_t size_w) {
            const float* pdy = in_f32(dy, "upsample2d_nearest_backward dy");
            float* pdx = out_f32(dx, "upsample2d_nearest_backward dx");
            const Upsample2dDims d = up_dims("upsample2d_nearest_backward", dx, dy, size_h, size_w);
            expect_disjoint("upsample2d_nearest_backward", dx, "dx", dy, "dy");
            py::gil_scoped_release release;
            upsample2d_nearest_backward(pdx, pdy, d);
        },
        py::arg("dx"), py::arg("dy"), py::arg("size_h"), py::arg("size_w"));
}

}  // namespace cnnfast::bind
