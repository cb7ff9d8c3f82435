#pragma once
// Argument checks shared by the sliding-window bindings (conv2d and pool2d).
#include <cstdint>
#include <string>

#include "bind_util.h"

namespace cnnfast::bind {

// One spatial axis of a window op: stride >= 1, 0 <= pad < kernel (every window then overlaps
// the input), and `out` is the output size for some implied bottom/right padding in [0, kernel),
// rows a stride never reaches being ignored. `ctx` names the op and the array shapes.
inline void check_window_axis(const std::string& ctx, const char* axis, int64_t n, int64_t k,
                              int64_t stride, int64_t pad, int64_t out) {
    const std::string a(axis);
    if (n < 1 || k < 1)
        throw std::invalid_argument(ctx + ": " + a + " sizes must be positive (input " +
                                    std::to_string(n) + ", window " + std::to_string(k) + ")");
    if (stride < 1)
        throw std::invalid_argument(ctx + ": " + a + " stride must be >= 1, got " +
                                    std::to_string(stride));
    if (pad < 0 || pad >= k)
        throw std::invalid_argument(ctx + ": " + a + " padding must be in [0, " +
                                    std::to_string(k) + ") (smaller than the window), got " +
                                    std::to_string(pad));
    const int64_t lo = n + pad >= k ? (n + pad - k) / stride + 1 : 1;
    const int64_t hi = (n + pad - 1) / stride + 1;
    if (out < lo || out > hi)
        throw std::invalid_argument(
            ctx + ": " + a + " output size " + std::to_string(out) + " does not fit input " +
            std::to_string(n) + ", window " + std::to_string(k) + ", stride " +
            std::to_string(stride) + ", padding before " + std::to_string(pad) +
            " (expected " + (lo == hi ? std::to_string(lo)
                                      : "between " + std::to_string(lo) + " and " +
                                            std::to_string(hi)) + ")");
}

// Throws unless the buffers of `out` and `in` are disjoint (an output written over an input
// would corrupt the result silently).
inline void expect_disjoint(const std::string& ctx, const py::array& out, const char* out_name,
                            const py::array& in, const char* in_name) {
    const char* o = static_cast<const char*>(out.data());
    const char* i = static_cast<const char*>(in.data());
    if (out.nbytes() && in.nbytes() && o < i + in.nbytes() && i < o + out.nbytes())
        throw std::invalid_argument(ctx + ": output " + out_name + " overlaps input " + in_name);
}

}  // namespace cnnfast::bind
