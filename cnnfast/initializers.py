"""Weight initializers with Keras 3 names, formulas and fan conventions.

Each initializer is an object called with a shape (``HeNormal()((3, 3, 16, 32))``) returning a
float32 array; :func:`get` also takes the Keras names (``"he_normal"``), the class names
(``"HeNormal"``), a serialized ``{"class_name": ..., "config": ...}`` or any callable(shape).
Draws come from cnnfast's generator (``cf.set_seed``) unless the initializer has its own
``seed``, in which case every call returns the same values (Keras 3's rule for seeded
initializers).

Fans follow ``keras.initializers.VarianceScaling``: a kernel (KH, KW, C_in, C_out) has
fan_in = KH*KW*C_in and fan_out = KH*KW*C_out; a (in, out) matrix fan_in = in, fan_out = out;
a vector its length for both. The "truncated_normal" distribution draws a normal truncated at
two standard deviations with stddev = sqrt(scale / fan) / 0.87962566103423978, the constant
being the standard deviation of a unit normal truncated to [-2, 2], so the result has the
variance scale / fan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cnnfast.random import generator

Initializer = Callable[[tuple[int, ...]], np.ndarray]

# The standard deviation of a unit normal truncated to [-2, 2] (Keras' constant).
TRUNCATED_STDDEV_FACTOR = 0.87962566103423978


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    # Keras: conv kernels (KH, KW, C_in, C_out) count the receptive field in both fans.
    if len(shape) < 2:
        return shape[0] if shape else 1, shape[0] if shape else 1
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated(rng: np.random.Generator, shape: tuple[int, ...], mean: float,
               stddev: float) -> np.ndarray:
    """Normal(mean, stddev) with the draws beyond two standard deviations drawn again."""
    out = rng.normal(mean, stddev, size=shape)
    bad = np.abs(out - mean) > 2 * stddev
    while bad.any():
        out[bad] = rng.normal(mean, stddev, size=int(bad.sum()))
        bad = np.abs(out - mean) > 2 * stddev
    return out


def _number(value: Any, what: str, cls: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{cls}: {what} must be a finite number, got {value!r}")
    return float(value)


class Initializer_:
    """Base class: ``__call__(shape)`` returns float32 values; ``get_config()`` the arguments."""

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"{type(self).__name__}: seed must be an int or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)

    def _rng(self) -> np.random.Generator:
        return generator() if self.seed is None else np.random.default_rng(self.seed)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        return np.asarray(self.sample(self._rng(), shape), np.float64).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Initializer_:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer_):
    def __init__(self) -> None:
        super().__init__(None)

    def sample(self, rng, shape):
        return np.zeros(shape)

    def get_config(self):
        return {}


class Ones(Initializer_):
    def __init__(self) -> None:
        super().__init__(None)

    def sample(self, rng, shape):
        return np.ones(shape)

    def get_config(self):
        return {}


class Constant(Initializer_):
    """Every value equal to ``value`` (Keras default 0.0)."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__(None)
        self.value = _number(value, "value", "Constant")

    def sample(self, rng, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer_):
    """Normal(mean, stddev); Keras defaults 0.0 and 0.05."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.mean = _number(mean, "mean", "RandomNormal")
        self.stddev = _number(stddev, "stddev", "RandomNormal")

    def sample(self, rng, shape):
        return rng.normal(self.mean, self.stddev, size=shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    """Normal(mean, stddev) with values beyond two stddev from the mean drawn again (Keras
    defaults 0.0 and 0.05; no variance correction, as in Keras)."""

    def sample(self, rng, shape):
        return _truncated(rng, shape, self.mean, self.stddev)


class RandomUniform(Initializer_):
    """Uniform on [minval, maxval); Keras defaults -0.05 and 0.05."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        self.minval = _number(minval, "minval", "RandomUniform")
        self.maxval = _number(maxval, "maxval", "RandomUniform")

    def sample(self, rng, shape):
        return rng.uniform(self.minval, self.maxval, size=shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class VarianceScaling(Initializer_):
    """Keras ``VarianceScaling``: variance ``scale / n`` with n the fan_in, fan_out or their
    mean (``mode``); ``distribution`` "truncated_normal" (stddev corrected by
    0.87962566103423978), "untruncated_normal" or "uniform" (limit sqrt(3 * scale / n))."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: int | None = None) -> None:
        super().__init__(seed)
        self.scale = _number(scale, "scale", type(self).__name__)
        if self.scale <= 0:
            raise ValueError(f"{type(self).__name__}: scale must be positive, got {scale!r}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"{type(self).__name__}: mode must be fan_in, fan_out or fan_avg, "
                             f"got {mode!r}")
        distribution = "untruncated_normal" if distribution == "normal" else distribution
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"{type(self).__name__}: distribution must be truncated_normal, "
                             f"untruncated_normal or uniform, got {distribution!r}")
        self.mode = mode
        self.distribution = distribution

    def variance(self, shape: tuple[int, ...]) -> float:
        """scale / max(1, n): the variance the values are drawn with."""
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        return self.scale / max(1.0, n)

    def sample(self, rng, shape):
        variance = self.variance(shape)
        if self.distribution == "truncated_normal":
            return _truncated(rng, shape, 0.0, np.sqrt(variance) / TRUNCATED_STDDEV_FACTOR)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, np.sqrt(variance), size=shape)
        # limit = sqrt(3 * variance), written so GlorotUniform is sqrt(6 / (fan_in + fan_out))
        # and HeUniform sqrt(6 / fan_in) to the last bit (the draws cnnfast always made).
        fan_in, fan_out = _fans(shape)
        if self.mode == "fan_avg":
            limit = np.sqrt(6.0 * self.scale / max(2.0, fan_in + fan_out))
        else:
            limit = np.sqrt(3.0 * self.scale / max(1.0, fan_in if self.mode == "fan_in" else fan_out))
        return rng.uniform(-limit, limit, size=shape)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


def _preset(name: str, scale: float, mode: str, distribution: str, doc: str) -> type:
    def __init__(self, seed: int | None = None) -> None:
        VarianceScaling.__init__(self, scale, mode, distribution, seed)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                           "__doc__": doc})


GlorotUniform = _preset("GlorotUniform", 1.0, "fan_avg", "uniform",
                        "Uniform on +-sqrt(6 / (fan_in + fan_out)) (Keras' default kernel).")
GlorotNormal = _preset("GlorotNormal", 1.0, "fan_avg", "truncated_normal",
                       "Truncated normal of variance 2 / (fan_in + fan_out).")
HeUniform = _preset("HeUniform", 2.0, "fan_in", "uniform", "Uniform on +-sqrt(6 / fan_in).")
HeNormal = _preset("HeNormal", 2.0, "fan_in", "truncated_normal",
                   "Truncated normal of variance 2 / fan_in.")
LecunUniform = _preset("LecunUniform", 1.0, "fan_in", "uniform", "Uniform on +-sqrt(3 / fan_in).")
LecunNormal = _preset("LecunNormal", 1.0, "fan_in", "truncated_normal",
                      "Truncated normal of variance 1 / fan_in.")


class Orthogonal(Initializer_):
    """Keras ``Orthogonal(gain=1.0)``: the shape flattened to (prod(shape[:-1]), shape[-1]) is
    filled with orthonormal rows or columns (whichever are fewer) from the QR decomposition of a
    normal matrix, signs fixed by diag(R) so the result is uniformly distributed; times gain."""

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        self.gain = _number(gain, "gain", "Orthogonal")

    def sample(self, rng, shape):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: needs a shape of rank >= 2, got {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = rng.normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


# Keras's functional names: the same objects, with the draws cnnfast always made.
glorot_uniform = GlorotUniform()
glorot_normal = GlorotNormal()
he_uniform = HeUniform()
he_normal = HeNormal()
lecun_uniform = LecunUniform()
lecun_normal = LecunNormal()
orthogonal = Orthogonal()
zeros = Zeros()
ones = Ones()

_CLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    Zeros, Ones, Constant, RandomNormal, TruncatedNormal, RandomUniform, VarianceScaling,
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Orthogonal)}
_BY_NAME: dict[str, type] = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "truncated_normal": TruncatedNormal, "random_uniform": RandomUniform,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal, "orthogonal": Orthogonal,
}


def get(identifier: Any) -> Initializer:
    """An initializer from a Keras name ("he_normal"), a class name ("HeNormal"), a serialized
    dict ``{"class_name": "RandomNormal", "config": {"stddev": 0.1}}``, an initializer object or
    any callable(shape) -> array (passed through)."""
    if callable(identifier):
        return identifier
    if isinstance(identifier, dict) and set(identifier) == {"class_name", "config"}:
        cls = _CLASSES.get(identifier["class_name"]) or _BY_NAME.get(identifier["class_name"])
        if cls is not None and isinstance(identifier["config"], dict):
            return cls.from_config(identifier["config"])
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or _CLASSES.get(identifier)
        if cls is not None:
            return cls()
    raise ValueError(f"unknown initializer {identifier!r}; known: {sorted(_BY_NAME)}")


def serialize(initializer: Any) -> Any:
    """A JSON-ready form that :func:`get` reads back: the string itself, or
    ``{"class_name", "config"}`` for an initializer object."""
    if isinstance(initializer, str):
        return initializer
    if isinstance(initializer, Initializer_):
        return {"class_name": type(initializer).__name__, "config": initializer.get_config()}
    raise ValueError(f"initializer {initializer!r} is a custom callable and cannot be serialized")
