"""``keras.models``: Model (functional), Sequential, load_model/save_model for cnnfast model files, and
model_from_json for the JSON of ``model.to_json()``."""

from __future__ import annotations

from cnnfast.keras._unsupported import unsupported
from cnnfast.model import Model, Sequential
from cnnfast.saving import load_model, model_from_json, save_model

__getattr__ = unsupported(__name__, {
    "clone_model": "not implemented",
})

__all__ = ["Model", "Sequential", "load_model", "model_from_json", "save_model"]
