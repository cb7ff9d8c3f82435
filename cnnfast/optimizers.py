"""Optimizers with Keras names, defaults and update rules (see shared keras-semantics notes).

State (velocities, moments) lives in float32 arrays beside each parameter, or, when a model
trains, in arenas laid out like its parameter arena, updated in one C++ call per step.
"""

from __future__ import annotations

import numpy as np

from cnnfast import _core


class Optimizer:
    # Names of the per-parameter state arrays, in the order `_slot` creates them (model files).
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float, weight_decay: float | None) -> None:
        if not np.isfinite(learning_rate) or learning_rate < 0:
            raise ValueError(f"{type(self).__name__}: learning_rate must be >= 0, got {learning_rate!r}")
        if weight_decay is not None and (not np.isfinite(weight_decay) or weight_decay < 0):
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, got {weight_decay!r}")
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay or 0.0)
        self.iterations = 0
        self._slots: dict[int, tuple[np.ndarray, ...]] = {}

    def _slot(self, index: int, w: np.ndarray, count: int) -> tuple[np.ndarray, ...]:
        slots = self._slots.get(index)
        if slots is None or slots[0].shape != w.shape:
            slots = tuple(np.zeros_like(w) for _ in range(count))
            self._slots[index] = slots
        return slots

    def apply(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """One update of every parameter in place from its gradient."""
        self.iterations += 1
        for i, (w, g) in enumerate(zip(params, grads)):
            self._update(i, w, g)

    def apply_flat(self, w: np.ndarray, g: np.ndarray,
                   layout: list[tuple[int, tuple[int, ...]]]) -> None:
        """One update of a whole parameter arena in one kernel call: `w` and `g` hold every
        parameter, the i-th at offset layout[i][0] with shape layout[i][1]. The optimizer's
        state is an arena of the same layout; ``_slots[i]`` are views into it (what model files
        store), and state set per parameter before (a loaded file) is carried into it."""
        self.iterations += 1
        self._update_flat(w, g, self._flat_state(w, layout))

    def _flat_state(self, w: np.ndarray,
                    layout: list[tuple[int, tuple[int, ...]]]) -> tuple[np.ndarray, ...]:
        """The slot arenas for a parameter arena `w` of this layout (made, with state set per
        parameter carried into them, when the layout changes); () when there are none."""
        count = len(type(self).slot_names) if self._uses_slots() else 0
        if not count:
            return ()
        key = (w.size, tuple(layout))
        if self.__dict__.get("_flat_key") != key:
            arenas = tuple(np.zeros_like(w) for _ in range(count))
            views = {}
            for i, (start, shape) in enumerate(layout):
                size = int(np.prod(shape))
                views[i] = tuple(a[start:start + size].reshape(shape) for a in arenas)
                old = self._slots.get(i)
                if old is not None and old[0].shape == tuple(shape) and len(old) == count:
                    for dst, src in zip(views[i], old):
                        dst[...] = src
            self._flat_slots, self._slots, self._flat_key = arenas, views, key
        return self._flat_slots

    def _plan_update(self) -> tuple:
        """The settings of the next update for ``_core.TrainPlan.step``: (name, lr,
        weight_decay, iteration, momentum, nesterov, beta_1, beta_2, epsilon). Read at every
        step, so schedules and callbacks that change them take effect."""
        raise NotImplementedError

    def _uses_slots(self) -> bool:
        return bool(type(self).slot_names)

    def _update(self, index: int, w: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def _update_flat(self, w: np.ndarray, g: np.ndarray, slots: tuple[np.ndarray, ...]) -> None:
        raise NotImplementedError

    def get_state(self) -> list[np.ndarray]:
        return [s for k in sorted(self._slots) for s in self._slots[k]]

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay}


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, Keras formulation:
    v = momentum * v - lr * g; w += v (Nesterov: w += momentum * v - lr * g)."""

    slot_names = ("velocity",)

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float | None = None) -> None:
        super().__init__(learning_rate, weight_decay)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _update(self, index, w, g):
        velocity = self._slot(index, w, 1)[0] if self.momentum else None
        _core.sgd_update(w, g, velocity, self.learning_rate, self.momentum, self.nesterov,
                         self.weight_decay)

    def _uses_slots(self) -> bool:
        return self.momentum != 0.0

    def _update_flat(self, w, g, slots):
        _core.sgd_update(w, g, slots[0] if slots else None, self.learning_rate, self.momentum,
                         self.nesterov, self.weight_decay)

    def _plan_update(self):
        return ("sgd", self.learning_rate, self.weight_decay, self.iterations + 1, self.momentum,
                self.nesterov, 0.0, 0.0, 0.0)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with Keras defaults (lr 1e-3, beta_1 0.9, beta_2 0.999, epsilon 1e-7); epsilon is
    added to sqrt(v) before bias correction, as Keras does."""

    slot_names = ("m", "v")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float | None = None) -> None:
        super().__init__(learning_rate, weight_decay)
        for name, b in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {b!r}")
        if not epsilon > 0:
            raise ValueError(f"Adam: epsilon must be > 0, got {epsilon!r}")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def _update(self, index, w, g):
        m, v = self._slot(index, w, 2)
        _core.adam_update(w, g, m, v, self.iterations, self.learning_rate, self.beta_1,
                          self.beta_2, self.epsilon, self.weight_decay)

    def _update_flat(self, w, g, slots):
        _core.adam_update(w, g, slots[0], slots[1], self.iterations, self.learning_rate,
                          self.beta_1, self.beta_2, self.epsilon, self.weight_decay)

    def _plan_update(self):
        return ("adam", self.learning_rate, self.weight_decay, self.iterations + 1, 0.0, False,
                self.beta_1, self.beta_2, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


_BY_NAME = {"sgd": SGD, "adam": Adam}


def get(identifier: str | Optimizer) -> Optimizer:
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() == "rmsprop":
        raise NotImplementedError("optimizer 'rmsprop' is not implemented in cnnfast; use 'adam' or 'sgd'")
    try:
        return _BY_NAME[identifier.lower()]()
    except (KeyError, AttributeError):
        raise ValueError(f"unknown optimizer {identifier!r}; known: {sorted(_BY_NAME)}") from None
