"""Model-level finite-difference check: the gradient a whole Sequential's backward gives for its
loss with respect to every weight array, against central differences of the loss itself.

The per-kernel checks (test_conv2d.py, test_pool2d.py, ...) cover each backward alone; this one
covers how the model chains them (buffers reused between layers, the fused softmax + CE
gradient, the first layer skipping its data gradient, regularizer gradients). The kernels are
float32 only, so the tolerances are gradcheck's float32 ones (rtol 2e-2, atol 2e-3 with
eps 1e-2; see tests/gradcheck.py for the derivation).
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import assert_gradient

import cnnfast as cf

L = cf.layers


def smooth_model():
    """Only differentiable everywhere layers, so every finite difference is meaningful."""
    return cf.Sequential([
        L.Input((7, 7, 3)),
        L.Conv2D(4, 3, padding="same", activation="tanh"),
        L.LocalResponseNormalization(1, 1.0, 0.1, 0.75),
        L.AveragePooling2D(2, padding="same"),
        L.Conv2D(6, (2, 3), strides=(1, 2), groups=2, activation="swish"),
        L.ELU(0.5),
        L.Flatten(),
        L.Dense(8, activation="sigmoid", kernel_regularizer=cf.regularizers.L2(0.01)),
        L.Dense(4, activation="softmax"),
    ])


def kinked_model():
    """ReLU, max pooling and PReLU: points whose difference step crosses a kink are skipped."""
    return cf.Sequential([
        L.Input((8, 8, 2)),
        L.Conv2D(5, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.PReLU(shared_axes=[1, 2], alpha_initializer="ones"),
        L.Flatten(),
        L.Dense(3),
    ])


def model_loss_and_gradients(model, x, y):
    """(loss(), analytic gradients) using the model's own training-step pieces, no update."""
    def loss() -> float:
        out = model._forward(x, training=True)
        value = model._loss_and_gradient(out, y, None)
        return value + sum(layer.regularization_loss() for layer in model.layers)

    out = model._forward(x, training=True)
    grad = model._grad_buffer(out.shape)
    model._loss_and_gradient(out, y, grad)
    model._backward(grad)
    for layer in model.layers:
        layer.add_regularization_gradients()
    grads = [g.copy() for layer in model.layers for g in layer.grads()]
    return loss, grads


@pytest.mark.parametrize("make, loss, kinks", [
    (smooth_model, "categorical_crossentropy", False),
    (smooth_model, "sparse_categorical_crossentropy", False),
    (kinked_model, "mse", True),
])
def test_model_gradient_matches_finite_differences_of_its_loss(make, loss, kinks):
    cf.set_seed(3)
    model = make()
    model.compile(optimizer="sgd", loss=loss)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5,) + model.input_shape_).astype(np.float32)
    classes = model.output_shape_[-1]
    if loss == "categorical_crossentropy":
        y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, 5)]
    elif loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, classes, 5).astype(np.int32)
    else:
        y = rng.standard_normal((5, classes)).astype(np.float32)
    x, y = model._check_xy(x, y, "gradcheck")
    # Weights drawn at the scale of a trained net, biases non-zero.
    weights = [w + rng.uniform(-0.2, 0.2, w.shape).astype(np.float32)
               for w in model.get_weights()]
    model.set_weights(weights)
    loss_fn, grads = model_loss_and_gradients(model, x, y)
    params = [w for layer in model.layers for w in layer.params()]
    assert len(params) == len(grads)
    # With kinks, a smaller step (1e-3) crosses fewer of them: a conv weight feeds hundreds of
    # ReLUs and max-pool switches. Rounding of the float32 loss (~1e-7 / 1e-3) stays below atol.
    eps = 1e-3 if kinks else 1e-2
    for i, (w, g) in enumerate(zip(params, grads)):
        try:
            assert_gradient(loss_fn, w, g, eps=eps, max_points=24, skip_kinks=kinks)
        except AssertionError as e:
            raise AssertionError(f"weight {i} {w.shape}: {e}") from None
