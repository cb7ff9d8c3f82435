"""Sealed weights: how ``Model.predict``'s batch-1 path knows, without reading them, that the
weights its C++ network borrows did not change since its last call.

That network keeps derived forms of some weights (the Winograd transforms of 3x3 kernels) and
compares a digest of the weights with the one they were made from on every call, since the
arrays are live (``model.weights``, ``layer.kernel``: in-place edits take effect). For
VGG16-CIFAR that digest reads 6.9 MB a call. So after a predict of a model that is not compiled
(nothing of cnnfast's trains it) and whose weight arrays nobody else holds (their reference
counts show no other reference and no view), the arrays are made read-only: NumPy and the
bindings then refuse every write to them, and while they stay so (and no seal or unseal
happened in between: ``_epoch``) the next predict skips the digests. A layer's ``weights_``
(WeightDict) makes every array it hands out writeable again first - and ``model.weights``,
``layer.kernel``, ``set_weights`` and ``load_weights`` all go through it, ``compile`` unseals
too - so code reaching the arrays never sees the seal; an array someone holds is never sealed,
so edits through it keep working.
(Writes through raw pointers taken from an array, such as ``ctypes`` addresses, bypass
read-only flags and are not seen.)
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

# Bumped by every seal and unseal: a network skips its digests only if the model was sealed
# after its last call and nothing was unsealed since (a layer shared by two models, unsealed
# and edited through one, must not let the other's network skip them).
_epoch = 0

# References to a sealable weight array while seal() looks at it: its layer's dict, the C++
# network's (it keeps the arrays it borrows alive), the loop variable and getrefcount's argument.
_OWN_REFS = 4


def unseal(arrays: Any) -> None:
    """Make sealed arrays writeable again (before handing them out or writing them)."""
    global _epoch
    for w in arrays:
        if not w.flags.writeable:
            try:
                w.flags.writeable = True
            except ValueError:  # read-only for another reason: its buffer is
                continue
            _epoch += 1


def unseal_model(model: Any) -> None:
    for layer in model.layers:
        unseal(dict.values(layer.weights_))


class WeightDict(dict):
    """A layer's ``weights_``: every array it hands out (item, ``get``, ``values``, ``items``)
    is writeable again first, so code holding ``layer.weights_`` writes as before a seal.
    Internal readers that must not unseal (the network key, seal and sealed below) go through
    ``dict``'s own methods."""

    def __getitem__(self, name: str) -> np.ndarray:
        w = dict.__getitem__(self, name)
        if not w.flags.writeable:
            unseal((w,))
        return w

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if dict.__contains__(self, name) else default

    def values(self):
        unseal(dict.values(self))
        return dict.values(self)

    def items(self):
        unseal(dict.values(self))
        return dict.items(self)


def seal(model: Any, net: Any) -> None:
    """After a predict through `net`: make every weight array of a model that is not compiled
    read-only, if no array is referenced (or viewed) from outside the model and its network."""
    global _epoch
    model.__dict__.pop("_sealed_for", None)  # its arrays out of the reference counts below
    if model.compiled:
        return
    arrays = []
    for layer in model.layers:
        for w in dict.values(layer.weights_):
            if sys.getrefcount(w) != _OWN_REFS or not w.flags.writeable:
                return
            base = w.base
            # An aligned copy's buffer is referenced by the array alone (and this frame); a view
            # someone made of the array references it too.
            if base is not None and (type(base) is not np.ndarray or base.base is not None
                                     or sys.getrefcount(base) != 3):
                return
            arrays.append(w)
    for w in arrays:
        w.flags.writeable = False
    _epoch += 1
    model._sealed_for = (_epoch, id(net), tuple(arrays))


def sealed(model: Any, net: Any) -> bool:
    """Whether `model`'s weights are sealed since `net`'s last predict call (the arrays sealed
    then are the ones `net` borrows: replaced arrays make another network)."""
    state = model.__dict__.get("_sealed_for")
    if state is None or state[0] != _epoch or state[1] != id(net):
        return False
    return not any(w.flags.writeable for w in state[2])
