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

// A layer run in int8 (issue 23; quantized.h), its tensors borrowed like the float weights.
struct Int8Layer {
    const int8_t* kernel = nullptr;       // the layer's kernel shape, symmetric per channel
    const float* kernel_scale = nullptr;  // (K,)
    const float* bias = nullptr;          // (K,) or null (a folded batch normalization's shift)
    float input_scale = 1.0f;             // the input quantized per tensor
    int32_t input_zero_point = 0;
    std::string folded_batchnorm;         // the BatchNormalization folded into a Conv2D, or empty
};

// Whether the Conv2D or Dense layer `layer` runs in int8; if so fills `out`, with a kernel of
// exactly `kernel_shape` and K = kernel_shape.back() channels. Throws std::runtime_error naming
// the tensor when one is missing or has another shape.
using Int8Lookup = std::function<bool(const std::string& layer,
                                      const std::vector<int64_t>& kernel_shape, Int8Layer* out)>;

// architecture: Model.get_config() JSON, a stack or a functional graph. Throws
// std::runtime_error naming the layer and the shapes when the config does not describe a
// network the builder knows (unknown class, window larger than its input, ...).
std::unique_ptr<Network> build_network(const json::Value& architecture, const WeightLookup& weight);
// The same with int8 layers: each Conv2D and Dense the lookup accepts becomes an int8 step (a
// Conv2D with the batch normalization after it folded in: the one named by folded_batchnorm,
// which must be the one the float build would fold, together with its activation); the rest
// stay float32.
std::unique_ptr<Network> build_network(const json::Value& architecture, const WeightLookup& weight,
                                       const Int8Lookup& int8);

// The same from the JSON text.
std::unique_ptr<Network> build_network(const std::string& architecture_json,
                                       const WeightLookup& weight,
                                       const Int8Lookup& int8 = nullptr);

}  // namespace cnnfast
