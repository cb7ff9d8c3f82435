"""Issue 19's layers: LeakyReLU, Rescaling, GaussianNoise, SpatialDropout2D, DepthwiseConv2D,
SeparableConv2D, dilation, the random preprocessing layers, and the Keras initializers.

Kernels are checked against float64 references (tests/reference.py style), finite differences
and PyTorch; models using the layers against the Python walk (predict, saving, analyzer).
The training plan, ONNX and C API checks use the models in more_layers_models.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import assert_gradient
from more_layers_models import MODELS

import cnnfast as cf
from cnnfast import _core, initializers, ops
from cnnfast import layers as L
from cnnfast.keras import layers as keras_layers


def python_forward(model, x, training=False):
    return model._forward(np.ascontiguousarray(x, np.float32), training=training).copy()


# -- models through every consumer --------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_executor_matches_python_walk(name, rng):
    factory, shape = MODELS[name]
    cf.set_seed(0)
    model = factory()
    model.build()
    assert model._inference_network() is not None, "the C++ builder refused the model"
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    # Same kernels, same shapes: bit-identical up to a 2-ulp guard (see test_network.py).
    np.testing.assert_allclose(model.predict(x), python_forward(model, x), rtol=2.5e-7, atol=1e-7)


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_round_trip(name, tmp_path, rng):
    factory, shape = MODELS[name]
    cf.set_seed(1)
    model = factory()
    model.build()
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    model.save(tmp_path / "m.cnnfast")
    loaded = cf.load_model(tmp_path / "m.cnnfast")
    assert loaded.get_config() == model.get_config()
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("name", list(MODELS))
def test_keras_names_and_summary(name):
    factory, _ = MODELS[name]
    model = factory()
    for layer in model.layers:
        assert getattr(keras_layers, type(layer).__name__) is type(layer)
    report = cf.analyze(model)
    if isinstance(model, cf.Sequential):  # the analyzer counts a shared layer once per call
        assert report.totals["params"] == model.count_params()
    assert all(row.flops > 0 for row in report.layers if row.params)


# -- LeakyReLU ----------------------------------------------------------------------------------

def test_leaky_relu_defaults_follow_keras_3():
    assert L.LeakyReLU().act.alpha == 0.3  # keras.layers.LeakyReLU(negative_slope=0.3)
    assert L.LeakyReLU().get_config()["negative_slope"] == 0.3
    assert L.LeakyReLU(alpha=0.1).act.alpha == 0.1  # the Keras 2 name
    assert L.Conv2D(2, 1, activation="leaky_relu").act.alpha == 0.2  # keras.activations default
    assert L.LeakyReLU().default_name() == "leaky_relu"
    with pytest.raises(ValueError, match="LeakyReLU.*negative_slope"):
        L.LeakyReLU(-1.0)
    with pytest.raises(ValueError, match="negative_slope"):
        L.LeakyReLU("a")


@pytest.mark.parametrize("slope", [0.0, 0.3, 1.7])
def test_leaky_relu_layer_matches_reference_and_finite_differences(slope, rng):
    layer = L.LeakyReLU(slope)
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    x[np.abs(x) < 0.05] = 0.5  # keep the kink out of the +-eps stencil
    y = layer(x, training=True)
    x64 = x.astype(np.float64)
    s32 = float(np.float32(slope))  # the kernel's slope is float32
    # One multiply per element: the float64 product rounded once to float32 (half an ulp).
    np.testing.assert_allclose(y, np.where(x64 > 0, x64, s32 * x64), rtol=6e-8, atol=0)
    w = rng.standard_normal(x.shape).astype(np.float32).astype(np.float64)
    layer.forward(x, training=True)
    dx = layer.backward(w.astype(np.float32))
    np.testing.assert_allclose(dx, w * np.where(x64 > 0, 1.0, s32), rtol=6e-8, atol=0)
    xf = x64.copy()

    def f():
        return float(np.sum(w * layer.forward(xf.astype(np.float32), training=True)))

    assert_gradient(f, xf, dx.astype(np.float64))  # gradcheck's default tolerances


def test_leaky_relu_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 40)).astype(np.float32) * 3
    dy = rng.standard_normal(x.shape).astype(np.float32)
    t = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    ref = torch.nn.functional.leaky_relu(t, 0.3)
    ref.backward(torch.from_numpy(dy.astype(np.float64)))
    # A single product per element with the slope rounded to float32 (0.3 is not exact in
    # binary: float32(0.3) is 4e-8 relative off), then rounded once: within 1.1e-7 relative.
    np.testing.assert_allclose(ops.leaky_relu(x, 0.3), ref.detach().numpy(), rtol=1.1e-7)
    np.testing.assert_allclose(ops.leaky_relu_backward(x, dy, 0.3), t.grad.numpy(), rtol=1.1e-7)


def test_leaky_relu_analyzer_counts_one_flop_per_element():
    model = cf.Sequential([L.Input((4, 4, 2)), L.LeakyReLU()])
    assert cf.analyze(model).layers[-1].flops == 32


# -- Rescaling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,period", [((3,), 1), ((2, 5, 5, 3), 3), ((40001, 7), 7),
                                          ((70001,), 1)])
def test_rescaling_kernel_is_two_float32_operations(shape, period, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    scale = rng.uniform(-3, 3, period).astype(np.float32)
    offset = rng.uniform(-1, 1, period).astype(np.float32)
    for naive in (False, True):
        y = np.empty_like(x)
        _core.rescaling_forward(y, x, scale, offset, naive=naive)
        # No FMA: the product rounded to float32, then the sum (NumPy's float32 ops), exactly.
        np.testing.assert_array_equal(y, x * scale + offset)
        dx = np.empty_like(x)
        _core.rescaling_backward(dx, x, scale, naive=naive)
        np.testing.assert_array_equal(dx, x * scale)


def test_rescaling_layer_config_reference_and_finite_differences(rng):
    layer = L.Rescaling([0.5, -2.0], offset=0.25)
    assert layer.get_config()["scale"] == [0.5, -2.0] and layer.get_config()["offset"] == 0.25
    assert L.Rescaling(1 / 255).offset == 0.0  # Keras default
    x = rng.standard_normal((3, 4, 2))
    y = layer(x.astype(np.float32))
    ref = x * np.array([0.5, -2.0]) + 0.25
    np.testing.assert_allclose(y, ref, rtol=2e-7, atol=1e-7)  # float32 rounding of x, y
    w = rng.standard_normal(x.shape)
    layer.forward(x.astype(np.float32), training=True)
    dx = layer.backward(w.astype(np.float32))

    def f():
        return float(np.sum(w * layer.forward(x.astype(np.float32), training=True)))

    assert_gradient(f, x, dx.astype(np.float64))  # gradcheck's default tolerances
    with pytest.raises(ValueError, match="Rescaling.*3 channels"):
        layer.build((4, 3))
    with pytest.raises(ValueError, match="scale must be a finite number"):
        L.Rescaling("x")


def test_rescaling_analyzer_counts_a_multiply_and_an_add():
    model = cf.Sequential([L.Input((4, 4, 2)), L.Rescaling(0.5)])
    assert cf.analyze(model).layers[-1].flops == 64


def test_rescaling_bindings_check_shapes():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"rescaling_forward: scale \(2,\)"):
        _core.rescaling_forward(x.copy(), x, np.ones(2, np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="offset"):
        _core.rescaling_forward(x.copy(), x, np.ones(3, np.float32), np.ones(1, np.float32))


# -- initializers -------------------------------------------------------------------------------

KERNEL = (3, 3, 64, 128)  # fan_in 576, fan_out 1152


@pytest.mark.parametrize("name,variance", [
    ("he_normal", 2 / 576), ("he_uniform", 2 / 576), ("glorot_normal", 2 / (576 + 1152)),
    ("glorot_uniform", 2 / (576 + 1152)), ("lecun_normal", 1 / 576), ("lecun_uniform", 1 / 576),
])
def test_variance_scaling_initializers_have_the_keras_variance(name, variance):
    cf.set_seed(0)
    w32 = initializers.get(name)(KERNEL)
    assert w32.dtype == np.float32 and w32.shape == KERNEL
    w = w32.astype(np.float64)
    # 73,728 draws: the sample variance is within 4 standard errors (sqrt(2/n) relative
    # for a normal, less for the bounded ones) = 2.1%, the mean within 4 sigma / sqrt(n).
    assert abs(w.var() / variance - 1) < 0.021
    assert abs(w.mean()) < 4 * np.sqrt(variance / w.size)
    if name.endswith("_normal"):
        # Truncated at 2 stddev of the corrected distribution: the bound of Keras' formula.
        bound = 2 * np.sqrt(variance) / 0.87962566103423978
        assert np.abs(w).max() <= bound * (1 + 1e-6)
        assert np.abs(w).max() > 0.95 * bound  # and reached: truncated, not clipped sooner
    else:
        limit = np.sqrt(3 * variance)
        assert np.abs(w).max() <= limit * (1 + 1e-6) and np.abs(w).max() > 0.99 * limit


def test_truncated_normal_correction_constant():
    # The standard deviation of a unit normal truncated to [-2, 2]: its variance is
    # 1 - 2 * 2 * phi(2) / (Phi(2) - Phi(-2)), phi the density, Phi(2) - Phi(-2) = erf(sqrt 2).
    import math

    phi_2 = math.exp(-2.0) / math.sqrt(2.0 * math.pi)
    std = math.sqrt(1.0 - 4.0 * phi_2 / math.erf(math.sqrt(2.0)))
    assert abs(std - initializers.TRUNCATED_STDDEV_FACTOR) < 1e-8


def test_simple_initializers():
    assert np.all(initializers.get("zeros")((2, 3)) == 0)
    assert np.all(initializers.get("ones")((2, 3)) == 1)
    assert np.all(initializers.Constant(0.5)((4,)) == 0.5)
    assert np.all(initializers.get("constant")((4,)) == 0.0)  # Keras default value
    cf.set_seed(1)
    w = initializers.get("random_normal")((200, 500)).astype(np.float64)
    assert abs(w.std() / 0.05 - 1) < 0.01 and abs(w.mean()) < 4 * 0.05 / np.sqrt(w.size)
    t = initializers.get("truncated_normal")((200, 500)).astype(np.float64)
    assert np.abs(t).max() <= 0.1 * (1 + 1e-6)  # two stddev of 0.05, no variance correction
    # The variance of N(0, 0.05) truncated at 2 sigma: 0.05^2 * 0.8796^2.
    assert abs(t.std() / (0.05 * 0.87962566103423978) - 1) < 0.01


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 3, 4, 8), (3, 3, 16, 8)])
def test_orthogonal_initializer(shape):
    cf.set_seed(2)
    w = initializers.Orthogonal(gain=1.5)(shape).astype(np.float64).reshape(-1, shape[-1])
    rows, cols = w.shape
    gram = w.T @ w if rows >= cols else w @ w.T
    # Orthonormal columns (or rows, whichever are fewer) times the gain; float32 storage.
    np.testing.assert_allclose(gram, 2.25 * np.eye(min(rows, cols)), atol=1e-5)
    with pytest.raises(ValueError, match="rank >= 2"):
        initializers.get("orthogonal")((5,))


def test_initializers_follow_set_seed_and_their_own_seed():
    cf.set_seed(7)
    a = initializers.get("he_normal")((5, 5))
    cf.set_seed(7)
    np.testing.assert_array_equal(initializers.HeNormal()((5, 5)), a)
    seeded = initializers.HeNormal(seed=3)
    np.testing.assert_array_equal(seeded((5, 5)), seeded((5, 5)))  # Keras 3: same every call
    assert not np.array_equal(seeded((5, 5)), a)


def test_initializers_by_name_object_and_dict():
    for name in ["he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal",
                 "orthogonal", "zeros", "ones", "constant", "random_normal",
                 "truncated_normal", "random_uniform", "variance_scaling"]:
        init = initializers.get(name)
        assert initializers.get(initializers.serialize(init)).get_config() == init.get_config()
    init = initializers.get({"class_name": "RandomNormal", "config": {"stddev": 0.2, "seed": 4}})
    assert (init.stddev, init.seed) == (0.2, 4)
    assert isinstance(initializers.get("HeNormal"), initializers.HeNormal)
    with pytest.raises(ValueError, match="unknown initializer"):
        initializers.get("he_normall")
    # In a layer, by string and by object.
    cf.set_seed(0)
    conv = L.Conv2D(4, 3, kernel_initializer=initializers.Constant(0.25),
                    bias_initializer="ones")
    conv.build((5, 5, 2))
    assert np.all(conv.kernel == 0.25) and np.all(conv.bias == 1.0)
    dense = L.Dense(3, kernel_initializer="orthogonal")
    dense.build((3,))
    np.testing.assert_allclose(dense.kernel @ dense.kernel.T, np.eye(3), atol=1e-6)


def test_keras_initializers_namespace():
    from cnnfast.keras import initializers as K

    assert K.HeNormal is initializers.HeNormal and K.get is initializers.get
    assert isinstance(K.he_normal, initializers.HeNormal)


# -- dilation_rate ------------------------------------------------------------------------------

def _algorithms() -> list[str]:
    found = []
    for name in ["auto", "im2col", "direct", "winograd"]:
        if _core.set_conv2d_algorithm(name):
            found.append(name)
    _core.set_conv2d_algorithm("auto")
    return found


# (x shape, kernel (KH, KW, C/g, K), strides, padding, groups, dilation)
DILATED = [
    ((2, 9, 9, 3), (3, 3, 3, 4), 1, "valid", 1, 2),
    ((1, 11, 10, 16), (3, 3, 16, 16), 1, "same", 1, 2),  # a Winograd shape
    ((2, 10, 12, 4), (3, 2, 2, 6), (2, 1), (2, 1), 2, (2, 3)),
    ((1, 7, 7, 2), (2, 2, 2, 3), 2, "same", 1, 3),
    ((3, 6, 6, 5), (1, 1, 5, 4), 1, "valid", 1, 4),  # 1x1: dilation changes nothing
]


@pytest.mark.parametrize("algorithm", _algorithms())
@pytest.mark.parametrize("xs,ws,strides,padding,groups,dilation", DILATED)
def test_dilated_conv2d_matches_torch(algorithm, xs, ws, strides, padding, groups, dilation, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    from cnnfast.shapes import conv_padding, pair

    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[3]).astype(np.float32)
    geo = {"strides": strides, "padding": padding, "groups": groups, "dilation_rate": dilation}
    assert _core.set_conv2d_algorithm(algorithm)
    try:
        y = ops.conv2d(x, w, b, **geo)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx, dw, db = ops.conv2d_backward(x, w, dy, **geo)
    finally:
        _core.set_conv2d_algorithm("auto")
    (sh, sw), (dh, dw_) = pair(strides, "s"), pair(dilation, "d")
    span = ((ws[0] - 1) * dh + 1, (ws[1] - 1) * dw_ + 1)
    pads = []
    for axis, n in ((1, xs[2]), (0, xs[1])):  # F.pad order: width first
        p = padding if isinstance(padding, str) else (pair(padding, "p")[axis],) * 2
        before, after, _ = conv_padding(n, span[axis], (sh, sw)[axis], p)
        pads += [before, after]

    def fn(xt, wt, bt):
        yt = F.conv2d(F.pad(xt.permute(0, 3, 1, 2), pads), wt.permute(3, 2, 0, 1), bt,
                      stride=(sh, sw), dilation=(dh, dw_), groups=groups)
        return yt.permute(0, 2, 3, 1)

    xt, wt, bt = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b))
    ref = fn(xt, wt, bt)
    ref.backward(torch.tensor(dy.astype(np.float64)))
    # fp32 sums of at most KH*KW*C/g = 48 products (forward, dx) or N*OH*OW <= 243 (dw, db) of
    # O(1) terms against float64: errors ~1e-6 absolute; 1e-4 of the largest |value| bounds them.
    for got, want in ((y, ref.detach()), (dx, xt.grad), (dw, wt.grad), (db, bt.grad)):
        want = want.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.abs(want).max())
    # The naive loops, the oracle kept beside the fast paths, agree too.
    yn = np.empty_like(y)
    (pt, pl) = (ops.conv.conv2d_geometry(xs, ws, strides, padding, groups,
                                         dilation_rate=dilation)[2])
    _core.conv2d_forward(yn, x, w, b, sh, sw, pt, pl, groups, dh, dw_, naive=True)
    np.testing.assert_allclose(yn, y, rtol=1e-5, atol=1e-5 * np.abs(y).max())


def test_dilated_conv2d_layer_finite_differences(rng):
    layer = L.Conv2D(3, (3, 2), padding="same", dilation_rate=(2, 3), activation="tanh")
    x = rng.standard_normal((2, 7, 8, 2))
    layer.build(x.shape[1:])
    assert layer.output_shape(x.shape[1:]) == (7, 8, 3) and layer.window == (5, 4)
    w = rng.standard_normal((2, 7, 8, 3))
    layer.forward(x.astype(np.float32), training=True)
    dx = layer.backward(w.astype(np.float32)).astype(np.float64)
    kernel = layer.weights_["kernel"]
    dk = layer.gradients_["kernel"].astype(np.float64).copy()

    def f():
        return float(np.sum(w * layer.forward(x.astype(np.float32), training=True)))

    assert_gradient(f, x, dx)  # gradcheck's default tolerances
    k64 = kernel.astype(np.float64)

    def fk():
        kernel[...] = k64
        return f()

    assert_gradient(fk, k64, dk)
    kernel[...] = k64


def test_dilation_in_config_analyzer_and_errors():
    conv = L.Conv2D(4, 3, dilation_rate=2, name="c")
    assert conv.get_config()["dilation_rate"] == [2, 2]
    model = cf.Sequential([L.Input((9, 11, 1)), conv, L.Conv2D(2, 3, dilation_rate=(1, 3))])
    report = cf.analyze(model)
    # Receptive field r += (span - 1) * jump with span = (k - 1) * d + 1: 5, then 7 x 11.
    assert report.layers[0].receptive_field == (5, 5)
    assert report.layers[1].receptive_field == (7, 11)
    assert report.layers[0].macs == 5 * 7 * 4 * 9  # taps counted, not the span
    with pytest.raises(ValueError, match="dilation_rate"):
        L.Conv2D(4, 3, dilation_rate=0)
    with pytest.raises(ValueError, match="dilation_rate.*does not fit"):
        cf.Sequential([L.Input((4, 4, 1)), L.Conv2D(4, 3, dilation_rate=2)]).build()


# -- DepthwiseConv2D and SeparableConv2D ---------------------------------------------------------

# (x shape, (KH, KW), depth multiplier, strides, padding, dilation)
DEPTHWISE = [
    ((2, 9, 9, 5), (3, 3), 1, 1, "same", 1),
    ((1, 10, 11, 3), (3, 2), 3, (2, 1), "valid", 1),
    ((2, 8, 8, 20), (3, 3), 2, 2, "same", 2),  # two channel blocks of 16 in backward-weights
    ((1, 7, 9, 4), (2, 3), 1, 1, (1, 2), (3, 2)),
]


def _torch_depthwise(x, dk, strides, padding, dilation):
    """NHWC float64 torch conv of C groups from a Keras depthwise kernel (KH, KW, C, M)."""
    torch = pytest.importorskip("torch")
    from cnnfast.shapes import conv_padding, pair

    kh, kw, c, m = dk.shape
    (sh, sw), (dh, dw) = pair(strides, "s"), pair(dilation, "d")
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    pads = []
    for axis, n in ((1, x.shape[2]), (0, x.shape[1])):  # F.pad order: width first
        p = padding if isinstance(padding, str) else (pair(padding, "p")[axis],) * 2
        before, after, _ = conv_padding(n, span[axis], (sh, sw)[axis], p)
        pads += [before, after]
    w = dk.reshape(kh, kw, 1, c * m).permute(3, 2, 0, 1)  # (C*M, 1, KH, KW)
    y = torch.nn.functional.conv2d(torch.nn.functional.pad(x.permute(0, 3, 1, 2), pads), w,
                                   stride=(sh, sw), dilation=(dh, dw), groups=c)
    return y.permute(0, 2, 3, 1)


@pytest.mark.parametrize("algorithm", ["auto", "im2col"])
@pytest.mark.parametrize("xs,k,m,strides,padding,dilation", DEPTHWISE)
def test_depthwise_conv2d_matches_torch(algorithm, xs, k, m, strides, padding, dilation, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(xs).astype(np.float32)
    dk = rng.standard_normal((*k, xs[3], m)).astype(np.float32)
    b = rng.standard_normal(xs[3] * m).astype(np.float32)
    w = dk.reshape(k[0], k[1], 1, xs[3] * m)  # the grouped form, same memory
    geo = {"strides": strides, "padding": padding, "groups": xs[3], "dilation_rate": dilation}
    assert _core.set_conv2d_algorithm(algorithm)
    try:
        y = ops.conv2d(x, w, b, **geo)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx, dw, db = ops.conv2d_backward(x, w, dy, **geo)
    finally:
        _core.set_conv2d_algorithm("auto")
    xt, dkt, bt = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, dk, b))
    ref = _torch_depthwise(xt, dkt, strides, padding, dilation) + bt
    ref.backward(torch.tensor(dy.astype(np.float64)))
    # fp32 sums of KH*KW <= 9 products (forward, dx: M of them) or N*OH*OW <= 162 (dw, db)
    # of O(1) terms against float64: 1e-5 of the largest |value| bounds the rounding.
    for got, want in ((y, ref.detach()), (dx, xt.grad), (dw.reshape(dk.shape), dkt.grad),
                      (db, bt.grad)):
        want = want.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_depthwise_kernels_match_the_naive_loops(rng):
    # 2 images, 33 channels (two full blocks of 16 and a tail), multiplier 2, stride, dilation.
    x = rng.standard_normal((2, 9, 8, 33)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 66)).astype(np.float32)
    b = rng.standard_normal(66).astype(np.float32)
    args = (2, 1, 2, 1, 33, 2, 1)  # strides, pads, groups, dilation
    y, yn = (np.empty((2, 5, 8, 66), np.float32) for _ in range(2))
    _core.conv2d_forward(y, x, w, b, *args, activation="relu")
    _core.conv2d_forward(yn, x, w, b, *args, naive=True, activation="relu")
    # The same products summed in the same order (bias, then the taps): equal up to FMA
    # contraction, a few ulps of the O(3) sums.
    np.testing.assert_allclose(y, yn, rtol=1e-6, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dxn = np.empty_like(x), np.empty_like(x)
    _core.conv2d_backward_data(dx, dy, w, *args)
    _core.conv2d_backward_data(dxn, dy, w, *args, naive=True)
    np.testing.assert_allclose(dx, dxn, rtol=1e-5, atol=1e-5)  # sums in another order
    dw, dwn, db, dbn = np.empty_like(w), np.empty_like(w), np.empty_like(b), np.empty_like(b)
    _core.conv2d_backward_weights(dw, db, x, dy, *args)
    _core.conv2d_backward_weights(dwn, dbn, x, dy, *args, naive=True)
    # Sums of N*OH*OW = 60 products in the same order as the naive loops.
    np.testing.assert_allclose(dw, dwn, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, dbn, rtol=1e-6, atol=1e-6)


def test_depthwise_identical_for_1_and_2_threads(rng):
    x = rng.standard_normal((4, 16, 16, 48)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 48)).astype(np.float32)
    dy = rng.standard_normal((4, 16, 16, 48)).astype(np.float32)
    out = []
    before = cf.get_num_threads()
    try:
        for t in (1, 2):
            cf.set_num_threads(t)
            y, dx, dw = np.empty_like(dy), np.empty_like(x), np.empty_like(w)
            _core.conv2d_forward(y, x, w, None, 1, 1, 1, 1, 48)
            _core.conv2d_backward_data(dx, dy, w, 1, 1, 1, 1, 48)
            _core.conv2d_backward_weights(dw, None, x, dy, 1, 1, 1, 1, 48)
            out.append((y, dx, dw))
    finally:
        cf.set_num_threads(before)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_depthwise_and_separable_keras_weights_and_config():
    dw = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")
    dw.build((8, 8, 5))
    assert [(n, w.shape) for n, w in dw.weights_.items()] == [
        ("depthwise_kernel", (3, 3, 5, 2)), ("bias", (10,))]
    assert dw.output_shape((8, 8, 5)) == (6, 6, 10)
    config = dw.get_config()
    assert config["depth_multiplier"] == 2 and "filters" not in config and "groups" not in config
    sep = L.SeparableConv2D(7, 3, depth_multiplier=2, padding="same", name="sep")
    sep.build((8, 8, 5))
    assert [(n, w.shape) for n, w in sep.weights_.items()] == [
        ("depthwise_kernel", (3, 3, 5, 2)), ("pointwise_kernel", (1, 1, 10, 7)), ("bias", (7,))]
    assert sep.output_shape((8, 8, 5)) == (8, 8, 7) and sep.get_config()["filters"] == 7
    assert L.SeparableConv2D.from_config(sep.get_config()).get_config() == sep.get_config()
    report = cf.analyze(cf.Sequential([L.Input((8, 8, 5)), sep]))
    assert report.layers[0].macs == 8 * 8 * 10 * 9 + 8 * 8 * 10 * 7  # depthwise + pointwise
    with pytest.raises(ValueError, match="depth_multiplier"):
        L.DepthwiseConv2D(3, depth_multiplier=0)


def test_separable_layer_matches_torch_and_finite_differences(rng):
    torch = pytest.importorskip("torch")
    sep = L.SeparableConv2D(4, 3, strides=2, padding="same", depth_multiplier=2,
                            dilation_rate=1, activation="tanh")
    x = rng.standard_normal((2, 7, 7, 3))
    sep.build(x.shape[1:])
    sep.bias[...] = rng.standard_normal(4)
    y = sep(x.astype(np.float32))
    xt = torch.tensor(x)
    mid = _torch_depthwise(xt, torch.tensor(sep.depthwise_kernel.astype(np.float64)), 2, "same",
                           1)
    ref = torch.tanh(mid @ torch.tensor(sep.pointwise_kernel[0, 0].astype(np.float64))
                     + torch.tensor(sep.bias.astype(np.float64))).numpy()
    # float32 sums of 9 then 6 products, then tanh: ~1e-6 on values of size 1.
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    w = rng.standard_normal(y.shape)
    sep.forward(x.astype(np.float32), training=True)
    dx = sep.backward(w.astype(np.float32)).astype(np.float64)

    def f():
        return float(np.sum(w * sep.forward(x.astype(np.float32), training=True)))

    assert_gradient(f, x, dx)  # gradcheck's default tolerances
    for name in ("depthwise_kernel", "pointwise_kernel", "bias"):
        weight = sep.weights_[name]
        grad = sep.gradients_[name].astype(np.float64).copy()
        w64 = weight.astype(np.float64)

        def fw(weight=weight, w64=w64):
            weight[...] = w64
            return f()

        assert_gradient(fw, w64, grad)
        weight[...] = w64


# -- GaussianNoise, SpatialDropout2D, RandomFlip ---------------------------------------------------

def test_gaussian_noise_kernel_statistics_and_determinism(rng):
    x = rng.standard_normal(200_003).astype(np.float32)
    y, y2, yn = (np.empty_like(x) for _ in range(3))
    _core.gaussian_noise_forward(y, x, 0.5, 42)
    _core.gaussian_noise_forward(yn, x, 0.5, 42, naive=True)
    np.testing.assert_array_equal(y, yn)  # the same formula per element, threads or not
    _core.gaussian_noise_forward(y2, x, 0.5, 43)
    assert not np.array_equal(y, y2)
    z = (y.astype(np.float64) - x) / 0.5
    # 200,003 draws of N(0, 1): mean within 4/sqrt(n) = 0.009, variance within 4 sqrt(2/n)
    # = 1.3%, and the tails of a normal (P(|z| > 3) = 0.27%, within 10% of that).
    assert abs(z.mean()) < 0.009 and abs(z.var() - 1) < 0.013
    assert abs(np.mean(np.abs(z) > 3) / 0.0026998 - 1) < 0.1


def test_gaussian_noise_layer(rng):
    layer = L.GaussianNoise(0.3)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    assert layer(x) is not x and np.array_equal(layer(x), x)  # inference: the identity
    cf.set_seed(0)
    a = layer(x, training=True)
    cf.set_seed(0)
    np.testing.assert_array_equal(L.GaussianNoise(0.3)(x, training=True), a)
    assert not np.array_equal(a, x)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    assert layer.backward(dy) is dy  # x + constant noise
    seeded = [L.GaussianNoise(0.3, seed=5)(x, training=True) for _ in range(2)]
    np.testing.assert_array_equal(*seeded)  # a fresh layer replays its seed's sequence
    assert L.GaussianNoise(0.3, seed=5).get_config()["seed"] == 5
    with pytest.raises(ValueError, match="stddev"):
        L.GaussianNoise(-1.0)


def test_spatial_dropout_drops_whole_channels(rng):
    x = rng.uniform(0.5, 1.5, (64, 5, 4, 32)).astype(np.float32)
    y, yn = np.empty_like(x), np.empty_like(x)
    mask, maskn = (np.empty((64, 32), np.uint8) for _ in range(2))
    _core.spatial_dropout_forward(y, mask, x, 0.25, 7)
    _core.spatial_dropout_forward(yn, maskn, x, 0.25, 7, naive=True)
    np.testing.assert_array_equal(y, yn)
    np.testing.assert_array_equal(mask, maskn)
    keep = np.float32(0.75)
    np.testing.assert_array_equal(y, np.where(mask[:, None, None, :] == 1, x / keep, 0))
    # 2048 channels dropped with p = 0.25: within 4 standard deviations (0.038).
    assert abs(1 - mask.mean() - 0.25) < 0.038
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = np.empty_like(dy)
    _core.spatial_dropout_backward(dx, dy, mask, 0.25)
    np.testing.assert_array_equal(dx, np.where(mask[:, None, None, :] == 1, dy / keep, 0))
    layer = L.SpatialDropout2D(0.25)
    assert np.array_equal(layer(x), x)  # inference: the identity
    with pytest.raises(ValueError, match=r"SpatialDropout2D.*\(H, W, C\)"):
        layer.output_shape((4, 3))


@pytest.mark.parametrize("mode,allowed", [("horizontal", {0, 1}), ("vertical", {0, 2}),
                                          ("horizontal_and_vertical", {0, 1, 2, 3})])
def test_random_flip_flips_whole_images(mode, allowed, rng):
    torch = pytest.importorskip("torch")
    layer = L.RandomFlip(mode, seed=11)
    x = rng.standard_normal((400, 3, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(layer(x), x)  # inference: the identity
    y = layer(x, training=True)
    flips = layer.flips.copy()
    assert set(np.unique(flips)) == allowed  # every allowed combination occurs in 400 draws
    xt = torch.from_numpy(x)
    for n in range(len(x)):
        dims = [d for bit, d in ((1, 1), (2, 0)) if flips[n] & bit]  # W is axis 1, H axis 0
        want = torch.flip(xt[n], dims=dims) if dims else xt[n]
        np.testing.assert_array_equal(y[n], want.numpy())
    # Each flip drawn with probability 1/2: 400 images within 4 sigma (0.1).
    for bit in (1, 2):
        if bit in allowed:
            assert abs(np.mean(flips & bit > 0) - 0.5) < 0.1
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = layer.backward(dy)
    # A permutation: <dy, y> = <dx, x> exactly (the same products, summed in float64).
    assert np.dot(dy.ravel().astype(np.float64), y.ravel()) == pytest.approx(
        np.dot(dx.ravel().astype(np.float64), x.ravel()), rel=1e-12)
    with pytest.raises(ValueError, match="mode"):
        L.RandomFlip("diagonal")


def test_random_layers_follow_set_seed_and_draw_in_plan_order():
    model = cf.Sequential([L.Input((4, 4, 1)), L.RandomFlip(), L.GaussianNoise(0.5),
                           L.SpatialDropout2D(0.5), L.Flatten(), L.Dense(2)])
    x = np.arange(32, dtype=np.float32).reshape(2, 4, 4, 1)
    cf.set_seed(3)
    a = python_forward(model, x, training=True)
    cf.set_seed(3)
    b = python_forward(model, x, training=True)
    np.testing.assert_array_equal(a, b)
    model.compile("sgd", "mse")
    plan = model._train_plan
    assert plan is not None
    assert plan.dropout_layers == [layer.describe() for layer in model.layers[:3]]


# -- RandomCrop ---------------------------------------------------------------------------------

def test_random_crop_windows(rng):
    x = rng.standard_normal((3, 9, 8, 2)).astype(np.float32)
    layer = L.RandomCrop(5, 4, seed=1)
    seen = set()
    for _ in range(40):
        y = layer(x, training=True)
        top, left = (int(v) for v in layer.offsets)
        assert 0 <= top <= 4 and 0 <= left <= 4
        seen.add((top, left))
        np.testing.assert_array_equal(y, x[:, top:top + 5, left:left + 4])  # one per batch
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.backward(dy)
        want = np.zeros_like(x)
        want[:, top:top + 5, left:left + 4] = dy
        np.testing.assert_array_equal(dx, want)
    assert len(seen) > 10  # 25 windows, 40 draws
    # Not larger on both axes: Keras' centred window of the target's aspect ratio.
    y = L.RandomCrop(5, 8)(x, training=True)
    np.testing.assert_array_equal(y, x[:, 2:7])
    with pytest.raises(ValueError, match="larger than the input"):
        L.RandomCrop(10, 4).output_shape((9, 8, 2))


@pytest.mark.parametrize("size", [(4, 3), (13, 11), (9, 8)])
def test_random_crop_inference_resizes_like_torch(size, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    layer = L.RandomCrop(*size) if size[0] <= 9 and size[1] <= 8 else None
    y = np.empty((2, *size, 3), np.float32)
    _core.resize_bilinear_forward(y, x)
    yn = np.empty_like(y)
    _core.resize_bilinear_forward(yn, x, naive=True)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x.astype(np.float64)).permute(
        0, 3, 1, 2), size=size, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    # Two float32 lerps of O(1) values against float64: a few ulps.
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-6, atol=2e-6)
    np.testing.assert_allclose(yn, ref.numpy(), rtol=1e-6, atol=1e-6)
    if layer is not None:
        out = layer(x)
        if size == (9, 8):
            np.testing.assert_array_equal(out, x)  # the identity at the input's size
        else:
            np.testing.assert_array_equal(out, y)


# -- RandomTranslation, RandomRotation ----------------------------------------------------------

def _translation(n, dy, dx):
    t = np.zeros((n, 8), np.float32)
    t[:, 0] = t[:, 4] = 1
    t[:, 2], t[:, 5] = -dx, -dy
    return t


@pytest.mark.parametrize("fill,np_mode", [("reflect", "symmetric"), ("wrap", "wrap"),
                                          ("nearest", "edge"), ("constant", "constant")])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_integer_translation_is_a_padded_shift(fill, np_mode, interpolation, rng):
    # TensorFlow's fill modes: reflect dcba|abcd|dcba (NumPy "symmetric"), wrap, nearest
    # (edge) and constant; an integer shift reads pixels exactly, whatever the interpolation.
    x = rng.standard_normal((1, 5, 6, 2)).astype(np.float32)
    for dy, dx in [(2, -3), (-4, 1), (0, 5)]:
        y = np.empty_like(x)
        _core.affine_transform_forward(y, x, _translation(1, dy, dx), fill, interpolation, 0.25)
        kw = {"constant_values": 0.25} if np_mode == "constant" else {}
        padded = np.pad(x[0], ((5, 5), (6, 6), (0, 0)), mode=np_mode, **kw)
        want = padded[5 - dy:10 - dy, 6 - dx:12 - dx]
        np.testing.assert_array_equal(y[0], want)


def test_quarter_rotation_is_rot90(rng):
    x = rng.standard_normal((3, 6, 6, 2)).astype(np.float32)
    t = np.empty((3, 8), np.float32)
    _core.random_affine_transforms(t, "rotation", [0.25, 0.25], 3, 6, 6, 0)
    y = np.empty_like(x)
    _core.affine_transform_forward(y, x, t, "reflect", "bilinear", 0.0)
    # cos(pi/2) is -4e-8 in float32: the taps sit within 1e-6 of the pixels.
    np.testing.assert_allclose(y, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)


def test_random_translation_draws_keras_ranges():
    t = np.empty((2000, 8), np.float32)
    _core.random_affine_transforms(t, "translation", [-0.1, 0.3, 0.2, 0.4], 2000, 10, 20, 5)
    dy, dx = -t[:, 5] / 10, -t[:, 2] / 20
    assert dy.min() >= -0.1 and dy.max() <= 0.3 and dx.min() >= 0.2 and dx.max() <= 0.4
    # Uniform: 2000 draws fill each half of the range near 1000 (4 sigma = 90).
    assert abs(np.sum(dy < 0.1) - 1000) < 90 and abs(np.sum(dx < 0.3) - 1000) < 90


@pytest.mark.parametrize("fill", ["reflect", "wrap", "nearest", "constant"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_affine_backward_is_the_adjoint(fill, interpolation, rng):
    x = rng.standard_normal((3, 7, 5, 4)).astype(np.float32)
    t = np.empty((3, 8), np.float32)
    _core.random_affine_transforms(t, "rotation", [-0.3, 0.3], 3, 7, 5, 9)
    t[1] = _translation(1, 1.5, -2.25)[0]
    y = np.empty_like(x)
    _core.affine_transform_forward(y, x, t, fill, interpolation, 0.0)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = np.empty_like(x)
    _core.affine_transform_backward(dx, dy, t, fill, interpolation)
    # <A x, dy> = <x, A^T dy>: the same products, summed in another order (float32 products of
    # O(1) values, 420 terms): 1e-5 relative to the sum of their magnitudes.
    lhs = np.dot(y.ravel().astype(np.float64), dy.ravel())
    rhs = np.dot(x.ravel().astype(np.float64), dx.ravel())
    mag = np.dot(np.abs(x).ravel().astype(np.float64), np.abs(dx).ravel()) + 1.0
    assert abs(lhs - rhs) <= 1e-5 * mag


def test_random_translation_and_rotation_layers(rng):
    x = rng.standard_normal((4, 6, 6, 1)).astype(np.float32)
    for layer in (L.RandomTranslation(0.3, 0.2, seed=1), L.RandomRotation(0.2, seed=1)):
        np.testing.assert_array_equal(layer(x), x)  # inference: the identity
        a = layer(x, training=True)
        assert a.shape == x.shape and not np.array_equal(a, x)
        again = type(layer).from_config(layer.get_config())
        np.testing.assert_array_equal(again(x, training=True), a)  # a seed replays
    assert L.RandomTranslation(0.1, 0.1).get_config()["fill_mode"] == "reflect"
    with pytest.raises(ValueError, match="height_factor"):
        L.RandomTranslation(1.5, 0.1)
    with pytest.raises(ValueError, match="fill_mode"):
        L.RandomRotation(0.1, fill_mode="mirror")


# -- the C++ builder refuses bad configs of the new layers, naming them --------------------------

def _network(layers, weights=None, input_shape=(8, 8, 3)):
    import json

    config = {"name": "hand", "input_shape": list(input_shape),
              "layers": [{"class_name": c, "config": {"name": "l", **cfg}} for c, cfg in layers]}
    return _core.Network.from_config(json.dumps(config), weights or {})


DW = {"kernel_size": [3, 3], "strides": [1, 1], "padding": "valid", "use_bias": False}


@pytest.mark.parametrize("layers, weights, message", [
    ([("LeakyReLU", {"negative_slope": -1})], None, "LeakyReLU 'l': negative_slope"),
    ([("Rescaling", {"scale": [1, 2]})], None, r"Rescaling 'l' scale: 2 values for input"),
    ([("DepthwiseConv2D", {**DW, "depth_multiplier": 0})], None, "DepthwiseConv2D 'l'"),
    ([("DepthwiseConv2D", {**DW, "depth_multiplier": 2})],
     {"l/depthwise_kernel": np.zeros((3, 3, 3, 1), np.float32)},
     (r"weight 'l/depthwise_kernel' has shape \(3, 3, 3, 1\), the architecture needs "
      r"\(3, 3, 3, 2\)")),
    ([("SeparableConv2D", {**DW, "filters": 4})],
     {"l/depthwise_kernel": np.zeros((3, 3, 3, 1), np.float32)},
     "weight 'l/pointwise_kernel' is missing"),
    ([("Conv2D", {**DW, "filters": 2, "dilation_rate": [4, 1]})], None,
     "Conv2D 'l': window 9 larger than padded input 8"),
    ([("Conv2D", {**DW, "filters": 2, "dilation_rate": [0, 1]})], None, "dilation_rate"),
    ([("GaussianNoise", {"stddev": -0.1})], None, "GaussianNoise 'l': stddev"),
    ([("SpatialDropout2D", {"rate": 1.0})], None, r"SpatialDropout2D 'l': rate must be in \[0, 1\)"),
    ([("RandomFlip", {"mode": "diagonal"})], None, "RandomFlip 'l': unknown mode 'diagonal'"),
    ([("RandomCrop", {"height": 9, "width": 2})], None, "RandomCrop 'l': window 9x2 is larger"),
    ([("RandomTranslation", {"height_factor": 1.5, "width_factor": 0.1})], None,
     r"RandomTranslation 'l' height_factor: needs lower <= upper, both in \[-1, 1\]"),
    ([("RandomRotation", {"factor": 0.1, "fill_mode": "mirror"})], None,
     "RandomRotation 'l': unknown fill_mode 'mirror'"),
    ([("RandomRotation", {"factor": [0.2, 0.1]})], None, "RandomRotation 'l' factor"),
])
def test_builder_rejects_bad_configs(layers, weights, message):
    with pytest.raises(ValueError, match=message):
        _network(layers, weights)


def test_depthwise_layer_finite_differences(rng):
    layer = L.DepthwiseConv2D((3, 2), strides=(2, 1), padding="same", depth_multiplier=2,
                              dilation_rate=(1, 2), activation="sigmoid")
    x = rng.standard_normal((2, 7, 6, 3))
    layer.build(x.shape[1:])
    layer.bias[...] = rng.standard_normal(6)
    w = rng.standard_normal((2, 4, 6, 6))
    layer.forward(x.astype(np.float32), training=True)
    dx = layer.backward(w.astype(np.float32)).astype(np.float64)

    def f():
        return float(np.sum(w * layer.forward(x.astype(np.float32), training=True)))

    assert_gradient(f, x, dx)  # gradcheck's default tolerances
    for name in ("depthwise_kernel", "bias"):
        weight = layer.weights_[name]
        grad = layer.gradients_[name].astype(np.float64).copy()
        w64 = weight.astype(np.float64)

        def fw(weight=weight, w64=w64):
            weight[...] = w64
            return f()

        assert_gradient(fw, w64, grad)
        weight[...] = w64
