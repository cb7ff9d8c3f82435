"""``keras.models``: Sequential, load_model/save_model for cnnfast model files, and
model_from_json for the JSON of ``model.to_json()``."""

from __future__ import annotations

from cnnfast.keras._unsupported import unsupported
from cnnfast.model import Sequential
from cnnfast.saving import load_model, model_from_json, save_model

_FUNCTIONAL = "the functional Model API (Model(inputs, outputs)) is not supported; use Sequential"
__getattr__ = unsupported(__name__, {
    "Model": _FUNCTIONAL,
    "Functional": _FUNCTIONAL,
    "clone_model": "not implemented",
})

__all__ = ["Sequential", "load_model", "model_from_json", "save_model"]
