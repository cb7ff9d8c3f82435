"""Element-wise activations, PReLU and softmax with their gradients (Keras semantics).

Every function takes and returns NumPy arrays; inputs are converted to C-contiguous float32 and
outputs are fresh float32 arrays. Backward functions take the forward INPUT ``x`` and the
upstream gradient ``dy = dL/dy`` and return ``dx = dL/dx`` - except :func:`softmax_backward`,
which takes the softmax OUTPUT ``y`` (see :data:`BACKWARD_TAKES_OUTPUT`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnfast import _core

__all__ = [
    "ACTIVATIONS",
    "BACKWARD_TAKES_OUTPUT",
    "elu",
    "elu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "prelu",
    "prelu_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "swish",
    "swish_backward",
    "tanh",
    "tanh_backward",
]


def _as_f32(a: Any, op: str, name: str, min_ndim: int = 0) -> np.ndarray:
    """`a` as a C-contiguous float32 array after checking it is a real numeric array."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{op}: {name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{op}: {name} must have rank >= {min_ndim}, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _same_shape(op: str, a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{op}: {a_name} {a.shape} and {b_name} {b.shape} must have the same shape"
        )


def _forward(kind: str, x: Any, alpha: float = 1.0) -> np.ndarray:
    x = _as_f32(x, kind, "x")
    y = np.empty_like(x)
    _core.activation_forward(y, x, kind, float(alpha))
    return y


def _backward(kind: str, x: Any, dy: Any, alpha: float = 1.0) -> np.ndarray:
    op = f"{kind}_backward"
    x = _as_f32(x, op, "x")
    dy = _as_f32(dy, op, "dy")
    _same_shape(op, dy, "dy", x, "x")
    y = np.empty_like(x)  # the kernels read the forward output for sigmoid, tanh and elu
    _core.activation_forward(y, x, kind, float(alpha))
    dx = np.empty_like(x)
    _core.activation_backward(dx, x, y, dy, kind, float(alpha))
    return dx


def relu(x: Any) -> np.ndarray:
    """max(x, 0) element-wise (NaN propagates)."""
    return _forward("relu", x)


def sigmoid(x: Any) -> np.ndarray:
    """1 / (1 + exp(-x)), computed from exp(-|x|) so no input overflows."""
    return _forward("sigmoid", x)


def tanh(x: Any) -> np.ndarray:
    """Hyperbolic tangent."""
    return _forward("tanh", x)


def elu(x: Any, alpha: float = 1.0) -> np.ndarray:
    """x for x > 0, alpha * (exp(x) - 1) otherwise (Keras ``elu``, accurate expm1 near 0)."""
    return _forward("elu", x, alpha)


def leaky_relu(x: Any, negative_slope: float = 0.2) -> np.ndarray:
    """x for x > 0, negative_slope * x otherwise (``keras.activations.leaky_relu``, default
    0.2; the LeakyReLU layer's default is 0.3)."""
    return _forward("leaky_relu", x, negative_slope)


def swish(x: Any) -> np.ndarray:
    """x * sigmoid(x) (Keras ``swish`` / ``silu``)."""
    return _forward("swish", x)


def linear(x: Any) -> np.ndarray:
    """Identity (Keras ``linear``); returns a float32 copy."""
    return _forward("linear", x)


def relu_backward(x: Any, dy: Any) -> np.ndarray:
    """dx = dy * (x > 0); x is the forward input (gradient 0 at x == 0, as TF/JAX)."""
    return _backward("relu", x, dy)


def sigmoid_backward(x: Any, dy: Any) -> np.ndarray:
    """dx = dy * s (1 - s), s = sigmoid(x); x is the forward input."""
    return _backward("sigmoid", x, dy)


def tanh_backward(x: Any, dy: Any) -> np.ndarray:
    """dx = dy * (1 - tanh(x)^2); x is the forward input."""
    return _backward("tanh", x, dy)


def elu_backward(x: Any, dy: Any, alpha: float = 1.0) -> np.ndarray:
    """dx = dy for x > 0, dy * alpha * exp(x) otherwise; x is the forward input."""
    return _backward("elu", x, dy, alpha)


def leaky_relu_backward(x: Any, dy: Any, negative_slope: float = 0.2) -> np.ndarray:
    """dx = dy for x > 0, dy * negative_slope otherwise; x is the forward input."""
    return _backward("leaky_relu", x, dy, negative_slope)


def swish_backward(x: Any, dy: Any) -> np.ndarray:
    """dx = dy * s (1 + x (1 - s)), s = sigmoid(x); x is the forward input."""
    return _backward("swish", x, dy)


def linear_backward(x: Any, dy: Any) -> np.ndarray:
    """dx = dy (float32 copy); x is the forward input, checked for shape only."""
    return _backward("linear", x, dy)


def prelu(x: Any, alpha: Any) -> np.ndarray:
    """Parametric ReLU: x for x > 0, alpha * x otherwise (Keras ``PReLU``).

    Parameters
    ----------
    x : array (N, ...), e.g. NHWC (N, H, W, C)
    alpha : array matching the trailing axes of x, leading 1s allowed for shared axes:
        (H, W, C) for Keras' default, (1, 1, C) for ``shared_axes=[1, 2]``.

    Returns
    -------
    y : float32 array, shape of x
    """
    x = _as_f32(x, "prelu", "x")
    alpha = _as_f32(alpha, "prelu", "alpha")
    y = np.empty_like(x)
    _core.prelu_forward(y, x, alpha)
    return y


def prelu_backward(x: Any, alpha: Any, dy: Any) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`prelu` given its forward input x, alpha and dy = dL/dy.

    Returns
    -------
    dx : float32 array, shape of x: dy for x > 0, alpha * dy otherwise
    dalpha : float32 array, shape of alpha: sum over the shared (batch and leading) positions of
        dy * min(x, 0), accumulated in double in a fixed order (thread-count independent)
    """
    x = _as_f32(x, "prelu_backward", "x")
    alpha = _as_f32(alpha, "prelu_backward", "alpha")
    dy = _as_f32(dy, "prelu_backward", "dy")
    _same_shape("prelu_backward", dy, "dy", x, "x")
    dx = np.empty_like(x)
    dalpha = np.empty_like(alpha)
    _core.prelu_backward(dx, dalpha, x, alpha, dy)
    return dx, dalpha


def softmax(x: Any) -> np.ndarray:
    """Softmax over the last axis (max-subtracted; finite for any finite x)."""
    x = _as_f32(x, "softmax", "x", 1)
    y = np.empty_like(x)
    _core.softmax_forward(y, x)
    return y


def softmax_backward(y: Any, dy: Any) -> np.ndarray:
    """dx = y * (dy - sum(dy * y, last axis)); y is the softmax OUTPUT, not its input."""
    y = _as_f32(y, "softmax_backward", "y", 1)
    dy = _as_f32(dy, "softmax_backward", "dy", 1)
    _same_shape("softmax_backward", dy, "dy", y, "y")
    dx = np.empty_like(y)
    _core.softmax_backward(dx, y, dy)
    return dx


#: Keras activation name -> (forward(x), backward(x_or_y, dy)). The backward's first argument is
#: the forward input x, except for the names in BACKWARD_TAKES_OUTPUT, whose backward takes the
#: forward output y. Layers that keep both can call ``_core.activation_backward`` directly.
ACTIVATIONS: dict[str, tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]] = {
    "relu": (relu, relu_backward),
    "sigmoid": (sigmoid, sigmoid_backward),
    "tanh": (tanh, tanh_backward),
    "elu": (elu, elu_backward),
    "swish": (swish, swish_backward),
    "leaky_relu": (leaky_relu, leaky_relu_backward),
    "linear": (linear, linear_backward),
    "softmax": (softmax, softmax_backward),
}

#: Activation names whose backward in ACTIVATIONS takes the forward output y instead of x.
BACKWARD_TAKES_OUTPUT: frozenset[str] = frozenset({"softmax"})
