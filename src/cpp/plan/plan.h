#pragma once
// The one builder. A model's config (Model.get_config(), the architecture JSON that every model
// file stores) becomes a Plan: the values (per-sample shapes, id 0 the network input) and the
// layer steps in call order, each with its geometry, the weights it reads (by "layer/name" and
// shape), its activation and, once fuse_for_training has run, what was fused into it. Every
// consumer starts from this one Plan: the training step (train_plan.h) runs it, and the
// inference Network that predict and the C API's model-file reader run is lowered from it
// (network_builder.h). Reading the config, geometry, validation and the fusion decisions exist
// once, here and in layer_config.h.
#include <cstdint>
#include <string>
#include <vector>

#include "activation.h"
#include "batchnorm.h"
#include "conv2d.h"
#include "dense.h"
#include "json.h"
#include "lrn.h"
#include "merge.h"
#include "pool2d.h"
#include "spatial.h"

namespace cnnfast {

enum class PlanOp : int {
    conv2d, conv2d_relu_maxpool, dense, max_pool2d, avg_pool2d, activation, softmax, dropout,
    prelu, lrn, merge, concat, view,
    // Normalization and spatial reshaping (issue 19); Reshape is a view.
    batchnorm, global_avg_pool2d, global_max_pool2d, zero_pad2d, crop2d, upsample2d,
    // Activation, noise, convolution-variant and preprocessing layers (issue 19).
    rescaling, gaussian_noise, spatial_dropout, random_flip, random_crop, random_translation,
    random_rotation
};

// A weight a step reads: "layer/name" and its exact shape; an empty key when absent (no bias).
struct WeightRef {
    std::string key;
    std::vector<int64_t> shape;
    bool present() const { return !key.empty(); }
};

// One layer call. Dims hold per-sample geometry (N = 1; dense.N = rows per sample).
struct PlanStep {
    PlanOp kind = PlanOp::view;
    std::string label;  // "Class 'name'", for messages ("A + B" once fused)
    Conv2dDims conv{};
    Pool2dDims pool{};
    DenseDims dense{};
    LrnDims lrn{};           // rows = rows per sample
    int64_t alpha_size = 0;  // PReLU: alpha repeats over the flat sample every alpha_size
    WeightRef kernel;        // conv/dense kernel, PReLU alpha
    WeightRef bias;
    bool trainable = true;   // the layer's "trainable"
    // The activation after conv/dense, or an activation step's own. `kernel_act`: the training
    // kernel applies it and its output serves as the pre-activation (conv: relu, tanh, sigmoid;
    // dense: relu). Otherwise the kernel writes the pre-activation and the activation follows.
    Activation act = Activation::linear;
    float act_alpha = 1.0f;
    bool softmax = false;
    bool kernel_act = false;
    // Training fusions (fuse_for_training): the activation's backward is done elsewhere, by
    // the loss (softmax + cross-entropy) or by the max pooling right after; and that pooling
    // applies the folded ReLU's backward to its gradient.
    bool act_backward_elsewhere = false;
    bool relu_before = false;
    double rate = 0.0;  // dropout
    MergeOp merge_op = MergeOp::add;
    std::vector<int64_t> widths;  // concat: each input's last-axis width
    int64_t cols = 0;             // softmax: the last axis
    // Rescaling: y = x * scale + offset, both of one length (1 or the last axis), repeating.
    std::vector<float> scale, offset;
    // The training-time random layers: GaussianNoise's stddev (in `rate`), RandomFlip's mode
    // (random_flip.h). Like Dropout they draw one seed per step (train_plan.h draws_seed).
    int flip_mode = 0;
    // RandomTranslation ([h_lo, h_hi, w_lo, w_hi]) and RandomRotation ([lo, hi]) factors and
    // their resampling (random_affine.h; fill_mode a FillMode).
    std::vector<float> factors;
    int fill_mode = 0;
    bool bilinear = true;
    float fill_value = 0.0f;
    std::vector<int> inputs;
    int output = 0;
    // BatchNormalization: kernel/bias are gamma/beta (absent without scale/center), and the
    // moving statistics, which its training forward updates; a frozen one (trainable false)
    // normalizes with them in training too (Keras 3).
    BatchNormDims bn{};
    float momentum = 0.99f;
    WeightRef moving_mean, moving_variance;
    GlobalPoolDims gpool{};  // GlobalAverage/MaxPooling2D
    Pad2dDims pad{};         // ZeroPadding2D (small = input) and Cropping2D (small = output)
    Upsample2dDims up{};     // UpSampling2D
    // A layer called more than once (a shared layer of a graph): the step of its first call,
    // whose weights every call uses; -1 for a layer called once.
    int first_call = -1;
};

// A value: the network input (0) or a step's output; a view shares another value's buffer
// (Flatten, and the identities: InputLayer, Dropout(0), a linear Activation).
struct PlanValue {
    std::vector<int64_t> shape;
    int64_t size = 0;  // floats per sample
    int view_of = -1;
};

struct Plan {
    std::vector<PlanValue> values;
    std::vector<PlanStep> steps;  // in dependency order
    int output = 0;               // the value the network returns
    bool graph = false;           // a functional config (else a stack)
    std::vector<std::string> calls;    // each layer call's label, in order (before any fusion)
    std::vector<std::string> fusions;  // what fuse_for_training decided, one line each
};

// Steps that draw one random seed per training step, in step order: Dropout and the
// training-time random layers of issue 19 (the Python walk draws theirs in the same order).
inline bool draws_seed(PlanOp k) {
    return k == PlanOp::dropout || k == PlanOp::gaussian_noise || k == PlanOp::spatial_dropout ||
           k == PlanOp::random_flip || k == PlanOp::random_crop ||
           k == PlanOp::random_translation || k == PlanOp::random_rotation;
}

// Throws std::runtime_error naming the layer and the shapes when the config does not describe
// a network this builder knows (unknown class, window larger than its input, shapes that do
// not join, ...).
Plan build_plan(const json::Value& architecture);

// The training fusions, decided once here: ReLU differentiated by the max pooling right after
// it, the opening Conv2D(relu) + MaxPooling2D(2) as one kernel, and, when `cross_entropy`,
// softmax with the loss (the loss kernel returns the gradient with respect to the logits);
// when `binary_cross_entropy`, likewise the sigmoid of a Dense or Activation output (a
// convolution applies its sigmoid in the kernel and keeps no logits; Model._fused_softmax).
void fuse_for_training(Plan& plan, bool cross_entropy, bool binary_cross_entropy = false);

// The plan's output step whose pre-activation the loss reads (softmax + cross-entropy,
// sigmoid + binary cross-entropy), or -1.
int logits_step(const Plan& plan);

// "relu", "softmax", ...: a step's activation by its Keras name.
std::string activation_name(const PlanStep& step);

}  // namespace cnnfast
