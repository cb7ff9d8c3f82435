// Bindings of the training-time random layers: GaussianNoise, SpatialDropout2D (noise.h) and
// RandomFlip (random_flip.h).
#include <string>

#include "bind_util.h"
#include "noise.h"
#include "random_flip.h"

namespace cnnfast::bind {

namespace {

void expect_same_shape(const std::string& op, const py::array& a, const char* an,
                       const py::array& b, const char* bn) {
    bool same = a.ndim() == b.ndim();
    for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
    if (!same)
        throw std::invalid_argument(op + ": " + an + " " + shape_str(a) + " and " + bn + " " +
                                    shape_str(b) + " must have the same shape");
}

uint8_t* u8_buffer(py::array& a, const std::string& what, std::initializer_list<int64_t> dims) {
    if (a.dtype().kind() != 'u' || a.itemsize() != 1 || !(a.flags() & py::array::c_style) ||
        !a.writeable())
        throw std::invalid_argument(what + ": expected a writable C-contiguous uint8 array");
    expect_shape(a, what.c_str(), dims);
    return static_cast<uint8_t*>(a.mutable_data());
}

void check_rate(const std::string& op, double rate) {
    if (!(rate >= 0.0 && rate < 1.0))
        throw std::invalid_argument(op + ": rate must be in [0, 1), got " + std::to_string(rate));
}

}  // namespace

void bind_noise(py::module_& m) {
    // x, y float32 (same shape); y = x + stddev * N(0, 1) from the seed. y may be x.
    m.def(
        "gaussian_noise_forward",
        [](py::array y, const py::array& x, double stddev, uint64_t seed, bool naive) {
            const float* px = in_f32(x, "gaussian_noise_forward x");
            float* py_ = out_f32(y, "gaussian_noise_forward y");
            expect_same_shape("gaussian_noise_forward", y, "y", x, "x");
            if (!(stddev >= 0.0) || !std::isfinite(stddev))
                throw std::invalid_argument("gaussian_noise_forward: stddev must be finite and "
                                            ">= 0, got " + std::to_string(stddev));
            const int64_t n = static_cast<int64_t>(x.size());
            py::gil_scoped_release release;
            (naive ? gaussian_noise_forward_naive : gaussian_noise_forward)(py_, px, n, stddev,
                                                                            seed);
        },
        py::arg("y"), py::arg("x"), py::arg("stddev"), py::arg("seed"), py::arg("naive") = false);

    // x, y (N,H,W,C) float32; mask (N,C) uint8. y may be x.
    m.def(
        "spatial_dropout_forward",
        [](py::array y, py::array mask, const py::array& x, double rate, uint64_t seed,
           bool naive) {
            const std::string op = "spatial_dropout_forward";
            const float* px = in_f32(x, "spatial_dropout_forward x", 4);
            float* py_ = out_f32(y, "spatial_dropout_forward y", 4);
            expect_same_shape(op, y, "y", x, "x");
            const int64_t N = dim(x, 0), HW = dim(x, 1) * dim(x, 2), C = dim(x, 3);
            uint8_t* pm = u8_buffer(mask, op + " mask", {N, C});
            check_rate(op, rate);
            py::gil_scoped_release release;
            (naive ? spatial_dropout_forward_naive : spatial_dropout_forward)(py_, pm, px, N, HW,
                                                                              C, rate, seed);
        },
        py::arg("y"), py::arg("mask"), py::arg("x"), py::arg("rate"), py::arg("seed"),
        py::arg("naive") = false);

    // dx, dy (N,H,W,C) float32; mask (N,C) uint8 from the forward. dx may be dy.
    m.def(
        "spatial_dropout_backward",
        [](py::array dx, const py::array& dy, py::array mask, double rate) {
            const std::string op = "spatial_dropout_backward";
            const float* pdy = in_f32(dy, "spatial_dropout_backward dy", 4);
            float* pdx = out_f32(dx, "spatial_dropout_backward dx", 4);
            expect_same_shape(op, dx, "dx", dy, "dy");
            const int64_t N = dim(dy, 0), HW = dim(dy, 1) * dim(dy, 2), C = dim(dy, 3);
            const uint8_t* pm = u8_buffer(mask, op + " mask", {N, C});
            check_rate(op, rate);
            py::gil_scoped_release release;
            spatial_dropout_backward(pdx, pdy, pm, N, HW, C, rate);
        },
        py::arg("dx"), py::arg("dy"), py::arg("mask"), py::arg("rate"));

    // x, y (N,H,W,C) float32, distinct; flips (N,) uint8 written; mode 1 horizontal, 2
    // vertical, 3 both.
    m.def(
        "random_flip_forward",
        [](py::array y, py::array flips, const py::array& x, int mode, uint64_t seed) {
            const std::string op = "random_flip_forward";
            const float* px = in_f32(x, "random_flip_forward x", 4);
            float* py_ = out_f32(y, "random_flip_forward y", 4);
            expect_same_shape(op, y, "y", x, "x");
            if (mode < 1 || mode > 3)
                throw std::invalid_argument(op + ": mode must be 1, 2 or 3, got " +
                                            std::to_string(mode));
            if (px == py_) throw std::invalid_argument(op + ": y must not be x");
            const int64_t N = dim(x, 0);
            uint8_t* pf = u8_buffer(flips, op + " flips", {N});
            py::gil_scoped_release release;
            random_flip_forward(py_, pf, px, N, dim(x, 1), dim(x, 2), dim(x, 3), mode, seed);
        },
        py::arg("y"), py::arg("flips"), py::arg("x"), py::arg("mode"), py::arg("seed"));

    // dx, dy (N,H,W,C) float32, distinct; flips (N,) uint8 from the forward.
    m.def(
        "random_flip_backward",
        [](py::array dx, const py::array& dy, py::array flips) {
            const std::string op = "random_flip_backward";
            const float* pdy = in_f32(dy, "random_flip_backward dy", 4);
            float* pdx = out_f32(dx, "random_flip_backward dx", 4);
            expect_same_shape(op, dx, "dx", dy, "dy");
            if (pdx == pdy) throw std::invalid_argument(op + ": dx must not be dy");
            const int64_t N = dim(dy, 0);
            const uint8_t* pf = u8_buffer(flips, op + " flips", {N});
            py::gil_scoped_release release;
            random_flip_backward(pdx, pdy, pf, N, dim(dy, 1), dim(dy, 2), dim(dy, 3));
        },
        py::arg("dx"), py::arg("dy"), py::arg("flips"));
}

}  // namespace cnnfast::bind
