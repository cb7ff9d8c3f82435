"""Weight penalties added to the loss (Keras semantics: L2 adds l * sum(w^2), no 1/2)."""

from __future__ import annotations

import numpy as np


class Regularizer:
    def loss(self, w: np.ndarray) -> float:
        raise NotImplementedError

    def add_gradient(self, grad: np.ndarray, w: np.ndarray) -> None:
        """Add d(loss)/dw to grad in place."""
        raise NotImplementedError


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w^2)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        if l1 < 0 or l2 < 0:
            raise ValueError(f"regularisation factors must be >= 0, got l1={l1}, l2={l2}")
        self.l1 = float(l1)
        self.l2 = float(l2)

    def loss(self, w: np.ndarray) -> float:
        total = 0.0
        if self.l1:
            total += self.l1 * float(np.abs(w, dtype=np.float64).sum())
        if self.l2:
            total += self.l2 * float(np.square(w, dtype=np.float64).sum())
        return total

    def add_gradient(self, grad: np.ndarray, w: np.ndarray) -> None:
        if self.l2:
            grad += np.float32(2.0 * self.l2) * w
        if self.l1:
            grad += np.float32(self.l1) * np.sign(w)

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L2(L1L2):
    def __init__(self, l2: float = 0.01) -> None:
        super().__init__(l2=l2)


class L1(L1L2):
    def __init__(self, l1: float = 0.01) -> None:
        super().__init__(l1=l1)


def serialize(reg: Regularizer | None) -> dict | None:
    """JSON-ready form of a regularizer: {"class_name": "L1L2", "config": {"l1": .., "l2": ..}}."""
    if reg is None:
        return None
    if not isinstance(reg, L1L2):
        raise TypeError(
            f"cannot serialize regularizer {type(reg).__name__}: only L1/L2/L1L2 can be saved"
        )
    return {"class_name": "L1L2", "config": reg.get_config()}


def get(identifier: str | dict | Regularizer | None) -> Regularizer | None:
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        # The serialized form written by `serialize` (model files).
        if identifier.get("class_name") not in ("L1L2", "L1", "L2") or \
                not isinstance(identifier.get("config"), dict):
            raise ValueError(f"unknown regularizer config {identifier!r}")
        cfg = identifier["config"]
        if set(cfg) - {"l1", "l2"} or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                for v in cfg.values()):
            raise ValueError(f"invalid regularizer config {identifier!r}")
        return L1L2(**cfg)
    if identifier == "l2":
        return L2()
    if identifier == "l1":
        return L1()
    raise ValueError(f"unknown regularizer {identifier!r}; use 'l1', 'l2' or a Regularizer")
