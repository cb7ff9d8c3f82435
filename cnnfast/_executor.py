"""The C++ inference executor (``_core.Network``) for a model, built from its config.

The model's config (``get_config()``, the architecture JSON that model files store) and its
weight arrays go to ``_core.Network.from_config``; the C++ builder there is the same one the C
API's model-file reader uses, so Python does not translate layers itself. The whole inference
forward then runs in one call into C++ (no per-layer Python overhead, the GIL released). The
Network borrows the layers' float32 weight arrays, which optimizers and ``set_weights`` update
in place, so it never goes stale while the arrays stay the same objects; :func:`network_key`
changes when layers or weight arrays are replaced (the model rebuilt).
"""

from __future__ import annotations

import json
from typing import Any

from cnnfast import _core
from cnnfast import layers as L


def network_key(model: Any) -> tuple:
    """Identity of everything a built Network points to: the layers and their weight arrays."""
    # Runs on every predict call, so it is kept to two flat tuples of ids (~1 us).
    return (model.input_shape_, tuple(map(id, model.layers)),
            tuple([id(w) for layer in model.layers for w in layer.weights_.values()]))


def build_network(model: Any) -> Any | None:
    """A ``_core.Network`` running ``model``'s inference forward, or None if some layer is not
    one the C++ builder knows (the caller then walks the layers in Python). The model must be
    built."""
    # The executor needs a per-sample axis; a rank-0 input (a batch of scalars) takes Python.
    if not model.layers or not model.input_shape_:
        return None
    if any(type(layer) not in L.BUILTIN_LAYERS for layer in model.layers):
        return None
    weights = {f"{layer.name}/{name}": w for layer in model.layers
               for name, w in layer.weights_.items()}
    net = _core.Network.from_config(json.dumps(model.get_config()), weights)
    if tuple(net.output_shape) != tuple(model.output_shape_):
        raise RuntimeError(f"Network output shape {net.output_shape} differs from the model's "
                           f"{model.output_shape_}")
    return net
