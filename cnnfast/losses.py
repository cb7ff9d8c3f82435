"""Losses with Keras names. Each returns the mean loss over the batch and writes its gradient.

When the model ends in a softmax and the loss is categorical cross-entropy, the model fuses the
two (`fuses_softmax`): the gradient with respect to the logits is (p - y) / N, computed from
the logits in one numerically stable kernel. Binary cross-entropy is fused with a sigmoid
output the same way (`fuses_sigmoid`): the gradient with respect to the logits is
(sigmoid(z) - y) / n.

Losses with options (``from_logits``, ``label_smoothing``, ``delta``) give them back from
``get_config``; :func:`serialize` and :func:`deserialize` store a loss in a saved model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnfast import _core


class Loss:
    """Base class: ``compute(grad, pred, y)`` returns the batch loss (the mean of the per-sample
    losses) and writes d(loss)/d(pred) into ``grad`` unless it is None. A loss that fuses with
    the output activation also has ``compute_from_logits(grad, logits, y)``, whose gradient is
    with respect to the logits."""

    name = "loss"
    fuses_softmax = False
    fuses_sigmoid = False
    sparse_labels = False
    # Targets one axis short of an output whose last axis is 1 (y of shape (N,) for a
    # Dense(1) output) gain that axis, as Keras's squeeze_or_expand_to_same_rank does.
    expands_targets = False

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (Keras names) that rebuild this loss."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        return cls(**config)

    def has_default_config(self) -> bool:
        """True when every option has its default value (the C++ train plan runs only those)."""
        return self.get_config() == type(self)().get_config()

    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
        """Validate and convert targets for a model whose per-sample output is output_shape."""
        y = np.asarray(y)
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: targets must be numeric, got dtype {y.dtype}")
        output_shape = tuple(output_shape)
        if self.expands_targets and output_shape[-1:] == (1,) and y.ndim >= 1 \
                and y.shape[1:] == output_shape[:-1]:
            y = y[..., None]
        if y.shape[1:] != output_shape:
            raise ValueError(
                f"{self.name}: targets of shape {y.shape} do not match the model output "
                f"(None, {', '.join(map(str, output_shape))})"
            )
        return np.ascontiguousarray(y, np.float32)

    def compute(self, grad: np.ndarray | None, pred: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def __call__(self, y_true, y_pred) -> float:
        """Mean loss of predictions y_pred against y_true (Keras argument order)."""
        pred = np.ascontiguousarray(y_pred, np.float32)
        return float(self.compute(None, pred, self.check_targets(y_true, pred.shape[1:])))


def _check_flag(value: Any, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be True or False, got {value!r}")
    return bool(value)


def _check_smoothing(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


class CategoricalCrossentropy(Loss):
    """Cross-entropy against one-hot (or soft) targets, Keras's ``CategoricalCrossentropy``.

    Parameters
    ----------
    from_logits : bool
        The model outputs logits (no softmax): the loss applies a log-softmax. Otherwise it
        takes probabilities, renormalized and clipped to [1e-7, 1 - 1e-7] as in Keras; a softmax
        output layer is then fused with the loss (gradient with respect to its logits).
    label_smoothing : float
        s in [0, 1]: the targets become ``y * (1 - s) + s / classes``.
    """

    name = "categorical_crossentropy"
    # Class defaults too: a subclass whose __init__ skips ours keeps working.
    from_logits = False
    label_smoothing = 0.0

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        self.from_logits = _check_flag(from_logits, f"{type(self).__name__}: from_logits")
        self.label_smoothing = _check_smoothing(label_smoothing,
                                                f"{type(self).__name__}: label_smoothing")

    @property
    def fuses_softmax(self) -> bool:  # type: ignore[override]
        return not self.from_logits

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}

    def _smoothed(self, y: np.ndarray) -> np.ndarray:
        s = self.label_smoothing
        if not s:
            return y
        return (y * np.float32(1.0 - s) + np.float32(s / y.shape[-1])).astype(np.float32)

    def compute(self, grad, pred, y):
        if self.from_logits:
            return _core.softmax_xent(grad, None, pred, self._smoothed(y))
        return _core.categorical_xent(grad, pred, self._smoothed(y))

    def compute_from_logits(self, grad, logits, y):
        return _core.softmax_xent(grad, None, logits, self._smoothed(y))


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Cross-entropy against integer class labels, Keras's ``SparseCategoricalCrossentropy``.

    Parameters
    ----------
    from_logits : bool
        The model outputs logits (no softmax); otherwise probabilities, and a softmax output
        layer is fused with the loss.
    """

    name = "sparse_categorical_crossentropy"
    sparse_labels = True

    def __init__(self, from_logits: bool = False) -> None:
        super().__init__(from_logits=from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits}

    def check_targets(self, y, output_shape):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{self.name}: integer labels must have shape (N,), got {y.shape}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise ValueError(f"{self.name}: labels must be whole numbers")
        elif y.dtype.kind not in "iu":
            raise TypeError(f"{self.name}: labels must be integers, got dtype {y.dtype}")
        classes = output_shape[-1]
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(
                f"{self.name}: labels must lie in [0, {classes}), got range [{y.min()}, {y.max()}]"
            )
        return np.ascontiguousarray(y, np.int32)

    def compute(self, grad, pred, y):
        if self.from_logits:
            return _core.softmax_xent(grad, None, pred, y)
        onehot = np.zeros(pred.shape, np.float32)
        onehot[np.arange(len(y)), y] = 1.0
        return _core.categorical_xent(grad, pred, onehot)

    def compute_from_logits(self, grad, logits, y):
        return _core.softmax_xent(grad, None, logits, y)


class MeanSquaredError(Loss):
    """Mean over all elements of (pred - y)^2."""

    name = "mean_squared_error"

    def compute(self, grad, pred, y):
        return _core.mse(grad, pred, y)


class BinaryCrossentropy(Loss):
    """Binary cross-entropy of each output against a target in [0, 1], Keras's
    ``BinaryCrossentropy``: the mean over the last axis, then over the batch.

    Parameters
    ----------
    from_logits : bool
        The model outputs logits z (no sigmoid): the loss is
        ``max(z, 0) - z y + log(1 + exp(-|z|))``, exact for any z. Otherwise it takes
        probabilities p, clipped to [1e-7, 1 - 1e-7] as in Keras:
        ``-(y log p + (1 - y) log(1 - p))``; a ``Dense`` or ``Activation`` output layer with a
        sigmoid is then fused with the loss (gradient (sigmoid(z) - y) / n with respect to its
        logits, the value still the clipped one).
    label_smoothing : float
        s in [0, 1]: the targets become ``y * (1 - s) + s / 2``.
    """

    name = "binary_crossentropy"
    expands_targets = True
    from_logits = False
    label_smoothing = 0.0

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        self.from_logits = _check_flag(from_logits, "BinaryCrossentropy: from_logits")
        self.label_smoothing = _check_smoothing(label_smoothing,
                                                "BinaryCrossentropy: label_smoothing")

    @property
    def fuses_sigmoid(self) -> bool:  # type: ignore[override]
        return not self.from_logits

    def get_config(self) -> dict[str, Any]:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}

    def compute(self, grad, pred, y):
        if self.from_logits:
            return _core.binary_xent_logits(grad, pred, y, self.label_smoothing, False)
        return _core.binary_xent(grad, pred, y, self.label_smoothing)

    def compute_from_logits(self, grad, logits, y):
        return _core.binary_xent_logits(grad, logits, y.reshape(logits.shape),
                                        self.label_smoothing, True)


class MeanAbsoluteError(Loss):
    """Mean over all elements of |pred - y|, Keras's ``MeanAbsoluteError``."""

    name = "mean_absolute_error"
    expands_targets = True

    def compute(self, grad, pred, y):
        return _core.mean_absolute_error(grad, pred, y)


class Huber(Loss):
    """Keras's ``Huber`` loss: with e = pred - y, ``0.5 e^2`` where ``|e| <= delta``, else
    ``delta (|e| - 0.5 delta)``; the mean over all elements.

    Parameters
    ----------
    delta : float
        Where the loss turns from quadratic to linear (positive).
    """

    name = "huber"
    expands_targets = True
    delta = 1.0

    def __init__(self, delta: float = 1.0) -> None:
        if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating,
                                                            np.integer)) \
                or not np.isfinite(delta) or delta <= 0:
            raise ValueError(f"Huber: delta must be a positive number, got {delta!r}")
        self.delta = float(delta)

    def get_config(self) -> dict[str, Any]:
        return {"delta": self.delta}

    def compute(self, grad, pred, y):
        return _core.huber(grad, pred, y, self.delta)


class KLDivergence(Loss):
    """Kullback-Leibler divergence ``sum(y log(y / p))`` over the last axis, y and p clipped to
    [1e-7, 1] as in Keras's ``KLDivergence``; the mean over the other axes."""

    name = "kl_divergence"

    def compute(self, grad, pred, y):
        return _core.kl_divergence(grad, pred, y)


class CategoricalHinge(Loss):
    """Keras's ``CategoricalHinge``: ``max(max((1 - y) p) - sum(y p) + 1, 0)`` over the last
    axis, against one-hot targets; the mean over the other axes."""

    name = "categorical_hinge"

    def compute(self, grad, pred, y):
        return _core.categorical_hinge(grad, pred, y)


# -- Keras's function forms: fn(y_true, y_pred) -> per-sample losses; compile takes them too ----

_EPSILON = 1e-7  # Keras's backend epsilon: probabilities are clipped to [eps, 1 - eps]


def _pred_f32(y_pred, what: str) -> np.ndarray:
    p = np.asarray(y_pred)
    if p.dtype.kind not in "fiub":
        raise TypeError(f"{what}: y_pred must be numeric, got dtype {p.dtype}")
    if p.ndim < 1:
        raise ValueError(f"{what}: y_pred must have a class axis, got shape {p.shape}")
    return p.astype(np.float32)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - np.max(z, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1) -> np.ndarray:
    """Per-sample categorical cross-entropy, Keras's function: ``-sum(y * log(p))`` over
    `axis`, with ``p = y_pred / sum(y_pred)`` clipped to [1e-7, 1 - 1e-7] (or
    ``log_softmax(y_pred)`` with ``from_logits``); ``label_smoothing`` s turns the targets
    into ``y * (1 - s) + s / classes``. Returns float32 of y_pred's shape without `axis`.

    Given to ``compile`` it stands for ``CategoricalCrossentropy()`` (from probabilities).
    """
    what = "categorical_crossentropy"
    p = _pred_f32(y_pred, what)
    y = np.asarray(y_true, np.float32)
    if y.shape != p.shape:
        raise ValueError(f"{what}: y_true {y.shape} and y_pred {p.shape} must have the same "
                         "shape")
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / y.shape[axis]
    if from_logits:
        log_p = _log_softmax(np.moveaxis(p, axis, -1))
        return (-np.sum(np.moveaxis(y, axis, -1) * log_p, axis=-1)).astype(np.float32)
    p = p / np.sum(p, axis=axis, keepdims=True)
    p = np.clip(p, _EPSILON, 1.0 - _EPSILON)
    return (-np.sum(y * np.log(p), axis=axis)).astype(np.float32)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                                    axis: int = -1) -> np.ndarray:
    """Per-sample cross-entropy against integer labels ``y_true`` (shape of y_pred without the
    class axis, or with it of size 1): :func:`categorical_crossentropy` of their one-hot rows.

    Given to ``compile`` it stands for ``SparseCategoricalCrossentropy()``.
    """
    what = "sparse_categorical_crossentropy"
    p = _pred_f32(y_pred, what)
    labels = np.asarray(y_true)
    if labels.ndim == p.ndim and labels.shape[axis] == 1:
        labels = np.squeeze(labels, axis=axis)
    classes = p.shape[axis]
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise ValueError(f"{what}: labels must be whole numbers")
    elif labels.dtype.kind not in "iu":
        raise TypeError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{what}: labels must lie in [0, {classes}), got range "
                         f"[{labels.min()}, {labels.max()}]")
    onehot = np.moveaxis(np.eye(classes, dtype=np.float32)[labels], -1, axis)
    return categorical_crossentropy(onehot, p, from_logits=from_logits, axis=axis)


def mean_squared_error(y_true, y_pred) -> np.ndarray:
    """Per-sample mean squared error, Keras's function: ``mean((y_true - y_pred)^2)`` over the
    last axis (float32). Given to ``compile`` it stands for ``MeanSquaredError()``."""
    p = _pred_f32(y_pred, "mean_squared_error")
    y = np.asarray(y_true, np.float32)
    if y.shape != p.shape:
        raise ValueError(f"mean_squared_error: y_true {y.shape} and y_pred {p.shape} must have "
                         "the same shape")
    return np.mean(np.square(y - p), axis=-1)


mse = MSE = mean_squared_error


def _pair_f64(y_true, y_pred, what: str) -> tuple[np.ndarray, np.ndarray]:
    """y_true and y_pred as float64 arrays of one shape (float32 inputs, as the kernels see
    them), else an error naming the loss and both shapes."""
    p = _pred_f32(y_pred, what).astype(np.float64)
    y = np.asarray(y_true)
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{what}: y_true must be numeric, got dtype {y.dtype}")
    y = y.astype(np.float32).astype(np.float64)
    if y.shape != p.shape:
        raise ValueError(f"{what}: y_true {y.shape} and y_pred {p.shape} must have the same "
                         "shape")
    return y, p


def binary_crossentropy(y_true, y_pred, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1) -> np.ndarray:
    """Per-sample binary cross-entropy, Keras's function: the mean over `axis` of
    ``-(y log p + (1 - y) log(1 - p))`` with p clipped to [1e-7, 1 - 1e-7] (or, with
    ``from_logits``, ``max(z, 0) - z y + log(1 + exp(-|z|))``); ``label_smoothing`` s turns the
    targets into ``y * (1 - s) + s / 2``. Returns float32 of y_pred's shape without `axis`.

    Given to ``compile`` it stands for ``BinaryCrossentropy()`` (from probabilities).
    """
    what = "binary_crossentropy"
    y, p = _pair_f64(y_true, y_pred, what)
    s = _check_smoothing(label_smoothing, f"{what}: label_smoothing")
    y = y * (1.0 - s) + 0.5 * s
    if _check_flag(from_logits, f"{what}: from_logits"):
        bce = np.maximum(p, 0.0) - p * y + np.log1p(np.exp(-np.abs(p)))
    else:
        c = np.clip(p, _EPSILON, 1.0 - _EPSILON)
        bce = -(y * np.log(c) + (1.0 - y) * np.log(1.0 - c))
    return np.mean(bce, axis=axis).astype(np.float32)


def mean_absolute_error(y_true, y_pred) -> np.ndarray:
    """Per-sample mean absolute error, Keras's function: ``mean(|y_true - y_pred|)`` over the
    last axis (float32). Given to ``compile`` it stands for ``MeanAbsoluteError()``."""
    y, p = _pair_f64(y_true, y_pred, "mean_absolute_error")
    return np.mean(np.abs(y - p), axis=-1).astype(np.float32)


def huber(y_true, y_pred, delta: float = 1.0) -> np.ndarray:
    """Per-sample Huber loss, Keras's function: with e = y_pred - y_true, the mean over the last
    axis of ``0.5 e^2`` where ``|e| <= delta``, else ``delta (|e| - 0.5 delta)`` (float32).
    Given to ``compile`` it stands for ``Huber()``."""
    delta = Huber(delta).delta
    y, p = _pair_f64(y_true, y_pred, "huber")
    a = np.abs(p - y)
    return np.mean(np.where(a <= delta, 0.5 * a * a, delta * (a - 0.5 * delta)),
                   axis=-1).astype(np.float32)


def kl_divergence(y_true, y_pred) -> np.ndarray:
    """Per-sample Kullback-Leibler divergence, Keras's function: ``sum(y log(y / p))`` over the
    last axis with y and p clipped to [1e-7, 1] (float32). Given to ``compile`` it stands for
    ``KLDivergence()``."""
    y, p = _pair_f64(y_true, y_pred, "kl_divergence")
    y = np.clip(y, _EPSILON, 1.0)
    p = np.clip(p, _EPSILON, 1.0)
    return np.sum(y * np.log(y / p), axis=-1).astype(np.float32)


def categorical_hinge(y_true, y_pred) -> np.ndarray:
    """Per-sample categorical hinge, Keras's function: ``max(neg - pos + 1, 0)`` with
    ``pos = sum(y p)`` and ``neg = max((1 - y) p)`` over the last axis (float32). Given to
    ``compile`` it stands for ``CategoricalHinge()``."""
    y, p = _pair_f64(y_true, y_pred, "categorical_hinge")
    pos = np.sum(y * p, axis=-1)
    neg = np.max((1.0 - y) * p, axis=-1)
    return np.maximum(neg - pos + 1.0, 0.0).astype(np.float32)


mae = MAE = mean_absolute_error
kld = KLD = kl_divergence

# Each function form stands for its class in compile.
_FUNCTIONS = {
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    mean_squared_error: MeanSquaredError,
    binary_crossentropy: BinaryCrossentropy,
    mean_absolute_error: MeanAbsoluteError,
    huber: Huber,
    kl_divergence: KLDivergence,
    categorical_hinge: CategoricalHinge,
}

# Keras's string names (and its short aliases) for compile; each class's `name` is among them.
_BY_NAME = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "MSE": MeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "BCE": BinaryCrossentropy,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "MAE": MeanAbsoluteError,
    "huber": Huber,
    "kl_divergence": KLDivergence,
    "kld": KLDivergence,
    "KLD": KLDivergence,
    "categorical_hinge": CategoricalHinge,
}


def serialize(loss: Loss) -> str | dict[str, Any]:
    """How a saved model stores `loss`: its name when every option has its default (files stay
    readable by older versions), else ``{"name": ..., "config": {...}}``. Raises ValueError
    for a loss that is not one of this module's classes."""
    if _BY_NAME.get(loss.name) is not type(loss):
        raise ValueError(f"loss {type(loss).__name__} cannot be stored by name")
    if loss.has_default_config():
        return loss.name
    return {"name": loss.name, "config": loss.get_config()}


def deserialize(obj: Any) -> Loss:
    """The loss that :func:`serialize` stored. Raises ValueError (or TypeError for a config with
    wrong types) naming what is wrong."""
    if isinstance(obj, str):
        return get(obj)
    if not isinstance(obj, dict) or set(obj) != {"name", "config"} \
            or not isinstance(obj["config"], dict):
        raise ValueError(f"a loss must be a name or {{'name': ..., 'config': {{...}}}}, got "
                         f"{obj!r}")
    cls = _BY_NAME.get(obj["name"]) if isinstance(obj["name"], str) else None
    if cls is None:
        raise ValueError(f"unknown loss {obj['name']!r}; known: {sorted(_BY_NAME)}")
    try:
        return cls.from_config(obj["config"])
    except TypeError as err:
        raise ValueError(f"invalid config for loss {obj['name']!r}: {err}") from None


def get(identifier: str | Loss) -> Loss:
    """The loss for a Keras name (``"binary_crossentropy"``, ``"mae"``, ...), one of this
    module's functions or classes, or a loss object (returned as is).

    Raises
    ------
    ValueError
        An unknown name; the message lists the known ones.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]()
    try:
        return _BY_NAME[identifier]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {identifier!r}; known: {sorted(_BY_NAME)}") from None
