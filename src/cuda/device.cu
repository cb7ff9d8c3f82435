#include "device.h"

#include <cuda_runtime.h>

#include <stdexcept>

namespace cnnfast::cuda {

namespace {

std::string error_text(cudaError_t err) {
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}

// One query of the device count: (count, error); the count is 0 unless the call succeeded.
int query_count(cudaError_t* error) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        cudaGetLastError();  // clear the sticky-free error so later queries start clean
        *error = err;
        return 0;
    }
    *error = cudaSuccess;
    return count;
}

}  // namespace

int device_count() {
    cudaError_t err;
    return query_count(&err);
}

std::string why_unavailable() {
    cudaError_t err;
    const int count = query_count(&err);
    if (err != cudaSuccess) return "the CUDA runtime found no usable device (" + error_text(err) + ")";
    if (count == 0) return "the CUDA runtime reports 0 devices";
    return "";
}

std::string device_name(int index) {
    cudaDeviceProp prop;
    const cudaError_t err = cudaGetDeviceProperties(&prop, index);
    if (err != cudaSuccess) {
        cudaGetLastError();
        throw std::runtime_error("CUDA device " + std::to_string(index) + ": " + error_text(err));
    }
    return prop.name;
}

int runtime_version() { return CUDART_VERSION; }

}  // namespace cnnfast::cuda
