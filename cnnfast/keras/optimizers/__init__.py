"""``keras.optimizers``: the Keras 3 optimizers with their defaults, and ``schedules``."""

from __future__ import annotations

from cnnfast.keras._unsupported import unsupported
from cnnfast.keras.optimizers import schedules
from cnnfast.optimizers import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    Nadam,
    Optimizer,
    RMSprop,
    deserialize,
    get,
    serialize,
)

__getattr__ = unsupported(__name__, {
    "Ftrl": "not implemented", "Lamb": "not implemented", "Muon": "not implemented",
    "LossScaleOptimizer": "cnnfast computes in float32",
})

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "Nadam", "Optimizer",
           "RMSprop", "deserialize", "get", "schedules", "serialize"]
