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
import zlib
from typing import Any

from cnnfast import _core
from cnnfast import layers as L


def network_key(model: Any) -> tuple:
    """Identity of everything a built Network points to: the layers and their weight arrays."""
    # Runs on every predict call, so it is kept to two flat tuples of ids (~1 us).
    # (dict.values: reading ids is not handing the arrays out, which would unseal them.)
    return (model.input_shape_, tuple(map(id, model.layers)),
            tuple([id(w) for layer in model.layers for w in dict.values(layer.weights_)]))


def folds_batchnorm(model: Any) -> bool:
    """Whether the Network holds folded copies of weights (a BatchNormalization folded into the
    convolution before it), whose values must then be watched (folded_weights_checksum)."""
    return any(type(layer) is L.BatchNormalization for layer in model.layers)


def folded_weights_checksum(model: Any) -> int:
    """A checksum of the weights the builder folds (Conv2D followed by BatchNormalization): the
    Network holds its own folded copies, so a change of their values (training, set_weights)
    must rebuild it. CRC-32 reads the arrays in place (~1 ms for ResNet-20's 1 MB)."""
    crc = 0
    for layer in model.layers:
        if type(layer) in (L.Conv2D, L.BatchNormalization):
            for w in dict.values(layer.weights_):  # read only: no unsealing
                crc = zlib.crc32(memoryview(w).cast("B"), crc)
    return crc


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
