#pragma once
// What the CUDA runtime says about the devices of this machine. Every query checks the
// runtime's return code: without a driver, cudaGetDeviceCount returns an error and leaves its
// count unset, so the count is only read after cudaSuccess.
#include <string>

namespace cnnfast::cuda {

// Devices the runtime can use; 0 when there is none, no driver, or the driver is too old.
int device_count();

// Why device_count() is 0 (the runtime's own error text with its code), or "" when a device
// is usable.
std::string why_unavailable();

// The name of device `index` (cudaGetDeviceProperties); throws std::runtime_error with the
// runtime's message when it cannot be queried.
std::string device_name(int index);

// The CUDA runtime version this module was built against and links statically, e.g. 13000.
int runtime_version();

}  // namespace cnnfast::cuda
