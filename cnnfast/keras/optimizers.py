"""``keras.optimizers``: SGD and Adam with Keras defaults."""

from __future__ import annotations

from cnnfast.keras._unsupported import unsupported
from cnnfast.optimizers import SGD, Adam, Optimizer, get

_USE = "use Adam or SGD"
__getattr__ = unsupported(__name__, {
    "RMSprop": _USE, "Adagrad": _USE, "Adadelta": _USE, "Adamax": _USE, "Nadam": _USE,
    "AdamW": "use Adam(weight_decay=...), which decays decoupled like AdamW",
    "Ftrl": _USE, "Lion": _USE, "Lamb": _USE, "LossScaleOptimizer": "cnnfast computes in float32",
    "schedules": "learning-rate schedules are not implemented; set "
                 "model.optimizer.learning_rate from a callback",
})

__all__ = ["SGD", "Adam", "Optimizer", "get"]
