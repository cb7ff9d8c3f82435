#pragma once
// The inference Network of a model config: the one builder's Plan (plan.h) lowered onto the
// inference executor (network.h). predict (through _core.Network.from_config) and the C API's
// model-file reader both come here, so they run the very steps, geometry and validation that
// training runs; only the training fusions are left out (the Network makes its own in-place and
// epilogue choices as steps are added).
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

// architecture: Model.get_config() JSON, a stack or a functional graph. Throws
// std::runtime_error naming the layer and the shapes when the config does not describe a
// network the builder knows (unknown class, window larger than its input, ...).
std::unique_ptr<Network> build_network(const json::Value& architecture, const WeightLookup& weight);

// The same from the JSON text.
std::unique_ptr<Network> build_network(const std::string& architecture_json,
                                       const WeightLookup& weight);

}  // namespace cnnfast
