// Bindings of the training-time random layers: GaussianNoise, SpatialDropout2D (noise.h),
// RandomFlip (random_flip.h) and RandomCrop with its inference resize (random_crop.h).
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bind_util.h"
#include "noise.h"
#include "random_affine.h"
#include "random_crop.h"
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

// Crop dims from x-shaped (N,H,W,C) and y-shaped (N,OH,OW,C) arrays.
CropDims crop_dims(const std::string& op, const py::array& x, const py::array& y) {
    if (x.ndim() != 4 || y.ndim() != 4 || dim(x, 0) != dim(y, 0) || dim(x, 3) != dim(y, 3) ||
        dim(y, 1) < 1 || dim(y, 2) < 1 || dim(y, 1) > dim(x, 1) || dim(y, 2) > dim(x, 2))
        throw std::invalid_argument(op + ": image " + shape_str(x) + " and window " +
                                    shape_str(y) + " must be (N,H,W,C) and (N,OH,OW,C) with "
                                    "1 <= OH <= H, 1 <= OW <= W");
    return {dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), dim(y, 1), dim(y, 2)};
}

FillMode fill_mode_of(const std::string& op, const std::string& name) {
    if (name == "reflect") return FillMode::reflect;
    if (name == "wrap") return FillMode::wrap;
    if (name == "constant") return FillMode::constant;
    if (name == "nearest") return FillMode::nearest;
    throw std::invalid_argument(op + ": fill_mode must be reflect, wrap, constant or nearest, "
                                "got '" + name + "'");
}

bool bilinear_of(const std::string& op, const std::string& name) {
    if (name == "bilinear") return true;
    if (name == "nearest") return false;
    throw std::invalid_argument(op + ": interpolation must be bilinear or nearest, got '" +
                                name + "'");
}

// x (N,H,W,C) and transforms (N,8) float32.
AffineDims affine_dims(const std::string& op, const py::array& x, const py::array& t) {
    if (x.ndim() != 4) throw std::invalid_argument(op + ": x must be (N,H,W,C), got " + shape_str(x));
    const AffineDims d{dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3)};
    expect_shape(t, (op + " transforms").c_str(), {d.N, 8});
    return d;
}

}  // namespace

void bind_noise(py::module_& m) {
    // x, y (N,H,W,C) float32, distinct; transforms (N,8) float32 written: drawn from the seed
    // for kind "translation" (factors [h_lo, h_hi, w_lo, w_hi]) or "rotation" ([lo, hi]).
    m.def(
        "random_affine_transforms",
        [](py::array transforms, const std::string& kind, const std::vector<float>& factors,
           int64_t N, int64_t H, int64_t W, uint64_t seed) {
            const std::string op = "random_affine_transforms";
            float* pt = out_f32(transforms, "random_affine_transforms transforms", 2);
            expect_shape(transforms, "random_affine_transforms transforms", {N, 8});
            const AffineDims d{N, H, W, 1};
            if (kind == "translation" && factors.size() == 4)
                random_translation_transforms(pt, d, factors[0], factors[1], factors[2],
                                              factors[3], seed);
            else if (kind == "rotation" && factors.size() == 2)
                random_rotation_transforms(pt, d, factors[0], factors[1], seed);
            else
                throw std::invalid_argument(op + ": kind translation takes 4 factors, rotation "
                                                 "2; got '" + kind + "' with " +
                                            std::to_string(factors.size()));
        },
        py::arg("transforms"), py::arg("kind"), py::arg("factors"), py::arg("N"), py::arg("H"),
        py::arg("W"), py::arg("seed"));

    // x, y (N,H,W,C) float32, distinct; transforms (N,8) float32.
    m.def(
        "affine_transform_forward",
        [](py::array y, const py::array& x, const py::array& transforms,
           const std::string& fill_mode, const std::string& interpolation, float fill_value) {
            const std::string op = "affine_transform_forward";
            const float* px = in_f32(x, "affine_transform_forward x", 4);
            const float* pt = in_f32(transforms, "affine_transform_forward transforms", 2);
            float* py_ = out_f32(y, "affine_transform_forward y", 4);
            expect_same_shape(op, y, "y", x, "x");
            const AffineDims d = affine_dims(op, x, transforms);
            const FillMode fill = fill_mode_of(op, fill_mode);
            const bool bilinear = bilinear_of(op, interpolation);
            if (px == py_) throw std::invalid_argument(op + ": y must not be x");
            py::gil_scoped_release release;
            affine_transform_forward(py_, px, pt, d, fill, bilinear, fill_value);
        },
        py::arg("y"), py::arg("x"), py::arg("transforms"), py::arg("fill_mode"),
        py::arg("interpolation"), py::arg("fill_value"));

    // dy, dx (N,H,W,C) float32, distinct; transforms (N,8) from the forward.
    m.def(
        "affine_transform_backward",
        [](py::array dx, const py::array& dy, const py::array& transforms,
           const std::string& fill_mode, const std::string& interpolation) {
            const std::string op = "affine_transform_backward";
            const float* pdy = in_f32(dy, "affine_transform_backward dy", 4);
            const float* pt = in_f32(transforms, "affine_transform_backward transforms", 2);
            float* pdx = out_f32(dx, "affine_transform_backward dx", 4);
            expect_same_shape(op, dx, "dx", dy, "dy");
            const AffineDims d = affine_dims(op, dy, transforms);
            const FillMode fill = fill_mode_of(op, fill_mode);
            const bool bilinear = bilinear_of(op, interpolation);
            if (pdx == pdy) throw std::invalid_argument(op + ": dx must not be dy");
            py::gil_scoped_release release;
            affine_transform_backward(pdx, pdy, pt, d, fill, bilinear);
        },
        py::arg("dx"), py::arg("dy"), py::arg("transforms"), py::arg("fill_mode"),
        py::arg("interpolation"));

    // x (N,H,W,C), y (N,OH,OW,C) float32; offsets (2,) int32 written (top, left).
    m.def(
        "random_crop_forward",
        [](py::array y, py::array offsets, const py::array& x, uint64_t seed) {
            const float* px = in_f32(x, "random_crop_forward x", 4);
            float* py_ = out_f32(y, "random_crop_forward y", 4);
            int32_t* po = out_i32(offsets, "random_crop_forward offsets", 1);
            expect_shape(offsets, "random_crop_forward offsets", {2});
            const CropDims d = crop_dims("random_crop_forward", x, y);
            py::gil_scoped_release release;
            random_crop_forward(py_, po, px, d, seed);
        },
        py::arg("y"), py::arg("offsets"), py::arg("x"), py::arg("seed"));

    // dy (N,OH,OW,C), dx (N,H,W,C) float32; offsets (2,) int32 from the forward.
    m.def(
        "random_crop_backward",
        [](py::array dx, const py::array& dy, const py::array& offsets) {
            const float* pdy = in_f32(dy, "random_crop_backward dy", 4);
            float* pdx = out_f32(dx, "random_crop_backward dx", 4);
            const int32_t* po = in_i32(offsets, "random_crop_backward offsets", 1);
            expect_shape(offsets, "random_crop_backward offsets", {2});
            const CropDims d = crop_dims("random_crop_backward", dx, dy);
            if (po[0] < 0 || po[1] < 0 || po[0] > d.H - d.OH || po[1] > d.W - d.OW)
                throw std::invalid_argument("random_crop_backward: offsets out of range");
            py::gil_scoped_release release;
            random_crop_backward(pdx, pdy, po, d);
        },
        py::arg("dx"), py::arg("dy"), py::arg("offsets"));

    // x (N,H,W,C) -> y (N,OH,OW,C) float32, bilinear with half-pixel centres.
    m.def(
        "resize_bilinear_forward",
        [](py::array y, const py::array& x, bool naive) {
            const float* px = in_f32(x, "resize_bilinear_forward x", 4);
            float* py_ = out_f32(y, "resize_bilinear_forward y", 4);
            if (x.ndim() != 4 || y.ndim() != 4 || dim(x, 0) != dim(y, 0) ||
                dim(x, 3) != dim(y, 3) || dim(y, 1) < 1 || dim(y, 2) < 1)
                throw std::invalid_argument("resize_bilinear_forward: x " + shape_str(x) +
                                            " and y " + shape_str(y) +
                                            " must be (N,H,W,C) and (N,OH,OW,C)");
            const CropDims d{dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), dim(y, 1), dim(y, 2)};
            py::gil_scoped_release release;
            (naive ? resize_bilinear_forward_naive : resize_bilinear_forward)(py_, px, d);
        },
        py::arg("y"), py::arg("x"), py::arg("naive") = false);

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
