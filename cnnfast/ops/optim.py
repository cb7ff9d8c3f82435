"""Keras 3 optimizer steps, applied in place to float32 parameter arrays: SGD and Adam by name,
every optimizer through ``optimizer_update``."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnfast import _core
from cnnfast.ops.activation import _as_f32

__all__ = ["adam_update", "optimizer_update", "sgd_update"]


def _state(op: str, name: str, a: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """An array updated in place: must already be a C-contiguous, writable float32 ndarray."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous \
            or not a.flags.writeable:
        desc = f"{type(a).__name__}" if not isinstance(a, np.ndarray) else \
            f"dtype {a.dtype}, contiguous={a.flags.c_contiguous}, writeable={a.flags.writeable}"
        raise ValueError(f"{op}: {name} must be a C-contiguous writable float32 array ({desc})")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{op}: {name} {a.shape} must have the shape of w {shape}")
    return a


def _grad(op: str, g: Any, shape: tuple[int, ...]) -> np.ndarray:
    g = _as_f32(g, op, "g")
    if g.shape != shape:
        raise ValueError(f"{op}: g {g.shape} must have the shape of w {shape}")
    return g


def sgd_update(w: np.ndarray, g: Any, velocity: np.ndarray | None = None, lr: float = 0.01,
               momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> None:
    """One Keras SGD step, in place on w (and velocity).

    ``w -= lr * weight_decay * w`` first (decoupled decay, when non-zero), then
    plain: ``w -= lr * g``; momentum: ``velocity = momentum * velocity - lr * g; w += velocity``;
    Nesterov: ``w += momentum * velocity - lr * g`` with the new velocity.

    Parameters
    ----------
    w : float32 C-contiguous writable array
    g : array, shape of w
    velocity : float32 C-contiguous writable array, shape of w (start at zeros); required when
        momentum != 0
    """
    op = "sgd_update"
    w = _state(op, "w", w)
    g = _grad(op, g, w.shape)
    if velocity is not None:
        velocity = _state(op, "velocity", velocity, w.shape)
    elif momentum != 0.0:
        raise ValueError(f"{op}: momentum={momentum} needs a velocity array of shape {w.shape}")
    _core.sgd_update(w, g, velocity, float(lr), float(momentum), bool(nesterov),
                     float(weight_decay))


def adam_update(w: np.ndarray, g: Any, m: np.ndarray, v: np.ndarray, step: int, lr: float = 1e-3,
                beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                weight_decay: float = 0.0) -> None:
    """One Keras Adam step, in place on w, m and v.

    ``w -= lr * weight_decay * w`` first (decoupled, when non-zero), then
    ``m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2);
    w -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)``.

    Parameters
    ----------
    w, m, v : float32 C-contiguous writable arrays of one shape (m, v start at zeros)
    g : array, shape of w
    step : int >= 1, this update's 1-based iteration number t
    """
    op = "adam_update"
    w = _state(op, "w", w)
    g = _grad(op, g, w.shape)
    m = _state(op, "m", m, w.shape)
    v = _state(op, "v", v, w.shape)
    if int(step) != step or step < 1:
        raise ValueError(f"{op}: step must be an integer >= 1 (1-based), got {step}")
    _core.adam_update(w, g, m, v, int(step), float(lr), float(beta_1), float(beta_2),
                      float(epsilon), float(weight_decay))


# Slot names per optimizer, in the kernel's order (src/cpp/kernels/optim.h).
SLOTS = {
    "sgd": ("velocity",), "adam": ("m", "v"), "nadam": ("m", "v"), "adamax": ("m", "u"),
    "rmsprop": ("velocity", "momentum", "average_gradient"), "adagrad": ("accumulator",),
    "adadelta": ("accumulated_grad", "accumulated_delta_var"), "lion": ("momentum",),
}


def optimizer_update(optimizer: str, w: np.ndarray, g: Any,
                     slots: dict[str, np.ndarray] | None = None, *, lr: float, step: int = 1,
                     **settings: Any) -> None:
    """One Keras step of any optimizer, in place on w, the slots and (when clipping) g.

    Parameters
    ----------
    optimizer : {"sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion"}
        (AdamW is "adam" with ``weight_decay``.)
    w : float32 C-contiguous writable array
    g : float32 C-contiguous writable array, shape of w; clipped in place when a clip is set
    slots : dict of name -> float32 C-contiguous writable array of w's shape (the names of
        ``SLOTS[optimizer]`` that this configuration uses; start them at zeros, Adagrad's
        accumulator at its initial value)
    lr : float
    step : int >= 1, this update's 1-based iteration number
    **settings
        weight_decay, momentum, nesterov, beta_1, beta_2, epsilon, rho, centered,
        u_product (Nadam's running product of its momentum schedule, step included),
        clipnorm, clipvalue, global_clipnorm: as in cnnfast.optimizers.

    Raises
    ------
    ValueError
        An unknown optimizer, slot name or setting, a missing slot, a wrong shape or dtype.
    """
    op = f"optimizer_update({optimizer!r})"
    names = SLOTS.get(optimizer)
    if names is None:
        raise ValueError(f"{op}: unknown optimizer; known: {sorted(SLOTS)}")
    w = _state(op, "w", w)
    g = _state(op, "g", g, w.shape)
    slots = dict(slots or {})
    unknown = set(slots) - set(names)
    if unknown:
        raise ValueError(f"{op}: unknown slots {sorted(unknown)}; {optimizer} has {list(names)}")
    arrays = [None if slots.get(n) is None else _state(op, n, slots[n], w.shape) for n in names]
    allowed = {"weight_decay", "momentum", "nesterov", "beta_1", "beta_2", "epsilon", "rho",
               "centered", "u_product", "clipnorm", "clipvalue", "global_clipnorm"}
    bad = set(settings) - allowed
    if bad:
        raise ValueError(f"{op}: unknown settings {sorted(bad)}; known: {sorted(allowed)}")
    if int(step) != step or step < 1:
        raise ValueError(f"{op}: step must be an integer >= 1 (1-based), got {step}")
    arrays += [None] * (3 - len(arrays))
    _core.optimizer_update(w, g, *arrays, optimizer=optimizer, lr=float(lr), iteration=int(step),
                           **settings)
