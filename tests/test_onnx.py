"""ONNX export: the exported graphs pass onnx.checker and give model.predict's outputs in
onnxruntime, for the zoo and for every layer/option the exporter maps."""

from __future__ import annotations

import numpy as np
import pytest
from more_layers_models import MODELS as MORE_LAYER_MODELS

import cnnfast as cf
from cnnfast import layers as L

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def small_vgg() -> cf.Sequential:
    """VGG-style: three blocks of 3x3 "same" convolutions and 2x2 max-pools, FC with dropout."""
    layers = [L.Input((32, 32, 3))]
    for block, (convs, filters) in enumerate([(2, 8), (2, 16), (3, 32)], 1):
        layers += [L.Conv2D(filters, 3, padding="same", activation="relu",
                            name=f"block{block}_conv{i}") for i in range(1, convs + 1)]
        layers.append(L.MaxPooling2D(2, name=f"block{block}_pool"))
    layers += [L.Flatten(), L.Dense(32, activation="relu"), L.Dropout(0.5),
               L.Dense(32, activation="relu"), L.Dropout(0.5), L.Dense(10, activation="softmax")]
    return cf.Sequential(layers, name="small_vgg")


def small_alexnet() -> cf.Sequential:
    """AlexNet's structure at 35x35: strided conv, LRN, overlapping pools, grouped convs."""
    lrn = {"depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75}
    return cf.Sequential([
        L.Input((35, 35, 3)),
        L.Conv2D(16, 5, strides=2, activation="relu"), L.LocalResponseNormalization(**lrn),
        L.MaxPooling2D(3, strides=2),
        L.Conv2D(32, 3, padding=1, groups=2, activation="relu"), L.LocalResponseNormalization(**lrn),
        L.MaxPooling2D(3, strides=2),
        L.Conv2D(32, 3, padding=1, activation="relu"),
        L.Conv2D(32, 3, padding=1, groups=2, activation="relu"),
        L.Flatten(), L.Dropout(0.5), L.Dense(64, activation="relu"), L.Dropout(0.5),
        L.Dense(10, activation="softmax"),
    ], name="small_alexnet")


def every_option() -> cf.Sequential:
    """Asymmetric "same" pads (stride 2, even kernels), explicit pads, both poolings with "same"
    (AveragePool must not count the padding), every activation, PReLU shared and unshared,
    LRN with a large alpha (the /size convention matters), softmax on a feature map, Dense on a
    feature map (MatMul path) and a feature-map output."""
    return cf.Sequential([
        L.Input((11, 13, 3)),
        L.Conv2D(6, (4, 2), strides=2, padding="same", activation="elu"),
        L.PReLU(shared_axes=[1, 2]),
        L.LocalResponseNormalization(depth_radius=1, bias=1.0, alpha=0.5, beta=0.75),
        L.AveragePooling2D(3, strides=2, padding="same"),
        L.Conv2D(8, 3, padding=(2, 1), groups=2, activation="swish"),
        L.MaxPooling2D(2, padding="same"),
        L.Activation("sigmoid"), L.ELU(alpha=0.4), L.Activation("tanh"), L.ReLU(), L.PReLU(),
        L.Activation("softmax"),
        L.Dense(5, activation="tanh"),
    ], name="every_option")


def mlp() -> cf.Sequential:
    """Rank-1 input: no transposes at all; Softmax layer after a linear Dense."""
    return cf.Sequential([L.Input((20,)), L.Dense(16, activation="swish"), L.Dropout(0.1),
                          L.Dense(4), L.Softmax()], name="mlp")


MODELS = {
    "lenet5": lambda: cf.models.lenet5(),
    "keras_mnist_cnn": lambda: cf.models.keras_mnist_cnn(),
    "cifar10_simple": lambda: cf.models.cifar10_simple(),
    "small_vgg": small_vgg,
    "small_alexnet": small_alexnet,
    "every_option": every_option,
    "mlp": mlp,
}
# Issue 19's layers (LeakyReLU, noise, convolution variants, preprocessing).
MODELS.update({name: factory for name, (factory, _) in MORE_LAYER_MODELS.items()})


def randomize(model: cf.Sequential, rng) -> None:
    """Non-zero biases and PReLU slopes, so every parameter's layout is exercised."""
    for layer in model.layers:
        for name, w in layer.weights_.items():
            if name != "kernel":
                w[...] = rng.uniform(-0.5, 0.5, w.shape).astype(np.float32)


@pytest.mark.parametrize("name", list(MODELS))
def test_onnxruntime_matches_predict(tmp_path, name, rng):
    cf.set_seed(0)
    model = MODELS[name]()
    model.build()
    randomize(model, rng)
    path = tmp_path / f"{name}.onnx"
    cf.export_onnx(model, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    assert all(n.op_type != "Dropout" for n in proto.graph.node)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch axis is dynamic
        x = rng.standard_normal((batch,) + model.input_shape_).astype(np.float32)
        (got,) = session.run(None, {"input": x})
        want = model.predict(x)
        assert got.shape == want.shape
        # Same math in a different summation order (onnxruntime's MLAS vs cnnfast's GEMM):
        # fp32 dot products of length <= 9*9*32 differ by ~1e-6 relative, a little more after
        # up to 13 layers; both outputs are O(1) (softmax/tanh or normalised activations).
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_graph_layout(tmp_path):
    model = cf.models.lenet5()
    proto = cf.onnx_export.to_onnx(model)
    ops = [n.op_type for n in proto.graph.node]
    # One transpose in (NHWC -> NCHW), one back before Flatten, none after.
    assert ops[0] == "Transpose" and ops.count("Transpose") == 2
    assert ops[ops.index("Flatten") - 1] == "Transpose"
    inp = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in inp] == ["N", 32, 32, 1]
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    kernel = next(i for i in proto.graph.initializer if i.name == conv.input[1])
    assert list(kernel.dims) == [6, 1, 5, 5]  # (K, C/g, KH, KW)
    pool = next(n for n in proto.graph.node if n.op_type == "AveragePool")
    assert {a.name: a.i for a in pool.attribute}["count_include_pad"] == 0


def test_lrn_and_asymmetric_pads_attributes():
    model = cf.Sequential([L.Input((8, 8, 4)), L.Conv2D(4, 2, strides=2, padding="same"),
                           L.LocalResponseNormalization(depth_radius=2, alpha=1e-4)])
    proto = cf.onnx_export.to_onnx(model)
    nodes = {n.op_type: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
             for n in proto.graph.node}
    assert nodes["LRN"]["size"] == 5
    assert nodes["LRN"]["alpha"] == pytest.approx(5e-4)  # ONNX divides alpha by size
    model = cf.Sequential([L.Input((9, 9, 1)), L.MaxPooling2D(2, strides=2, padding="same")])
    proto = cf.onnx_export.to_onnx(model)
    pool = next(n for n in proto.graph.node if n.op_type == "MaxPool")
    pads = next(a for a in pool.attribute if a.name == "pads").ints
    assert list(pads) == [0, 0, 1, 1]  # TensorFlow "same": the odd row/column at the end


def test_invalid_exports(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        cf.export_onnx(cf.models.lenet5(), tmp_path / "m.onnx", opset=11)
    with pytest.raises(TypeError):
        cf.export_onnx(object(), tmp_path / "m.onnx")

    class Custom(L.Layer):
        def forward(self, x, training=False):
            return x

    with pytest.raises(NotImplementedError, match="no ONNX mapping"):
        cf.export_onnx(cf.Sequential([L.Input((4,)), Custom()]), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


# -- batch normalization and the spatial layers (issue 19) -----------------------------------

def spatial_bn_stack() -> cf.Sequential:
    """Every issue-19 layer and BN layout: NCHW maps, (N, C) rows, a rank-2 input."""
    return cf.Sequential([
        L.Input((9, 8, 3)),
        L.BatchNormalization(),
        L.ZeroPadding2D(((1, 2), (0, 1))),
        L.Conv2D(4, 3),
        L.BatchNormalization(scale=False),
        L.ReLU(),
        L.UpSampling2D((2, 3)),
        L.Cropping2D(((1, 0), (2, 3))),
        L.GlobalMaxPooling2D(keepdims=True),
        L.Reshape((2, 2)),
        L.BatchNormalization(center=False),
        L.Flatten(),
        L.Dense(6),
        L.BatchNormalization(),
        L.Dense(3, activation="softmax"),
    ], name="spatial_bn_stack")


@pytest.mark.parametrize("name", ["spatial_bn_stack", "resnet20", "vgg_cifar_bn"])
def test_onnxruntime_matches_predict_with_batchnorm(tmp_path, name, rng):
    cf.set_seed(0)
    model = spatial_bn_stack() if name == "spatial_bn_stack" else cf.models.get(name)
    model.build()
    for layer in model.layers:  # statistics away from the identity, variances positive
        for wname, w in layer.weights_.items():
            if wname != "kernel":
                low = 0.5 if wname in ("gamma", "moving_variance") else -0.5
                w[...] = rng.uniform(low, low + 1.0, w.shape).astype(np.float32)
    path = tmp_path / f"{name}.onnx"
    cf.export_onnx(model, path)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" in ops
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        x = rng.standard_normal((batch,) + model.input_shape_).astype(np.float32)
        (got,) = session.run(None, {"input": x})
        want = model.predict(x, verbose=0)
        # As above, plus cnnfast's folding of BN into the convolution's weights (float32
        # rounding of w * scale) against onnxruntime's separate BatchNormalization, 20 deep.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
