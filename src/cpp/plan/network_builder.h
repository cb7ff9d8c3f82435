#pragma once
// The one builder: a model's config (the architecture JSON that Model.get_config() returns and
// every model file stores) turned into an inference Network. predict (through _core.Network.
// from_config) and the C API's model-file reader both build here, so geometry (output sizes,
// "same" padding) and validation exist once in C++. The order of a config's layer calls and the
// layers' geometry come from layer_config.h, which the training plan (train_plan.h) shares.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "json.h"
#include "network.h"

namespace cnnfast {

// The weight tensor "layer/name", which must have exactly `shape`: returns its float32 data,
// which the Network borrows (the caller keeps it alive and may update it in place). Throws
// std::runtime_error naming the tensor when it is missing or has another shape.
using WeightLookup =
    std::function<const float*(const std::string& key, const std::vector<int64_t>& shape)>;

// architecture: {"name": ..., "input_shape": [..], "layers": [{"class_name", "config"}, ..]}.
// Throws std::runtime_error naming the layer and the shapes when the config does not describe
// a network this builder knows (unknown class, window larger than its input, ...).
std::unique_ptr<Network> build_network(const json::Value& architecture, const WeightLookup& weight);

// The same from the JSON text.
std::unique_ptr<Network> build_network(const std::string& architecture_json,
                                       const WeightLookup& weight);

}  // namespace cnnfast
