#pragma once
// The training step in one call: forward, loss, backward, regularizers and the optimizer update
// of a model, on the kernels the Python layers call, in the order they call them, so a plan
// step leaves bit-for-bit the weights of the Python layer walk (cnnfast/model.py _train_step).
// build_train_plan takes the one builder's Plan (plan.h), with its training fusions, and
// resolves its weights; fit and train_on_batch keep the loop over batches in Python.
//
// Values are the network input (id 0) and each step's output, as in the config's call order.
// Every value has a forward buffer and a gradient buffer in one grow-only arena per plan, laid
// out once per batch size; what backward needs (inputs, outputs, pre-activations, pooling
// argmax, dropout masks) stays there between the forward and the backward of a step. Weights,
// gradients and optimizer slots are the model's arenas, borrowed (the owner keeps them alive).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "optim.h"
#include "plan.h"

namespace cnnfast {

// One layer call of the plan (plan.h) with its weights resolved: views into the model's arenas.
struct TrainStep : PlanStep {
    const float* w = nullptr;  // conv/dense kernel, PReLU alpha
    const float* b = nullptr;  // bias or null
    float* dw = nullptr;       // their gradients, in the model's gradient arena
    float* db = nullptr;
    // BatchNormalization's moving statistics, which its training forward updates in place.
    float* moving_mean = nullptr;
    float* moving_var = nullptr;
};

struct TrainValue : PlanValue {
    int grad_alias_of = -1;     // gradient buffer shared with this value (identity backward,
                                // the other input of an add, a normalization's output)
    int consumers = 0;          // reads by later steps
    bool produced = false;      // written by a step (else the input, or fused away)
};

// A weight with an L1/L2 penalty (Keras: l1 * sum|w| + l2 * sum w^2).
struct TrainRegularizer {
    const float* w;
    float* g;
    int64_t size;
    double l1, l2;
};

// The losses the plan runs, each with its Keras defaults (huber: delta 1); the cross-entropies
// are fused with a softmax output, binary cross-entropy with a sigmoid one.
enum class TrainLoss : int {
    categorical_crossentropy,
    sparse_categorical_crossentropy,
    mse,
    mean_absolute_error,
    huber,
    kl_divergence,
    categorical_hinge,
    binary_crossentropy,  // from probabilities; fused with a sigmoid output
};
// The per-call optimizer update (optim.h; callbacks and schedules change it between steps), with
// the model's slot arenas (optimizer_missing_slot names which a kind reads) and, for clipnorm,
// the trainable variables' offsets in the arena.
struct OptimizerUpdate : OptimizerSettings {
    float* slot0 = nullptr;
    float* slot1 = nullptr;
    float* slot2 = nullptr;
    const int64_t* bounds = nullptr;  // (variables + 1,) or null
    int64_t variables = 0;
    // false: stop after the gradients (regularizers included) are in the arena, for a caller
    // that combines them across processes first and then updates (cnnfast/distributed.py).
    bool apply = true;
};

struct TrainStepResult {
    double loss = 0.0;    // data loss + regularization; the data loss alone when not finite
    int64_t correct = 0;  // the accuracy count (Model._correct)
    bool updated = false; // false: the loss was not finite and nothing was changed
                          // (with update.apply false: true once the gradients are in the arena)
};

// Called during backward when a layer's weight gradients (regularizers included) are final:
// (offset, count) in floats into the gradient arena, once per kernel/bias/alpha tensor.
using GradientsReady = std::function<void(int64_t offset, int64_t count)>;

class TrainPlan {
public:
    // plan: from build_plan, fused by fuse_for_training; steps: its steps with their weights
    // resolved; w/g (trainable_floats,): the arenas the optimizer updates.
    TrainPlan(const Plan& plan, std::vector<TrainStep> steps, TrainLoss loss, float* weights,
              float* grads, int64_t trainable_floats);

    void add_regularizer(const TrainRegularizer& r) {
        regularizers_.push_back(r);
        regularized_.push_back(0);
    }

    const std::vector<int64_t>& value_shape(int v) const { return values_.at(v).shape; }
    const std::vector<int64_t>& output_shape() const { return values_[output_].shape; }
    const std::vector<int64_t>& input_shape() const { return values_[0].shape; }
    const std::vector<TrainStep>& steps() const { return steps_; }
    // What the builder fused (Plan::fusions), one line each.
    const std::vector<std::string>& fusions() const { return fusions_; }
    // Each layer call's label in the order the steps run them (Plan::calls).
    const std::vector<std::string>& calls() const { return calls_; }
    TrainLoss loss() const { return loss_; }
    // Mixed-precision training: step() runs with bf16_products() on (gemm_bf16.h): the
    // convolutions' and dense layers' products take bfloat16 operands, with float32 sums, while
    // the weights, their gradients, the optimizer state and the loss stay float32.
    void set_bf16_products(bool on) { bf16_products_ = on; }
    bool bf16_products() const { return bf16_products_; }
    // The model's output of the last step() (its n rows, row-major), in the arena: valid until
    // the next step (metrics other than accuracy read it).
    const float* last_output() const { return fwd(output_); }
    // Labels of the steps that draw a seed (draws_seed: active Dropout, GaussianNoise,
    // SpatialDropout2D, RandomFlip), in the order step() reads their seeds.
    std::vector<std::string> dropout_labels() const;

    // x (n, input_shape...); labels int32 (n,) for sparse cross-entropy, else float32 with the
    // output's shape; sample_weight (n,) or null; dropout_seeds one per dropout_labels() step.
    // A non-finite data loss returns before any backward or update.
    TrainStepResult step(const float* x, const void* labels, const double* sample_weight,
                         int64_t n, const uint64_t* dropout_seeds, const OptimizerUpdate& update,
                         const GradientsReady& ready = nullptr);

private:
    void share_join_gradients();
    void normalize_gradients_in_place();
    void layout(int64_t n);
    double loss_and_gradient(const void* labels, const double* sample_weight, int64_t n);
    int64_t count_correct(const void* labels, int64_t n) const;
    void forward(const float* x, int64_t n, const uint64_t* seeds);
    void backward(int64_t n, const GradientsReady& ready);
    void backward_step(size_t i, int64_t n);
    // The gradients of the regularizers on dw or db, or on every weight not done yet (null).
    void add_regularizer_gradients(const float* dw, const float* db);
    float* fwd(int v) const;
    float* grad(int v) const;

    std::vector<TrainValue> values_;
    std::vector<TrainStep> steps_;
    std::vector<TrainRegularizer> regularizers_;
    std::vector<char> regularized_;  // per regularizer: its gradient added in this step
    std::vector<std::string> fusions_, calls_;
    int output_ = 0;
    TrainLoss loss_ = TrainLoss::categorical_crossentropy;
    int logits_step_ = -1;
    bool bf16_products_ = false;           // the output step whose pre-activation the loss reads
    float* weights_ = nullptr;
    float* grads_ = nullptr;
    int64_t trainable_floats_ = 0;

    // The arena of one batch size: offsets (floats) per value and per step, -1 for none.
    struct Free { void operator()(void* p) const; };
    std::unique_ptr<float, Free> arena_;
    int64_t capacity_ = 0, laid_out_for_ = -1;
    const float* input_ = nullptr;
    std::vector<int64_t> fwd_at_, grad_at_, z_at_, aux_at_;  // aux: argmax / which / mask
    std::vector<int64_t> part_at_;  // per step: scratch for gradients added to earlier ones
    // Scratch for a shared layer's weight gradients after the first call's (sized for the
    // largest), and per first call whether this step's backward has written its gradients yet.
    int64_t weight_part_at_ = -1;
    std::vector<char> weights_set_;
    int64_t onehot_at_ = -1;        // sparse labels as one-hot rows (unfused cross-entropy)
    std::vector<char> grad_set_;
    // A merge step's input and input-gradient pointers (kept, so a step allocates nothing).
    std::vector<const float*> merge_inputs_;
    std::vector<float*> merge_grads_;
};

// Looks up "layer/name" with exactly `shape` (throws naming the tensor otherwise).
using TrainTensorLookup =
    std::function<float*(const std::string& key, const std::vector<int64_t>& shape)>;

// architecture: Model.get_config() JSON (stack or graph); weight/grad: views into the model's
// arenas, borrowed; w/g arenas (trainable_floats,): what the optimizer updates. bf16_products:
// mixed-precision training (TrainPlan::set_bf16_products). Regularizers are
// added afterwards (add_regularizer). Throws std::runtime_error naming the layer for anything the
// plan does not run (cnnfast/model.py decides which models come here; this is the backstop).
std::unique_ptr<TrainPlan> build_train_plan(const std::string& architecture_json,
                                            const TrainTensorLookup& weight,
                                            const TrainTensorLookup& grad, TrainLoss loss,
                                            float* weight_arena, float* grad_arena,
                                            int64_t trainable_floats, bool bf16_products = false);

}  // namespace cnnfast
