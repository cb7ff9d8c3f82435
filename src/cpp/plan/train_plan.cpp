#include "train_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <sys/mman.h>

#include "conv2d_pool.h"
#include "batchnorm.h"
#include "dropout.h"
#include "gemm_bf16.h"
#include "noise.h"
#include "optim.h"
#include "random_affine.h"
#include "random_crop.h"
#include "random_flip.h"
#include "rescaling.h"
#include "losses.h"
#include "softmax_xent.h"
#include "spatial.h"

namespace cnnfast {

namespace {

constexpr int64_t kAlign = 16;  // floats: every buffer starts on a 64-byte boundary

// numpy's argmax: the first maximum, or the first NaN if there is one.
int64_t argmax_of(const float* row, int64_t cols) {
    int64_t best = 0;
    if (std::isnan(row[0])) return 0;
    for (int64_t j = 1; j < cols; ++j) {
        if (std::isnan(row[j])) return j;
        if (row[j] > row[best]) best = j;
    }
    return best;
}

// numpy's sign: -1, 0 or 1, NaN for NaN.
float sign_of(float w) { return w > 0.0f ? 1.0f : w < 0.0f ? -1.0f : w == 0.0f ? 0.0f : w; }

// Floats of a step's weight gradients: (kernel or alpha, bias).
std::pair<int64_t, int64_t> weight_floats(const TrainStep& s) {
    if (s.kind == PlanOp::batchnorm) return {s.dw ? s.bn.C : 0, s.db ? s.bn.C : 0};
    const int64_t bias = s.db ? (s.kind == PlanOp::dense ? s.dense.OUT : s.conv.K) : 0;
    switch (s.kind) {
        case PlanOp::conv2d:
        case PlanOp::conv2d_relu_maxpool:
            return {s.conv.KH * s.conv.KW * (s.conv.C / s.conv.groups) * s.conv.K, bias};
        case PlanOp::dense: return {s.dense.IN * s.dense.OUT, bias};
        case PlanOp::prelu: return {s.alpha_size, 0};
        default: return {0, 0};
    }
}

int64_t aligned(int64_t floats) { return (floats + kAlign - 1) / kAlign * kAlign; }

// Steps whose backward hands the gradient on unchanged (GaussianNoise adds a constant).
bool identity_backward(const TrainStep& s) {
    return s.kind == PlanOp::view || s.kind == PlanOp::gaussian_noise ||
           ((s.kind == PlanOp::activation || s.kind == PlanOp::softmax) &&
            s.act_backward_elsewhere);
}

}  // namespace

void TrainPlan::Free::operator()(void* p) const { std::free(p); }

// A batch normalization whose input is read by it alone writes its input's gradient over its
// output's (its kernels allow dx == dy): the writes land on lines the same pass has just read
// rather than on a fresh buffer's, and the arena holds one gradient fewer (ResNet-20: every
// block's first normalization). Not where the output's gradient buffer is shared with another
// value (a join's, share_join_gradients), which would still need it afterwards.
void TrainPlan::normalize_gradients_in_place() {
    std::vector<char> shared(values_.size(), 0);
    for (const TrainValue& v : values_)
        if (v.grad_alias_of >= 0) shared[v.grad_alias_of] = 1;
    for (TrainStep& s : steps_) {
        if (s.kind != PlanOp::batchnorm || s.inputs.size() != 1) continue;
        const int r = s.inputs[0], o = s.output;
        if (r == 0 || r == output_ || o == output_ || values_[r].consumers != 1) continue;
        // One level of sharing (grad() resolves one): neither buffer already another's.
        if (values_[r].grad_alias_of >= 0 || values_[o].grad_alias_of >= 0 || shared[o] ||
            shared[r])
            continue;
        values_[r].grad_alias_of = o;
        shared[o] = 1;
        fusions_.push_back(s.label + ": its input's gradient written over its output's");
    }
}

// A two-input add hands both inputs the same gradient. Where input b is read by the add alone
// and its producer reads its gradient without writing it (batch normalization, a linear
// convolution or dense layer), b's gradient is the buffer of the other input a, which the add
// writes once (a residual join: one 8 MB write fewer per block in ResNet-20's first stage).
// The buffer is a's until a's other consumers add to it; the add reaches a first, and those
// consumers all come before b's producer in the forward order, so their backward runs after it
// has read b's gradient.
void TrainPlan::share_join_gradients() {
    std::vector<int> producer(values_.size(), -1), last_reader(values_.size(), -1);
    for (size_t i = 0; i < steps_.size(); ++i) {
        producer[steps_[i].output] = static_cast<int>(i);
        for (int r : steps_[i].inputs) last_reader[r] = static_cast<int>(i);
    }
    auto reads_gradient_only = [](const TrainStep& p) {
        if (p.kind == PlanOp::batchnorm) return true;
        return (p.kind == PlanOp::conv2d || p.kind == PlanOp::dense) &&
               p.act == Activation::linear && !p.softmax;
    };
    for (size_t i = 0; i < steps_.size(); ++i) {
        const TrainStep& s = steps_[i];
        if (s.kind != PlanOp::merge || s.merge_op != MergeOp::add || s.inputs.size() != 2)
            continue;
        for (int side = 1; side >= 0; --side) {
            const int a = s.inputs[1 - side], b = s.inputs[side];
            if (a == b || a == 0 || b == 0 || a == output_ || b == output_) continue;
            if (values_[a].grad_alias_of >= 0 || values_[b].grad_alias_of >= 0) continue;
            if (values_[b].consumers != 1 || last_reader[a] != static_cast<int>(i)) continue;
            const int pb = producer[b];
            if (pb < 0 || !reads_gradient_only(steps_[pb])) continue;
            bool a_read_between = false;  // by b's producer or a step after it
            for (int j = pb; j < static_cast<int>(i) && !a_read_between; ++j)
                for (int r : steps_[j].inputs) a_read_between = a_read_between || r == a;
            if (a_read_between) continue;
            values_[b].grad_alias_of = a;
            fusions_.push_back(s.label + ": one gradient for both inputs (" +
                               steps_[pb].label + " reads it where the add wrote it)");
            break;
        }
    }
}

TrainPlan::TrainPlan(const Plan& plan, std::vector<TrainStep> steps, TrainLoss loss,
                     float* weights, float* grads, int64_t trainable_floats)
    : steps_(std::move(steps)), fusions_(plan.fusions), calls_(plan.calls) {
    for (const PlanValue& pv : plan.values) {
        TrainValue v;
        static_cast<PlanValue&>(v) = pv;
        values_.push_back(std::move(v));
    }
    output_ = plan.output;
    loss_ = loss;
    weights_ = weights;
    grads_ = grads;
    trainable_floats_ = trainable_floats;
    logits_step_ = logits_step(plan);
    for (const TrainStep& s : steps_) {
        for (int r : s.inputs) ++values_[r].consumers;
        values_[s.output].produced = true;
    }
    // An unchanged gradient read by one step only is written where that step reads it.
    for (TrainStep& s : steps_) {
        const int r = s.inputs.empty() ? 0 : s.inputs[0];
        if (identity_backward(s) && r != 0 && values_[r].consumers == 1) {
            const int root = values_[r].grad_alias_of >= 0 ? values_[r].grad_alias_of : r;
            values_[s.output].grad_alias_of = root;
        }
    }
    share_join_gradients();
    normalize_gradients_in_place();
    fwd_at_.assign(values_.size(), -1);
    grad_at_.assign(values_.size(), -1);
    z_at_.assign(steps_.size(), -1);
    aux_at_.assign(steps_.size(), -1);
    part_at_.assign(steps_.size(), -1);
    grad_set_.assign(values_.size(), 0);
    weights_set_.assign(steps_.size(), 0);
}

std::vector<std::string> TrainPlan::dropout_labels() const {
    std::vector<std::string> labels;
    for (const TrainStep& s : steps_)
        if (draws_seed(s.kind)) labels.push_back(s.label);
    return labels;
}

void TrainPlan::layout(int64_t n) {
    int64_t end = 0;
    auto take = [&](int64_t floats) {
        const int64_t at = end;
        end += aligned(floats);
        return at;
    };
    for (size_t v = 1; v < values_.size(); ++v) {
        // A value no step writes (the convolution inside a fused head) gets no buffers, and
        // one nothing reads no gradient.
        const TrainValue& val = values_[v];
        const bool read = val.consumers > 0 || static_cast<int>(v) == output_;
        fwd_at_[v] = val.produced && val.view_of < 0 ? take(n * val.size) : -1;
        grad_at_[v] = val.produced && read && val.grad_alias_of < 0 ? take(n * val.size) : -1;
    }
    for (size_t i = 0; i < steps_.size(); ++i) {
        const TrainStep& s = steps_[i];
        const int64_t out = n * values_[s.output].size;
        const bool separate_z = (s.kind == PlanOp::conv2d ||
                                 s.kind == PlanOp::dense) &&
                                !s.kernel_act && (s.softmax || s.act != Activation::linear);
        z_at_[i] = separate_z ? take(out) : -1;
        // argmax / which are int32, the mask uint8, LRN's scale float: one float slot holds any.
        const bool aux = s.kind == PlanOp::max_pool2d ||
                         s.kind == PlanOp::conv2d_relu_maxpool ||
                         s.kind == PlanOp::dropout || s.kind == PlanOp::lrn ||
                         s.kind == PlanOp::spatial_dropout || s.kind == PlanOp::random_flip ||
                         s.kind == PlanOp::random_crop;
        // The per-image transforms (N, 8) of RandomTranslation and RandomRotation.
        const bool transforms = s.kind == PlanOp::random_translation ||
                                s.kind == PlanOp::random_rotation;
        aux_at_[i] = aux ? take(out) : transforms ? take(8 * n) : -1;
        // BatchNormalization keeps the batch's mean and variance (2C floats) for its backward,
        // GlobalMaxPooling2D the int32 argmax of its (n, C) output.
        if (s.kind == PlanOp::batchnorm) aux_at_[i] = take(2 * s.bn.C);
        if (s.kind == PlanOp::global_max_pool2d) aux_at_[i] = take(out);
        // Scratch for input gradients added to ones already there (a value read twice).
        int64_t parts = 0;
        bool shared = false;
        for (int r : s.inputs) {
            parts += n * values_[r].size;
            shared = shared || values_[r].consumers > 1;
        }
        part_at_[i] = shared ? take(parts) : -1;
    }
    if (loss_ == TrainLoss::sparse_categorical_crossentropy && logits_step_ < 0)
        onehot_at_ = take(n * values_[output_].size);
    int64_t weight_part = 0;
    for (const TrainStep& s : steps_)
        if (s.first_call >= 0) {
            const auto [w, b] = weight_floats(s);
            weight_part = std::max(weight_part, aligned(w) + b);
        }
    weight_part_at_ = weight_part ? take(weight_part) : -1;
    if (end > capacity_) {
        // On 2 MiB pages where the kernel allows, as NumPy puts the Python layers' large
        // buffers: a step sweeps the whole arena, and on 4 KiB pages that is a TLB miss every
        // 4 KiB (measured: keras_mnist_cnn at batch 128 trained 3% slower than the layer walk).
        const size_t huge = size_t(2) << 20;
        size_t bytes = (static_cast<size_t>(end) * sizeof(float) + 63) / 64 * 64;
        const bool big = bytes >= huge / 4;
        if (big) bytes = (bytes + huge - 1) / huge * huge;
        float* p = static_cast<float*>(std::aligned_alloc(big ? huge : 64, bytes));
        if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
        if (big) madvise(p, bytes, MADV_HUGEPAGE);
#endif
        arena_.reset(p);
        capacity_ = end;
    }
    laid_out_for_ = n;
}

float* TrainPlan::fwd(int v) const {
    while (values_[v].view_of >= 0) v = values_[v].view_of;
    return v == 0 ? const_cast<float*>(input_) : arena_.get() + fwd_at_[v];
}

float* TrainPlan::grad(int v) const {
    while (values_[v].grad_alias_of >= 0) v = values_[v].grad_alias_of;
    return arena_.get() + grad_at_[v];
}

void TrainPlan::forward(const float* x, int64_t n, const uint64_t* seeds) {
    input_ = x;
    int64_t seed_index = 0;
    for (size_t i = 0; i < steps_.size(); ++i) {
        const TrainStep& s = steps_[i];
        const float* in = fwd(s.inputs[0]);
        float* out = fwd(s.output);
        const int64_t count = n * values_[s.output].size;
        float* z = z_at_[i] >= 0 ? arena_.get() + z_at_[i] : out;
        void* aux = aux_at_[i] >= 0 ? arena_.get() + aux_at_[i] : nullptr;
        switch (s.kind) {
            case PlanOp::conv2d: {
                Conv2dDims d = s.conv;
                d.N = n;
                conv2d_forward(z, in, s.w, s.b, d, s.kernel_act ? s.act : Activation::linear, 1.0f);
                break;
            }
            case PlanOp::dense: {
                DenseDims d = s.dense;
                d.N *= n;
                dense_forward(z, in, s.w, s.b, d, s.kernel_act);
                break;
            }
            case PlanOp::conv2d_relu_maxpool: {
                Conv2dDims d = s.conv;
                d.N = n;
                conv2d_relu_maxpool_forward(out, static_cast<int32_t*>(aux), in, s.w, s.b, d);
                break;
            }
            case PlanOp::max_pool2d: {
                Pool2dDims d = s.pool;
                d.N = n;
                max_pool2d_forward(out, static_cast<int32_t*>(aux), in, d);
                break;
            }
            case PlanOp::avg_pool2d: {
                Pool2dDims d = s.pool;
                d.N = n;
                avg_pool2d_forward(out, in, d);
                break;
            }
            case PlanOp::activation:
                activation_forward(out, in, count, s.act, s.act_alpha);
                break;
            case PlanOp::softmax:
                softmax_forward(out, in, count / s.cols, s.cols);
                break;
            case PlanOp::dropout:
                dropout_forward(out, static_cast<uint8_t*>(aux), in, count, s.rate,
                                seeds[seed_index++]);
                break;
            case PlanOp::prelu:
                prelu_forward(out, in, s.w, count, s.alpha_size);
                break;
            case PlanOp::lrn: {
                LrnDims d = s.lrn;
                d.rows *= n;
                lrn_forward(out, static_cast<float*>(aux), in, d);
                break;
            }
            case PlanOp::merge:
            case PlanOp::concat: {
                std::vector<const float*>& ins = merge_inputs_;
                ins.clear();
                for (int r : s.inputs) ins.push_back(fwd(r));
                const int64_t k = static_cast<int64_t>(ins.size());
                if (s.kind == PlanOp::merge)
                    merge_forward(out, ins.data(), k, count, s.merge_op, s.kernel_act);
                else
                    concat_forward(out, ins.data(), s.widths.data(), k, count / s.cols);
                break;
            }
            case PlanOp::rescaling:
                rescaling_forward(out, in, s.scale.data(), s.offset.data(), count,
                                  static_cast<int64_t>(s.scale.size()));
                break;
            case PlanOp::gaussian_noise:
                gaussian_noise_forward(out, in, count, s.rate, seeds[seed_index++]);
                break;
            case PlanOp::spatial_dropout: {
                const auto& sh = values_[s.output].shape;
                spatial_dropout_forward(out, static_cast<uint8_t*>(aux), in, n, sh[0] * sh[1],
                                        sh[2], s.rate, seeds[seed_index++]);
                break;
            }
            case PlanOp::random_translation:
            case PlanOp::random_rotation: {
                const auto& sh = values_[s.output].shape;
                const AffineDims d{n, sh[0], sh[1], sh[2]};
                float* t = static_cast<float*>(aux);
                const float* f = s.factors.data();
                if (s.kind == PlanOp::random_translation)
                    random_translation_transforms(t, d, f[0], f[1], f[2], f[3],
                                                  seeds[seed_index++]);
                else
                    random_rotation_transforms(t, d, f[0], f[1], seeds[seed_index++]);
                affine_transform_forward(out, in, t, d, static_cast<FillMode>(s.fill_mode),
                                         s.bilinear, s.fill_value);
                break;
            }
            case PlanOp::random_crop: {
                const auto& i = values_[s.inputs[0]].shape;
                const auto& o = values_[s.output].shape;
                random_crop_forward(out, static_cast<int32_t*>(aux), in,
                                    CropDims{n, i[0], i[1], i[2], o[0], o[1]},
                                    seeds[seed_index++]);
                break;
            }
            case PlanOp::random_flip: {
                const auto& sh = values_[s.output].shape;
                random_flip_forward(out, static_cast<uint8_t*>(aux), in, n, sh[0], sh[1], sh[2],
                                    s.flip_mode, seeds[seed_index++]);
                break;
            }
            case PlanOp::view:
                break;
            case PlanOp::batchnorm: {
                BatchNormDims d = s.bn;
                d.rows *= n;
                // Batch statistics, then the moving ones follow (BatchNormalization.forward);
                // a frozen layer normalizes with the moving statistics (Keras 3).
                if (s.trainable) {
                    float* stats = static_cast<float*>(aux);
                    batchnorm_forward_training(out, stats, stats + d.C, in, s.w, s.b, d,
                                               s.kernel_act);
                    batchnorm_update_moving(s.moving_mean, s.moving_var, stats, stats + d.C, d.C,
                                            s.momentum);
                } else {
                    batchnorm_forward_inference(out, in, s.w, s.b, s.moving_mean, s.moving_var, d,
                                                s.kernel_act);
                }
                break;
            }
            case PlanOp::global_avg_pool2d:
            case PlanOp::global_max_pool2d: {
                GlobalPoolDims d = s.gpool;
                d.N = n;
                if (s.kind == PlanOp::global_avg_pool2d)
                    global_avg_pool2d_forward(out, in, d);
                else
                    global_max_pool2d_forward(out, static_cast<int32_t*>(aux), in, d);
                break;
            }
            case PlanOp::zero_pad2d:
            case PlanOp::crop2d: {
                Pad2dDims d = s.pad;
                d.N = n;
                if (s.kind == PlanOp::zero_pad2d) zero_pad2d(out, in, d);
                else crop2d(out, in, d);
                break;
            }
            case PlanOp::upsample2d: {
                Upsample2dDims d = s.up;
                d.N = n;
                upsample2d_nearest_forward(out, in, d);
                break;
            }
        }
        // The activation after conv/dense when the kernel did not apply it (Python's
        // _Activation.forward on the layer's pre-activation z).
        if (z != out) {
            if (s.softmax)
                softmax_forward(out, z, count / s.cols, s.cols);
            else
                activation_forward(out, z, count, s.act, s.act_alpha);
        }
    }
}

double TrainPlan::loss_and_gradient(const void* labels, const double* sample_weight, int64_t n) {
    const float* out = fwd(output_);
    float* g = grad(output_);
    const int64_t size = values_[output_].size;
    const bool sparse = loss_ == TrainLoss::sparse_categorical_crossentropy;
    const auto* ids = static_cast<const int32_t*>(labels);
    const auto* targets = static_cast<const float*>(labels);
    if (sparse)
        for (int64_t i = 0; i < n; ++i)
            if (ids[i] < 0 || ids[i] >= size)
                throw std::invalid_argument("TrainPlan.step: label " + std::to_string(ids[i]) +
                                            " at row " + std::to_string(i) +
                                            " is out of range [0, " + std::to_string(size) + ")");
    const float* logits = nullptr;
    if (logits_step_ >= 0) {
        const TrainStep& s = steps_[logits_step_];
        logits = s.kind == PlanOp::softmax || s.kind == PlanOp::activation
                     ? fwd(s.inputs[0])
                     : arena_.get() + z_at_[logits_step_];
    }
    float* onehot = nullptr;
    if (sparse && !logits) {
        onehot = arena_.get() + onehot_at_;
        std::memset(onehot, 0, sizeof(float) * n * size);
        for (int64_t i = 0; i < n; ++i) onehot[i * size + ids[i]] = 1.0f;
    }
    // The batch mean of rows [row, row + rows), with its gradient into dg when non-null.
    auto loss_of = [&](float* dg, int64_t row, int64_t rows) {
        const int64_t at = row * size;
        if (loss_ == TrainLoss::binary_crossentropy)
            return logits ? binary_xent_logits(dg, logits + at, targets + at, rows * size, 0.0,
                                               true)
                          : binary_xent(dg, out + at, targets + at, rows * size, 0.0);
        if (logits && sparse)
            return softmax_xent_sparse_forward_backward(dg, nullptr, logits + at, ids + row, rows,
                                                        size);
        if (logits) return softmax_xent_forward_backward(dg, nullptr, logits + at, targets + at,
                                                         rows, size);
        // The losses of kernels/losses.h: the same calls as cnnfast/losses.py makes.
        const int64_t cols = values_[output_].shape.back();
        switch (loss_) {
            case TrainLoss::mse:
                return mse(dg, out + at, targets + at, rows * size);
            case TrainLoss::mean_absolute_error:
                return mean_absolute_error(dg, out + at, targets + at, rows * size);
            case TrainLoss::huber:
                return huber(dg, out + at, targets + at, rows * size, 1.0);
            case TrainLoss::kl_divergence:
                return kl_divergence(dg, out + at, targets + at, rows * size / cols, cols);
            case TrainLoss::categorical_hinge:
                return categorical_hinge(dg, out + at, targets + at, rows * size / cols, cols);
            default:
                break;
        }
        return categorical_xent(dg, out + at, (onehot ? onehot : targets) + at, rows, size);
    };
    const double loss = loss_of(g, 0, n);
    if (!sample_weight) return loss;
    // Keras 3 sample weights (Model._weighted_loss): sum(w_i l_i) / N, gradient rows times w_i.
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const float w = static_cast<float>(sample_weight[i]);
        for (int64_t j = 0; j < size; ++j) g[i * size + j] *= w;
        total += loss_of(nullptr, i, 1) * sample_weight[i];
    }
    return total / static_cast<double>(n);
}

int64_t TrainPlan::count_correct(const void* labels, int64_t n) const {
    const float* out = fwd(output_);
    const int64_t size = values_[output_].size;
    int64_t correct = 0;
    // The three flavours of Model._correct, chosen by the targets' shape.
    if (loss_ == TrainLoss::sparse_categorical_crossentropy) {
        const auto* ids = static_cast<const int32_t*>(labels);
        for (int64_t i = 0; i < n; ++i) correct += argmax_of(out + i * size, size) == ids[i];
        return correct;
    }
    const auto* y = static_cast<const float*>(labels);
    const int64_t cols = values_[output_].shape.back();
    if (cols == 1) {
        for (int64_t i = 0; i < n * size; ++i) correct += (out[i] > 0.5f) == (y[i] > 0.5f);
        return correct;
    }
    for (int64_t r = 0; r < n * size / cols; ++r)
        correct += argmax_of(out + r * cols, cols) == argmax_of(y + r * cols, cols);
    return correct;
}

void TrainPlan::backward(int64_t n, const GradientsReady& ready) {
    std::fill(grad_set_.begin(), grad_set_.end(), 0);
    std::fill(weights_set_.begin(), weights_set_.end(), 0);
    std::fill(regularized_.begin(), regularized_.end(), 0);
    grad_set_[output_] = 1;
    for (size_t i = steps_.size(); i-- > 0;) {
        backward_step(i, n);
        // A layer's weight gradients are final after its only call, or after its first call
        // for a shared layer (backward reaches it last): add its regularizers' gradients, then
        // say so (data-parallel training starts reducing them while backward goes on).
        const TrainStep& s = steps_[i];
        const bool last_call = s.first_call < 0 || s.first_call == static_cast<int>(i);
        if (last_call && (s.dw || s.db) && grad_set_[s.output]) {
            add_regularizer_gradients(s.dw, s.db);
            if (ready) {
                const auto [wn, bn] = weight_floats(s);
                if (s.dw) ready(s.dw - grads_, wn);
                if (s.db) ready(s.db - grads_, bn);
            }
        }
    }
}

void TrainPlan::backward_step(size_t i, int64_t n) {
    const TrainStep& s = steps_[i];
    if (!grad_set_[s.output]) return;  // nothing downstream needs this value
    // A shared layer's gradients are the sum over its calls (Model._backward): the call
    // that backward reaches first writes them; each later one writes the scratch, which is
    // added to them in float32 after its kernel (kernel, then bias).
    float* dw = s.dw;
    float* db = s.db;
    const bool add_weights = s.first_call >= 0 && weights_set_[s.first_call];
    if (add_weights) {
        dw = arena_.get() + weight_part_at_;
        db = s.db ? dw + aligned(weight_floats(s).first) : nullptr;
    }
    if (s.first_call >= 0) weights_set_[s.first_call] = 1;
    auto settle_weights = [&] {
        if (!add_weights) return;
        const auto [wn, bn] = weight_floats(s);
        for (int64_t k = 0; k < wn; ++k) s.dw[k] += dw[k];
        for (int64_t k = 0; k < bn; ++k) s.db[k] += db[k];
    };
    float* dy = grad(s.output);
    const float* y = fwd(s.output);
    const int64_t count = n * values_[s.output].size;
    float* part = part_at_[i] >= 0 ? arena_.get() + part_at_[i] : nullptr;
    // Where an input's gradient goes: its buffer for the first contribution, else the
    // scratch, added afterwards in this order (Model._backward: grads[r] + part).
    auto target = [&](int r, float* scratch) { return grad_set_[r] ? scratch : grad(r); };
    auto settle = [&](int r, const float* t) {
        float* g = grad(r);
        if (t != g) {
            // g + t, on every thread (the merge kernel's add: the same float sums). A residual
            // block's input gradient is one of these, up to 8 MB each in ResNet-20's first stage.
            const float* both[2] = {g, t};
            merge_forward(g, both, 2, n * values_[r].size, MergeOp::add);
        }
        grad_set_[r] = 1;
    };
    const int r = s.inputs[0];
    const float* x = fwd(r);
    // d(loss)/d(pre-activation) in place over dy, as _Activation.backward does.
    if ((s.kind == PlanOp::conv2d || s.kind == PlanOp::dense) &&
        !s.act_backward_elsewhere) {
        if (s.softmax) {
            softmax_backward(dy, y, dy, count / s.cols, s.cols);
        } else if (s.act != Activation::linear) {
            const float* z = z_at_[i] >= 0 ? arena_.get() + z_at_[i] : y;
            activation_backward(dy, z, y, dy, count, s.act, s.act_alpha);
        }
    }
    if (s.kind == PlanOp::merge || s.kind == PlanOp::concat) {
        std::vector<float*>& dins = merge_grads_;
        std::vector<const float*>& ins = merge_inputs_;
        dins.clear();
        ins.clear();
        float* scratch = part;
        for (int in : s.inputs) {
            ins.push_back(fwd(in));
            const int64_t width = n * values_[in].size;
            if (in == 0) {
                dins.push_back(nullptr);
            } else if (!grad_set_[in]) {
                dins.push_back(grad(in));
                grad_set_[in] = 1;  // written by this call, before any later input's part
            } else {
                dins.push_back(scratch);
            }
            scratch += width;
        }
        const int64_t k = static_cast<int64_t>(ins.size());
        if (s.kind == PlanOp::merge)
            merge_backward(dins.data(), dy, ins.data(), k, count, s.merge_op,
                           s.kernel_act ? y : nullptr);
        else
            concat_backward(dins.data(), dy, s.widths.data(), k, count / s.cols);
        for (size_t j = 0; j < s.inputs.size(); ++j)
            if (s.inputs[j] != 0) settle(s.inputs[j], dins[j]);
        return;
    }
    if (s.kind == PlanOp::conv2d_relu_maxpool) {
        Conv2dDims d = s.conv;
        d.N = n;
        conv2d_relu_maxpool_backward_weights(s.dw, s.db, x, dy, y,
                                             static_cast<const int32_t*>(static_cast<void*>(
                                                 arena_.get() + aux_at_[i])),
                                             d);
        return;
    }
    if (s.kind == PlanOp::conv2d) {
        Conv2dDims d = s.conv;
        d.N = n;
        conv2d_backward_weights(dw, db, x, dy, d);
        settle_weights();
        if (r != 0) {
            float* t = target(r, part);
            conv2d_backward_data(t, dy, s.w, d);
            settle(r, t);
        }
        return;
    }
    if (s.kind == PlanOp::dense) {
        DenseDims d = s.dense;
        d.N *= n;
        float* t = r != 0 ? target(r, part) : nullptr;
        dense_backward(t, dw, db, x, s.w, dy, d);
        settle_weights();
        if (t) settle(r, t);
        return;
    }
    if (s.kind == PlanOp::prelu) {
        // PReLU.backward writes dx over dy even on the data, which needs no gradient.
        float* t = r != 0 ? target(r, part) : dy;
        prelu_backward(t, dw, x, s.w, dy, count, s.alpha_size);
        settle_weights();
        if (r != 0) settle(r, t);
        return;
    }
    if (s.kind == PlanOp::batchnorm) {
        BatchNormDims d = s.bn;
        d.rows *= n;
        float* t = r != 0 ? target(r, part) : nullptr;
        const float* stats = arena_.get() + aux_at_[i];
        const float* relu_y = s.kernel_act ? y : nullptr;  // the fused ReLU's output
        if (s.trainable) {
            // No gamma (scale=False): no dgamma, and the scratch's first C floats are db's.
            batchnorm_backward_training(t, s.dw ? dw : nullptr, db, x, dy, stats,
                                        stats + d.C, s.w, d, relu_y);
            settle_weights();
        } else if (t) {
            batchnorm_backward_inference(t, dy, s.w, s.moving_var, d, relu_y);
        }
        if (t) settle(r, t);
        return;
    }
    if (r == 0) return;  // the data needs no gradient
    if (identity_backward(s)) {
        if (values_[s.output].grad_alias_of >= 0) {
            grad_set_[r] = 1;  // dy already lies in r's gradient buffer
        } else {
            float* t = target(r, part);
            if (t != dy) std::memcpy(t, dy, sizeof(float) * count);
            settle(r, t);
        }
        return;
    }
    float* t = target(r, part);
    void* aux = aux_at_[i] >= 0 ? arena_.get() + aux_at_[i] : nullptr;
    switch (s.kind) {
        case PlanOp::max_pool2d: {
            Pool2dDims d = s.pool;
            d.N = n;
            // The folded ReLU's backward at the pooled resolution (MaxPooling2D.relu_before).
            if (s.relu_before) activation_backward(dy, y, y, dy, count, Activation::relu, 1.0f);
            max_pool2d_backward(t, dy, static_cast<const int32_t*>(aux), d);
            break;
        }
        case PlanOp::avg_pool2d: {
            Pool2dDims d = s.pool;
            d.N = n;
            avg_pool2d_backward(t, dy, d);
            break;
        }
        case PlanOp::activation:
            activation_backward(t, x, y, dy, count, s.act, s.act_alpha);
            break;
        case PlanOp::softmax:
            softmax_backward(t, y, dy, count / s.cols, s.cols);
            break;
        case PlanOp::dropout:
            dropout_backward(t, dy, static_cast<const uint8_t*>(aux), count, s.rate);
            break;
        case PlanOp::lrn: {
            LrnDims d = s.lrn;
            d.rows *= n;
            lrn_backward(t, x, y, static_cast<const float*>(aux), dy, d);
            break;
        }
        case PlanOp::global_avg_pool2d: {
            GlobalPoolDims d = s.gpool;
            d.N = n;
            global_avg_pool2d_backward(t, dy, d);
            break;
        }
        case PlanOp::global_max_pool2d: {
            GlobalPoolDims d = s.gpool;
            d.N = n;
            global_max_pool2d_backward(t, dy, static_cast<const int32_t*>(aux), d);
            break;
        }
        case PlanOp::zero_pad2d:
        case PlanOp::crop2d: {
            Pad2dDims d = s.pad;
            d.N = n;
            if (s.kind == PlanOp::zero_pad2d) crop2d(t, dy, d);
            else zero_pad2d(t, dy, d);
            break;
        }
        case PlanOp::upsample2d: {
            Upsample2dDims d = s.up;
            d.N = n;
            upsample2d_nearest_backward(t, dy, d);
            break;
        }
        case PlanOp::rescaling:
            rescaling_backward(t, dy, s.scale.data(), count,
                               static_cast<int64_t>(s.scale.size()));
            break;
        case PlanOp::spatial_dropout: {
            const auto& sh = values_[s.output].shape;
            spatial_dropout_backward(t, dy, static_cast<const uint8_t*>(aux), n,
                                     sh[0] * sh[1], sh[2], s.rate);
            break;
        }
        case PlanOp::random_translation:
        case PlanOp::random_rotation: {
            const auto& sh = values_[s.output].shape;
            affine_transform_backward(t, dy, static_cast<const float*>(aux),
                                      AffineDims{n, sh[0], sh[1], sh[2]},
                                      static_cast<FillMode>(s.fill_mode), s.bilinear);
            break;
        }
        case PlanOp::random_crop: {
            const auto& in_shape = values_[r].shape;
            const auto& o = values_[s.output].shape;
            random_crop_backward(t, dy, static_cast<const int32_t*>(aux),
                                 CropDims{n, in_shape[0], in_shape[1], in_shape[2], o[0], o[1]});
            break;
        }
        case PlanOp::random_flip: {
            const auto& sh = values_[s.output].shape;
            random_flip_backward(t, dy, static_cast<const uint8_t*>(aux), n, sh[0], sh[1],
                                 sh[2]);
            break;
        }
        default:
            throw std::logic_error("TrainPlan: no backward for step " + s.label);
    }
    settle(r, t);
}

void TrainPlan::add_regularizer_gradients(const float* dw, const float* db) {
    // float32 in numpy's order (l2 term, then l1 term), as Layer.add_regularization_gradients.
    for (size_t j = 0; j < regularizers_.size(); ++j) {
        const TrainRegularizer& r = regularizers_[j];
        const bool mine = dw == nullptr ? true : (r.g == dw || (db && r.g == db));
        if (!mine || regularized_[j]) continue;
        regularized_[j] = 1;
        const float l2x2 = static_cast<float>(2.0 * r.l2), l1 = static_cast<float>(r.l1);
        if (r.l2)
            for (int64_t k = 0; k < r.size; ++k) r.g[k] += l2x2 * r.w[k];
        if (r.l1)
            for (int64_t k = 0; k < r.size; ++k) r.g[k] += l1 * sign_of(r.w[k]);
    }
}

TrainStepResult TrainPlan::step(const float* x, const void* labels, const double* sample_weight,
                                int64_t n, const uint64_t* dropout_seeds,
                                const OptimizerUpdate& update, const GradientsReady& ready) {
    if (n != laid_out_for_) layout(n);
    const Bf16ProductsScope products(bf16_products_);
    TrainStepResult result;
    forward(x, n, dropout_seeds);
    result.loss = loss_and_gradient(labels, sample_weight, n);
    // Model._train_step raises before any update, so the weights stay those of before the batch.
    if (!std::isfinite(result.loss)) return result;
    result.correct = count_correct(labels, n);
    backward(n, ready);
    // Layer regularizers (cnnfast/regularizers.py L1L2): loss in double; the gradients of the
    // weights backward did not reach (add_regularizer_gradients added the others).
    add_regularizer_gradients(nullptr, nullptr);
    for (const TrainRegularizer& r : regularizers_) {
        double abs_sum = 0.0, square_sum = 0.0;
        for (int64_t k = 0; k < r.size; ++k) {
            abs_sum += std::fabs(static_cast<double>(r.w[k]));
            square_sum += static_cast<double>(r.w[k]) * r.w[k];
        }
        double penalty = 0.0;
        if (r.l1) penalty += r.l1 * abs_sum;
        if (r.l2) penalty += r.l2 * square_sum;
        result.loss += penalty;
    }
    result.updated = true;
    if (!update.apply) return result;
    optimizer_update(weights_, grads_, update.slot0, update.slot1, update.slot2,
                     trainable_floats_, update.bounds, update.variables, update);
    return result;
}

// -- from the one builder's plan -------------------------------------------------------------

std::unique_ptr<TrainPlan> build_train_plan(const std::string& architecture_json,
                                            const TrainTensorLookup& weight,
                                            const TrainTensorLookup& grad, TrainLoss loss,
                                            float* weight_arena, float* grad_arena,
                                            int64_t trainable_floats, bool bf16_products) {
    Plan plan = build_plan(json::parse(architecture_json));
    fuse_for_training(plan, loss == TrainLoss::categorical_crossentropy ||
                                loss == TrainLoss::sparse_categorical_crossentropy,
                      loss == TrainLoss::binary_crossentropy);
    std::vector<TrainStep> steps;
    for (const PlanStep& ps : plan.steps) {
        TrainStep s;
        static_cast<PlanStep&>(s) = ps;
        if (ps.kernel.present()) {
            s.w = weight(ps.kernel.key, ps.kernel.shape);
            s.dw = grad(ps.kernel.key, ps.kernel.shape);
        }
        if (ps.bias.present()) {
            s.b = weight(ps.bias.key, ps.bias.shape);
            s.db = grad(ps.bias.key, ps.bias.shape);
        }
        if (ps.moving_mean.present()) {
            s.moving_mean = weight(ps.moving_mean.key, ps.moving_mean.shape);
            s.moving_var = weight(ps.moving_variance.key, ps.moving_variance.shape);
        }
        steps.push_back(std::move(s));
    }
    auto train_plan = std::make_unique<TrainPlan>(plan, std::move(steps), loss, weight_arena,
                                                  grad_arena, trainable_floats);
    train_plan->set_bf16_products(bf16_products);
    return train_plan;
}

}  // namespace cnnfast
