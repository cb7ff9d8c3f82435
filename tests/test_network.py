"""The C++ inference executor (_core.Network, cnnfast._executor) against the Python layer walk."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import reference

import cnnfast as cf
from cnnfast import _core, _executor, models, ops
from cnnfast import layers as L


def python_forward(model, x):
    """The layer-by-layer Python inference forward (what predict did before the executor)."""
    return model._forward(np.ascontiguousarray(x, np.float32), training=False).copy()


def small_exotic_net():
    """Grouped conv + LRN + PReLU + avg-pool + standalone activations, Dense on a rank-3 input."""
    return cf.Sequential([
        L.Input((12, 12, 4)),
        L.Conv2D(8, 3, padding="same", groups=2, activation="elu", name="gconv"),
        L.LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-3, beta=0.75),
        L.PReLU(alpha_initializer="glorot_uniform", shared_axes=[1, 2]),
        L.AveragePooling2D(3, strides=2, padding="same"),
        L.Conv2D(6, 2, strides=2, padding="valid", activation="swish", use_bias=False),
        L.Activation("sigmoid"),
        L.Dense(5, activation="tanh"),  # acts on the last axis of (3, 3, 6)
        L.PReLU(alpha_initializer="glorot_uniform"),
        L.MaxPooling2D(2, padding="same"),
        L.Flatten(),
        L.Dropout(0.3),
        L.Dense(7),
        L.Softmax(),
    ])


MODELS = {
    "lenet5": lambda: models.lenet5(),
    "keras_mnist_cnn": lambda: models.keras_mnist_cnn(),
    "cifar10_simple": lambda: models.cifar10_simple(input_shape=(16, 16, 3)),
    "exotic": small_exotic_net,
}


def make(name):
    cf.set_seed(0)
    model = MODELS[name]()
    model.build()
    return model


# fp32 results of the same kernels on the same data: the executor runs them with the same
# shapes, so the outputs are bit-identical except where a kernel's thread split depends on the
# batch size it sees (none here); a 2-ulp tolerance guards against that without hiding errors.
def assert_same(got, want):
    np.testing.assert_allclose(got, want, rtol=2.5e-7, atol=1e-7)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("n", [1, 5])
def test_network_matches_python_forward(name, n, rng):
    model = make(name)
    net = model._inference_network()
    assert net is not None
    assert net.output_shape == model.output_shape_
    x = rng.standard_normal((n,) + model.input_shape_).astype(np.float32)
    want = python_forward(model, x)
    out = np.full((n,) + model.output_shape_, np.nan, np.float32)
    net.forward(out, x)
    assert_same(out, want)
    assert_same(model.predict(x), want)
    assert_same(model(x), want)
    assert_same(model.predict(x, batch_size=2), want)  # chunked over the batch


def test_network_sees_in_place_weight_updates(rng):
    model = make("keras_mnist_cnn")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = rng.standard_normal((8,) + model.input_shape_).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    net = model._inference_network()
    before = model.predict(x)
    for _ in range(3):
        model.train_on_batch(x, y)
    assert model._inference_network() is net  # same arrays, same executor
    after = model.predict(x)
    assert not np.allclose(before, after)
    assert_same(after, python_forward(model, x))
    # set_weights copies into the same arrays too.
    model.set_weights([w * 0.5 for w in model.get_weights()])
    assert_same(model.predict(x), python_forward(model, x))


# Inference keeps Winograd kernels (conv2d_winograd.h's WinogradKernel): F(4x4, 3x3) where its
# 36-position transform fits in L2 (input x output channels up to 64 x 64 here), else F(2x2, 3x3).
# F(2x2)'s is the kernel conv2d_forward transforms on every call, so those outputs equal the
# layer walk's to the bit. F(4x4)'s error is held to the first-order bound of its arithmetic:
# every value passes at most 6 roundings in the input transform (two stages of up to 3 adds), 6
# in the kernel's, 1 product, C - 1 sums over channels and 6 in the output transform, so
# |error| <= (C + 19) u S with u = 2^-24 and S the same algorithm on absolute values
# (reference.winograd_f4_abs; not sum |x||w|: an output's error comes from its tile's whole
# 6x6 patch, not only from its own window). Measured: at most 0.35 u S over 200 random shapes
# (dev/winograd_error_sweep.py). A wrong coefficient or tile is off by about S itself.
def f4_bound(c):
    return (c + 19) * 2.0**-24


def single_conv(hw, c, k, padding, activation=None):
    model = cf.Sequential([L.Input((hw, hw, c)), L.Conv2D(k, 3, padding=padding,
                                                        activation=activation)])
    model.build()
    model.layers[0].weights_["bias"][...] = np.linspace(-1, 1, k, dtype=np.float32)
    return model


def error_over_scale(model, x):
    """|predict - float64 conv| / reference.winograd_f4_abs per output (a one-Conv2D model)."""
    layer = model.layers[0]
    w, b = layer.weights_["kernel"], layer.weights_["bias"]
    ph, pw = (1, 1) if layer.padding == "same" else (0, 0) if layer.padding == "valid" else \
        layer.padding
    pads = ((ph, ph), (pw, pw))
    want = reference.conv2d_forward(x, w, b, pads=pads)
    scale = reference.winograd_f4_abs(x, w, b, pads=pads)
    return np.abs(model.predict(x).astype(np.float64) - want) / scale


@pytest.mark.parametrize("hw, c, k, padding, n", [
    (13, 64, 64, "valid", 1),   # the Keras MNIST CNN's second convolution: 9 tiles of 4x4
    (13, 64, 64, "valid", 3),
    (12, 32, 20, "same", 1),    # 20 filters padded to 32 in the kept transform
    (9, 48, 40, "same", 2),     # 9x9 outputs: partial tiles on two sides
    (16, 64, 64, "same", 1),
    (9, 32, 16, (2, 2), 1),     # explicit padding: 2 rows and columns each side
    (8, 48, 33, (1, 0), 3),
])
def test_kept_f4_winograd_kernel_is_within_its_bound(hw, c, k, padding, n, rng):
    model = single_conv(hw, c, k, padding)
    x = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    ratio = error_over_scale(model, x)
    assert ratio.max() <= f4_bound(c), ratio.max() / 2.0**-24


# A single image's maps of 9-16 tiles whose kernel's U exceeds L2 keep it too, streamed from
# memory (conv2d_winograd.h's winograd_streams_kept_kernel): F(4x4, 3x3)'s on 16x16 maps (64 ->
# 128 channels: 1.1 MiB of U), F(2x2, 3x3)'s on 8x8 maps (128 -> 200: 1.6 MiB), where the layer
# walk runs F(2x2) per call or the weight-streaming direct forward. F(4x4)'s error is held to
# the bound above; F(2x2)'s to its own first-order bound: at most 2 roundings in the input
# transform (two stages of one add), 4 in the kernel's (two of two adds; halving is exact), 1
# product, C - 1 sums over channels and 4 in the output transform, so |error| <= (C + 10) u S
# with S = reference.winograd_f2_abs. Two threads split the output channels: the same bits. A
# batch of 2 (not streamed: F(2x2, 3x3), kept beside the streamed kernel or made per call) is
# held to F(2x2)'s bound.
@pytest.mark.parametrize("hw, c, k, padding, tile", [
    (16, 64, 128, "same", 4),
    (18, 64, 128, "valid", 4),   # 16x16 outputs, the input read in place
    (8, 128, 200, "same", 2),
    (10, 128, 200, "valid", 2),  # 8x8 outputs
])
def test_streamed_kept_kernel_is_within_its_bound_and_follows_edits(hw, c, k, padding, tile,
                                                                    rng):
    model = single_conv(hw, c, k, padding)
    layer = model.layers[0]

    def within_bound(x, m):
        w, b = layer.weights_["kernel"], layer.weights_["bias"]
        pads = ((1, 1), (1, 1)) if padding == "same" else ((0, 0), (0, 0))
        want = reference.conv2d_forward(x, w, b, pads=pads)
        scale = (reference.winograd_f4_abs if m == 4 else reference.winograd_f2_abs)(
            x, w, b, pads=pads)
        ratio = np.abs(model.predict(x).astype(np.float64) - want) / scale
        return ratio.max() <= (f4_bound(c) if m == 4 else (c + 10) * 2.0**-24)

    x = rng.standard_normal((1, hw, hw, c)).astype(np.float32)
    x2 = rng.standard_normal((2, hw, hw, c)).astype(np.float32)
    assert within_bound(x, tile)
    assert within_bound(x2, 2)
    before = model.predict(x)
    cf.set_num_threads(2)
    try:
        np.testing.assert_array_equal(model.predict(x), before)
    finally:
        cf.set_num_threads(0)
    layer.weights_["kernel"][1, 1, c - 1, k - 1] += 0.5  # in place: the kept U must follow
    after = model.predict(x)
    assert not np.array_equal(after[0, :, :, k - 1], before[0, :, :, k - 1])
    np.testing.assert_array_equal(after[..., :k - 1], before[..., :k - 1])
    assert within_bound(x, tile)
    assert within_bound(x2, 2)


def test_kept_f2_winograd_kernel_gives_the_layer_walk_bits(rng):
    # 128 -> 128 channels: F(4x4)'s transform (2.25 MiB) would not fit in L2, F(2x2)'s (1 MiB)
    # does. Two images: one would stream F(4x4)'s (9 tiles of 4x4).
    model = single_conv(10, 128, 128, "same", activation="relu")
    x = rng.standard_normal((2, 10, 10, 128)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), python_forward(model, x))


@pytest.mark.parametrize("edit", ["one value", "negate", "zero", "swap filters"])
def test_kept_winograd_kernel_follows_edits_in_place(edit, rng):
    # 32 -> 20 channels on 12x12 outputs: the network keeps the transformed kernel from call to
    # call, and must make it again whenever the weights change in place (it compares a digest
    # of them, weight_digest.h: a swap keeps every value and changes places).
    model = single_conv(12, 32, 20, "same")
    x = rng.standard_normal((1,) + model.input_shape_).astype(np.float32)
    before = model.predict(x)
    assert error_over_scale(model, x).max() <= f4_bound(32)
    kernel = model.layers[0].weights_["kernel"]
    if edit == "one value":
        kernel[1, 2, 31, 19] += 0.5
    elif edit == "negate":  # every sign bit flips
        kernel *= -1.0
    elif edit == "swap filters":  # the same values, other places
        kernel[..., [0, 19]] = kernel[..., [19, 0]]
    else:
        kernel[...] = 0.0
    assert not np.array_equal(model.predict(x), before)
    assert error_over_scale(model, x).max() <= f4_bound(32)
    x5 = rng.standard_normal((5,) + model.input_shape_).astype(np.float32)
    assert error_over_scale(model, x5).max() <= f4_bound(32)


def test_network_rebuilt_when_weight_arrays_are_replaced(rng):
    model = make("cifar10_simple")
    net = model._inference_network()
    dense = model.layers[-1]
    dense.weights_["kernel"] = dense.weights_["kernel"] * 2.0  # a new array object
    assert model._inference_network() is not net
    x = rng.standard_normal((3,) + model.input_shape_).astype(np.float32)
    assert_same(model.predict(x), python_forward(model, x))


def test_unsupported_layer_falls_back_to_python(rng):
    class Scale(L.Layer):
        def forward(self, x, training=False):
            return x * 2.0

    model = cf.Sequential([L.Input((4, 4, 2)), L.Conv2D(3, 3), Scale(), L.Flatten(), L.Dense(2)])
    assert model._inference_network() is None
    x = rng.standard_normal((2, 4, 4, 2)).astype(np.float32)
    assert_same(model.predict(x), python_forward(model, x))


def test_concurrent_forward_from_threads(rng):
    model = make("keras_mnist_cnn")
    net = model._inference_network()
    inputs = [rng.standard_normal((n,) + model.input_shape_).astype(np.float32) for n in (1, 3, 2, 4)]
    wants = [python_forward(model, x) for x in inputs]
    errors = []

    def worker(i):
        try:
            out = np.empty((len(inputs[i]),) + model.output_shape_, np.float32)
            for _ in range(30):
                out[...] = np.nan
                net.forward(out, inputs[i])
                assert_same(out, wants[i])
        except Exception as e:  # noqa: BLE001 (any failure is reported in the main thread)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_forward_rejects_bad_shapes():
    model = make("lenet5")
    net = model._inference_network()
    out = np.empty((2, 10), np.float32)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 32, 32, 1\), got \(2, 28, 28, 1\)"):
        net.forward(out, np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 32, 32, 1\), got \(32, 32, 1\)"):
        net.forward(out, np.zeros((32, 32, 1), np.float32))
    with pytest.raises(ValueError, match=r"out must have shape \(3, 10\) .* got \(2, 10\)"):
        net.forward(out, np.zeros((3, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="expected dtype float32"):
        net.forward(out, np.zeros((2, 32, 32, 1), np.float64))
    with pytest.raises(ValueError, match="overlaps"):
        buf = np.zeros(2 * 32 * 32, np.float32)
        net.forward(buf[:20].reshape(2, 10), buf.reshape(2, 32, 32, 1))
    with pytest.raises(ValueError, match="predict: input of layer 'c1' is incompatible"):
        model.predict(np.zeros((1, 28, 28, 1)))


def network_from(input_shape, layers, weights):
    """A Network from a hand-written config: layers are (class_name, config) pairs."""
    config = {"name": "hand", "input_shape": list(input_shape),
              "layers": [{"class_name": c, "config": cfg} for c, cfg in layers]}
    return _core.Network.from_config(json.dumps(config), weights)


CONV = ("Conv2D", {"name": "c", "filters": 8, "kernel_size": [3, 3], "strides": [1, 1],
                   "padding": "valid", "activation": "relu"})


@pytest.mark.parametrize("layers, weights, message", [
    ([CONV], {"c/kernel": np.zeros((3, 3, 4, 8), np.float32), "c/bias": np.zeros(8, np.float32)},
     r"weight 'c/kernel' has shape \(3, 3, 4, 8\), the architecture needs \(3, 3, 3, 8\)"),
    ([CONV], {"c/kernel": np.zeros((3, 3, 3, 8), np.float32), "c/bias": np.zeros(4, np.float32)},
     r"weight 'c/bias' has shape \(4,\), the architecture needs \(8,\)"),
    ([CONV], {"c/kernel": np.zeros((3, 3, 3, 8), np.float32)}, "weight 'c/bias' is missing"),
    ([CONV], {"c/kernel": np.zeros((3, 3, 3, 8)), "c/bias": np.zeros(8, np.float32)},
     "expected dtype float32"),
    ([CONV], {"c/kernel": np.zeros((3, 3, 3, 8), np.float32), "c/bias": np.zeros(8, np.float32),
              "x/kernel": np.zeros(1, np.float32)}, "weight 'x/kernel' is not used"),
    ([("Conv2D", {**CONV[1], "kernel_size": [9, 9]})], {},
     "Conv2D 'c': window 9 larger than padded input 8"),
    ([("MaxPooling2D", {"name": "p", "pool_size": [2, 2], "strides": [2, 2], "padding": "full"})],
     {}, "MaxPooling2D 'p': unknown padding"),
    ([("Activation", {"name": "a", "activation": "gelu"})], {}, "Activation 'a'.*unknown activation 'gelu'"),
    ([("Dense", {"name": "d", "units": 2})], {"d/kernel": np.zeros((5, 2), np.float32),
                                             "d/bias": np.zeros(2, np.float32)},
     r"weight 'd/kernel' has shape \(5, 2\), the architecture needs \(3, 2\)"),
    ([("GroupNorm", {"name": "g"})], {}, 'unknown layer class "GroupNorm"'),
])
def test_network_builder_rejects_bad_configs(layers, weights, message):
    with pytest.raises(ValueError, match=message):
        network_from((8, 8, 3), layers, weights)


def test_network_of_only_shape_steps_copies(rng):
    net = network_from((2, 3), [("Flatten", {"name": "f"}), ("Dropout", {"name": "d", "rate": 0.5})],
                       {})
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    out = np.empty((4, 6), np.float32)
    net.forward(out, x)
    np.testing.assert_array_equal(out, x.reshape(4, 6))


def test_leading_in_place_steps_do_not_touch_the_input(rng):
    net = network_from((6,), [("ReLU", {"name": "r"}), ("PReLU", {"name": "p"}),
                              ("Dense", {"name": "d", "units": 6, "activation": "tanh",
                                         "use_bias": False})],
                       {"p/alpha": np.full(6, 0.5, np.float32),
                        "d/kernel": np.eye(6, dtype=np.float32)})
    x = rng.standard_normal((3, 6)).astype(np.float32)
    x0 = x.copy()
    out = np.empty((3, 6), np.float32)
    net.forward(out, x)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_allclose(out, np.tanh(np.maximum(x0, 0)), rtol=1e-6, atol=1e-6)  # fp32 tanh


def test_network_key_tracks_rebuilds():
    model = make("lenet5")
    key = _executor.network_key(model)
    assert _executor.network_key(model) == key
    model.layers[0].weights_["bias"] = model.layers[0].weights_["bias"].copy()
    assert _executor.network_key(model) != key


# -- graphs (Keras functional configs) -----------------------------------------------------------

def conv_layer(name, filters, calls, activation=None):
    config = {"name": name, "filters": filters, "kernel_size": [3, 3], "strides": [1, 1],
              "padding": "same", "activation": activation}
    return {"class_name": "Conv2D", "config": config, "inbound_nodes": calls}


def graph(layers, output, input_shape=(6, 6, 4)):
    """A functional config: an InputLayer named "in" plus `layers`, one output node."""
    inp = {"class_name": "InputLayer", "config": {"name": "in", "shape": list(input_shape)},
           "inbound_nodes": []}
    return json.dumps({"name": "g", "layers": [inp, *layers], "input_layers": [["in", 0]],
                       "output_layers": [output]})


def conv_weights(rng, name, c_in, c_out):
    return {f"{name}/kernel": rng.standard_normal((3, 3, c_in, c_out)).astype(np.float32) * 0.3,
            f"{name}/bias": rng.standard_normal(c_out).astype(np.float32)}


def run(net, x):
    out = np.full((len(x),) + net.output_shape, np.nan, np.float32)
    net.forward(out, x)
    return out


def test_graph_residual_block_matches_ops(rng):
    # in -> a (relu) -> b; add(b, in) -> relu: a residual block, layers listed out of order.
    layers = [
        {"class_name": "ReLU", "config": {"name": "out"}, "inbound_nodes": [[["sum", 0]]]},
        {"class_name": "Add", "config": {"name": "sum"}, "inbound_nodes": [[["b", 0], ["in", 0]]]},
        conv_layer("b", 4, [[["a", 0]]]),
        conv_layer("a", 4, [[["in", 0]]], activation="relu"),
    ]
    w = {**conv_weights(rng, "a", 4, 4), **conv_weights(rng, "b", 4, 4)}
    net = _core.Network.from_config(graph(layers, ["out", 0]), w)
    x = rng.standard_normal((3, 6, 6, 4)).astype(np.float32)
    a = ops.relu(ops.conv2d(x, w["a/kernel"], w["a/bias"], padding="same"))
    b = ops.conv2d(a, w["b/kernel"], w["b/bias"], padding="same")
    assert net.output_shape == (6, 6, 4)
    assert_same(run(net, x), ops.relu(b + x))


def test_graph_value_read_after_an_activation_is_not_overwritten(rng):
    # c feeds both relu(c) and the add: the relu must not run in place on c's buffer.
    layers = [conv_layer("c", 3, [[["in", 0]]]),
              {"class_name": "ReLU", "config": {"name": "r"}, "inbound_nodes": [[["c", 0]]]},
              {"class_name": "Subtract", "config": {"name": "s"},
               "inbound_nodes": [[["r", 0], ["c", 0]]]}]
    w = conv_weights(rng, "c", 4, 3)
    net = _core.Network.from_config(graph(layers, ["s", 0]), w)
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    c = ops.conv2d(x, w["c/kernel"], w["c/bias"], padding="same")
    assert_same(run(net, x), np.maximum(c, 0) - c)


def test_graph_shared_layer_and_concatenate(rng):
    # One conv layer called twice shares its weights; the two calls are concatenated.
    layers = [conv_layer("shared", 5, [[["in", 0]], [["r", 0]]]),
              {"class_name": "ReLU", "config": {"name": "r"}, "inbound_nodes": [[["shared", 0]]]},
              conv_layer("side", 5, [[["in", 0]]]),  # shape-matched, unused by the output
              {"class_name": "Concatenate", "config": {"name": "cat", "axis": -1},
               "inbound_nodes": [[["shared", 1], ["in", 0]]]},
              {"class_name": "Flatten", "config": {"name": "f"}, "inbound_nodes": [[["cat", 0]]]}]
    w = {**conv_weights(rng, "shared", 4, 5), **conv_weights(rng, "side", 4, 5)}
    with pytest.raises(ValueError, match="shared.*kernel"):  # the second call sees 5 channels
        _core.Network.from_config(graph(layers, ["f", 0]), w)
    w["shared/kernel"] = rng.standard_normal((3, 3, 5, 5)).astype(np.float32)
    layers[0]["inbound_nodes"] = [[["r0", 0]], [["r", 0]]]
    layers.insert(0, conv_layer("r0", 5, [[["in", 0]]]))
    w.update(conv_weights(rng, "r0", 4, 5))
    net = _core.Network.from_config(graph(layers, ["f", 0]), w)
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    shared = lambda t: ops.conv2d(t, w["shared/kernel"], w["shared/bias"], padding="same")
    r0 = ops.conv2d(x, w["r0/kernel"], w["r0/bias"], padding="same")
    second = shared(np.maximum(shared(r0), 0))
    assert net.output_shape == (6 * 6 * 9,)
    assert_same(run(net, x), np.concatenate([second, x], axis=-1).reshape(2, -1))


@pytest.mark.parametrize("layers, output, message", [
    ([{"class_name": "ReLU", "config": {"name": "a"}, "inbound_nodes": [[["b", 0]]]},
      {"class_name": "ReLU", "config": {"name": "b"}, "inbound_nodes": [[["a", 0]]]}],
     ["a", 0], r"wait on nodes that never exist or on a cycle: a <- b\[0\], b <- a\[0\]"),
    ([{"class_name": "ReLU", "config": {"name": "a"}, "inbound_nodes": [[["ghost", 0]]]}],
     ["a", 0], r"a <- ghost\[0\]"),
    ([{"class_name": "ReLU", "config": {"name": "a"}, "inbound_nodes": [[["in", 0]]]}],
     ["a", 1], r"output_layers names a\[1\], which no layer produces"),
    ([{"class_name": "Add", "config": {"name": "s"}, "inbound_nodes": [[["in", 0], ["f", 0]]]},
      {"class_name": "Flatten", "config": {"name": "f"}, "inbound_nodes": [[["in", 0]]]}],
     ["s", 0], r"Add 's'.*shapes \(6, 6, 4\) and \(144,\) differ"),
    ([{"class_name": "ReLU", "config": {"name": "a"}, "inbound_nodes": [[["in", 0], ["in", 0]]]}],
     ["a", 0], "ReLU 'a': takes one input, got 2"),
    ([{"class_name": "Concatenate", "config": {"name": "c", "axis": 1},
       "inbound_nodes": [[["in", 0], ["in", 0]]]}], ["c", 0], "last axis .* only, got axis 1"),
])
def test_graph_errors_name_the_layers(layers, output, message):
    with pytest.raises(ValueError, match=message):
        _core.Network.from_config(graph(layers, output), {})


def test_plan_and_fusions_in_the_detailed_summary(capsys):
    model = make("keras_mnist_cnn")
    model.compile("adam", "sparse_categorical_crossentropy")
    steps = model._inference_network().describe()
    # Flatten is a view and Dropout the identity: no steps; ReLU runs in the conv epilogue.
    assert [s.split()[0] for s in steps] == ["conv2d", "max_pool2d", "conv2d", "max_pool2d",
                                             "conv2d", "dense"]
    assert "relu in the kernel epilogue" in steps[0] and steps[-1].endswith("writes out")
    model.summary(detailed=True)
    out = capsys.readouterr().out
    assert "Inference plan (one C++ call per batch):" in out
    assert "Training step: one C++ call per batch (TrainPlan), steps:" in out
    assert "1. Conv2D 'conv2d' + MaxPooling2D 'max_pooling2d'" in out  # the fused head
    assert "one conv+relu+max-pool kernel" in out
    assert "softmax + cross-entropy as one kernel" in out


def test_graph_plan_shows_in_place_and_merge_steps():
    x = cf.layers.Input((4, 4, 2))
    c = cf.layers.Conv2D(2, 3, padding="same")(x)
    y = cf.layers.ReLU()(cf.layers.add([c, x]))
    steps = cf.Model(x, y)._inference_network().describe()
    assert steps[1].startswith("merge add (4, 4, 2) + (4, 4, 2) -> (4, 4, 2)")
    assert steps[2].startswith("activation relu") and steps[2].endswith("in place in out")


def test_forward_times_its_steps(rng):
    model = make("cifar10_simple")
    net = model._inference_network()
    x = rng.standard_normal((2,) + model.input_shape_).astype(np.float32)
    out = np.empty((2,) + model.output_shape_, np.float32)
    seconds = np.zeros(len(net.describe()))
    start = time.perf_counter()
    net.forward(out, x, step_seconds=seconds)
    wall = time.perf_counter() - start
    assert_same(out, model.predict(x))  # timing changes nothing
    assert (seconds > 0).all() and seconds.sum() <= wall
    twice = seconds.copy()
    net.forward(out, x, step_seconds=twice)  # added to, not overwritten
    assert (twice > seconds).all()
    for bad in (np.zeros(len(seconds) + 1), np.zeros(len(seconds), np.float32), [0.0]):
        with pytest.raises(ValueError, match="step_seconds"):
            net.forward(out, x, step_seconds=bad)

