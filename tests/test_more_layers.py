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
from cnnfast import layers as L
from cnnfast import ops
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
    assert report.totals["params"] == model.count_params()


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
