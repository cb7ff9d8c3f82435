#include "plan.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "conv2d_pool.h"
#include "layer_config.h"
#include "random_affine.h"
#include "random_flip.h"

namespace cnnfast {

using namespace config;

namespace {

int64_t size_of(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

bool trainable(const json::Value& cfg) {
    const json::Value* t = cfg.find("trainable");
    return !t || t->as_bool("trainable");
}

// The activation of conv/dense or an activation step, by Keras name.
void set_activation(PlanStep& s, const std::string& name, const std::string& who) {
    if (name == "softmax") {
        s.softmax = true;
        return;
    }
    if (!activation_from_name(name.c_str(), &s.act))
        fail(who + ": unknown activation '" + name + "'");
    // keras.activations.leaky_relu's default slope (the LeakyReLU layer's is 0.3, set there).
    if (s.act == Activation::leaky_relu) s.act_alpha = 0.2f;
}

// obj[key] = number, added or replaced (a derived config for a shared reader).
void set_number(json::Value& obj, const std::string& key, double number) {
    json::Value v;
    v.kind = json::Value::Kind::Number;
    v.number = number;
    for (auto& [k, value] : obj.object)
        if (k == key) {
            value = v;
            return;
        }
    obj.object.emplace_back(key, v);
}

int add_value(Plan& plan, std::vector<int64_t> shape, int view_of = -1) {
    PlanValue v;
    v.size = size_of(shape);
    v.shape = std::move(shape);
    v.view_of = view_of;
    plan.values.push_back(std::move(v));
    return static_cast<int>(plan.values.size()) - 1;
}

// -- normalization and spatial layers (issue 19) ----------------------------------------------

const std::vector<json::Value>& array_of(const json::Value& v, const std::string& what) {
    if (!v.is_array()) fail(what + ": expected a list");
    return v.array;
}

// (H, W, C) of a per-sample shape, or a failure naming the layer.
void require_hwc(const std::vector<int64_t>& shape, const std::string& who) {
    if (shape.size() != 3)
        fail(who + ": expects input of shape (H, W, C) per sample, got " + shape_str(shape));
}

// Keras's padding/cropping forms: n, [h, w] or [[top, bottom], [left, right]].
std::pair<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> read_two_sides(
    const json::Value& cfg, const char* key, const std::string& who) {
    const json::Value& v = cfg.at(key, who.c_str());
    const std::string what = who + " " + key;
    if (v.is_number()) {
        const int64_t n = v.as_int(what.c_str(), 0, kMaxDim);
        return {{n, n}, {n, n}};
    }
    const auto& axes = array_of(v, what);
    if (axes.size() != 2) fail(what + ": needs two entries (height, width)");
    std::pair<int64_t, int64_t> sides[2];
    for (int a = 0; a < 2; ++a) {
        if (axes[a].is_number()) {
            const int64_t n = axes[a].as_int(what.c_str(), 0, kMaxDim);
            sides[a] = {n, n};
        } else {
            const auto& pair = array_of(axes[a], what);
            if (pair.size() != 2) fail(what + ": each axis needs (before, after)");
            sides[a] = {pair[0].as_int(what.c_str(), 0, kMaxDim),
                        pair[1].as_int(what.c_str(), 0, kMaxDim)};
        }
    }
    return {sides[0], sides[1]};
}

bool read_bool(const json::Value& cfg, const char* key, bool otherwise, const std::string& who) {
    const json::Value* v = cfg.find(key);
    return v ? v->as_bool((who + " " + key).c_str()) : otherwise;
}

// The step of a BatchNormalization, global pooling, ZeroPadding2D, Cropping2D, UpSampling2D or
// Reshape call into `s` with its output shape; false for any other class.
bool read_normalization_or_spatial(PlanStep& s, std::vector<int64_t>& out, bool& view,
                                   const std::string& cls, const json::Value& cfg,
                                   const std::string& name, const std::vector<int64_t>& shape,
                                   const std::string& who) {
    view = false;
    out = shape;
    if (cls == "BatchNormalization") {
        if (shape.empty()) fail(who + ": the input has no channel axis");
        const int64_t rank = static_cast<int64_t>(shape.size());
        const json::Value* axis = cfg.find("axis");
        const json::Value* a = axis && axis->is_array() && axis->array.size() == 1
                                   ? &axis->array[0] : axis;
        const int64_t ax = a ? a->as_int((who + " axis").c_str(), -rank - 1, rank) : -1;
        if (ax != -1 && ax != rank)
            fail(who + ": normalizes the last axis only (axis=-1), got axis " + std::to_string(ax));
        const double eps = cfg.find("epsilon") ? cfg.at("epsilon", who.c_str()).as_number(
                                                     (who + " epsilon").c_str()) : 1e-3;
        const double momentum = cfg.find("momentum") ? cfg.at("momentum", who.c_str()).as_number(
                                                           (who + " momentum").c_str()) : 0.99;
        if (!(eps > 0.0) || !(momentum >= 0.0 && momentum <= 1.0))
            fail(who + ": needs epsilon > 0 and momentum in [0, 1]");
        const int64_t C = shape.back();
        s.kind = PlanOp::batchnorm;
        s.bn = {1, C, static_cast<float>(eps)};
        for (int64_t k = 0; k + 1 < rank; ++k) s.bn.rows *= shape[k];
        s.momentum = static_cast<float>(momentum);
        if (read_bool(cfg, "scale", true, who)) s.kernel = {name + "/gamma", {C}};
        if (read_bool(cfg, "center", true, who)) s.bias = {name + "/beta", {C}};
        s.moving_mean = {name + "/moving_mean", {C}};
        s.moving_variance = {name + "/moving_variance", {C}};
        return true;
    }
    if (cls == "GlobalAveragePooling2D" || cls == "GlobalMaxPooling2D") {
        require_hwc(shape, who);
        s.kind = cls == "GlobalMaxPooling2D" ? PlanOp::global_max_pool2d
                                             : PlanOp::global_avg_pool2d;
        s.gpool = {1, shape[0], shape[1], shape[2]};
        out = read_bool(cfg, "keepdims", false, who) ? std::vector<int64_t>{1, 1, shape[2]}
                                                      : std::vector<int64_t>{shape[2]};
        return true;
    }
    if (cls == "ZeroPadding2D" || cls == "Cropping2D") {
        require_hwc(shape, who);
        const bool pad = cls == "ZeroPadding2D";
        const auto [hs, ws] = read_two_sides(cfg, pad ? "padding" : "cropping", who);
        const int64_t dh = hs.first + hs.second, dw = ws.first + ws.second;
        const int64_t OH = pad ? shape[0] + dh : shape[0] - dh;
        const int64_t OW = pad ? shape[1] + dw : shape[1] - dw;
        if (OH < 1 || OW < 1 || OH > kMaxDim || OW > kMaxDim)
            fail(who + ": gives output " + std::to_string(OH) + " x " + std::to_string(OW) +
                 " for input " + shape_str(shape));
        s.kind = pad ? PlanOp::zero_pad2d : PlanOp::crop2d;
        s.pad = {1, pad ? shape[0] : OH, pad ? shape[1] : OW, shape[2],
                 hs.first, hs.second, ws.first, ws.second};
        out = {OH, OW, shape[2]};
        return true;
    }
    if (cls == "UpSampling2D") {
        require_hwc(shape, who);
        const json::Value* interp = cfg.find("interpolation");
        if (interp && interp->as_string((who + " interpolation").c_str()) != "nearest")
            fail(who + ": only interpolation \"nearest\" is supported");
        const auto [sh, sw] = int_pair(cfg, "size", who);
        if (shape[0] * sh > kMaxDim || shape[1] * sw > kMaxDim) fail(who + ": output too large");
        s.kind = PlanOp::upsample2d;
        s.up = {1, shape[0], shape[1], shape[2], sh, sw};
        out = {shape[0] * sh, shape[1] * sw, shape[2]};
        return true;
    }
    if (cls == "Reshape") {
        const auto& target = array_of(cfg.at("target_shape", who.c_str()), who + " target_shape");
        int64_t size = 1, known = 1, unknown = -1;
        for (int64_t d : shape) size *= d;
        out.clear();
        for (size_t k = 0; k < target.size(); ++k) {
            const int64_t d = target[k].as_int((who + " target_shape").c_str(), -1, kMaxDim);
            if (d == 0 || (d == -1 && unknown >= 0))
                fail(who + ": target_shape needs positive sizes and at most one -1");
            if (d == -1) unknown = static_cast<int64_t>(k);
            else known *= d;
            out.push_back(d);
        }
        if (unknown >= 0 && known > 0 && size % known == 0) out[unknown] = size / known;
        int64_t got = 1;
        for (int64_t d : out) got *= d;
        if (out.empty() || got != size)
            fail(who + ": cannot reshape input " + shape_str(shape) + " to the target shape");
        view = true;
        return true;
    }
    return false;
}

// One call of `layer` on the values `inputs`: appends its step and returns the value it writes.
int add_call(Plan& plan, const json::Value& layer, const std::vector<int>& inputs) {
    const std::string cls = layer.at("class_name", "layer").as_string("layer class_name");
    const json::Value& cfg = layer.at("config", cls.c_str());
    const std::string name = cfg.at("name", cls.c_str()).as_string((cls + " name").c_str());
    const std::string who = cls + " '" + name + "'";
    PlanStep s;
    s.label = who;
    s.inputs = inputs;
    s.trainable = trainable(cfg);
    const std::vector<int64_t> shape = plan.values[inputs[0]].shape;
    const int64_t size = size_of(shape);
    MergeOp op = MergeOp::add;
    auto output = [&](std::vector<int64_t> out_shape, int view_of = -1) {
        s.output = add_value(plan, std::move(out_shape), view_of);
        plan.steps.push_back(std::move(s));
        return plan.steps.back().output;
    };
    if (inputs.size() != 1 && !merge_op_of(cls, &op) && cls != "Concatenate")
        fail(who + ": takes one input, got " + std::to_string(inputs.size()));

    if (cls == "Conv2D") {
        const Conv2dConfig c = read_conv2d(cfg, shape, who);
        const int64_t filters = c.dims.K;
        s.kind = PlanOp::conv2d;
        s.conv = c.dims;
        s.kernel = {name + "/kernel", c.kernel_shape};
        if (c.use_bias) s.bias = {name + "/bias", {filters}};
        set_activation(s, c.activation, who);
        // What the conv kernels apply to their output while in cache: the activations whose
        // backward reads the output alone (Conv2D.forward, _Activation.conv_kernel_activation).
        s.kernel_act = !s.softmax && (s.act == Activation::relu || s.act == Activation::tanh ||
                                      s.act == Activation::sigmoid);
        s.cols = filters;
        return output({c.dims.OH, c.dims.OW, filters});
    }
    if (cls == "Dense") {
        const DenseConfig d = read_dense(cfg, shape, who);
        s.kind = PlanOp::dense;
        s.dense = {size / shape.back(), shape.back(), d.units};
        s.kernel = {name + "/kernel", {shape.back(), d.units}};
        if (d.use_bias) s.bias = {name + "/bias", {d.units}};
        set_activation(s, d.activation, who);
        s.kernel_act = !s.softmax && s.act == Activation::relu;  // the GEMM epilogue's
        s.cols = d.units;
        std::vector<int64_t> out = shape;
        out.back() = d.units;
        return output(out);
    }
    if (cls == "MaxPooling2D" || cls == "AveragePooling2D") {
        s.kind = cls == "MaxPooling2D" ? PlanOp::max_pool2d : PlanOp::avg_pool2d;
        s.pool = read_pool2d(cfg, shape, who);
        return output({s.pool.OH, s.pool.OW, shape[2]});
    }
    if (cls == "PReLU") {
        const std::vector<int64_t> alpha_shape = read_prelu_alpha_shape(cfg, shape, who);
        s.kind = PlanOp::prelu;
        s.alpha_size = size_of(alpha_shape);
        s.kernel = {name + "/alpha", alpha_shape};
        return output(shape);
    }
    if (cls == "LocalResponseNormalization") {
        s.kind = PlanOp::lrn;
        s.lrn = read_lrn(cfg, shape, who);
        return output(shape);
    }
    if (cls == "Flatten" || cls == "InputLayer")
        return output(cls == "Flatten" ? std::vector<int64_t>{size} : shape, inputs[0]);
    if (cls == "Dropout") {
        s.rate = cfg.at("rate", who.c_str()).as_number((who + " rate").c_str());
        if (!(s.rate >= 0.0 && s.rate < 1.0)) fail(who + ": rate must be in [0, 1)");
        // Dropout.forward with rate 0 returns its input.
        if (s.rate == 0.0) return output(shape, inputs[0]);
        s.kind = PlanOp::dropout;
        return output(shape);
    }
    if (cls == "Activation" || cls == "ReLU" || cls == "Softmax" || cls == "ELU") {
        const std::string act = cls == "Activation" ? activation_of(cfg, who)
                                : cls == "ReLU"     ? "relu"
                                : cls == "Softmax"  ? "softmax"
                                                    : "elu";
        set_activation(s, act, who);
        if (cls == "ELU")
            if (const json::Value* a = cfg.find("alpha"))
                s.act_alpha = static_cast<float>(a->as_number((who + " alpha").c_str()));
        s.cols = shape.empty() ? 1 : shape.back();
        // A linear activation returns its input (_Activation.forward).
        if (!s.softmax && s.act == Activation::linear) return output(shape, inputs[0]);
        s.kind = s.softmax ? PlanOp::softmax : PlanOp::activation;
        return output(shape);
    }
    if (cls == "DepthwiseConv2D" || cls == "SeparableConv2D") {
        // Issue 19. The depthwise part is a convolution of C groups with C*M filters: Keras'
        // depthwise kernel (KH,KW,C,M) is the grouped kernel (KH,KW,1,C*M) in memory, output
        // channel c*M + m reading input channel c; conv2d.cpp runs it on the depthwise kernels.
        if (shape.size() != 3) fail(who + ": needs (H, W, C) input, got " + shape_str(shape));
        const json::Value* dm = cfg.find("depth_multiplier");
        const int64_t C = shape[2];
        const int64_t M = dm ? dm->as_int((who + " depth_multiplier").c_str(), 1, kMaxDim) : 1;
        if (C * M > kMaxDim) fail(who + ": C * depth_multiplier is too large");
        const bool separable = cls == "SeparableConv2D";
        json::Value dcfg = cfg;
        set_number(dcfg, "filters", static_cast<double>(C * M));
        set_number(dcfg, "groups", static_cast<double>(C));
        const Conv2dConfig c = read_conv2d(dcfg, shape, who);
        const Conv2dDims& d = c.dims;
        s.kind = PlanOp::conv2d;
        s.conv = d;
        s.kernel = {name + "/depthwise_kernel", {d.KH, d.KW, C, M}};
        s.cols = C * M;
        if (!separable) {
            if (c.use_bias) s.bias = {name + "/bias", {C * M}};
            set_activation(s, c.activation, who);
            s.kernel_act = !s.softmax && (s.act == Activation::relu ||
                                          s.act == Activation::tanh ||
                                          s.act == Activation::sigmoid);
            return output({d.OH, d.OW, C * M});
        }
        // SeparableConv2D (MobileNet): the depthwise step (no bias, linear), then a pointwise
        // 1x1 convolution (C*M -> filters) with the bias and the activation. The steps carry
        // distinct labels: equal labels mark the calls of one shared layer.
        s.label = who + " depthwise";
        const bool layer_trainable = s.trainable;
        const int mid = output({d.OH, d.OW, C * M});
        PlanStep p;
        p.label = who;
        p.inputs = {mid};
        p.trainable = layer_trainable;
        const int64_t filters =
            cfg.at("filters", who.c_str()).as_int((who + " filters").c_str(), 1, kMaxDim);
        p.kind = PlanOp::conv2d;
        p.conv = {1, d.OH, d.OW, C * M, 1, 1, filters, d.OH, d.OW, 1, 1, 0, 0, 1};
        p.kernel = {name + "/pointwise_kernel", {1, 1, C * M, filters}};
        if (c.use_bias) p.bias = {name + "/bias", {filters}};
        set_activation(p, c.activation, who);
        p.kernel_act = !p.softmax && (p.act == Activation::relu || p.act == Activation::tanh ||
                                      p.act == Activation::sigmoid);
        p.cols = filters;
        p.output = add_value(plan, {d.OH, d.OW, filters});
        plan.steps.push_back(std::move(p));
        return plan.steps.back().output;
    }
    if (cls == "GaussianNoise" || cls == "SpatialDropout2D") {
        // Issue 19. Keras GaussianNoise(stddev), SpatialDropout2D(rate): noise in training, the
        // identity at inference; with no noise the identity always (no seed drawn, as in Python).
        const bool gaussian = cls == "GaussianNoise";
        const char* key = gaussian ? "stddev" : "rate";
        s.rate = cfg.at(key, who.c_str()).as_number((who + " " + key).c_str());
        if (gaussian ? !(s.rate >= 0.0 && std::isfinite(s.rate)) : !(s.rate >= 0.0 && s.rate < 1.0))
            fail(who + (gaussian ? ": stddev must be finite and >= 0" : ": rate must be in [0, 1)"));
        if (!gaussian && shape.size() != 3)
            fail(who + ": needs (H, W, C) input, got " + shape_str(shape));
        if (s.rate == 0.0) return output(shape, inputs[0]);
        s.kind = gaussian ? PlanOp::gaussian_noise : PlanOp::spatial_dropout;
        return output(shape);
    }
    if (cls == "RandomFlip") {
        // Issue 19. Keras RandomFlip(mode="horizontal_and_vertical"), in training only.
        if (shape.size() != 3) fail(who + ": needs (H, W, C) input, got " + shape_str(shape));
        const json::Value* m = cfg.find("mode");
        const std::string mode = m ? m->as_string((who + " mode").c_str())
                                   : "horizontal_and_vertical";
        s.flip_mode = mode == "horizontal" ? kFlipHorizontal
                      : mode == "vertical" ? kFlipVertical
                      : mode == "horizontal_and_vertical" ? kFlipHorizontal | kFlipVertical
                                                          : 0;
        if (!s.flip_mode) fail(who + ": unknown mode '" + mode + "'");
        s.kind = PlanOp::random_flip;
        return output(shape);
    }
    if (cls == "RandomTranslation" || cls == "RandomRotation") {
        // Issue 19. Keras RandomTranslation(height_factor, width_factor) / RandomRotation(
        // factor), fill_mode="reflect", interpolation="bilinear", fill_value=0: per-image
        // resampling in training, the identity at inference.
        if (shape.size() != 3) fail(who + ": needs (H, W, C) input, got " + shape_str(shape));
        const bool translation = cls == "RandomTranslation";
        auto factor = [&](const char* key) {
            const json::Value& f = cfg.at(key, who.c_str());
            const std::string what = who + " " + key;
            float lo, hi;
            if (f.is_array()) {
                if (f.array.size() != 2) fail(what + ": expected a number or [lower, upper]");
                lo = static_cast<float>(f.array[0].as_number(what.c_str()));
                hi = static_cast<float>(f.array[1].as_number(what.c_str()));
            } else {
                hi = static_cast<float>(f.as_number(what.c_str()));
                lo = -hi;
            }
            if (!(lo <= hi) || (translation && (lo < -1.0f || hi > 1.0f)))
                fail(what + ": needs lower <= upper" +
                     std::string(translation ? ", both in [-1, 1]" : ""));
            s.factors.push_back(lo);
            s.factors.push_back(hi);
        };
        if (translation) {
            factor("height_factor");
            factor("width_factor");
        } else {
            factor("factor");
        }
        const json::Value* fm = cfg.find("fill_mode");
        const std::string fill = fm ? fm->as_string((who + " fill_mode").c_str()) : "reflect";
        const FillMode modes[] = {FillMode::reflect, FillMode::wrap, FillMode::constant,
                                  FillMode::nearest};
        const char* names[] = {"reflect", "wrap", "constant", "nearest"};
        s.fill_mode = -1;
        for (int k = 0; k < 4; ++k)
            if (fill == names[k]) s.fill_mode = static_cast<int>(modes[k]);
        if (s.fill_mode < 0) fail(who + ": unknown fill_mode '" + fill + "'");
        const json::Value* ip = cfg.find("interpolation");
        const std::string interp = ip ? ip->as_string((who + " interpolation").c_str())
                                      : "bilinear";
        if (interp != "bilinear" && interp != "nearest")
            fail(who + ": interpolation must be bilinear or nearest, got '" + interp + "'");
        s.bilinear = interp == "bilinear";
        if (const json::Value* fv = cfg.find("fill_value"))
            s.fill_value = static_cast<float>(fv->as_number((who + " fill_value").c_str()));
        s.kind = translation ? PlanOp::random_translation : PlanOp::random_rotation;
        return output(shape);
    }
    if (cls == "RandomCrop") {
        // Issue 19. Keras RandomCrop(height, width): a random window in training, the image
        // resized to the window's size at inference (random_crop.h).
        if (shape.size() != 3) fail(who + ": needs (H, W, C) input, got " + shape_str(shape));
        const int64_t h = cfg.at("height", who.c_str()).as_int((who + " height").c_str(), 1,
                                                               kMaxDim);
        const int64_t w = cfg.at("width", who.c_str()).as_int((who + " width").c_str(), 1,
                                                              kMaxDim);
        if (h > shape[0] || w > shape[1])
            fail(who + ": window " + std::to_string(h) + "x" + std::to_string(w) +
                 " is larger than the input " + shape_str(shape));
        s.kind = PlanOp::random_crop;
        return output({h, w, shape[2]});
    }
    if (cls == "Rescaling") {
        // Keras Rescaling(scale, offset=0.0): scalars, or one value per channel (last axis).
        const int64_t last = shape.empty() ? 1 : shape.back();
        auto read = [&](const char* key, double fallback) {
            std::vector<float> v;
            const json::Value* f = cfg.find(key);
            const std::string what = who + " " + key;
            if (!f) {
                v.push_back(static_cast<float>(fallback));
            } else if (f->is_array()) {
                for (const json::Value& e : f->array)
                    v.push_back(static_cast<float>(e.as_number(what.c_str())));
            } else {
                v.push_back(static_cast<float>(f->as_number(what.c_str())));
            }
            if (v.size() != 1 && static_cast<int64_t>(v.size()) != last)
                fail(what + ": " + std::to_string(v.size()) + " values for input " +
                     shape_str(shape) + " (need 1 or the last axis, " + std::to_string(last) +
                     ")");
            return v;
        };
        s.scale = read("scale", 1.0);
        s.offset = read("offset", 0.0);
        // Both repeat with one period: a scalar one is widened to the other's length.
        if (s.scale.size() != s.offset.size()) {
            const size_t n = std::max(s.scale.size(), s.offset.size());
            s.scale.resize(n, s.scale[0]);
            s.offset.resize(n, s.offset[0]);
        }
        s.kind = PlanOp::rescaling;
        return output(shape);
    }
    if (cls == "LeakyReLU") {
        // Keras 3 LeakyReLU(negative_slope=0.3); Keras 2 configs name it "alpha".
        const json::Value* slope = cfg.find("negative_slope");
        if (!slope) slope = cfg.find("alpha");
        s.act = Activation::leaky_relu;
        s.act_alpha = slope ? static_cast<float>(slope->as_number((who + " negative_slope").c_str()))
                            : 0.3f;
        if (!(s.act_alpha >= 0.0f)) fail(who + ": negative_slope must be >= 0");
        s.kind = PlanOp::activation;
        s.cols = shape.empty() ? 1 : shape.back();
        return output(shape);
    }
    if (merge_op_of(cls, &op) || cls == "Concatenate") {
        std::vector<int64_t> out = shape;
        if (cls == "Concatenate") {
            // Keras counts the batch axis: the last axis is -1 or the per-sample rank.
            const int64_t rank = static_cast<int64_t>(shape.size());
            const json::Value* axis = cfg.find("axis");
            const int64_t a = axis ? axis->as_int((who + " axis").c_str(), -rank - 1, rank) : -1;
            if (a != -1 && a != rank)
                fail(who + ": Concatenate joins on the last axis (channels) only, got axis " +
                     std::to_string(a));
            int64_t width = 0;
            for (int v : inputs) {
                const auto& vs = plan.values[v].shape;
                if (vs.size() != shape.size() ||
                    !std::equal(vs.begin(), vs.end() - 1, shape.begin()))
                    fail(who + ": input shapes " + shape_str(shape) + " and " + shape_str(vs) +
                         " differ on an axis but the last");
                s.widths.push_back(vs.back());
                width += vs.back();
            }
            out.back() = width;
            s.kind = PlanOp::concat;
            s.cols = width;
        } else {
            for (int v : inputs)
                if (plan.values[v].shape != shape)
                    fail(who + ": input shapes " + shape_str(shape) + " and " +
                         shape_str(plan.values[v].shape) + " differ");
            if (op == MergeOp::subtract ? inputs.size() != 2 : inputs.size() < 2)
                fail(who + ": wrong number of inputs (" + std::to_string(inputs.size()) + ")");
            s.kind = PlanOp::merge;
            s.merge_op = op;
        }
        return output(out);
    }
    {
        std::vector<int64_t> out;
        bool view = false;
        if (read_normalization_or_spatial(s, out, view, cls, cfg, name, shape, who))
            return view ? output(out, inputs[0]) : output(out);
    }
    fail(who + ": unknown layer class \"" + cls + "\"");
}

// The calls of one layer carry its label (layer names are unique in a model).
void mark_shared_calls(std::vector<PlanStep>& steps) {
    for (PlanStep& s : steps) s.first_call = -1;
    for (size_t i = 0; i < steps.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            if (steps[j].label == steps[i].label) {
                steps[i].first_call = steps[j].first_call = static_cast<int>(j);
                break;
            }
}

// The steps reading value v.
std::vector<size_t> readers_of(const Plan& plan, int v) {
    std::vector<size_t> readers;
    for (size_t i = 0; i < plan.steps.size(); ++i)
        for (int r : plan.steps[i].inputs)
            if (r == v) {
                readers.push_back(i);
                break;
            }
    return readers;
}

bool has_relu(const PlanStep& s) {
    const bool has_act = s.kind == PlanOp::conv2d || s.kind == PlanOp::dense ||
                         s.kind == PlanOp::activation;
    return has_act && !s.softmax && s.act == Activation::relu;
}

}  // namespace

Plan build_plan(const json::Value& arch) {
    const CallOrder order = order_calls(arch);
    Plan plan;
    plan.graph = order.graph;
    add_value(plan, order.input_shape);
    // The plan's value for each call's output (value k + 1 of the order is call k's).
    std::vector<int> value_of{0};
    for (const LayerCall& call : order.calls) {
        // One label per call, though a call may add several steps (SeparableConv2D).
        plan.calls.push_back(label_of(*call.layer));
        std::vector<int> inputs;
        for (int v : call.inputs) inputs.push_back(value_of[v]);
        value_of.push_back(add_call(plan, *call.layer, inputs));
    }
    plan.output = value_of[order.output];
    mark_shared_calls(plan.steps);
    return plan;
}

void fuse_for_training(Plan& plan, bool cross_entropy, bool binary_cross_entropy) {
    std::vector<PlanStep>& steps = plan.steps;
    // Softmax + cross-entropy: the loss kernel returns d(loss)/d(logits) from the logits,
    // unless the output layer is shared (its softmax then feeds other calls too).
    if (cross_entropy)
        for (PlanStep& s : steps)
            if (s.output == plan.output && s.softmax && s.first_call < 0) {
                s.act_backward_elsewhere = true;
                plan.fusions.push_back(s.label + ": softmax + cross-entropy as one kernel (the "
                                       "gradient with respect to the logits)");
            }
    if (binary_cross_entropy)
        for (PlanStep& s : steps)
            if (s.output == plan.output && !s.softmax && s.act == Activation::sigmoid &&
                !s.kernel_act && s.first_call < 0 &&
                (s.kind == PlanOp::dense || s.kind == PlanOp::activation)) {
                s.act_backward_elsewhere = true;
                plan.fusions.push_back(s.label + ": sigmoid + binary cross-entropy as one kernel "
                                       "(the gradient with respect to the logits)");
            }
    // A Conv2D(relu, stride 1, no padding) on the network input whose only reader is a
    // MaxPooling2D(2, stride 2, no padding) runs as one kernel: the convolution's
    // full-resolution output is never stored. The input needs no gradient, so the pair's
    // backward is dw and db alone; a frozen conv has none, and the pool must not be the output.
    for (size_t i = 0; i < steps.size(); ++i) {
        const PlanStep& conv = steps[i];
        if (conv.kind != PlanOp::conv2d || conv.inputs[0] != 0 || conv.first_call >= 0 ||
            !conv.trainable || conv.softmax || conv.act != Activation::relu)
            continue;
        const std::vector<size_t> readers = readers_of(plan, conv.output);
        if (readers.size() != 1 || conv.output == plan.output) continue;
        const PlanStep& pool = steps[readers[0]];
        const Conv2dDims& c = conv.conv;
        const Pool2dDims& p = pool.pool;
        if (pool.kind != PlanOp::max_pool2d || pool.first_call >= 0 || pool.output == plan.output ||
            c.groups != 1 || conv2d_dilated(c) || c.stride_h != 1 || c.stride_w != 1 ||
            c.pad_top || c.pad_left ||
            c.OH != c.H - c.KH + 1 || c.OW != c.W - c.KW + 1 || p.PH != 2 || p.PW != 2 ||
            p.stride_h != 2 || p.stride_w != 2 || p.pad_top || p.pad_left ||
            p.OH != (c.OH - 2) / 2 + 1 || p.OW != (c.OW - 2) / 2 + 1 ||
            !conv2d_relu_maxpool_supported(c))
            continue;
        PlanStep fused = conv;
        fused.kind = PlanOp::conv2d_relu_maxpool;
        fused.label = conv.label + " + " + pool.label;
        fused.output = pool.output;
        fused.act_backward_elsewhere = false;
        plan.fusions.push_back(fused.label + ": one conv+relu+max-pool kernel (the "
                               "full-resolution output is never stored)");
        // The fused step runs where the conv ran; the conv's own output is no longer made.
        const size_t pool_at = readers[0];
        steps[i] = std::move(fused);
        steps.erase(steps.begin() + static_cast<std::ptrdiff_t>(pool_at));
        break;  // one network input, one head
    }
    // A ReLU read only by a max pooling is differentiated by that pooling, at the pooled
    // resolution (the mask multiplies the routed gradient: the same values as apart).
    for (PlanStep& before : steps) {
        if (!has_relu(before) || before.output == plan.output) continue;
        const std::vector<size_t> readers = readers_of(plan, before.output);
        if (readers.size() != 1 || steps[readers[0]].kind != PlanOp::max_pool2d) continue;
        before.act_backward_elsewhere = true;
        steps[readers[0]].relu_before = true;
        plan.fusions.push_back(before.label + ": relu differentiated by " +
                               steps[readers[0]].label + " after it, at the pooled resolution");
    }
    // A ReLU after a BatchNormalization or a two-input Add, the value's only reader, runs in
    // that step's kernel: the forward applies it on the way out, and the backward masks the
    // incoming gradient by the ReLU's output while it reads it. The pre-ReLU value is never
    // stored (ResNet's conv-BN-ReLU and residual joins).
    for (size_t i = 0; i < steps.size(); ++i) {
        const PlanStep& relu = steps[i];
        if (relu.kind != PlanOp::activation || relu.act != Activation::relu || relu.softmax ||
            relu.first_call >= 0 || relu.act_backward_elsewhere)
            continue;
        const int v = relu.inputs[0];
        if (v == 0 || v == plan.output || readers_of(plan, v).size() != 1) continue;
        size_t p = 0;
        while (p < i && steps[p].output != v) ++p;
        if (p == i) continue;
        PlanStep& before = steps[p];
        const bool fits = before.first_call < 0 &&
                          (before.kind == PlanOp::batchnorm ||
                           (before.kind == PlanOp::merge && before.merge_op == MergeOp::add &&
                            before.inputs.size() == 2));
        if (!fits || before.kernel_act) continue;
        before.act = Activation::relu;
        before.kernel_act = true;
        before.output = relu.output;
        plan.fusions.push_back(before.label + " + " + relu.label + ": the relu inside the " +
                               (before.kind == PlanOp::batchnorm ? "normalization" : "join") +
                               " (its input is never stored)");
        before.label += " + " + relu.label;
        steps.erase(steps.begin() + static_cast<std::ptrdiff_t>(i));
        --i;
    }
    for (const PlanStep& s : steps)
        if (s.kind == PlanOp::conv2d && s.kernel_act)
            plan.fusions.push_back(s.label + ": " + activation_name(s) +
                                   " in the convolution's epilogue");
    mark_shared_calls(steps);  // the head fusion moved step indices
}

int logits_step(const Plan& plan) {
    for (size_t i = 0; i < plan.steps.size(); ++i) {
        const PlanStep& s = plan.steps[i];
        if (s.output == plan.output && (s.softmax || s.act == Activation::sigmoid) &&
            s.act_backward_elsewhere)
            return static_cast<int>(i);
    }
    return -1;
}

std::string activation_name(const PlanStep& s) {
    if (s.softmax) return "softmax";
    switch (s.act) {
        case Activation::linear: return "linear";
        case Activation::relu: return "relu";
        case Activation::sigmoid: return "sigmoid";
        case Activation::tanh: return "tanh";
        case Activation::elu: return "elu";
        case Activation::swish: return "swish";
        case Activation::leaky_relu: return "leaky_relu";
    }
    return "linear";
}

}  // namespace cnnfast
