// Bindings of Rescaling (rescaling.h).
#include <string>

#include "bind_util.h"
#include "rescaling.h"

namespace cnnfast::bind {

namespace {

// scale and offset: float32 of one shape, 1 element or the last axis of x; y (dx) as x (dy).
int64_t rescaling_period(const std::string& op, const py::array& out, const py::array& x,
                         const py::array& scale, const py::array* offset) {
    bool same = out.ndim() == x.ndim();
    for (py::ssize_t i = 0; same && i < x.ndim(); ++i) same = out.shape(i) == x.shape(i);
    if (!same)
        throw std::invalid_argument(op + ": output " + shape_str(out) + " and input " +
                                    shape_str(x) + " must have the same shape");
    const int64_t period = static_cast<int64_t>(scale.size());
    const int64_t last = x.ndim() ? dim(x, static_cast<int>(x.ndim() - 1)) : 1;
    if (scale.ndim() != 1 || (period != 1 && period != last))
        throw std::invalid_argument(op + ": scale " + shape_str(scale) +
                                    " must be (1,) or the last axis of x " + shape_str(x));
    if (offset && (offset->ndim() != 1 || static_cast<int64_t>(offset->size()) != period))
        throw std::invalid_argument(op + ": offset " + shape_str(*offset) + " and scale " +
                                    shape_str(scale) + " must have the same shape");
    return period;
}

}  // namespace

void bind_rescaling(py::module_& m) {
    // x, y (..., C) float32; scale, offset (1,) or (C,). y = x * scale + offset; y may be x.
    m.def(
        "rescaling_forward",
        [](py::array y, const py::array& x, const py::array& scale, const py::array& offset,
           bool naive) {
            const float* px = in_f32(x, "rescaling_forward x");
            const float* ps = in_f32(scale, "rescaling_forward scale");
            const float* po = in_f32(offset, "rescaling_forward offset");
            float* py_ = out_f32(y, "rescaling_forward y");
            const int64_t period = rescaling_period("rescaling_forward", y, x, scale, &offset);
            const int64_t n = static_cast<int64_t>(x.size());
            py::gil_scoped_release release;
            (naive ? rescaling_forward_naive : rescaling_forward)(py_, px, ps, po, n, period);
        },
        py::arg("y"), py::arg("x"), py::arg("scale"), py::arg("offset"), py::arg("naive") = false);

    // dx, dy (..., C) float32; scale (1,) or (C,). dx = dy * scale; dx may be dy.
    m.def(
        "rescaling_backward",
        [](py::array dx, const py::array& dy, const py::array& scale, bool naive) {
            const float* pdy = in_f32(dy, "rescaling_backward dy");
            const float* ps = in_f32(scale, "rescaling_backward scale");
            float* pdx = out_f32(dx, "rescaling_backward dx");
            const int64_t period = rescaling_period("rescaling_backward", dx, dy, scale, nullptr);
            const int64_t n = static_cast<int64_t>(dy.size());
            py::gil_scoped_release release;
            (naive ? rescaling_backward_naive : rescaling_backward)(pdx, pdy, ps, n, period);
        },
        py::arg("dx"), py::arg("dy"), py::arg("scale"), py::arg("naive") = false);
}

}  // namespace cnnfast::bind
