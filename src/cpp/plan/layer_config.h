#pragma once
// What every consumer of a model config shares: the geometry of window layers, the config
// fields' checked readers, and the order of a config's layer calls (stacks and Keras functional
// graphs). The inference Network (network_builder.cpp) and the training plan (train_plan.cpp)
// are both built from this, so padding, output sizes and graph order are decided once.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "conv2d.h"
#include "json.h"
#include "lrn.h"
#include "merge.h"
#include "pool2d.h"

namespace cnnfast::config {

constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;  // dims fit the kernels' int32 sizes

[[noreturn]] void fail(const std::string& what);

std::string shape_str(const std::vector<int64_t>& s);

// (before, out) of one spatial axis for padding "valid", "same" or an explicit symmetric pad,
// following cnnfast.shapes.conv_padding (TensorFlow's "same": odd padding at the end).
std::pair<int64_t, int64_t> axis_geometry(int64_t n, int64_t k, int64_t s,
                                          const json::Value& padding, int axis,
                                          const std::string& who);

// cfg[key] as two positive ints.
std::pair<int64_t, int64_t> int_pair(const json::Value& cfg, const char* key,
                                     const std::string& who);

// cfg["activation"], "linear" when absent or null.
std::string activation_of(const json::Value& cfg, const std::string& who);

// The fields of one layer, read and checked once for every builder, on a per-sample input
// `shape` (dims with N = 1). Errors name the layer (`who`) and the shapes.
struct Conv2dConfig {
    Conv2dDims dims;
    bool use_bias = true;
    std::string activation;
    std::vector<int64_t> kernel_shape;  // (KH, KW, C / groups, K)
};
Conv2dConfig read_conv2d(const json::Value& cfg, const std::vector<int64_t>& shape,
                         const std::string& who);
Pool2dDims read_pool2d(const json::Value& cfg, const std::vector<int64_t>& shape,
                       const std::string& who);
struct DenseConfig {
    int64_t units = 0;
    bool use_bias = true;
    std::string activation;
};
DenseConfig read_dense(const json::Value& cfg, const std::vector<int64_t>& shape,
                       const std::string& who);
// PReLU's alpha: the input's shape with the shared axes (1-based) set to 1; they must lead,
// as the kernels repeat alpha over the flat sample (PReLU.param_shapes).
std::vector<int64_t> read_prelu_alpha_shape(const json::Value& cfg,
                                            const std::vector<int64_t>& shape,
                                            const std::string& who);
// LocalResponseNormalization over the last axis; rows = the per-sample rows.
LrnDims read_lrn(const json::Value& cfg, const std::vector<int64_t>& shape,
                 const std::string& who);

// Merge layers by class name (Concatenate is not one of them: it joins on an axis).
bool merge_op_of(const std::string& cls, MergeOp* op);

// "Class 'name'" of a layer entry, for messages.
std::string label_of(const json::Value& layer);

// One call of a layer: its config entry and the values it reads. Value 0 is the network input;
// value k + 1 is the output of call k.
struct LayerCall {
    const json::Value* layer;
    std::vector<int> inputs;
};

// The calls of an architecture in dependency order. A stack ({"input_shape", "layers"}) calls
// each layer once on the value before; a graph (Keras functional config: "inbound_nodes",
// "input_layers", "output_layers") calls each layer once per inbound node, depth-first from the
// output with each call's inputs in order (cnnfast.graph.collect's order, that of the Python
// walk), then any call the output does not read. The entries point into `architecture`.
struct CallOrder {
    std::vector<int64_t> input_shape;
    std::vector<LayerCall> calls;
    int output = 0;  // the value the network returns
    bool graph = false;
};
CallOrder order_calls(const json::Value& architecture);

}  // namespace cnnfast::config
