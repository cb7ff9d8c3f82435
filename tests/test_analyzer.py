"""cnnfast.analyze: shapes vs a real forward pass, FLOPs vs a loop-bound count of the kernels,
receptive fields, inexact-stride flags, memory totals, formatting, summary(detailed) and the CLI."""

import json
import math
import time

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import layers as L
from cnnfast import models
from cnnfast.__main__ import main
from cnnfast.shapes import conv_padding


def small_grouped_lrn_net():
    return cf.Sequential([
        L.Input((27, 29, 3)),
        L.Conv2D(8, 5, strides=2, padding=1, activation="relu"),
        L.LocalResponseNormalization(alpha=0.1),
        L.MaxPooling2D(3, strides=2),
        L.Conv2D(12, 3, padding="same", groups=2, activation="relu"),
        L.LocalResponseNormalization(depth_radius=1),
        L.AveragePooling2D(2, padding="same"),
        L.Conv2D(6, (2, 3), strides=(1, 2), groups=3),
        L.Activation("tanh"),
        L.Flatten(),
        L.Dropout(0.5),
        L.Dense(5, activation="softmax"),
    ], name="small")


SMALL_NETS = {
    "lenet5": models.lenet5,
    "cifar10_simple": models.cifar10_simple,
    "keras_mnist_cnn": models.keras_mnist_cnn,
    "small_grouped_lrn": small_grouped_lrn_net,
    "alexnet_grouped_67": lambda: models.alexnet(input_shape=(67, 67, 3), classes=10, grouped=True),
}


# ---- output-size helpers ------------------------------------------------------------------

def test_output_size_helpers():
    assert cf.conv_output_size(227, 11, 4, 0) == 55       # AlexNet CONV1
    assert cf.pool_output_size(55, 3, 2) == 27            # AlexNet POOL1
    assert cf.conv_output_size(27, 5, 1, 2) == 27         # CONV2, pad 2
    assert cf.conv_output_size(224, 3, 1, 1) == 224
    assert cf.conv_output_size(7, 3, 3, 0) == 2           # (7-3)/3 + 1 floored
    assert cf.conv_output_size(7, 3, 2, 0) == 3
    assert cf.conv_output_size(32, 5) == 28               # LeNet C1
    assert cf.pool_output_size(11, 2) == 5                # floor: last row ignored
    assert cf.conv_output_size(224, 7, 2, "same") == 112  # ceil(224 / 2)


# ---- shapes against a real forward pass ---------------------------------------------------

@pytest.mark.parametrize("name", sorted(SMALL_NETS))
def test_analyzer_shapes_equal_forward_pass_shapes(name, rng):
    cf.set_seed(0)
    model = SMALL_NETS[name]()
    report = cf.analyze(model)
    x = rng.normal(size=(2,) + model.input_shape_).astype(np.float32)
    model.build()
    assert model.count_params() == report.totals["params"]
    for layer, row in zip(model.layers, report.layers):
        x = layer.forward(x, training=True)
        assert x.shape[1:] == row.output_shape, row.name
        assert row.activations == math.prod(x.shape[1:])
        assert layer.num_params() == row.params


# ---- FLOPs against the kernels' loop bounds -----------------------------------------------

def conv_macs_by_loops(h, w, c, layer):
    """Walk the loop nest of conv2d (per image: groups x output pixels x K/g x KH x KW x C/g)
    and count multiply-adds. `in_bounds` counts only taps that read the input (the naive
    kernel skips the padding); `all_taps` counts what im2col + GEMM multiplies, zeros included.
    """
    kh_, kw_ = layer.kernel_size
    sh, sw = layer.strides
    pads = layer.padding if isinstance(layer.padding, str) else None
    top, _, oh_ = conv_padding(h, kh_, sh, pads or (layer.padding[0],) * 2)
    left, _, ow_ = conv_padding(w, kw_, sw, pads or (layer.padding[1],) * 2)
    cg, kg = c // layer.groups, layer.filters // layer.groups
    in_bounds = all_taps = 0
    for _g in range(layer.groups):
        for oh in range(oh_):
            for ow in range(ow_):
                for _k in range(kg):
                    for kh in range(kh_):
                        ih = oh * sh - top + kh
                        for kw in range(kw_):
                            iw = ow * sw - left + kw
                            all_taps += cg
                            if 0 <= ih < h and 0 <= iw < w:
                                in_bounds += cg
    return in_bounds, all_taps


def dense_macs_by_loops(n_in, units):
    count = 0
    for _j in range(units):      # one dot product of length n_in per output unit
        for _i in range(n_in):
            count += 1
    return count


@pytest.mark.parametrize("name", ["lenet5", "cifar10_simple", "small_grouped_lrn"])
def test_analyzer_flops_equal_loop_bound_count(name):
    model = SMALL_NETS[name]()
    report = cf.analyze(model)
    gemm_macs = 0
    for (layer, inp, _), row in zip(model.shapes(), report.layers):
        if isinstance(layer, L.Conv2D):
            in_bounds, all_taps = conv_macs_by_loops(*inp, layer)
            assert row.macs == all_taps, row.name
            assert in_bounds <= all_taps
            if layer.padding in ("valid", (0, 0)):
                assert in_bounds == all_taps
        elif isinstance(layer, L.Dense):
            assert row.macs == dense_macs_by_loops(inp[-1], layer.units), row.name
        else:
            assert row.macs == 0
            continue
        assert row.flops == 2 * row.macs
        gemm_macs += row.macs
    assert report.totals["macs_per_image"] == gemm_macs


def test_vgg16_macs_and_backward_convention():
    report = cf.analyze(models.vgg16())
    # Well-known 15.47 GMACs for VGG16 at 224x224 (convolutions 15.35 G + FC 0.12 G).
    assert report.totals["macs_per_image"] == 15_470_264_320
    conv_fc = [r for r in report.layers if r.type in ("Conv2D", "Dense")]
    first = report.layers[0]
    assert first.backward_flops == first.flops  # weight gradient only: no data gradient
    assert all(r.backward_flops == 2 * r.flops for r in conv_fc[1:])
    pools = [r for r in report.layers if r.type == "MaxPooling2D"]
    assert all(r.backward_flops == r.flops == r.activations * 4 for r in pools)  # 2x2 windows
    t = report.totals
    assert t["flops_train_per_image"] == t["flops_forward_per_image"] + t["flops_backward_per_image"]


def test_gemm_only_net_train_flops():
    model = cf.Sequential([L.Input((8, 8, 2)), L.Conv2D(4, 3), L.Flatten(), L.Dense(3)])
    t = cf.analyze(model).totals
    conv = 6 * 6 * 4 * 3 * 3 * 2
    dense = 6 * 6 * 4 * 3
    assert t["flops_forward_per_image"] == 2 * conv + 2 * dense
    assert t["flops_train_per_image"] == (2 * conv) * 2 + (2 * dense) * 3


def test_lrn_and_activation_flop_conventions():
    model = cf.Sequential([L.Input((2, 2, 4)), L.LocalResponseNormalization(depth_radius=1),
                           L.Activation("softmax"), L.ReLU(), L.Activation("linear")])
    rows = cf.analyze(model).layers
    # C = 4, r = 1: window lengths 2, 3, 3, 2 -> 1+2+2+1 = 6 adds, plus 5 per channel.
    assert rows[0].flops == 4 * (6 + 5 * 4)
    assert rows[1].flops == 3 * 16 and rows[2].flops == 16 and rows[3].flops == 0


# ---- receptive fields, inexact strides ----------------------------------------------------

def test_receptive_fields_of_vgg16_and_alexnet():
    rf = {r.name: (r.receptive_field, r.jump) for r in cf.analyze(models.vgg16()).layers}
    assert rf["block1_conv2"] == ((5, 5), (1, 1))
    assert rf["block1_pool"] == ((6, 6), (2, 2))
    assert rf["block5_conv3"] == ((196, 196), (16, 16))
    assert rf["block5_pool"] == ((212, 212), (32, 32))
    rows = cf.analyze(models.alexnet()).layers
    got = {r.name: (r.receptive_field[0], r.jump[0]) for r in rows if r.receptive_field}
    assert got == {"conv1": (11, 4), "lrn1": (11, 4), "pool1": (19, 8), "conv2": (51, 8),
                   "lrn2": (51, 8), "pool2": (67, 16), "conv3": (99, 16), "conv4": (131, 16),
                   "conv5": (163, 16), "pool5": (195, 32)}
    fc = next(r for r in rows if r.name == "fc6")
    assert fc.global_field and fc.receptive_field is None and fc.jump is None


def test_receptive_field_per_axis():
    model = cf.Sequential([L.Input((20, 20, 1)), L.Conv2D(2, (3, 5), strides=(1, 2)),
                           L.MaxPooling2D((2, 3))])
    rows = cf.analyze(model).layers
    assert rows[0].receptive_field == (3, 5) and rows[0].jump == (1, 2)
    # r = 3 + (2-1)*1 = 4 rows, 5 + (3-1)*2 = 9 cols; jump 1*2, 2*3.
    assert rows[1].receptive_field == (4, 9) and rows[1].jump == (2, 6)
    assert "4x9" in str(cf.analyze(model))


def test_inexact_stride_is_flagged():
    model = cf.Sequential([L.Input((7, 7, 1)), L.Conv2D(1, 3, strides=3)])
    report = cf.analyze(model)
    row = report.layers[0]
    assert row.output_shape == (2, 2, 1)  # floor((7 - 3) / 3) + 1
    assert not row.exact
    assert "last 1 row ignored" in row.notes[0] and "last 1 col ignored" in row.notes[0]
    assert "Inexact strides" in str(report) and "last 1 row ignored" in report.to_markdown()
    exact = cf.analyze(cf.Sequential([L.Input((7, 7, 1)), L.Conv2D(1, 3, strides=2)]))
    assert exact.layers[0].exact and "Inexact" not in str(exact)
    # keras_mnist_cnn floors 11 -> 5 in its second pool: the 11th row and column are dropped.
    pool = cf.analyze(models.keras_mnist_cnn()).layers[3]
    assert pool.notes == ["inexact stride: last 1 row ignored, last 1 col ignored"]
    # Only padding is left over: flagged, but no input row is lost.
    pad_only = cf.analyze(cf.Sequential([L.Input((8, 9, 1)), L.Conv2D(1, 3, strides=2, padding=1)]))
    assert pad_only.layers[0].notes == ["inexact stride: rows: only padding unused"]


# ---- memory -------------------------------------------------------------------------------

def test_memory_totals_follow_the_stated_convention():
    model = models.cifar10_simple()
    out_elems = 32 * 32 * 12 + 16 * 16 * 12 + 10  # conv, pool, dense (Flatten is a view)
    params = 31_066
    adam = cf.analyze(model, optimizer="adam", batch_size=4).totals
    sgd = cf.analyze(model, optimizer="sgd", batch_size=4).totals
    momentum = cf.analyze(model, optimizer=cf.optimizers.SGD(momentum=0.9), batch_size=4).totals
    assert adam["activation_bytes_per_image"] == 4 * out_elems
    acts = 4 * (32 * 32 * 3) + 2 * 4 * out_elems  # input + outputs + their gradients
    assert adam["training_activation_bytes_per_image"] == acts
    assert sgd["training_memory_bytes"] == 4 * params * 2 + 4 * acts
    assert momentum["training_memory_bytes"] == sgd["training_memory_bytes"] + 4 * params
    assert adam["training_memory_bytes"] == sgd["training_memory_bytes"] + 2 * 4 * params
    # Inference peak: the conv's input and output, 32x32x3 + 32x32x12 floats.
    assert adam["inference_activation_bytes_per_image"] == 4 * (32 * 32 * 3 + 32 * 32 * 12)
    assert adam["inference_memory_bytes"] == 4 * params + 4 * 4 * (32 * 32 * 15)
    model.compile("adam", "categorical_crossentropy")
    assert cf.analyze(model).optimizer_slots == 2  # None: the compiled optimizer
    assert cf.analyze(models.cifar10_simple()).optimizer_slots == 0


@pytest.mark.parametrize("optimizer,slots", [
    ("rmsprop", 1), (cf.optimizers.RMSprop(momentum=0.9), 2),
    (cf.optimizers.RMSprop(momentum=0.9, centered=True), 3), ("adagrad", 1), ("adadelta", 2),
    ("adamax", 2), ("nadam", 2), ("adamw", 2), ("lion", 1),
])
def test_optimizer_state_counts_the_slots_training_allocates(optimizer, slots):
    model = models.cifar10_simple()
    assert cf.analyze(model, optimizer=optimizer).optimizer_slots == slots
    # What training allocates: one arena per slot.
    model.compile(optimizer, "categorical_crossentropy")
    model.train_on_batch(np.zeros((2, 32, 32, 3), np.float32), np.eye(10, dtype=np.float32)[:2])
    assert len(model.optimizer._flat_slots) == slots


def test_frozen_layers_are_non_trainable():
    model = models.cifar10_simple()
    model.layers[0].trainable = False
    t = cf.analyze(model, optimizer="adam").totals
    assert t["non_trainable_params"] == 336 and t["trainable_params"] == 30_730
    assert t["optimizer_state_bytes"] == 2 * 4 * 30_730
    assert "(frozen)" in str(cf.analyze(model))


def test_analyze_rejects_bad_input():
    with pytest.raises(ValueError, match="input shape"):
        cf.analyze(cf.Sequential([L.Dense(3)]))
    with pytest.raises(ValueError, match="batch_size"):
        cf.analyze(models.lenet5(), batch_size=0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        cf.analyze(models.lenet5(), optimizer="lbfgs")


# ---- speed, formats, summary, CLI ---------------------------------------------------------

def test_analyze_vgg19_is_instant():
    start = time.perf_counter()
    model = models.vgg19()
    report = cf.analyze(model)
    assert time.perf_counter() - start < 0.5  # shapes only; building would allocate 1.1 GB
    assert report.totals["params"] == 143_667_240 and not model.built


def test_report_formats():
    report = cf.analyze(models.alexnet(grouped=True), optimizer="adam", batch_size=2)
    d = report.to_dict()
    json.dumps(d)  # plain data only
    assert d["totals"]["params"] == 60_965_224 and len(d["layers"]) == len(report.layers)
    assert d["layers"][0]["output_shape"] == [55, 55, 96]
    text = str(report)
    assert "conv1 (Conv2D)" in text and "55x55x96" in text and "60,965,224" in text
    widths = {len(line) for line in text.splitlines()[2:4]}
    assert len(widths) == 1  # the rule and the header line up
    md = report.to_markdown()
    assert md.count("\n| ") == len(report.layers) + 2  # header + input row + layers
    assert "| conv1 (Conv2D) | 55x55x96 | 34,944 |" in md


def test_summary_default_is_keras_format_and_detailed_is_the_analyzer(capsys):
    model = models.cifar10_simple()
    model.summary(detailed=True)
    out = capsys.readouterr().out
    assert "FLOPs per image, forward" in out and not model.built
    model.summary()
    out = capsys.readouterr().out
    assert "Layer (type)" in out and "Output Shape" in out and "Param #" in out
    assert "Total params: 31,066" in out and "FLOPs" not in out


def test_cli_summary(capsys):
    assert main(["summary", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 138,357,544" in out and "block5_pool (MaxPooling2D)" in out
    assert main(["summary", "vgg16", "--input-shape", "32,32,3", "--classes", "10",
                 "--fc-units", "512", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| predictions (Dense) | 10 | 5,130 |" in out and "15,245,130" in out
    assert main(["summary", "lenet5", "--optimizer", "adam", "--batch-size", "32"]) == 0
    assert "batch 32, Adam" in capsys.readouterr().out


def test_cli_summary_of_a_saved_model(tmp_path, capsys):
    import cnnfast as cf

    path = tmp_path / "lenet.cnnfast"
    cf.models.lenet5().save(path)
    assert main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out and "c1 (Conv2D)" in out
    (tmp_path / "junk.cnnfast").write_bytes(b"\x10" * 40)
    assert main(["summary", str(tmp_path / "junk.cnnfast")]) == 2
    assert "not a valid cnnfast model file" in capsys.readouterr().err


def test_cli_errors(capsys):
    assert main(["summary", "saved/model.keras"]) == 2
    assert "no such model file" in capsys.readouterr().err
    assert main(["summary", "resnet"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["summary", "lenet5", "--fc-units", "10"]) == 2
    # A malformed option is a one-line error too (argparse would exit on its own).
    assert main(["summary", "vgg16", "--input-shape", "32,32"]) == 2
    assert "expected three positive sizes" in capsys.readouterr().err


def test_batchnorm_and_spatial_layer_conventions():
    """Issue 19's layers: BN's parameters split into trainable gamma/beta and non-trainable
    moving statistics, 2 FLOPs per element; global pooling one FLOP per input element and a
    global field after it; padding/cropping keep the field, upsampling divides the jump, copies
    cost nothing and Reshape is a view."""
    model = cf.Sequential([
        L.Input((8, 8, 3)), L.ZeroPadding2D(1), L.Conv2D(4, 3, strides=2),
        L.BatchNormalization(), L.UpSampling2D(2), L.Cropping2D(1), L.Conv2D(4, 3),
        L.GlobalAveragePooling2D(keepdims=True), L.Reshape((4,)), L.Dense(2)])
    report = cf.analyze(model)
    rows = {r.type: r for r in report.layers}  # the second Conv2D's row replaces the first's
    bn = rows["BatchNormalization"]
    assert (bn.params, bn.trainable_params, bn.non_trainable_params) == (16, 8, 8)
    assert bn.flops == 2 * 4 * 4 * 4 and bn.backward_flops == 2 * bn.flops
    assert report.totals["non_trainable_params"] == 8
    assert rows["ZeroPadding2D"].flops == 0 and rows["ZeroPadding2D"].receptive_field == (1, 1)
    assert report.layers[2].jump == (2, 2)
    up = rows["UpSampling2D"]
    assert up.flops == 0 and up.receptive_field == (3, 3) and up.jump == (1, 1)
    assert rows["Cropping2D"].receptive_field == (3, 3)
    assert rows["Conv2D"].receptive_field == (5, 5)  # 3 + (3 - 1) * 1
    gap = rows["GlobalAveragePooling2D"]
    assert gap.flops == 4 * 4 * 4 and gap.global_field and gap.receptive_field is None
    assert rows["Reshape"].activation_bytes == 0 and rows["Reshape"].flops == 0
    assert "(8 non-trainable)" in str(report)
    # The shapes agree with a built model's.
    model.build()
    assert model.count_params() == report.totals["params"]
