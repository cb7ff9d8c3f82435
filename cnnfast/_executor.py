"""Build the C++ inference executor (``_core.Network``) from a Sequential model's layers.

The whole inference forward then runs in one call into C++ (no per-layer Python overhead, the
GIL released). The Network borrows the layers' float32 weight arrays, which optimizers and
``set_weights`` update in place, so it never goes stale while the arrays stay the same objects;
:func:`network_key` changes when layers or weight arrays are replaced (the model rebuilt).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnfast import _core
from cnnfast import layers as L


def _conv2d(net: Any, layer: L.Conv2D) -> None:
    net.add_conv2d(layer.weights_["kernel"], layer.weights_.get("bias"), layer.strides[0],
                   layer.strides[1], layer.pad_top, layer.pad_left, layer.oh, layer.ow,
                   layer.groups, layer.act.kind, layer.act.alpha)


def _pool_args(layer: Any) -> tuple[int, ...]:
    return (layer.pool_size[0], layer.pool_size[1], layer.strides[0], layer.strides[1],
            layer.pad_top, layer.pad_left, layer.oh, layer.ow)


def _dense(net: Any, layer: L.Dense) -> None:
    net.add_dense(layer.weights_["kernel"], layer.weights_.get("bias"), layer.act.kind,
                  layer.act.alpha)


def _lrn(net: Any, layer: L.LocalResponseNormalization) -> None:
    net.add_lrn(layer.depth_radius, layer.bias, layer.alpha, layer.beta)


# Exact classes only: a user subclass may change forward(), so it is not translated.
_ADDERS: dict[type, Callable[[Any, Any], None]] = {
    L.Conv2D: _conv2d,
    L.MaxPooling2D: lambda net, layer: net.add_max_pool2d(*_pool_args(layer)),
    L.AveragePooling2D: lambda net, layer: net.add_avg_pool2d(*_pool_args(layer)),
    L.Dense: _dense,
    L.Flatten: lambda net, layer: net.add_flatten(),
    L.Dropout: lambda net, layer: net.add_dropout(),
    L.Activation: lambda net, layer: net.add_activation(layer.act.kind, layer.act.alpha),
    L.ReLU: lambda net, layer: net.add_activation(layer.act.kind, layer.act.alpha),
    L.ELU: lambda net, layer: net.add_activation(layer.act.kind, layer.act.alpha),
    L.Softmax: lambda net, layer: net.add_activation(layer.act.kind, layer.act.alpha),
    L.PReLU: lambda net, layer: net.add_prelu(layer.weights_["alpha"]),
    L.LocalResponseNormalization: _lrn,
}


def network_key(model: Any) -> tuple:
    """Identity of everything a built Network points to: the layers and their weight arrays."""
    # Runs on every predict call, so it is kept to two flat tuples of ids (~1 us).
    return (model.input_shape_, tuple(map(id, model.layers)),
            tuple([id(w) for layer in model.layers for w in layer.weights_.values()]))


def build_network(model: Any) -> Any | None:
    """A ``_core.Network`` running ``model``'s inference forward, or None if some layer has no
    C++ step (the caller then walks the layers in Python). The model must be built."""
    # The executor needs a per-sample axis; a rank-0 input (a batch of scalars) takes Python.
    if not model.layers or not model.input_shape_:
        return None
    for layer in model.layers:
        if type(layer) not in _ADDERS:
            return None
    net = _core.Network(list(model.input_shape_))
    for layer in model.layers:
        _ADDERS[type(layer)](net, layer)
    if tuple(net.output_shape) != tuple(model.output_shape_):
        raise RuntimeError(f"Network output shape {net.output_shape} differs from the model's "
                           f"{model.output_shape_}")
    return net
