#pragma once
// Reader for cnnfast model files (docs/model-format.md): validates the safetensors container and
// rebuilds the architecture as an inference Network whose weights point into the loaded bytes.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "network.h"

namespace cnnfast {

struct LoadedModel {
    std::vector<float> data;  // the file's tensors, each from a 64-byte boundary
    std::unique_ptr<Network> network;
};

// Reads and validates `path`; throws std::runtime_error naming the file and the problem.
std::unique_ptr<LoadedModel> load_model_file(const std::string& path);

// The same from bytes already in memory (used by tests and fuzzing); `source` names them.
std::unique_ptr<LoadedModel> parse_model_bytes(const std::string& bytes, const std::string& source);

}  // namespace cnnfast
