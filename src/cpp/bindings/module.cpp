// The one extension module, cnnfast._core. Each kernel family registers its functions from its
// own bind_<family>.cpp; this file only assembles them.
#include <pybind11/pybind11.h>

#include "gemm.h"
#include "parallel.h"

namespace py = pybind11;

namespace cnnfast::bind {
void bind_gemm(py::module_& m);
void bind_conv2d(py::module_& m);
void bind_conv2d_pool(py::module_& m);
void bind_pool2d(py::module_& m);
void bind_elementwise(py::module_& m);
void bind_lrn(py::module_& m);
void bind_network(py::module_& m);
void bind_merge(py::module_& m);
void bind_train_plan(py::module_& m);
void bind_batchnorm(py::module_& m);
void bind_spatial(py::module_& m);
void bind_rescaling(py::module_& m);
void bind_noise(py::module_& m);
void bind_losses(py::module_& m);
void bind_quantized(py::module_& m);
}  // namespace cnnfast::bind

PYBIND11_MODULE(_core, m) {
    m.doc() = "cnnfast C++ kernels on float32 NHWC buffers (internal; use cnnfast.ops)";
    m.def("get_num_threads", &cnnfast::get_num_threads);
    m.def("set_num_threads", &cnnfast::set_num_threads, py::arg("n"));
    m.attr("build_flags") = CNNFAST_BUILD_FLAGS;
    m.attr("compiler") = CNNFAST_COMPILER;
    cnnfast::bind::bind_gemm(m);
    cnnfast::bind::bind_conv2d(m);
    cnnfast::bind::bind_conv2d_pool(m);
    cnnfast::bind::bind_pool2d(m);
    cnnfast::bind::bind_elementwise(m);
    cnnfast::bind::bind_lrn(m);
    cnnfast::bind::bind_network(m);
    cnnfast::bind::bind_merge(m);
    cnnfast::bind::bind_train_plan(m);
    cnnfast::bind::bind_batchnorm(m);
    cnnfast::bind::bind_spatial(m);
    cnnfast::bind::bind_rescaling(m);
    cnnfast::bind::bind_noise(m);
    cnnfast::bind::bind_losses(m);
    cnnfast::bind::bind_quantized(m);
}
