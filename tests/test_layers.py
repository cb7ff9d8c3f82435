"""Every layer's backward against central finite differences of its own forward pass.

The scalar probed is sum(r * layer(x)) for a fixed random r, so d/dx is layer.backward(r).
Forward passes run in float32; see gradcheck.py for why eps = 1e-2 and the tolerances hold.
"""

import zlib

import numpy as np
import pytest
from gradcheck import assert_gradient

import cnnfast as cf
from cnnfast import layers as L


def spaced_input(shape, rng):
    """Distinct values at least 0.05 apart: max-pool and ReLU kinks stay farther than eps."""
    n = int(np.prod(shape))
    values = (rng.permutation(n) - n / 2) * (4.0 / n) + 0.025
    values = np.sign(values) * np.maximum(np.abs(values), 0.03)
    return values.reshape(shape).astype(np.float32)


LAYERS = {
    "conv_valid_relu": lambda: L.Conv2D(3, 3, activation="relu"),
    "conv_same_stride2_tanh": lambda: L.Conv2D(4, (3, 2), strides=2, padding="same", activation="tanh"),
    "conv_pad1_sigmoid": lambda: L.Conv2D(2, 3, padding=1, activation="sigmoid"),
    "conv_1x1_elu": lambda: L.Conv2D(5, 1, activation="elu"),
    "conv_grouped_swish": lambda: L.Conv2D(4, 3, groups=2, activation="swish"),
    "dense_softmax": lambda: L.Dense(4, activation="softmax"),
    "dense_linear": lambda: L.Dense(3),
    "maxpool": lambda: L.MaxPooling2D(2),
    "maxpool_3s2_same": lambda: L.MaxPooling2D(3, strides=2, padding="same"),
    "avgpool": lambda: L.AveragePooling2D(2),
    "avgpool_3s2_same": lambda: L.AveragePooling2D(3, strides=2, padding="same"),
    "flatten": lambda: L.Flatten(),
    "prelu_per_channel": lambda: L.PReLU(alpha_initializer="glorot_uniform", shared_axes=[1, 2]),
    "prelu_full": lambda: L.PReLU(alpha_initializer="glorot_uniform"),
    "activation_tanh": lambda: L.Activation("tanh"),
    "activation_relu": lambda: L.Activation("relu"),
    "activation_softmax": lambda: L.Softmax(),
    "elu_layer": lambda: L.ELU(alpha=0.7),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_backward_matches_finite_differences(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    cf.set_seed(1)
    layer = LAYERS[name]()
    shape = (2, 6, 5, 4) if not name.startswith("dense") else (3, 7)
    x = spaced_input(shape, rng)
    layer.build(x.shape[1:])
    y = layer.forward(x, training=True)
    r = rng.normal(size=y.shape).astype(np.float32)
    dx = layer.backward(r.copy())
    grads = {k: g.copy() for k, g in layer.gradients_.items()}
    dx = None if dx is None else dx.copy()

    def probe():
        return float(np.sum(r.astype(np.float64) * layer.forward(x, training=False)))

    assert_gradient(probe, x, dx)
    for pname, w in layer.weights_.items():
        assert_gradient(probe, w, grads[pname])


def test_dropout_backward_uses_the_forward_mask():
    layer = L.Dropout(0.5, seed=3)
    x = np.ones((4, 50), np.float32)
    y = layer.forward(x, training=True).copy()
    dx = layer.backward(np.ones_like(x)).copy()
    np.testing.assert_array_equal(dx, y)  # d(sum y)/dx is the mask scaled by 1/(1-rate)
    assert set(np.unique(y)) == {0.0, 2.0}
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_layer_call_builds_and_copies():
    cf.set_seed(0)
    layer = L.Dense(2)
    out = layer(np.ones((3, 4)))
    assert out.shape == (3, 2) and layer.built
    out[:] = 7.0
    assert not np.any(layer(np.ones((3, 4))) == 7.0)  # __call__ returns a copy, not a buffer
