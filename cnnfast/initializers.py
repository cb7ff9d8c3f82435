"""Weight initialisers with Keras names and fan conventions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cnnfast.random import generator

Initializer = Callable[[tuple[int, ...]], np.ndarray]


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    # Keras: conv kernels (KH, KW, C_in, C_out) count the receptive field in both fans.
    if len(shape) < 2:
        return shape[0] if shape else 1, shape[0] if shape else 1
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape: tuple[int, ...]) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return generator().uniform(-limit, limit, size=shape).astype(np.float32)


def glorot_normal(shape: tuple[int, ...]) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    std = np.sqrt(2.0 / (fan_in + fan_out))
    return _truncated_normal(shape, std)


def he_uniform(shape: tuple[int, ...]) -> np.ndarray:
    fan_in, _ = _fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return generator().uniform(-limit, limit, size=shape).astype(np.float32)


def he_normal(shape: tuple[int, ...]) -> np.ndarray:
    fan_in, _ = _fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / fan_in))


def _truncated_normal(shape: tuple[int, ...], std: float) -> np.ndarray:
    # Keras draws from a normal truncated at two standard deviations, rescaled so the
    # truncated distribution keeps the intended variance.
    std = std / 0.87962566103423978
    out = generator().normal(0.0, std, size=shape)
    bad = np.abs(out) > 2 * std
    while bad.any():
        out[bad] = generator().normal(0.0, std, size=int(bad.sum()))
        bad = np.abs(out) > 2 * std
    return out.astype(np.float32)


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, np.float32)


def ones(shape: tuple[int, ...]) -> np.ndarray:
    return np.ones(shape, np.float32)


_BY_NAME: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "zeros": zeros,
    "ones": ones,
}


def get(identifier: str | Initializer) -> Initializer:
    """Look up an initialiser by Keras name, or pass a callable(shape) -> array through."""
    if callable(identifier):
        return identifier
    try:
        return _BY_NAME[identifier]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown initializer {identifier!r}; known: {sorted(_BY_NAME)}"
        ) from None
