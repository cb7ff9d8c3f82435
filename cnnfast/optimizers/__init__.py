"""Optimizers with Keras 3 names, defaults and update rules (see shared keras-semantics notes).

State (velocities, moments) lives in float32 arenas laid out like the model's parameter arena
and is updated, for every optimizer, by one C++ call per step (``_core.optimizer_update``,
src/cpp/kernels/optim.h), the same call the C++ training plan makes. ``learning_rate`` may be a
number or a schedule from :mod:`cnnfast.optimizers.schedules`, evaluated before each update at
the number of updates done so far (Keras). Every optimizer takes Keras's ``weight_decay``
(decoupled: ``w -= lr * weight_decay * w`` before the update) and one of ``clipnorm`` (each
variable's gradient scaled to norm <= clipnorm), ``global_clipnorm`` (all gradients scaled
together) or ``clipvalue`` (each element clipped to [-clipvalue, clipvalue]).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnfast import _core
from cnnfast.optimizers import schedules
from cnnfast.optimizers.schedules import LearningRateSchedule

__all__ = [
    "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "Nadam", "Optimizer",
    "RMSprop", "deserialize", "get", "schedules", "serialize",
]

Layout = list[tuple[int, tuple[int, ...]]]
# The kernel's arguments that an optimizer does not set (src/cpp/bindings/bind_optim.h).
_KERNEL_DEFAULTS: dict[str, Any] = {
    "momentum": 0.0, "nesterov": False, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
    "rho": 0.9, "centered": False, "u_product": 1.0,
}


def _number(owner: str, name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}") from None


def _in_range(owner: str, name: str, value: Any, lo: float, hi: float, hi_open: bool) -> float:
    v = _number(owner, name, value)
    if not (lo <= v < hi if hi_open else lo <= v <= hi):
        raise ValueError(f"{owner}: {name} must be in [{lo:g}, {hi:g}{')' if hi_open else ']'}, "
                         f"got {value!r}")
    return v


def _positive(owner: str, name: str, value: Any) -> float:
    v = _number(owner, name, value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    return v


class Optimizer:
    """Base class. Subclasses name their kernel (``_kind``) and slots and give their settings.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule
    weight_decay : float or None
        Decoupled weight decay: ``w -= lr * weight_decay * w`` before each update.
    clipnorm, clipvalue, global_clipnorm : float or None
        Gradient clipping, Keras semantics; at most one may be set.
    """

    # Names of the per-parameter state arrays, in the order the kernel reads them (model files).
    slot_names: tuple[str, ...] = ()
    _kind = ""

    def __init__(self, learning_rate: float | LearningRateSchedule, weight_decay: float | None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        owner = type(self).__name__
        self._learning_rate: float | LearningRateSchedule = 0.0
        if isinstance(learning_rate, LearningRateSchedule):
            self._learning_rate = learning_rate
        else:
            self._learning_rate = self._checked_lr(learning_rate)
        if weight_decay is not None:
            wd = _number(owner, "weight_decay", weight_decay)
            if not math.isfinite(wd) or wd < 0:
                raise ValueError(f"{owner}: weight_decay must be >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay or 0.0)
        given = {k: v for k, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                   ("global_clipnorm", global_clipnorm)) if v is not None}
        if len(given) > 1:
            raise ValueError(f"{owner}: only one of clipnorm, clipvalue and global_clipnorm can "
                             f"be set, got {given}")
        for k, v in given.items():
            _positive(owner, k, v)
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.clipvalue = None if clipvalue is None else float(clipvalue)
        self.global_clipnorm = None if global_clipnorm is None else float(global_clipnorm)
        self.iterations = 0
        self._slots: dict[int, tuple[np.ndarray, ...]] = {}

    def _checked_lr(self, value: Any) -> float:
        lr = _number(type(self).__name__, "learning_rate", value)
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"{type(self).__name__}: learning_rate must be >= 0, got {value!r}")
        return lr

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next update (a schedule's value at ``iterations``)."""
        if isinstance(self._learning_rate, LearningRateSchedule):
            return float(self._learning_rate(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float | LearningRateSchedule) -> None:
        if isinstance(value, LearningRateSchedule):  # Keras lets a schedule replace a number
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(f"{type(self).__name__}: this optimizer was created with a "
                            "LearningRateSchedule as its learning_rate, hence its learning rate "
                            "is not settable")
        self._learning_rate = self._checked_lr(value)

    @property
    def lr(self) -> float:
        """Keras 2's name of :attr:`learning_rate`."""
        return self.learning_rate

    @lr.setter
    def lr(self, value: float) -> None:
        self.learning_rate = value

    # -- updates ----------------------------------------------------------------------------
    def apply(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """One update of every parameter in place from its gradient (clipping sees them all)."""
        layout, start = [], 0
        for w in params:
            layout.append((start, tuple(w.shape)))
            start += w.size
        w_flat = np.concatenate([np.ravel(w) for w in params]).astype(np.float32) \
            if params else np.zeros(0, np.float32)
        g_flat = np.concatenate([np.ravel(g) for g in grads]).astype(np.float32) \
            if grads else np.zeros(0, np.float32)
        self.apply_flat(w_flat, g_flat, layout)
        for (offset, shape), w in zip(layout, params):
            w[...] = w_flat[offset:offset + int(np.prod(shape))].reshape(shape)

    def apply_flat(self, w: np.ndarray, g: np.ndarray, layout: Layout) -> None:
        """One update of a whole parameter arena in one kernel call: `w` and `g` hold every
        parameter, the i-th at offset layout[i][0] with shape layout[i][1] (g is clipped in
        place when clipping is set). The optimizer's state is an arena of the same layout;
        ``_slots[i]`` are views into it (what model files store), and state set per parameter
        before (a loaded file) is carried into it."""
        s, (s0, s1, s2), bounds = self._plan_update(w, layout)
        # Arguments spelled out (not *args/**kwargs): one plain call, as TrainPlan.step's.
        _core.optimizer_update(w, g, s0, s1, s2, s["optimizer"], s["lr"], s["weight_decay"],
                               s["iteration"], s["momentum"], s["nesterov"], s["beta_1"],
                               s["beta_2"], s["epsilon"], s["rho"], s["centered"],
                               s["u_product"], s["clipnorm"], s["clipvalue"],
                               s["global_clipnorm"], bounds)
        self.iterations += 1

    def _plan_update(self, w: np.ndarray, layout: Layout
                     ) -> tuple[dict[str, Any], tuple[np.ndarray | None, ...], np.ndarray | None]:
        """What the next update needs, for ``_core.optimizer_update`` and ``TrainPlan.step``
        alike: (keyword settings, the three kernel slot arenas or None, clip bounds or None).
        Read at every step, so schedules and callbacks that change the settings take effect."""
        state = dict(zip(self.slot_names, self._flat_state(w, layout)))
        slots = tuple(state.get(name) for name in self._kernel_slots())
        slots += (None,) * (3 - len(slots))
        bounds = None
        if self.clipnorm:
            bounds = np.array([start for start, _ in layout] + [w.size], np.int64)
        settings = {**_KERNEL_DEFAULTS, "optimizer": self._kind, "lr": self.learning_rate,
                    "weight_decay": self.weight_decay, "iteration": self.iterations + 1,
                    "clipnorm": self.clipnorm or 0.0, "clipvalue": self.clipvalue or 0.0,
                    "global_clipnorm": self.global_clipnorm or 0.0, **self._settings()}
        return settings, slots, bounds

    def _settings(self) -> dict[str, Any]:
        """The kernel arguments of this optimizer beyond lr, decay, iteration and clipping."""
        return {}

    def _kernel_slots(self) -> tuple[str, ...]:
        """Slot names in the kernel's slot0, slot1, slot2 order (absent ones are None)."""
        return self.slot_names

    def _slot_initial_value(self, name: str) -> float:
        return 0.0

    def _uses_slots(self) -> bool:
        return bool(self.slot_names)

    def _flat_state(self, w: np.ndarray, layout: Layout) -> tuple[np.ndarray, ...]:
        """The slot arenas for a parameter arena `w` of this layout (made, with state set per
        parameter carried into them, when the layout changes); () when there are none."""
        names = self.slot_names
        if not self._uses_slots():
            return ()
        key = (w.size, tuple(layout), names)
        if self.__dict__.get("_flat_key") != key:
            arenas = tuple(np.full_like(w, self._slot_initial_value(n)) for n in names)
            views = {}
            for i, (start, shape) in enumerate(layout):
                size = int(np.prod(shape))
                views[i] = tuple(a[start:start + size].reshape(shape) for a in arenas)
                old = self._slots.get(i)
                if old is not None and old[0].shape == tuple(shape) and len(old) == len(names):
                    for dst, src in zip(views[i], old):
                        dst[...] = src
            self._flat_slots, self._slots, self._flat_key = arenas, views, key
        return self._flat_slots

    def get_state(self) -> list[np.ndarray]:
        return [s for k in sorted(self._slots) for s in self._slots[k]]

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments; a schedule as ``{"class_name": ..., "config": ...}``."""
        lr = self._learning_rate
        return {"learning_rate": schedules.serialize(lr) if isinstance(lr, LearningRateSchedule)
                else lr, "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, Keras formulation:
    v = momentum * v - lr * g; w += v (Nesterov: w += momentum * v - lr * g)."""

    _kind = "sgd"

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm)
        self.momentum = _in_range("SGD", "momentum", momentum, 0.0, 1.0, False)
        self.nesterov = bool(nesterov)

    slot_names = ("velocity",)

    def _uses_slots(self) -> bool:
        return self.momentum != 0.0

    def _settings(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with Keras defaults (lr 1e-3, beta_1 0.9, beta_2 0.999, epsilon 1e-7); epsilon is
    added to sqrt(v) before bias correction, as Keras does."""

    slot_names = ("m", "v")
    _kind = "adam"

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm)
        owner = type(self).__name__
        self.beta_1 = _in_range(owner, "beta_1", beta_1, 0.0, 1.0, True)
        self.beta_2 = _in_range(owner, "beta_2", beta_2, 0.0, 1.0, True)
        self.epsilon = _positive(owner, "epsilon", epsilon)

    def _settings(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay, Keras defaults (weight_decay 0.004): each update
    first does ``w -= lr * weight_decay * w``, then Adam's step."""

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001,
                 weight_decay: float = 0.004, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None) -> None:
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a number (Keras: it cannot be None)")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm,
                         clipvalue, global_clipnorm)


class RMSprop(Optimizer):
    """RMSprop, Keras defaults (lr 1e-3, rho 0.9, momentum 0, epsilon 1e-7, centered False).

    ``velocity = rho * velocity + (1 - rho) * g^2``; ``w -= lr * g / sqrt(velocity + epsilon)``
    (epsilon inside the square root, as Keras; PyTorch adds it outside). Centered: the
    denominator is ``sqrt(velocity - average_gradient^2 + epsilon)``, with
    ``average_gradient = rho * average_gradient + (1 - rho) * g``. Momentum: the step goes
    through ``m = momentum * m + lr * g / sqrt(...)``; ``w -= m``.
    """

    _kind = "rmsprop"

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001, rho: float = 0.9,
                 momentum: float = 0.0, epsilon: float = 1e-7, centered: bool = False,
                 weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm)
        self.rho = _in_range("RMSprop", "rho", rho, 0.0, 1.0, True)
        self.momentum = _in_range("RMSprop", "momentum", momentum, 0.0, 1.0, False)
        self.epsilon = _positive("RMSprop", "epsilon", epsilon)
        self.centered = bool(centered)

    @property
    def slot_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return (("velocity",) + (("momentum",) if self.momentum > 0 else ())
                + (("average_gradient",) if self.centered else ()))

    def _kernel_slots(self):
        return ("velocity", "momentum", "average_gradient")

    def _settings(self):
        return {"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad, Keras defaults (lr 1e-3, initial_accumulator_value 0.1, epsilon 1e-7):
    ``accumulator += g^2; w -= lr * g / sqrt(accumulator + epsilon)``."""

    slot_names = ("accumulator",)
    _kind = "adagrad"

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001,
                 initial_accumulator_value: float = 0.1, epsilon: float = 1e-7,
                 weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm)
        v = _number("Adagrad", "initial_accumulator_value", initial_accumulator_value)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"Adagrad: initial_accumulator_value must be >= 0, got "
                             f"{initial_accumulator_value!r}")
        self.initial_accumulator_value = v
        self.epsilon = _positive("Adagrad", "epsilon", epsilon)

    def _slot_initial_value(self, name):
        return self.initial_accumulator_value

    def _settings(self):
        return {"epsilon": self.epsilon}

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """Adadelta, Keras 3 defaults (lr 1e-3, rho 0.95, epsilon 1e-7; Keras 2 used lr 1.0).
    ``a_g = rho a_g + (1 - rho) g^2; d = -sqrt(a_d + eps) g / sqrt(a_g + eps);
    a_d = rho a_d + (1 - rho) d^2; w += lr d``."""

    slot_names = ("accumulated_grad", "accumulated_delta_var")
    _kind = "adadelta"

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001, rho: float = 0.95,
                 epsilon: float = 1e-7, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm)
        self.rho = _in_range("Adadelta", "rho", rho, 0.0, 1.0, True)
        self.epsilon = _positive("Adadelta", "epsilon", epsilon)

    def _settings(self):
        return {"rho": self.rho, "epsilon": self.epsilon}

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adamax(Adam):
    """Adamax (Adam with the infinity norm), Keras defaults (lr 1e-3, beta_1 0.9, beta_2
    0.999, epsilon 1e-7): ``m += (g - m)(1 - beta_1); u = max(beta_2 u, |g|);
    w -= lr m / ((1 - beta_1^t)(u + epsilon))``."""

    slot_names = ("m", "u")
    _kind = "adamax"


class Nadam(Adam):
    """Nadam (Adam with Nesterov momentum), Keras defaults (lr 1e-3, beta_1 0.9, beta_2 0.999,
    epsilon 1e-7) and Keras's momentum schedule ``u_t = beta_1 (1 - 0.5 * 0.96^t)`` (PyTorch's
    NAdam with momentum_decay=1)."""

    _kind = "nadam"

    def _u_product(self, step: int) -> float:
        """prod_{k=1..step} u_k in float64, cached so consecutive steps cost one multiply."""
        cached = self.__dict__.get("_u_cache")
        if cached is not None and cached[0] == (self.beta_1, step - 1):
            product = cached[1]
        else:
            product = 1.0
            for k in range(1, step):
                product *= self.beta_1 * (1.0 - 0.5 * 0.96 ** k)
        product *= self.beta_1 * (1.0 - 0.5 * 0.96 ** step)
        self._u_cache = ((self.beta_1, step), product)
        return product

    def _settings(self):
        return {**super()._settings(), "u_product": self._u_product(self.iterations + 1)}


class Lion(Optimizer):
    """Lion, Keras defaults (lr 1e-3, beta_1 0.9, beta_2 0.99):
    ``w -= lr * sign(beta_1 m + (1 - beta_1) g); m = beta_2 m + (1 - beta_2) g``."""

    slot_names = ("momentum",)
    _kind = "lion"

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.99, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None) -> None:
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm)
        b1 = _number("Lion", "beta_1", beta_1)
        if not 0.0 < b1 <= 1.0:
            raise ValueError(f"Lion: beta_1 must be in (0, 1], got {beta_1!r}")
        self.beta_1 = b1
        self.beta_2 = _in_range("Lion", "beta_2", beta_2, 0.0, 1.0, False)

    def _settings(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2}

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


_CLASSES: tuple[type[Optimizer], ...] = (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax,
                                         Nadam, Lion)
_BY_NAME = {cls.__name__.lower(): cls for cls in _CLASSES}


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of a built-in optimizer."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config: dict[str, Any]) -> Optimizer:
    """The optimizer that :func:`serialize` described (a schedule in it included)."""
    cls = {c.__name__: c for c in _CLASSES}.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"unknown optimizer {config.get('class_name')!r}; known: "
                         f"{sorted(c.__name__ for c in _CLASSES)}")
    return cls.from_config(config.get("config", {}))


def get(identifier: str | Optimizer) -> Optimizer:
    """An optimizer from its Keras name (any case: "rmsprop", "adamw", ...) with Keras
    defaults, or the optimizer itself."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    try:
        return _BY_NAME[identifier.lower()]()
    except (KeyError, AttributeError):
        raise ValueError(f"unknown optimizer {identifier!r}; known: {sorted(_BY_NAME)}") from None
