"""The model zoo: every layer's output shape and parameter count against hand-derived values.

Parameter counts are written as the arithmetic of each layer: KH*KW*C_in/groups*K + K for a
convolution, inputs*units + units for a dense layer. Output sizes follow
floor((n - f + 2p) / s) + 1. Nothing here creates VGG/AlexNet weights: counts come from the
layers' param_shapes, which is what build() allocates (checked on the small models).
"""

import math

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import layers as L
from cnnfast import models


def layer_table(model):
    """[(name, output shape, params)] from the shape formulas alone (no weights created)."""
    return [(layer.name, out, sum(math.prod(s) for s in layer.param_shapes(inp).values()))
            for layer, inp, out in model.shapes()]


def check(model, expected, total):
    got = layer_table(model)
    assert [g[0] for g in got] == [e[0] for e in expected]
    for (name, shape, params), (_, e_shape, e_params) in zip(got, expected):
        assert shape == e_shape, name
        assert params == e_params, name
    assert sum(p for _, _, p in got) == total
    assert cf.analyze(model).totals["params"] == total


def test_lenet5():
    expected = [
        ("c1", (28, 28, 6), 5 * 5 * 1 * 6 + 6),          # 156; 32 - 5 + 1 = 28
        ("s2", (14, 14, 6), 0),
        ("c3", (10, 10, 16), 5 * 5 * 6 * 16 + 16),       # 2,416 (full connectivity)
        ("s4", (5, 5, 16), 0),
        ("c5", (1, 1, 120), 5 * 5 * 16 * 120 + 120),     # 48,120
        ("flatten", (120,), 0),
        ("f6", (84,), 120 * 84 + 84),                    # 10,164
        ("output", (10,), 84 * 10 + 10),                 # 850
    ]
    check(models.lenet5(), expected, 61_706)


def test_keras_mnist_cnn():
    expected = [
        ("conv2d", (26, 26, 64), 3 * 3 * 1 * 64 + 64),         # 640
        ("max_pooling2d", (13, 13, 64), 0),
        ("conv2d_1", (11, 11, 64), 3 * 3 * 64 * 64 + 64),      # 36,928
        ("max_pooling2d_1", (5, 5, 64), 0),                    # floor(11 / 2)
        ("conv2d_2", (3, 3, 64), 3 * 3 * 64 * 64 + 64),        # 36,928
        ("flatten", (576,), 0),                                # 3 * 3 * 64
        ("dropout", (576,), 0),
        ("dense", (10,), 576 * 10 + 10),                       # 5,770
    ]
    check(models.keras_mnist_cnn(), expected, 80_266)


def test_cifar10_simple():
    expected = [
        ("conv2d", (32, 32, 12), 3 * 3 * 3 * 12 + 12),   # 336; "same" keeps 32
        ("max_pooling2d", (16, 16, 12), 0),
        ("flatten", (3072,), 0),                         # 16 * 16 * 12
        ("dense", (10,), 3072 * 10 + 10),                # 30,730
    ]
    check(models.cifar10_simple(), expected, 31_066)


def alexnet_expected(grouped):
    g = 2 if grouped else 1
    return [
        ("conv1", (55, 55, 96), 11 * 11 * 3 * 96 + 96),            # 34,944; (227-11)/4+1 = 55
        ("lrn1", (55, 55, 96), 0),
        ("pool1", (27, 27, 96), 0),                                # (55-3)/2+1 = 27
        ("conv2", (27, 27, 256), 5 * 5 * (96 // g) * 256 + 256),   # 614,656 / 307,456
        ("lrn2", (27, 27, 256), 0),
        ("pool2", (13, 13, 256), 0),                               # (27-3)/2+1 = 13
        ("conv3", (13, 13, 384), 3 * 3 * 256 * 384 + 384),         # 885,120 (both towers)
        ("conv4", (13, 13, 384), 3 * 3 * (384 // g) * 384 + 384),  # 1,327,488 / 663,936
        ("conv5", (13, 13, 256), 3 * 3 * (384 // g) * 256 + 256),  # 884,992 / 442,624
        ("pool5", (6, 6, 256), 0),                                 # (13-3)/2+1 = 6
        ("flatten", (9216,), 0),                                   # 6 * 6 * 256
        ("drop6", (9216,), 0),
        ("fc6", (4096,), 9216 * 4096 + 4096),                      # 37,752,832
        ("drop7", (4096,), 0),
        ("fc7", (4096,), 4096 * 4096 + 4096),                      # 16,781,312
        ("fc8", (1000,), 4096 * 1000 + 1000),                      # 4,097,000
    ]


def test_alexnet_one_tower():
    # 34,944 + 614,656 + 885,120 + 1,327,488 + 884,992 = 3,747,200 in the convolutions,
    # + 37,752,832 + 16,781,312 + 4,097,000 = 58,631,144 in the FC layers: 62,378,344.
    assert 34_944 + 614_656 + 885_120 + 1_327_488 + 884_992 == 3_747_200
    assert 3_747_200 + 37_752_832 + 16_781_312 + 4_097_000 == 62_378_344
    check(models.alexnet(), alexnet_expected(False), 62_378_344)


def test_alexnet_grouped():
    # groups=2 halves the kernel input channels of CONV2, CONV4 and CONV5: the weights saved are
    # 5*5*48*256 = 307,200, 3*3*192*384 = 663,552 and 3*3*192*256 = 442,368, 1,413,120 in all.
    saved = 5 * 5 * 48 * 256 + 3 * 3 * 192 * 384 + 3 * 3 * 192 * 256
    assert saved == 1_413_120 and 62_378_344 - saved == 60_965_224
    model = models.alexnet(grouped=True)
    check(model, alexnet_expected(True), 60_965_224)
    assert [l.groups for l in model.layers if isinstance(l, L.Conv2D)] == [1, 2, 1, 2, 2]
    lrn = model.layers[1]
    assert (lrn.depth_radius, lrn.bias, lrn.alpha, lrn.beta) == (2, 2.0, 1e-4, 0.75)  # paper


def vgg_expected(blocks, size=224, classes=1000, fc=4096):
    rows, c_in, s = [], 3, size
    for b, (convs, filters) in enumerate(zip(blocks, (64, 128, 256, 512, 512)), 1):
        for i in range(1, convs + 1):
            rows.append((f"block{b}_conv{i}", (s, s, filters), 3 * 3 * c_in * filters + filters))
            c_in = filters
        s //= 2
        rows.append((f"block{b}_pool", (s, s, c_in), 0))
    flat = s * s * 512
    rows += [("flatten", (flat,), 0),
             ("fc1", (fc,), flat * fc + fc), ("fc1_dropout", (fc,), 0),
             ("fc2", (fc,), fc * fc + fc), ("fc2_dropout", (fc,), 0),
             ("predictions", (classes,), fc * classes + classes)]
    return rows


def test_vgg16():
    convs = (3 * 3 * 3 * 64 + 64) + (3 * 3 * 64 * 64 + 64) \
        + (3 * 3 * 64 * 128 + 128) + (3 * 3 * 128 * 128 + 128) \
        + (3 * 3 * 128 * 256 + 256) + 2 * (3 * 3 * 256 * 256 + 256) \
        + (3 * 3 * 256 * 512 + 512) + 2 * (3 * 3 * 512 * 512 + 512) \
        + 3 * (3 * 3 * 512 * 512 + 512)
    fcs = (7 * 7 * 512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert convs == 14_714_688 and convs + fcs == 138_357_544
    check(models.vgg16(), vgg_expected((2, 2, 3, 3, 3)), 138_357_544)


def test_vgg19():
    extra = (3 * 3 * 256 * 256 + 256) + 2 * (3 * 3 * 512 * 512 + 512)  # one more conv in blocks 3-5
    assert 138_357_544 + extra == 143_667_240
    check(models.vgg19(), vgg_expected((2, 2, 4, 4, 4)), 143_667_240)


def test_vgg_cifar_variants():
    # 32x32: five pools leave 1x1x512, so fc1 has 512 inputs; FC width stays 4096 by default.
    expected = vgg_expected((2, 2, 3, 3, 3), size=32, classes=10)
    check(models.vgg16(input_shape=(32, 32, 3), classes=10), expected,
          14_714_688 + (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10))
    expected = vgg_expected((2, 2, 3, 3, 3), size=32, classes=10, fc=512)
    check(models.vgg16(input_shape=(32, 32, 3), classes=10, fc_units=512), expected,
          14_714_688 + 2 * (512 * 512 + 512) + (512 * 10 + 10))  # 15,245,130
    no_dropout = models.vgg16(dropout=0.0)
    assert not any(isinstance(l, L.Dropout) for l in no_dropout.layers)  # keras.applications list
    assert len(no_dropout.layers) == 13 + 5 + 1 + 3


def test_zoo_models_are_unbuilt_until_used():
    model = models.vgg19()
    assert not model.built and all(not l.weights_ for l in model.layers)
    cf.analyze(model)
    assert not model.built  # the analyzer never creates weights


def test_zoo_get_and_errors():
    assert models.names() == sorted(["alexnet", "alexnet_grouped", "cifar10_simple",
                                     "keras_mnist_cnn", "lenet5", "resnet_cifar", "vgg16",
                                     "vgg19", "resnet20", "resnet32", "resnet56",
                                     "vgg_cifar_bn"])
    assert models.get("Keras-MNIST-CNN").name == "keras_mnist_cnn"
    assert models.get("alexnet_grouped").layers[3].groups == 2
    assert models.get("lenet5", classes=5).layers[-1].units == 5
    with pytest.raises(ValueError, match="unknown model"):
        models.get("resnet50")
    with pytest.raises(ValueError, match="too small"):
        models.vgg16(input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="input_shape"):
        models.lenet5(input_shape=(32, 32))
    with pytest.raises(ValueError, match="classes"):
        models.cifar10_simple(classes=0)


@pytest.mark.parametrize("name", ["lenet5", "keras_mnist_cnn", "cifar10_simple"])
def test_small_zoo_models_build_and_train(name, rng):
    cf.set_seed(0)
    model = models.get(name)
    model.compile(cf.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    x = rng.normal(size=(8,) + model.input_shape_).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    loss, _ = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    # build() allocated exactly what the shape formulas said.
    assert model.count_params() == cf.analyze(model).totals["params"]
    for layer, inp, _ in model.shapes():
        assert {k: w.shape for k, w in layer.weights_.items()} == layer.param_shapes(inp)


# ---- batch-normalized CIFAR-10 networks (issue 19) ----------------------------------------

def test_resnet_v1_parameter_counts_match_keras():
    # keras.io cifar10_resnet resnet_v1(depth=20).summary(): Total params 274,442, trainable
    # 273,066, non-trainable 1,376 (the moving mean and variance of 19 BatchNormalizations).
    model = models.resnet20()
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 274,442" in lines
    assert "Trainable params: 273,066" in lines and "Non-trainable params: 1,376" in lines
    report = cf.analyze(model)
    assert (report.totals["params"], report.totals["trainable_params"]) == (274_442, 273_066)
    assert models.resnet32().count_params() == 470_218
    assert models.resnet56().count_params() == 861_770
    # 19 convolutions + 2 projection shortcuts + the classifier; 19 batch normalizations.
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 21 and kinds.count("BatchNormalization") == 19
    assert model.get_layer("stage2_block1_shortcut_conv").strides == (2, 2)
    assert model.output_shape == (None, 10)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        models.resnet_v1(21)
    with pytest.raises(ValueError, match="too small for the final 8x8 pool"):
        models.resnet20(input_shape=(28, 28, 3))
    assert models.resnet20(input_shape=(29, 29, 3)).output_shape == (None, 10)


def test_vgg_cifar_bn_counts_and_folding():
    model = models.vgg_cifar_bn()
    assert model.count_params() == 552_874
    lines = []
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 1,152" in lines  # 2 * (2*32 + 2*64 + 2*128 + 128)
    model.build()
    # Every Conv-BN pair folds at inference: no batchnorm step is left but the Dense one's.
    steps = model._inference_network().describe()
    assert sum(s.startswith("batchnorm") for s in steps) == 1
    # ... and the ReLU after each batch normalization runs in the convolution's epilogue.
    assert sum(s.startswith("activation relu") for s in steps) == 1  # fc_relu
    assert sum("relu in the kernel epilogue" in s for s in steps if s.startswith("conv2d")) == 6


@pytest.mark.parametrize("name", ["resnet20", "vgg_cifar_bn"])
def test_batchnorm_zoo_models_train_on_cifar_shapes(name, rng):
    cf.set_seed(0)
    model = models.get(name)
    model.compile(cf.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    assert model._train_plan is not None  # one C++ call per step
    x = rng.normal(size=(8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    losses = [model.train_on_batch(x, y)[0] for _ in range(4)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert model.count_params() == cf.analyze(model).totals["params"]
    # Inference (folded BN) agrees with the Python walk in inference mode.
    np.testing.assert_allclose(model.predict(x, verbose=0), model._forward(x, training=False),
                               rtol=1e-4, atol=1e-5)  # float32 rounding of folded weights, 20 deep


# ---- grouped convolution ------------------------------------------------------------------

@pytest.mark.parametrize("groups,padding,strides", [(2, 1, 1), (2, "same", 2), (4, "valid", 1),
                                                    (3, 2, (2, 1))])
def test_grouped_conv_equals_ungrouped_convs_of_channel_slices(groups, padding, strides, rng):
    cf.set_seed(3)
    c_in, k = 4 * groups, 2 * groups
    x = rng.normal(size=(2, 9, 8, c_in)).astype(np.float32)
    conv = L.Conv2D(k, 3, strides=strides, padding=padding, groups=groups)
    conv.build(x.shape[1:])
    conv.weights_["bias"][:] = rng.normal(size=k)
    y = conv.forward(x, training=True).copy()
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx = conv.backward(dy.copy())
    dx = dx.copy()
    dw = conv.gradients_["kernel"].copy()

    cg, kg = c_in // groups, k // groups
    for g in range(groups):
        part = L.Conv2D(kg, 3, strides=strides, padding=padding)
        part.need_input_grad = True
        part.build((9, 8, cg))
        part.weights_["kernel"][:] = conv.weights_["kernel"][..., g * kg:(g + 1) * kg]
        part.weights_["bias"][:] = conv.weights_["bias"][g * kg:(g + 1) * kg]
        xs = np.ascontiguousarray(x[..., g * cg:(g + 1) * cg])
        ys = part.forward(xs, training=True)
        # fp32 sums over 3*3*cg <= 36 terms, computed in a different order.
        np.testing.assert_allclose(y[..., g * kg:(g + 1) * kg], ys, rtol=1e-5, atol=1e-5)
        dxs = part.backward(np.ascontiguousarray(dy[..., g * kg:(g + 1) * kg]))
        np.testing.assert_allclose(dx[..., g * cg:(g + 1) * cg], dxs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dw[..., g * kg:(g + 1) * kg], part.gradients_["kernel"],
                                   rtol=1e-5, atol=1e-4)  # sums over N*OH*OW <= 144 products


def test_bench_torch_resnet20_is_the_same_model():
    """bench/bench_resnet.py times PyTorch on the same ResNet-20: as many trainable parameters
    (273,066) and batch-norm statistics (1,376) as cnnfast's."""
    pytest.importorskip("torch")
    bench = pytest.importorskip("bench.bench_resnet")
    tm = bench.torch_resnet20()
    assert sum(p.numel() for p in tm.parameters()) == 273_066
    assert sum(b.numel() for n, b in tm.named_buffers() if "running" in n) == 1_376
