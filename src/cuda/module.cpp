// cnnfast._cuda: the CUDA backend's extension module, built only when CMake finds nvcc
// (CNNFAST_CUDA=AUTO or ON). The CUDA runtime is linked statically, so importing this module
// needs no CUDA library; the driver (libcuda) is looked for at the first query, and its absence
// is an answer (0 devices, with the reason), never a crash.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "device.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "cnnfast CUDA backend (internal; use cnnfast.cuda)";
    m.def("device_count", &cnnfast::cuda::device_count,
          "Usable CUDA devices; 0 without a device or a driver.");
    m.def("why_unavailable", &cnnfast::cuda::why_unavailable,
          "Why no device is usable (the runtime's error), or '' when one is.");
    m.def("device_name", &cnnfast::cuda::device_name, py::arg("index") = 0);
    m.attr("runtime_version") = cnnfast::cuda::runtime_version();
}
