#pragma once
// Shared argument checks for the bindings: every array crossing into C++ must be a C-contiguous
// float32 (or int32) buffer of the expected rank and shape, else a ValueError naming the shapes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "activation.h"

namespace cnnfast::bind {

namespace py = pybind11;

// Accepts any array object; conversion is the Python layer's job, so nothing is cast here.
using farray = py::array;

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) s += ", ";
        s += std::to_string(a.shape(i));
    }
    if (a.ndim() == 1) s += ",";
    return s + ")";
}

inline std::string shape_str(std::initializer_list<int64_t> dims) {
    std::string s = "(";
    size_t i = 0;
    for (int64_t d : dims) {
        if (i++) s += ", ";
        s += std::to_string(d);
    }
    if (dims.size() == 1) s += ",";
    return s + ")";
}

template <typename T>
inline void check_buffer(const py::array& a, const char* what, int ndim, bool writable) {
    if (!py::isinstance<py::array_t<T>>(a) || a.dtype().kind() != py::dtype::of<T>().kind() ||
        a.itemsize() != static_cast<py::ssize_t>(sizeof(T)))
        throw std::invalid_argument(std::string(what) + ": expected dtype " +
                                    std::string(py::str(py::dtype::of<T>())) + ", got " +
                                    std::string(py::str(a.dtype())));
    if (ndim >= 0 && a.ndim() != ndim)
        throw std::invalid_argument(std::string(what) + ": expected rank " + std::to_string(ndim) +
                                    ", got shape " + shape_str(a));
    if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(what) + ": array must be C-contiguous");
    if (writable && !a.writeable())
        throw std::invalid_argument(std::string(what) + ": output array is read-only");
}

// Pointer to a float32 input of rank `ndim` (-1: any rank).
inline const float* in_f32(const py::array& a, const char* what, int ndim = -1) {
    check_buffer<float>(a, what, ndim, false);
    return static_cast<const float*>(a.data());
}
inline float* out_f32(py::array& a, const char* what, int ndim = -1) {
    check_buffer<float>(a, what, ndim, true);
    return static_cast<float*>(a.mutable_data());
}
inline const int32_t* in_i32(const py::array& a, const char* what, int ndim = -1) {
    check_buffer<int32_t>(a, what, ndim, false);
    return static_cast<const int32_t*>(a.data());
}
inline int32_t* out_i32(py::array& a, const char* what, int ndim = -1) {
    check_buffer<int32_t>(a, what, ndim, true);
    return static_cast<int32_t*>(a.mutable_data());
}

// Throws unless `a` has exactly the shape `dims`.
inline void expect_shape(const py::array& a, const char* what, std::initializer_list<int64_t> dims) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
    size_t i = 0;
    for (int64_t d : dims) {
        if (!ok) break;
        ok = a.shape(i++) == d;
    }
    if (!ok)
        throw std::invalid_argument(std::string(what) + ": expected shape " + shape_str(dims) +
                                    ", got " + shape_str(a));
}

inline int64_t dim(const py::array& a, int i) { return static_cast<int64_t>(a.shape(i)); }

// The activation a Keras name stands for; any other name is a ValueError naming op.
inline Activation activation_kind(const std::string& name, const char* op) {
    Activation kind;
    if (!activation_from_name(name.c_str(), &kind))
        throw std::invalid_argument(std::string(op) + ": unknown activation '" + name +
                                    "'; activation must be one of linear, relu, sigmoid, tanh, "
                                    "elu, swish or leaky_relu");
    return kind;
}

}  // namespace cnnfast::bind
