// The int8 inference kernels (quantized.h): quantization of activations, and the int8
// convolution and dense layers with their fused float epilogue, beside their naive loops. The
// kernels here take the unpacked int8 weights and pack them per call (Int8PackedKernel); the
// Network's int8 steps pack theirs once.
#include <cmath>
#include <functional>

#include "bind_util.h"
#include "bind_window.h"
#include "quantized.h"
#include "quantized_simd.h"

namespace cnnfast::bind {

namespace {

const float* opt_bias(const py::object& b, const std::string& op, int64_t K) {
    if (b.is_none()) return nullptr;
    if (!py::isinstance<py::array>(b))
        throw std::invalid_argument(op + " bias: expected a numpy array or None");
    const py::array a = b.cast<py::array>();
    const float* p = in_f32(a, (op + " bias").c_str(), 1);
    expect_shape(a, (op + " bias").c_str(), {K});
    return p;
}

void check_zero_point(const std::string& op, int32_t zero_point, float scale) {
    if (zero_point < 0 || zero_point > 255)
        throw std::invalid_argument(op + ": x_zero_point must be in [0, 255], got " +
                                    std::to_string(zero_point));
    if (!(scale > 0.0f) || !std::isfinite(scale))
        throw std::invalid_argument(op + ": x_scale must be positive and finite, got " +
                                    std::to_string(scale));
}

// Dims of an int8 convolution from xq (N,H,W,C), w (KH,KW,C,K) and out (N,OH,OW,K).
Conv2dDims int8_conv_dims(const std::string& op, const py::array& xq, const py::array& w,
                          const py::array& out, int64_t stride_h, int64_t stride_w,
                          int64_t pad_top, int64_t pad_left, int64_t dilation_h,
                          int64_t dilation_w) {
    const std::string ctx = op + " with xq " + shape_str(xq) + ", w " + shape_str(w) + ", out " +
                            shape_str(out);
    if (xq.ndim() != 4 || w.ndim() != 4 || out.ndim() != 4)
        throw std::invalid_argument(ctx + ": every array must be 4-D");
    const Conv2dDims d{dim(xq, 0), dim(xq, 1), dim(xq, 2), dim(xq, 3), dim(w, 0), dim(w, 1),
                       dim(w, 3), dim(out, 1), dim(out, 2), stride_h, stride_w, pad_top,
                       pad_left, 1, dilation_h, dilation_w};
    if (dim(w, 2) != d.C || d.C < 1 || d.K < 1)
        throw std::invalid_argument(ctx + ": w must be (KH, KW, C, K) with C = " +
                                    std::to_string(d.C) + " (one group) and K >= 1");
    if (dim(out, 0) != d.N || dim(out, 3) != d.K)
        throw std::invalid_argument(ctx + ": out must be (N, OH, OW, K) = (" +
                                    std::to_string(d.N) + ", OH, OW, " + std::to_string(d.K) +
                                    ")");
    if (dilation_h < 1 || dilation_w < 1)
        throw std::invalid_argument(ctx + ": dilation must be >= 1");
    check_window_axis(ctx, "height", d.H, (d.KH - 1) * dilation_h + 1, stride_h, pad_top, d.OH);
    check_window_axis(ctx, "width", d.W, (d.KW - 1) * dilation_w + 1, stride_w, pad_left, d.OW);
    return d;
}

DenseDims int8_dense_dims(const std::string& op, const py::array& xq, const py::array& w,
                          const py::array& out) {
    if (xq.ndim() != 2 || w.ndim() != 2 || out.ndim() != 2 || dim(w, 0) != dim(xq, 1) ||
        dim(out, 0) != dim(xq, 0) || dim(out, 1) != dim(w, 1))
        throw std::invalid_argument(op + ": expected xq (N, IN), w (IN, OUT), out (N, OUT); " +
                                    "got xq " + shape_str(xq) + ", w " + shape_str(w) +
                                    ", out " + shape_str(out));
    return DenseDims{dim(xq, 0), dim(xq, 1), dim(w, 1)};
}

// The kernels of one int8 layer on its checked dims, for run_int8_layer.
struct Int8LayerCalls {
    std::function<void(int32_t*)> sums_naive;
    std::function<void(int32_t*, const Int8PackedKernel&)> sums;
    std::function<void(float*, const Int8Epilogue&)> forward_naive;
    std::function<void(float*, const Int8PackedKernel&, const Int8Epilogue&)> forward;
    std::function<void(uint8_t*, const Int8PackedKernel&, const Int8Epilogue&,
                       const Int8Output&)> forward_u8;
};

// What conv2d_forward_int8 and dense_forward_int8 share once their dims are checked: out
// (ndim-D) gets the exact int32 sums (sums), uint8 in the next layer's quantization (y_scale
// given), or float32 by the epilogue; the weights w (rows = KH*KW*C or IN, cols = K or OUT) are
// packed per call.
void run_int8_layer(const std::string& op, py::array& out, int ndim, const int8_t* pw,
                    int64_t rows, int64_t cols, const py::array& w_scale, const py::object& b,
                    float x_scale, int32_t x_zero_point, bool relu, bool sums, bool naive,
                    const py::object& y_scale, int32_t y_zero_point, const Int8LayerCalls& k) {
    const std::string out_name = op + " out";
    if (sums) {
        int32_t* ps = out_i32(out, out_name.c_str(), ndim);
        py::gil_scoped_release release;
        if (naive) return k.sums_naive(ps);
        return k.sums(ps, Int8PackedKernel(pw, rows, cols));
    }
    const float* pscale = in_f32(w_scale, (op + " w_scale").c_str(), 1);
    expect_shape(w_scale, (op + " w_scale").c_str(), {cols});
    Int8Epilogue e{nullptr, pscale, opt_bias(b, op, cols), x_scale, x_zero_point,
                   relu ? Activation::relu : Activation::linear};
    if (!y_scale.is_none()) {
        // uint8 out in the next layer's quantization (y_scale, y_zero_point).
        const Int8Output o{y_scale.cast<float>(), y_zero_point};
        check_zero_point(op + " (output)", o.zero_point, o.scale);
        check_buffer<uint8_t>(out, out_name.c_str(), ndim, true);
        if (naive) throw std::invalid_argument(op + ": naive=True writes float32 only");
        auto* pq = static_cast<uint8_t*>(out.mutable_data());
        py::gil_scoped_release release;
        const Int8PackedKernel packed(pw, rows, cols);
        e.w_sums = packed.sums();
        return k.forward_u8(pq, packed, e, o);
    }
    float* py_ = out_f32(out, out_name.c_str(), ndim);
    py::gil_scoped_release release;
    if (naive) return k.forward_naive(py_, e);
    const Int8PackedKernel packed(pw, rows, cols);
    e.w_sums = packed.sums();
    k.forward(py_, packed, e);
}

}  // namespace

void bind_quantized(py::module_& m) {
    // The element-wise loops of quantize_u8 and the int8 epilogue: "baseline" or "avx512"
    // (quantized_simd.h); set_int8_elementwise_path("auto" | name) for tests, False if absent.
    m.def("int8_elementwise_path", &int8_elementwise_path);
    m.def("set_int8_elementwise_path",
          [](const std::string& name) { return set_int8_elementwise_path(name.c_str()); },
          py::arg("name"));
    // q = clamp(round_half_even(x * (1 / scale)), -zero_point, 255 - zero_point) + zero_point;
    // x float32 and q uint8 of one size.
    m.def(
        "quantize_u8",
        [](py::array q, const py::array& x, float scale, int32_t zero_point, bool naive) {
            const float* px = in_f32(x, "quantize_u8 x");
            check_buffer<uint8_t>(q, "quantize_u8 q", -1, true);
            if (q.size() != x.size())
                throw std::invalid_argument("quantize_u8: q " + shape_str(q) + " and x " +
                                            shape_str(x) + " differ in size");
            check_zero_point("quantize_u8", zero_point, scale);
            auto* pq = static_cast<uint8_t*>(q.mutable_data());
            py::gil_scoped_release release;
            if (naive)
                quantize_u8_naive(pq, px, x.size(), scale, zero_point);
            else
                quantize_u8(pq, px, x.size(), scale, zero_point);
        },
        py::arg("q"), py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        py::arg("naive") = false);
    // xq (N,H,W,C) uint8; w (KH,KW,C,K) int8; w_scale (K,); b (K,) or None; out (N,OH,OW,K):
    // float32 by the epilogue (sums=False), or int32 exact sums of (xq - x_zero_point) * w
    // (sums=True; w_scale, b, x_scale and relu unused).
    m.def(
        "conv2d_forward_int8",
        [](py::array out, const py::array& xq, const py::array& w, const py::array& w_scale,
           const py::object& b, float x_scale, int32_t x_zero_point, int64_t stride_h,
           int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t dilation_h,
           int64_t dilation_w, bool relu, bool sums, bool naive, const py::object& y_scale,
           int32_t y_zero_point) {
            const std::string op = "conv2d_forward_int8";
            check_buffer<uint8_t>(xq, "conv2d_forward_int8 xq", 4, false);
            check_buffer<int8_t>(w, "conv2d_forward_int8 w", 4, false);
            const Conv2dDims d = int8_conv_dims(op, xq, w, out, stride_h, stride_w, pad_top,
                                                pad_left, dilation_h, dilation_w);
            check_zero_point(op, x_zero_point, x_scale);
            const auto* px = static_cast<const uint8_t*>(xq.data());
            const auto* pw = static_cast<const int8_t*>(w.data());
            run_int8_layer(
                op, out, 4, pw, d.KH * d.KW * d.C, d.K, w_scale, b, x_scale, x_zero_point, relu,
                sums, naive, y_scale, y_zero_point,
                {[&](int32_t* s) { conv2d_sums_int8_naive(s, px, pw, x_zero_point, d); },
                 [&](int32_t* s, const Int8PackedKernel& p) {
                     conv2d_sums_int8(s, px, p.packed(), p.sums(), x_zero_point, d);
                 },
                 [&](float* y, const Int8Epilogue& e) {
                     conv2d_forward_int8_naive(y, px, pw, e, d);
                 },
                 [&](float* y, const Int8PackedKernel& p, const Int8Epilogue& e) {
                     conv2d_forward_int8(y, px, p.packed(), e, d);
                 },
                 [&](uint8_t* y, const Int8PackedKernel& p, const Int8Epilogue& e,
                     const Int8Output& o) { conv2d_forward_int8_u8(y, px, p.packed(), e, o, d); }});
        },
        py::arg("out"), py::arg("xq"), py::arg("w"), py::arg("w_scale"), py::arg("b"),
        py::arg("x_scale"), py::arg("x_zero_point"), py::arg("stride_h") = 1,
        py::arg("stride_w") = 1, py::arg("pad_top") = 0, py::arg("pad_left") = 0,
        py::arg("dilation_h") = 1, py::arg("dilation_w") = 1, py::kw_only(),
        py::arg("relu") = false, py::arg("sums") = false, py::arg("naive") = false,
        py::arg("y_scale") = py::none(), py::arg("y_zero_point") = 0);
    // xq (N,IN) uint8; w (IN,OUT) int8; w_scale (OUT,); b (OUT,) or None; out (N,OUT) float32
    // by the epilogue, or int32 exact sums (sums=True), as conv2d_forward_int8.
    m.def(
        "dense_forward_int8",
        [](py::array out, const py::array& xq, const py::array& w, const py::array& w_scale,
           const py::object& b, float x_scale, int32_t x_zero_point, bool relu, bool sums,
           bool naive, const py::object& y_scale, int32_t y_zero_point) {
            const std::string op = "dense_forward_int8";
            check_buffer<uint8_t>(xq, "dense_forward_int8 xq", 2, false);
            check_buffer<int8_t>(w, "dense_forward_int8 w", 2, false);
            const DenseDims d = int8_dense_dims(op, xq, w, out);
            check_zero_point(op, x_zero_point, x_scale);
            const auto* px = static_cast<const uint8_t*>(xq.data());
            const auto* pw = static_cast<const int8_t*>(w.data());
            run_int8_layer(
                op, out, 2, pw, d.IN, d.OUT, w_scale, b, x_scale, x_zero_point, relu, sums,
                naive, y_scale, y_zero_point,
                {[&](int32_t* s) { dense_sums_int8_naive(s, px, pw, x_zero_point, d); },
                 [&](int32_t* s, const Int8PackedKernel& p) {
                     dense_sums_int8(s, px, p.packed(), p.sums(), x_zero_point, d);
                 },
                 [&](float* y, const Int8Epilogue& e) {
                     dense_forward_int8_naive(y, px, pw, e, d);
                 },
                 [&](float* y, const Int8PackedKernel& p, const Int8Epilogue& e) {
                     dense_forward_int8(y, px, p.packed(), e, d);
                 },
                 [&](uint8_t* y, const Int8PackedKernel& p, const Int8Epilogue& e,
                     const Int8Output& o) { dense_forward_int8_u8(y, px, p.packed(), e, o, d); }});
        },
        py::arg("out"), py::arg("xq"), py::arg("w"), py::arg("w_scale"), py::arg("b"),
        py::arg("x_scale"), py::arg("x_zero_point"), py::kw_only(), py::arg("relu") = false,
        py::arg("sums") = false, py::arg("naive") = false, py::arg("y_scale") = py::none(),
        py::arg("y_zero_point") = 0);
    // x (N,H,W,C) uint8 -> y (N,OH,OW,C) uint8: the maximum over each window.
    m.def(
        "max_pool2d_u8_forward",
        [](py::array y, const py::array& x, int64_t pool_h, int64_t pool_w, int64_t stride_h,
           int64_t stride_w, int64_t pad_top, int64_t pad_left) {
            check_buffer<uint8_t>(x, "max_pool2d_u8_forward x", 4, false);
            check_buffer<uint8_t>(y, "max_pool2d_u8_forward y", 4, true);
            const std::string ctx = "max_pool2d_u8_forward with x " + shape_str(x) + ", y " +
                                    shape_str(y);
            if (dim(y, 0) != dim(x, 0) || dim(y, 3) != dim(x, 3))
                throw std::invalid_argument(ctx + ": y must be (N, OH, OW, C) of x's N and C");
            const Pool2dDims d{dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), pool_h, pool_w,
                               dim(y, 1), dim(y, 2), stride_h, stride_w, pad_top, pad_left};
            check_window_axis(ctx, "height", d.H, pool_h, stride_h, pad_top, d.OH);
            check_window_axis(ctx, "width", d.W, pool_w, stride_w, pad_left, d.OW);
            auto* py_ = static_cast<uint8_t*>(y.mutable_data());
            const auto* px = static_cast<const uint8_t*>(x.data());
            py::gil_scoped_release release;
            max_pool2d_u8_forward(py_, px, d);
        },
        py::arg("y"), py::arg("x"), py::arg("pool_h") = 2, py::arg("pool_w") = 2,
        py::arg("stride_h") = 2, py::arg("stride_w") = 2, py::arg("pad_top") = 0,
        py::arg("pad_left") = 0);
}

}  // namespace cnnfast::bind
