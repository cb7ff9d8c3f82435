"""Sequential model with the Keras training API: compile, fit, evaluate, predict, summary."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import math
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from cnnfast import _core, _executor, _sealing, graph, mixed_precision, regularizers
from cnnfast import callbacks as callbacks_module
from cnnfast import layers as layers_module
from cnnfast import losses as losses_module
from cnnfast import metrics as metrics_module
from cnnfast import optimizers as optimizers_module
from cnnfast import random as cf_random
from cnnfast.data import Augmentation, BatchIterator
from cnnfast.graph import SymbolicTensor
from cnnfast.layers import Dense, InputLayer, Layer, RandomLayer

Shape = tuple[int, ...]

METRICS = ("accuracy", "acc", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy")
# Keras metric names that cnnfast knows of but does not compute: refused as not implemented
# rather than as unknown (misspelled) names.
_KERAS_ONLY_METRICS = (
    "auc", "binary_accuracy", "categorical_accuracy", "categorical_crossentropy", "cosine_similarity",
    "f1_score", "hinge", "kl_divergence", "mae", "mape", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_error", "mse", "precision", "recall",
    "sparse_categorical_accuracy",
)


def _as_float_array(x: Any, what: str) -> np.ndarray:
    """float32 C-contiguous view or copy of a numeric array; a clear error otherwise."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, np.float32)


def _as_array(data: Any, what: str, name: str) -> np.ndarray:
    """np.asarray(data), with NumPy's "inhomogeneous shape" error told in the caller's terms."""
    try:
        return np.asarray(data)
    except ValueError as err:
        raise ValueError(
            f"{what}: {name} cannot be made into one array ({err}); give arrays, or an iterable "
            "of (x, y) batches (a generator, a DataLoader, a cnnfast.data.BatchIterator)"
        ) from None


def _shape_hint(got: Shape, expected: Shape) -> str:
    """The likely fix when samples of shape `got` reach a model expecting `expected`."""
    if len(expected) == 3 and len(got) == 3 and got != expected:
        h, w, c = expected
        if got == (c, h, w):
            return (" The data looks channels-first (N, C, H, W); cnnfast, like Keras, takes "
                    "channels-last (N, H, W, C): pass x.transpose(0, 2, 3, 1).")
    if len(expected) >= 2 and expected[-1] == 1 and got == expected[:-1]:
        return (" The data has no channel axis: add one with x[..., None] to get shape "
                f"(N, {', '.join(map(str, expected))}).")
    return ""


def _describe(value: Any) -> str:
    """What a batch turned out to be, for error messages."""
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return f"a {type(value).__name__}"


def _is_batch_source(data: Any) -> bool:
    """Whether `data` comes as batches (an iterable of (x, y) pairs) rather than as one array.

    Arrays, anything NumPy converts through ``__array__`` (torch tensors) and plain lists of
    samples are array data; a BatchIterator, a generator or other iterator, an object with
    ``__iter__`` (a DataLoader) and a list of (x, y) tuples are batches.
    """
    if isinstance(data, BatchIterator):
        return True
    if isinstance(data, (np.ndarray, str, bytes, dict)) or hasattr(data, "__array__") \
            or hasattr(data, "__array_interface__"):
        return False
    if isinstance(data, (list, tuple)):
        return isinstance(data, list) and bool(data) and all(isinstance(b, tuple) for b in data)
    return isinstance(data, (Iterable, Iterator))


def _check_count(value: Any, what: str, name: str) -> int | None:
    """None or a positive int (steps_per_epoch, validation_steps, steps)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{what}: {name} must be a positive integer or None, got {value!r}")
    return int(value)


def _check_batch_size(batch_size: Any, what: str) -> int:
    if batch_size is None:
        return 32  # Keras's default
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size <= 0:
        raise ValueError(f"{what}: batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _verbosity(verbose: int | str) -> int:
    return 1 if verbose == "auto" else int(verbose)


def _check_callbacks(callbacks: Any, what: str) -> list[callbacks_module.Callback]:
    """The callbacks as a list, with a plain TypeError for the usual slips."""
    if callbacks is None:
        return []
    if isinstance(callbacks, type):
        raise TypeError(f"{what}: callbacks must be a list of callback instances, got the class "
                        f"{callbacks.__name__}; create one: callbacks=[{callbacks.__name__}(...)]")
    if isinstance(callbacks, callbacks_module.Callback):
        name = type(callbacks).__name__
        raise TypeError(f"{what}: callbacks must be a list, got a single {name}; "
                        f"pass callbacks=[{name}(...)]")
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"{what}: callbacks must be a list of callbacks, got {_describe(callbacks)}")
    for i, cb in enumerate(callbacks):
        if isinstance(cb, type):
            raise TypeError(f"{what}: callbacks[{i}] is the class {cb.__name__}, not an instance; "
                            f"write {cb.__name__}(...)")
        if not isinstance(cb, callbacks_module.Callback):
            raise TypeError(f"{what}: callbacks[{i}] is {_describe(cb)}, not a callback (a "
                            "cnnfast.callbacks.Callback instance)")
    return list(callbacks)


def _check_class_weight(class_weight: Any, what: str) -> dict[int, float]:
    if not isinstance(class_weight, dict):
        raise TypeError(f"{what}: class_weight must be a dict {{class index: weight}}, "
                        f"got {_describe(class_weight)}")
    table = {}
    for c, w in class_weight.items():
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
            raise ValueError(f"{what}: class_weight keys must be class indices >= 0, got {c!r}")
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) \
                or not math.isfinite(w):
            raise ValueError(f"{what}: class_weight[{c}] must be a finite number, got {w!r}")
        table[int(c)] = float(w)
    return table


def _class_weights_of(table: dict[int, float], y: np.ndarray) -> np.ndarray:
    """Per-sample weights from converted targets: the class is the label, the argmax of a
    one-hot row, or the rounded value of a single output; classes not in the table weigh 1
    (Keras)."""
    if y.ndim == 1:
        classes = y.astype(np.int64)
    elif y.shape[-1] > 1:
        classes = y.reshape(len(y), -1).argmax(axis=1)
    else:
        classes = np.rint(y.reshape(len(y))).astype(np.int64)
    lookup = np.ones(max([*table, int(classes.max(initial=0))]) + 1)
    for c, w in table.items():
        lookup[c] = w
    return lookup[np.maximum(classes, 0)]


def _check_sample_weight(sample_weight: Any, n: int, what: str) -> np.ndarray:
    """Per-sample weights as float64 (N,); (N, 1) is accepted as Keras does."""
    w = _as_array(sample_weight, what, "sample_weight")
    if w.dtype.kind not in "fiub":
        raise TypeError(f"{what}: sample_weight must be numeric, got dtype {w.dtype}")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ValueError(f"{what}: sample_weight must have shape ({n},), one weight per sample, "
                         f"got {w.shape}")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what}: sample_weight holds NaN or inf")
    return w


_END = object()


class _BatchSource:
    """Batches drawn from an iterable by fit, evaluate and predict.

    Without `steps` an epoch is one pass, ``iter(data)``. With `steps` an epoch takes that many
    batches from one iterator that carries on across epochs, as in Keras. When the iterator
    runs out, a re-iterable (a BatchIterator, a DataLoader, a list) starts a new pass (Keras
    instead stops with a warning unless the data is a repeated tf.data set); a one-shot
    iterator (a generator) marks the source `exhausted`.
    """

    def __init__(self, data: Any, steps: Any, what: str, steps_name: str) -> None:
        self.data = data
        self.steps = _check_count(steps, what, steps_name)
        self.one_shot = isinstance(data, Iterator)
        try:
            self.length: int | None = len(data)
        except TypeError:
            self.length = None
        self.exhausted = False
        self._iterator: Iterator | None = None

    @property
    def total(self) -> int | None:
        """Batches per epoch when known (progress bar, callbacks' params)."""
        return self.steps if self.steps is not None else self.length

    def epoch(self) -> Iterator[Any]:
        if self.steps is None:
            yield from self.data
            if self.one_shot:
                self.exhausted = True
            return
        for _ in range(self.steps):
            batch = self._next()
            if batch is _END:
                return
            yield batch

    def _next(self) -> Any:
        for _ in range(2):  # a re-iterable gets one new pass; an empty one stops there
            if self._iterator is None:
                self._iterator = iter(self.data)
            try:
                return next(self._iterator)
            except StopIteration:
                self._iterator = None
                if self.one_shot:
                    break
        self.exhausted = True
        return _END


def _array_batches(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                   batch_size: int) -> Iterator[tuple]:
    """(x, y, w) slices of arrays, in order."""
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        yield x[start:stop], y[start:stop], None if weights is None else weights[start:stop]


class Model:
    """A network of layers trained with compile/fit like Keras: a graph built with the
    functional API, ``Model(inputs, outputs)``; :class:`Sequential` is the stack.

    >>> x = Input((32, 32, 3))
    >>> h = Conv2D(16, 3, padding="same", activation="relu")(x)
    >>> y = Add()([Conv2D(16, 3, padding="same")(h), h])
    >>> model = Model(x, Dense(10, activation="softmax")(Flatten()(y)))

    Layers are called on symbolic tensors (cnnfast.graph); a layer called twice shares its
    weights. ``model.layers`` lists each layer once, the InputLayer first and the output's
    layer last, in an order where every layer comes after the layers it reads.
    """

    precision = "float32"  # the products' precision in training (compile)

    def __init__(self, inputs: SymbolicTensor | None = None,
                 outputs: SymbolicTensor | None = None, name: str | None = None) -> None:
        self._init_state(name or "functional")
        for what, t in (("inputs", inputs), ("outputs", outputs)):
            if isinstance(t, (list, tuple)) and len(t) == 1:
                t = t[0]
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"Model: {what} must be a symbolic tensor (from Input(...) or a "
                                f"layer call), got {_describe(t)}; cnnfast models take one "
                                f"input and one output")
            if what == "inputs":
                inputs = t
            else:
                outputs = t
        if not isinstance(inputs.node.layer, InputLayer):
            raise TypeError(f"Model: inputs must come from Input(...), got {inputs.name}, the "
                             f"output of {inputs.node.layer.describe()}")
        self._set_graph(graph.collect(inputs, outputs))

    def _init_state(self, name: str) -> None:
        self.name = name
        self.layers: list[Layer] = []
        self.input_shape_: Shape | None = None
        self.built = False
        self.compiled = False
        self.stop_training = False
        self.history: callbacks_module.History | None = None
        self._used_names: set[str] = set()
        self._nodes: list[graph.Node] = []
        self._calls: dict[int, int] = {}  # calls per layer (id) in a graph; a stack calls each once

    def _set_graph(self, nodes: list[graph.Node]) -> None:
        """Adopt `nodes` (dependency order, the Input's node first, the output's node last)."""
        self._nodes = nodes
        layers: dict[int, Layer] = {}
        for node in nodes:
            layers.setdefault(id(node.layer), node.layer)
        out_layer = nodes[-1].layer
        self.layers = [l for l in layers.values() if l is not out_layer] + [out_layer]
        if len(nodes) > 1 and out_layer is nodes[0].layer:
            self.layers = [out_layer]
        self.input_shape_ = nodes[0].layer.declared_input_shape
        # Where each node reads its inputs: positions in the node list.
        position = {id(n): i for i, n in enumerate(nodes)}
        self._reads = [[position[id(t.node)] for t in n.inputs] for n in nodes]
        self._calls = {id(l): sum(n.layer is l for n in nodes) for l in self.layers}
        self.build()

    # -- building ---------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        raise TypeError(f"{type(self).__name__}.add: a functional model is fixed by its inputs "
                        "and outputs; build a new Model, or use Sequential to add layers")

    def build(self, input_shape: Sequence[int] | None = None) -> None:
        """Check every call's shapes (the layers were built by their symbolic calls)."""
        if input_shape is not None and tuple(input_shape) != self.input_shape_:
            raise ValueError(f"{self.name}: the graph was made for input {self.input_shape_}, "
                             f"build() got {tuple(input_shape)}")
        # A layer owes its input a gradient unless every call of it reads only the data.
        needs: dict[int, bool] = {}
        for node, reads in zip(self._nodes, self._reads):
            layer = node.layer
            needs[id(layer)] = needs.get(id(layer), False) or any(r != 0 for r in reads)
        for layer in self.layers:
            layer.need_input_grad = needs[id(layer)]
        self.output_shape_ = self._nodes[-1].output.sample_shape
        self.built = True

    def shapes(self) -> list[tuple[Layer, Any, Shape]]:
        """(layer, input shape, output shape) per call, in dependency order (the Input first);
        a merge layer's input shape is the list of its inputs' shapes."""
        rows = []
        for node in self._nodes:
            ins = [t.sample_shape for t in node.inputs]
            in_shape = ins if node.layer.takes_many_inputs else (ins[0] if ins else
                                                                 node.output.sample_shape)
            rows.append((node.layer, in_shape, node.output.sample_shape))
        return rows

    def _require_built(self) -> None:
        if not self.built:
            self.build()

    # -- weights ----------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        """Copies of every weight array, layer by layer (Keras order: kernel, then bias)."""
        self._require_built()
        return [w.copy() for layer in self.layers for w in layer.params()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Copy new values into every weight array (the order of :meth:`get_weights`)."""
        self._require_built()
        targets = [(layer, name, w) for layer in self.layers for name, w in layer.weights_.items()]
        if len(weights) != len(targets):
            raise ValueError(f"set_weights: model has {len(targets)} weight arrays, got {len(weights)}")
        converted = []
        for (layer, name, w), new in zip(targets, weights):
            new = np.asarray(new)
            if new.shape != w.shape:
                raise ValueError(
                    f"set_weights: {layer.describe()} weight '{name}' has shape {w.shape}, got {new.shape}"
                )
            converted.append(_as_float_array(new, f"set_weights {layer.describe()} '{name}'"))
        for (_, _, w), new in zip(targets, converted):
            np.copyto(w, new)

    @property
    def weights(self) -> list[np.ndarray]:
        """Every weight array, layer by layer (Keras order). These are the live arrays, as Keras
        returns its variables: writing into them changes the model."""
        self._require_built()
        return [w for layer in self.layers for w in layer.params()]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        """The live weight arrays of the trainable layers, in model order."""
        self._require_built()
        return [layer.weights_[n] for layer in self.layers for n in layer.trainable_names()]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        """The live weight arrays no optimizer updates: the frozen layers' (``layer.trainable =
        False``) and the statistics a layer updates itself (BatchNormalization's moving ones)."""
        self._require_built()
        return [w for layer in self.layers for n, w in layer.weights_.items()
                if n not in layer.trainable_names()]

    def count_params(self) -> int:
        self._require_built()
        return sum(layer.num_params() for layer in self.layers)

    def _trainable(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        params, grads = [], []
        for layer in self.layers:
            for n in layer.trainable_names():
                params.append(layer.weights_[n])
                grads.append(layer.gradients_[n])
        return params, grads

    # -- parameter arenas -------------------------------------------------------------------
    def _arena_key(self) -> tuple:
        return tuple((id(layer), layer.trainable, id(w)) for layer in self.layers
                     for w in layer.weights_.values())

    def _pack_parameters(self) -> None:
        """Put every weight in one aligned float32 arena and every gradient in another, the
        layers' arrays becoming views into them: the trainable ones first, in the optimizer's
        order, so one update call covers them all and ``flat_gradients()`` is one contiguous
        buffer (for an allreduce). Values are kept; runs again only when layers, weight arrays
        or trainable flags change."""
        if self.__dict__.get("_packed_key") == self._arena_key():
            return
        entries = [(layer, name) for layer in self.layers for name in layer.trainable_names()]
        trainable = len(entries)
        entries += [(layer, name) for layer in self.layers for name in layer.weights_
                    if name not in layer.trainable_names()]
        offsets, end = [], 0
        for layer, name in entries:
            offsets.append(end)
            end += -(-layer.weights_[name].size // _ARENA_ALIGN) * _ARENA_ALIGN
        weights, grads = _aligned_zeros(end), _aligned_zeros(end)
        for (layer, name), start in zip(entries, offsets):
            w = layer.weights_[name]
            for arena, store in ((weights, layer.weights_), (grads, layer.gradients_)):
                view = arena[start:start + w.size].reshape(w.shape)
                view[...] = store[name]
                store[name] = view
        self._weight_arena, self._grad_arena = weights, grads
        self._trainable_floats = offsets[trainable] if trainable < len(entries) else end
        self._trainable_layout = [(start, layer.weights_[name].shape)
                                  for (layer, name), start in zip(entries[:trainable], offsets)]
        self._packed_key = self._arena_key()

    def flat_gradients(self) -> np.ndarray:
        """The gradients of every trainable weight as one contiguous float32 view (no copy),
        in the order of ``trainable_weights``, each tensor starting on a 64-byte boundary (the
        gaps hold zeros). After a training step it holds that step's gradients; summing it
        across processes (an allreduce) before the update is data-parallel training."""
        self._require_built()
        self._pack_parameters()
        return self._grad_arena[:self._trainable_floats]

    def flat_weights(self) -> np.ndarray:
        """Every trainable weight as one contiguous float32 view (no copy), laid out as
        :meth:`flat_gradients`; writing into it changes the model."""
        self._require_built()
        self._pack_parameters()
        return self._weight_arena[:self._trainable_floats]

    # -- Keras attributes -------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """``(None, H, W, C)``: the input shape with the batch axis, as Keras gives it
        (``input_shape_`` holds the per-sample shape)."""
        if self.input_shape_ is None:
            raise AttributeError(f"Sequential '{self.name}' has no input shape yet; start it with "
                                 "Input(shape) or call build(shape)")
        return (None, *self.input_shape_)

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        """``(None, ...)``: the output shape with the batch axis (from the shape formulas)."""
        if self.input_shape_ is None:
            raise AttributeError(f"Sequential '{self.name}' has no output shape until its input "
                                 "shape is known; start it with Input(shape) or call build(shape)")
        shape = self.output_shape_ if self.built else self.shapes()[-1][2] if self.layers \
            else self.input_shape_
        return (None, *shape)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called `name`, or at position `index` (Input excluded, as in Keras).

        Raises
        ------
        ValueError
            No such layer (the message lists the layer names), or neither or both arguments.
        """
        if (name is None) == (index is None):
            raise ValueError("get_layer: give either a layer name or an index")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                    not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"get_layer: index {index!r} is out of range; the model has "
                                 f"{len(self.layers)} layers")
            return self.layers[int(index)]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; the layers are "
                         f"{[layer.name for layer in self.layers]}")

    @property
    def metrics_names(self) -> list[str]:
        """``['loss', 'accuracy']`` after ``compile(metrics=['accuracy'])``, else ``['loss']``:
        the names of ``evaluate``'s values (Keras 2's list; Keras 3 reports 'compile_metrics')."""
        return ["loss", *getattr(self, "metrics", [])]

    # -- compile ----------------------------------------------------------------------------
    def compile(self, optimizer: str | optimizers_module.Optimizer = "rmsprop",
                loss: str | losses_module.Loss = "categorical_crossentropy",
                metrics: Iterable[str] | None = None, precision: str | None = None) -> None:
        """Choose optimizer (default RMSprop, as in Keras), loss, metrics and the precision of
        training's products.

        Parameters
        ----------
        precision
            ``"float32"`` (the default), or ``"bfloat16"`` (also spelled ``"mixed_bfloat16"``,
            Keras' policy name) for mixed-precision training: in each training step the
            convolutions' and dense layers' products (forward, and the gradients of inputs and
            weights) take bfloat16 operands with float32 sums, on the CPU's AVX512-BF16
            instructions where it has them; the weights, their gradients, the optimizer state,
            every other layer, the loss and softmax stay float32. ``predict`` and ``evaluate``
            run float32. None takes ``cnnfast.keras.mixed_precision.global_policy()`` (float32
            unless set). On a CPU
            without AVX512-BF16 a portable kernel gives the same bits, several times slower
            than float32 (a RuntimeWarning says so).

        Raises
        ------
        ValueError
            An unknown metric name (the message lists the valid ones), an unknown precision, or
            a cross-entropy loss on a model whose output is not (None, classes).
        NotImplementedError
            A Keras metric that cnnfast does not compute.
        """
        if isinstance(metrics, str):
            raise TypeError(f"compile: metrics must be a list, e.g. metrics=[{metrics!r}], "
                            f"got the string {metrics!r}")
        objs = []
        for m in metrics or []:
            if isinstance(m, str) and m.lower() in _KERAS_ONLY_METRICS:
                raise NotImplementedError(f"compile: metric {m!r} is not implemented in cnnfast; "
                                          f"known: {list(METRICS)}")
            try:
                objs.append(metrics_module.get(m))
            except ValueError:
                if not isinstance(m, str):
                    raise NotImplementedError(
                        f"compile: metric {m!r} is not supported; use one of {list(METRICS)}, "
                        "a function of cnnfast.metrics or a metric object") from None
                close = difflib.get_close_matches(m.lower(), METRICS, n=1)
                guess = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"compile: unknown metric {m!r}{guess}; valid names: "
                                 f"{list(METRICS)}") from None
        names = [m.name for m in objs]
        if len(set(names)) != len(names):
            raise ValueError(f"compile: metrics must have distinct names, got {names}")
        self.precision = mixed_precision.resolve(precision, "compile")
        if self.precision == "bfloat16" and _core.sgemm_bf16_path() == "portable":
            warnings.warn("compile: this CPU has no AVX512-BF16 (or CNNFAST_SIMD caps it): "
                          "precision='bfloat16' computes the same products on a portable "
                          "kernel, several times slower than float32 training", RuntimeWarning,
                          stacklevel=2)
        self.optimizer = optimizers_module.get(optimizer)
        _sealing.unseal_model(self)  # trainable now: predict seals no more
        self.loss = losses_module.get(loss)
        self.metrics = names
        self._metric_objects = objs
        if not self.layers:
            raise ValueError("compile: the model has no layers")
        if self.input_shape_ is not None:
            self._check_output_for_loss("compile")
        self.compiled = True
        if self.built:  # training runs on arenas; make them before predict caches the arrays
            self._pack_parameters()

    def _check_output_for_loss(self, what: str) -> None:
        """Cross-entropy needs a (None, classes) output: a Dense on an image (no Flatten before
        it) outputs one vector per position, which the loss kernels would reject by their own
        names. Checked from the shape formulas, before anything runs."""
        if not isinstance(self.loss, losses_module.CategoricalCrossentropy):
            return
        rows = self.shapes()
        out = rows[-1][2] if rows else self.input_shape_
        if len(out) == 1:
            return
        shown = "(None, " + ", ".join(map(str, out)) + ")"
        for layer, in_shape, _ in rows:
            if isinstance(layer, Dense) and len(in_shape) > 1:
                raise ValueError(
                    f"{what}: {layer.describe()} receives input of shape (None, "
                    f"{', '.join(map(str, in_shape))}) and applies to its last axis only, so the "
                    f"model outputs {shown}; {self.loss.name} needs (None, classes). Add "
                    "Flatten() before it (Conv2D -> ... -> Flatten() -> Dense), as in Keras."
                )
        raise ValueError(f"{what}: {self.loss.name} needs a model output of shape (None, classes), "
                         f"the model outputs {shown}; end it with Flatten() and "
                         "Dense(classes, activation='softmax')")

    # -- data checks ------------------------------------------------------------------------
    def _check_x(self, x: Any, what: str, training: bool = False) -> np.ndarray:
        arr = _as_array(x, what, "x")
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{what}: inputs must be numeric, got dtype {arr.dtype}")
        if self.input_shape_ is None:
            self.build(arr.shape[1:])
        self._require_built()
        expected = self.input_shape_
        if arr.ndim != len(expected) + 1 or arr.shape[1:] != expected:
            first = self.layers[0].name if self.layers else "input"
            raise ValueError(
                f"{what}: input of layer '{first}' is incompatible: expected shape "
                f"(None, {', '.join(map(str, expected))}), got {arr.shape}."
                + _shape_hint(arr.shape[1:], expected)
            )
        if training:
            self._warn_raw_pixels(arr, what)
        return np.ascontiguousarray(arr, np.float32)

    def _warn_raw_pixels(self, x: np.ndarray, what: str) -> None:
        """Warn once per model when training on integers beyond 1 (raw 0-255 pixels): they
        train, but far worse than inputs scaled to [0, 1], and nothing else says why."""
        if x.dtype.kind not in "iu" or x.size == 0 or self.__dict__.get("_warned_raw_pixels"):
            return
        top = x.max()
        if top > 1:
            self._warned_raw_pixels = True
            warnings.warn(
                f"{what}: x holds integers up to {top} (dtype {x.dtype}), raw pixel values; "
                "networks train far better on inputs scaled to [0, 1]: divide by 255 "
                "(x.astype('float32') / 255, or BatchIterator(..., scale=1 / 255))",
                UserWarning, stacklevel=4)

    def _check_xy(self, x: Any, y: Any, what: str,
                  training: bool = False) -> tuple[np.ndarray, np.ndarray]:
        x = self._check_x(x, what, training)
        y_arr = _as_array(y, what, "y")
        if y_arr.ndim == 0 or len(y_arr) != len(x):
            raise ValueError(
                f"{what}: x and y have different numbers of samples: x {x.shape}, y {y_arr.shape}"
            )
        self._check_output_for_loss(what)
        try:
            return x, self.loss.check_targets(y_arr, self.output_shape_)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{what}: {err}") from None

    def _batch_arrays(self, batch: Any, what: str,
                      training: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(x, y, sample weights or None) of one batch from an iterable, checked like arrays;
        every error names the batch."""
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError(f"{what}: expected an (x, y) pair or (x, y, sample_weight), "
                             f"got {_describe(batch)}")
        x, y = self._check_xy(batch[0], batch[1], what, training)
        weights = None
        if len(batch) == 3 and batch[2] is not None:
            weights = _check_sample_weight(batch[2], len(x), what)
        return x, y, weights

    def _checked_batches(self, batches: Iterable[Any], what: str, training: bool,
                         class_weight: dict[int, float] | None = None) -> Iterator[tuple]:
        for i, batch in enumerate(batches, 1):
            x, y, w = self._batch_arrays(batch, f"{what}, batch {i}", training)
            if class_weight is not None:
                if w is not None:
                    raise ValueError(f"{what}, batch {i}: the batch has sample weights and fit "
                                     "got class_weight; give one or the other")
                w = _class_weights_of(class_weight, y)
            yield x, y, w

    def _sample_weights(self, sample_weight: Any, class_weight: dict[int, float] | None,
                        y: np.ndarray, what: str) -> np.ndarray | None:
        if sample_weight is not None:
            return _check_sample_weight(sample_weight, len(y), what)
        if class_weight is not None:
            return _class_weights_of(class_weight, y)
        return None

    # -- compute ----------------------------------------------------------------------------
    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """Each call in dependency order on its inputs' values. A layer called more than once
        keeps one set of buffers and saved inputs per call (swapped in around its forward and
        backward), so no call overwrites another's."""
        values: list[Any] = [x]
        self._saved: list[dict[str, Any] | None] = [None]
        for node, reads in zip(self._nodes[1:], self._reads[1:]):
            layer = node.layer
            ins = [values[r] for r in reads]
            shared = self._calls[id(layer)] > 1
            if shared:
                _swap_in(layer, self._state_of(node))
            values.append(layer.forward(ins if layer.takes_many_inputs else ins[0], training))
            self._saved.append(_swap_out(layer) if shared else None)
        return values[-1]

    def _state_of(self, node: graph.Node) -> dict[str, Any]:
        states = self.__dict__.setdefault("_call_states", {})
        return states.setdefault(id(node), {"_buffers": {}})

    def _backward(self, grad: np.ndarray) -> None:
        """Gradients flow back call by call; a value read by several calls gets the sum of
        their gradients, and a shared layer the sum of its calls' weight gradients."""
        count = len(self._nodes)
        grads: list[Any] = [None] * count
        grads[-1] = grad
        from_logits = self._fused_softmax()
        summed: dict[int, dict[str, np.ndarray]] = {}
        for i in range(count - 1, 0, -1):
            node, g = self._nodes[i], grads[i]
            layer = node.layer
            if g is None:
                continue  # nothing downstream needs this value
            shared = self._calls[id(layer)] > 1
            if shared:
                _swap_in(layer, self._saved[i])
            # With softmax + cross-entropy the loss gave d(loss)/d(logits): skip the softmax.
            dx = (layer.backward(g, activation_done=True) if from_logits and i == count - 1
                  else layer.backward(g))
            if shared:
                self._saved[i] = _swap_out(layer)
                acc = summed.get(id(layer))
                if acc is None:
                    summed[id(layer)] = {k: v.copy() for k, v in layer.gradients_.items()}
                else:
                    for k, v in layer.gradients_.items():
                        acc[k] += v
            if dx is None:
                continue
            parts = dx if layer.takes_many_inputs else [dx]
            for r, part in zip(self._reads[i], parts):
                if r == 0:
                    continue
                grads[r] = part if grads[r] is None else grads[r] + part
        for layer in self.layers:
            acc = summed.get(id(layer))
            if acc is not None:
                for k, v in acc.items():
                    np.copyto(layer.gradients_[k], v)

    def _output_layer(self) -> Layer:
        return self.layers[-1]

    def _fused_softmax(self) -> bool:
        """Softmax + cross-entropy (or sigmoid + binary cross-entropy) from the logits: the loss
        returns d(loss)/d(logits) and the output layer's backward skips its activation (its
        ``activation_done`` argument)."""
        if not getattr(self, "compiled", False):
            return False
        last = self._output_layer()
        if self._calls.get(id(last), 1) > 1:
            return False  # its activation also feeds other calls
        act = getattr(last, "act", None)
        if act is None or \
                "activation_done" not in inspect.signature(type(last).backward).parameters:
            return False
        if act.kind == "softmax":
            return self.loss.fuses_softmax
        # A convolution applies a sigmoid in its kernel and keeps no logits: only Dense and
        # Activation keep act.z, the pre-activation.
        return (act.kind == "sigmoid" and self.loss.fuses_sigmoid
                and isinstance(last, (Dense, layers_module.Activation)))

    def _loss_and_gradient(self, out: np.ndarray, y: np.ndarray, grad: np.ndarray | None) -> float:
        if self._fused_softmax():
            logits = self._output_layer().act.z
            return self.loss.compute_from_logits(grad, logits.reshape(len(y), -1), y)
        return self.loss.compute(grad, out, y)

    def _weighted_loss(self, out: np.ndarray, y: np.ndarray, grad: np.ndarray | None,
                       weights: np.ndarray | None) -> float:
        """The batch loss, with sample weights as Keras 3 applies them: sum(w_i l_i) / N (a mean
        over the batch size, not over the sum of weights), and gradient rows scaled by w_i."""
        loss = self._loss_and_gradient(out, y, grad)
        if weights is None:
            return loss
        n = len(y)
        if grad is not None:
            rows = grad.reshape(n, -1)
            rows *= weights.astype(np.float32)[:, None]
        return float(np.dot(self._per_sample_losses(out, y), weights) / n)

    def _per_sample_losses(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each sample's loss l_i (float64), from the loss kernels one row at a time: the kernels
        return only the batch mean, and the mean of one row is that row's loss."""
        n = len(y)
        if self._fused_softmax():
            logits = self._output_layer().act.z.reshape(n, -1)
            return np.array([self.loss.compute_from_logits(None, logits[i:i + 1], y[i:i + 1])
                             for i in range(n)], np.float64)
        return np.array([self.loss.compute(None, out[i:i + 1], y[i:i + 1]) for i in range(n)],
                        np.float64)

    def _train_step(self, xb: np.ndarray, yb: np.ndarray, where: str = "train_on_batch",
                    weights: np.ndarray | None = None) -> tuple[float, list[float]]:
        """One gradient step: (loss before the update, each metric's sum over the batch, from
        the output before the update). In C++ (one call) when the model has a train plan, else
        by walking the layers."""
        self._pack_parameters()
        plan = self._packed_train_plan()
        if plan is not None:
            return self._plan_step(plan, xb, yb, where, weights)
        dist = self.__dict__.get("_distributed")
        with mixed_precision.products_in(self.precision):
            out = self._forward(xb, training=True)
        grad = self._grad_buffer(out.shape)
        loss = self._weighted_loss(out, yb, grad, weights)
        if not math.isfinite(loss) and dist is None:
            _raise_non_finite(where, loss, len(xb))
        reg = 0.0
        if math.isfinite(loss):
            with mixed_precision.products_in(self.precision):
                self._backward(grad)
            for layer in self.layers:
                if layer.regularizers_:
                    reg += layer.regularization_loss()
                    layer.add_regularization_gradients()
        n = self._trainable_floats
        sums = self._metric_sums(out, yb)
        loss += reg
        if dist is not None:
            return self._distributed_update(dist, loss, sums, len(xb), where)
        self.optimizer.apply_flat(self._weight_arena[:n], self._grad_arena[:n],
                                  self._trainable_layout)
        return loss, sums

    def _distributed_update(self, dist: Any, loss: float, sums: list[float], n_local: int,
                            where: str) -> tuple[float, list[float]]:
        """Data-parallel (cnnfast/distributed.py): sum the ranks' gradients, loss and metric
        sums, then the same update on every rank; every rank updates, or every rank raises."""
        n = self._trainable_floats
        loss, sums = dist.reduce_step(self._grad_arena[:n], loss, sums, n_local)
        if not math.isfinite(loss):
            _raise_non_finite(where, loss, dist.batch_samples)
        self.optimizer.apply_flat(self._weight_arena[:n], self._grad_arena[:n],
                                  self._trainable_layout)
        return loss, sums

    def _metric_sums(self, out: np.ndarray | None, y: np.ndarray,
                     correct: int | None = None) -> list[float]:
        """Each compiled metric's sum of per-sample values over a batch; `correct`, when given,
        is the accuracy count already made (by the train plan), and `out` may then be None if
        no other metric needs it."""
        return [float(correct) if correct is not None and type(m) is metrics_module.Accuracy
                else m.batch_sum(out, y) for m in self._metric_objects]

    # -- the training step in C++ -----------------------------------------------------------
    # Which models train through _core.TrainPlan (src/cpp/plan/train_plan.cpp), one call per
    # batch: Model and Sequential themselves (not subclasses) whose layers are all of the exact
    # classes in layers.BUILTIN_LAYERS (shared layers of a graph included), compiled with a loss in
    # _PLAN_LOSSES and a built-in optimizer, with L1/L2 regularizers only. Everything else
    # (subclasses of cnnfast's layers, losses or optimizers, or _force_python_training set)
    # walks the Python layers, which stays the reference: tests/test_train_plan.py checks that
    # both give the same weights bit for bit.
    @property
    def _train_plan(self) -> Any | None:
        """The C++ training step of this compiled model, or None when it trains in Python (see
        :meth:`_train_plan_blocker`)."""
        self._require_compiled("_train_plan")
        self._require_built()
        self._pack_parameters()
        return self._packed_train_plan()

    def _packed_train_plan(self) -> Any | None:
        """The train plan once the arenas are packed: cached, and rebuilt when layers, weight
        arrays, trainable flags, loss, optimizer class or regularizers change."""
        regs = tuple((f"{layer.name}/{name}", reg.l1, reg.l2) for layer in self.layers
                     for name, reg in layer.regularizers_.items()
                     if isinstance(reg, regularizers.L1L2))
        key = (self._packed_key, id(self.loss), type(self.optimizer), regs,
               self.__dict__.get("_force_python_training", False), self.precision)
        cached = self.__dict__.get("_train_plan_cache")
        if cached is None or cached[0] != key:
            plan, dropouts = None, []
            if self._train_plan_blocker() is None:
                plan, dropouts = self._build_train_plan(regs)
            cached = (key, plan, dropouts)
            self._train_plan_cache = cached
        return cached[1]

    def _train_plan_blocker(self) -> str | None:
        """Why this model trains in Python rather than through a C++ train plan; None if it
        does not."""
        if self.__dict__.get("_force_python_training", False):
            return "forced (_force_python_training)"
        if type(self) not in (Model, Sequential):
            return f"{type(self).__name__} is a subclass of Model"
        if not self.input_shape_:
            return "the input has no per-sample axis"
        for layer in self.layers:
            if type(layer) not in layers_module.BUILTIN_LAYERS:
                return f"{layer.describe()} has no C++ training step"
            for name, reg in layer.regularizers_.items():
                if type(reg) not in (regularizers.L1L2, regularizers.L1, regularizers.L2):
                    return f"{layer.describe()} weight '{name}' has a custom regularizer"
        if type(self.loss) not in _PLAN_LOSSES:
            return f"loss {type(self.loss).__name__} has no C++ step"
        if not self.loss.has_default_config():
            return (f"loss {type(self.loss).__name__}({self.loss.get_config()}) has no C++ step "
                    "(only its defaults do)")
        if type(self.optimizer) not in optimizers_module._CLASSES:
            return f"optimizer {type(self.optimizer).__name__} has no C++ step"
        return None

    def _build_train_plan(self, regs: tuple) -> tuple[Any | None, list[RandomLayer]]:
        """The plan and its random layer calls (Dropout, GaussianNoise, SpatialDropout2D,
        RandomFlip) in the order it reads their seeds; (None, []) when
        its calls do not run in the order of the Python walk (the seeds would go to other
        layers, and gradients read by three calls or more would be summed in another order)."""
        views = [(f"{layer.name}/{name}", layer.weights_[name], layer.gradients_[name])
                 for layer in self.layers for name in layer.weights_]
        plan = _core.TrainPlan.from_config(
            json.dumps(self.get_config()), {k: w for k, w, _ in views},
            {k: g for k, _, g in views}, self._weight_arena, self._grad_arena,
            self._trainable_floats, list(regs), _PLAN_LOSSES[type(self.loss)],
            bf16_products=self.precision == "bfloat16")
        # A graph's calls in the order of _forward; the plan orders them likewise
        # (layer_config.h order_calls), and dropout seeds and gradient sums depend on it.
        calls = [node.layer for node in self._nodes[1:]] if self._nodes else self.layers
        if self._nodes and plan.calls != [layer.describe() for layer in calls]:
            return None, []
        drawing = [layer for layer in calls
                   if isinstance(layer, RandomLayer) and layer._draws_seed()]
        if plan.dropout_layers != [layer.describe() for layer in drawing]:
            return None, []
        return plan, drawing

    def _plan_step(self, plan: Any, xb: np.ndarray, yb: np.ndarray, where: str,
                   weights: np.ndarray | None) -> tuple[float, list[float]]:
        n = self._trainable_floats
        # The seeds, drawn exactly as the layers' forward draws them in the Python walk.
        seeds = [layer._draw_seed() for layer in self._train_plan_cache[2]]
        if weights is not None:
            weights = np.ascontiguousarray(weights, np.float64)
        s, (s0, s1, s2), bounds = self.optimizer._plan_update(self._weight_arena[:n],
                                                              self._trainable_layout)
        # Data-parallel (cnnfast/distributed.py): the plan stops at the gradients (reporting
        # each layer's as backward finishes it, to start their reduction), the ranks sum them,
        # then one update call; every rank updates, or every rank raises.
        dist = self.__dict__.get("_distributed")
        hook = None if dist is None else dist.begin_step(self._grad_arena[:n],
                                                         self._trainable_layout, len(xb))
        # Arguments spelled out (not *args/**kwargs): one plain call into the core.
        loss, correct, updated = plan.step(
            xb, yb, weights, np.array(seeds, np.uint64), s0, s1, s2, s["optimizer"], s["lr"],
            s["weight_decay"], s["iteration"], s["momentum"], s["nesterov"], s["beta_1"],
            s["beta_2"], s["epsilon"], s["rho"], s["centered"], s["u_product"], s["clipnorm"],
            s["clipvalue"], s["global_clipnorm"], bounds, dist is None, hook)
        if dist is not None:
            out = None
            if updated and any(type(m) is not metrics_module.Accuracy
                               for m in self._metric_objects):
                out = plan.last_output(len(xb))
            sums = (self._metric_sums(out, yb, correct) if updated
                    else [float("nan")] * len(self._metric_objects))
            return self._distributed_update(dist, loss, sums, len(xb), where)
        if not updated:
            _raise_non_finite(where, loss, len(xb))
        self.optimizer.iterations += 1
        out = None
        if any(type(m) is not metrics_module.Accuracy for m in self._metric_objects):
            out = plan.last_output(len(xb))
        return loss, self._metric_sums(out, yb, correct)

    def _grad_buffer(self, shape: Shape) -> np.ndarray:
        buf = getattr(self, "_loss_grad", None)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, np.float32)
            self._loss_grad = buf
        return buf

    def _require_compiled(self, what: str) -> None:
        if not getattr(self, "compiled", False):
            raise RuntimeError(f"{what}: the model must be compiled first; call model.compile(...)")


    # -- public training API ----------------------------------------------------------------
    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: int | str = "auto",
            callbacks: Sequence[callbacks_module.Callback] | None = None,
            validation_split: float = 0.0, validation_data: Any = None,
            shuffle: bool = True, class_weight: dict[int, float] | None = None,
            sample_weight: Any = None, initial_epoch: int = 0,
            steps_per_epoch: int | None = None, validation_steps: int | None = None,
            validation_batch_size: int | None = None,
            augment: Augmentation | None = None,
            distributed: bool | Any = False) -> callbacks_module.History:
        """Train for `epochs` epochs; returns a History (per-epoch loss/metrics).

        Parameters
        ----------
        x, y : arrays, or x an iterable of batches and y None
            Arrays (anything ``np.asarray`` converts, torch tensors included), or batches: a
            :class:`cnnfast.data.BatchIterator`, a generator, a DataLoader-like object (has
            ``__iter__``, maybe ``__len__``) or a list of tuples, each batch ``(x, y)`` or
            ``(x, y, sample_weight)``. Batches are used in the order given (``shuffle`` applies
            to arrays only).
        batch_size : int, default 32
            For arrays; an iterable decides its own batches.
        verbose : "auto", 0, 1 or 2
            1 a progress bar per epoch, 2 one line per epoch, 0 silent.
        callbacks : list of Callback
        validation_split : float
            The last fraction of array x/y (before shuffling) held out for validation (Keras).
        validation_data : (x_val, y_val), (x_val, y_val, sample_weight), or an iterable of batches
        class_weight : dict, optional
            Class index -> weight, turned into per-sample weights (classes not listed weigh 1).
        sample_weight : array (N,), optional
            Each sample's loss and gradient are scaled by its weight; the batch loss is
            sum(w_i l_i) / N, as in Keras 3. Accuracy stays unweighted, as Keras's compiled
            metrics do.
        steps_per_epoch : int, optional
            Batches per epoch. An iterator carries on from where the previous epoch stopped; a
            re-iterable starts a new pass when it runs out. Without it an epoch is one pass;
            a generator is then used up by the first epoch and training stops (a warning) if
            more epochs were asked for.
        validation_steps : int, optional
            Validation batches per epoch from an iterable `validation_data` (same rules).
        validation_batch_size : int, optional
            Batch size for array validation data (default: `batch_size`).
        augment : callable, optional
            cnnfast extension (e.g. ``cnnfast.data.cifar10_augmentation()``) applied in place to
            every training batch of array inputs, drawing from cnnfast's global generator.
        distributed : bool or cnnfast.distributed.MPIStrategy, default False
            cnnfast extension: train data-parallel across the ranks of an MPI job (every rank
            runs this same call on the same data). True uses ``MPIStrategy()`` (a timeout of
            300 s). `batch_size` is then the global batch, split across the ranks; the logs are
            those of the global batches; only rank 0 prints and writes files. See
            :mod:`cnnfast.distributed`.
        """
        self._require_compiled("fit")
        from cnnfast import distributed as distributed_module

        strategy = distributed_module.strategy_of(distributed)
        if strategy is None:
            return self._fit(x, y, batch_size, epochs, verbose, callbacks, validation_split,
                             validation_data, shuffle, class_weight, sample_weight, initial_epoch,
                             steps_per_epoch, validation_steps, validation_batch_size, augment)
        self._distributed = strategy
        strategy._synced_model = None  # weights and optimizer state: rank 0's, at every fit
        try:
            cf_random._mask_stream = strategy.rank
            with strategy.quiet_unless_root():
                strategy.broadcast_random_state()
                return self._fit(x, y, batch_size, epochs, verbose, callbacks, validation_split,
                                 validation_data, shuffle, class_weight, sample_weight,
                                 initial_epoch, steps_per_epoch, validation_steps,
                                 validation_batch_size, augment)
        except BaseException as err:
            strategy.fail_on_exception(err)  # aborts the job when other ranks wait on this one
            raise
        finally:
            self._distributed = None
            cf_random._mask_stream = 0

    def _fit(self, x: Any, y: Any, batch_size: int | None, epochs: int, verbose: int | str,
             callbacks: Sequence[callbacks_module.Callback] | None, validation_split: float,
             validation_data: Any, shuffle: bool, class_weight: dict[int, float] | None,
             sample_weight: Any, initial_epoch: int, steps_per_epoch: int | None,
             validation_steps: int | None, validation_batch_size: int | None,
             augment: Augmentation | None) -> callbacks_module.History:
        verbose = _verbosity(verbose)
        batch_size = _check_batch_size(batch_size, "fit")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative integer, got {epochs!r}")
        val_batch_size = (batch_size if validation_batch_size is None else
                          _check_batch_size(validation_batch_size, "fit validation_batch_size"))
        user_callbacks = _check_callbacks(callbacks, "fit")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        if class_weight is not None and sample_weight is not None:
            raise ValueError("fit: give class_weight or sample_weight, not both (as in Keras)")
        table = None if class_weight is None else _check_class_weight(class_weight, "fit")

        val: Any = None  # (x, y, w) arrays, or a _BatchSource
        if _is_batch_source(x):
            if validation_split:
                raise ValueError("fit: validation_split needs array data; with batches, pass "
                                 "validation_data=(x_val, y_val) or an iterable of batches")
            checked = isinstance(x, BatchIterator)  # cnnfast.data hook: checked once, not per batch
            if checked:
                x = self._check_batches(x, y, augment, sample_weight, table)
            else:
                self._check_iterable_args(y, augment, sample_weight)
            source = _BatchSource(x, steps_per_epoch, "fit", "steps_per_epoch")
        else:
            x, y = self._check_xy(x, y, "fit", training=True)
            weights = self._sample_weights(sample_weight, table, y, "fit")
            if validation_split > 0.0 and validation_data is None:
                split = int(len(x) * (1.0 - validation_split))
                if split == 0 or split == len(x):
                    raise ValueError(
                        f"fit: validation_split={validation_split} leaves an empty training or "
                        f"validation set for {len(x)} samples"
                    )
                val = (x[split:], y[split:], None if weights is None else weights[split:])
                x, y = x[:split], y[:split]
                weights = None if weights is None else weights[:split]
            if len(x) == 0:
                raise ValueError(f"fit: no training samples (x has shape {x.shape})")
            batches = BatchIterator(x, y, batch_size, shuffle=shuffle, augment=augment,
                                    sample_weight=weights)
            source = _BatchSource(batches, steps_per_epoch, "fit", "steps_per_epoch")
            checked = True
        if validation_data is not None:
            val = self._validation(validation_data, validation_steps)

        history = callbacks_module.History()
        # History last, as in Keras: it records what other callbacks add to the epoch's logs
        # (ReduceLROnPlateau's "learning_rate").
        cbs = [*user_callbacks, history]
        params = {"epochs": epochs, "steps": source.total, "verbose": verbose,
                  "batch_size": getattr(source.data, "batch_size", None)}
        for cb in cbs:
            cb.set_model(self)
            cb.set_params(params)
        self.stop_training = False
        self.history = history
        self._initial_epoch = None
        for cb in cbs:
            cb.on_train_begin()
        # BackupAndRestore sets where a restored run goes on (Keras: model._initial_epoch).
        if self._initial_epoch is not None:
            initial_epoch = max(initial_epoch, self._initial_epoch)

        with self._stop_on_interrupt():
            self._fit_epochs(source, None if checked else table, checked, val, val_batch_size,
                             epochs, initial_epoch, verbose, cbs)
        for cb in cbs:
            cb.on_train_end()
        return history

    def _validation(self, data: Any, steps: int | None) -> Any:
        """validation_data as (x, y, w) arrays or as a _BatchSource."""
        if _is_batch_source(data):
            return _BatchSource(data, steps, "fit", "validation_steps")
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise ValueError("fit: validation_data must be a tuple (x_val, y_val) or "
                             "(x_val, y_val, sample_weight), or an iterable of batches; "
                             f"got {_describe(data)}")
        x_val, y_val = self._check_xy(data[0], data[1], "fit validation_data")
        w_val = None
        if len(data) == 3 and data[2] is not None:
            w_val = _check_sample_weight(data[2], len(x_val), "fit validation_data")
        return x_val, y_val, w_val

    def _check_iterable_args(self, y: Any, augment: Any, sample_weight: Any) -> None:
        if y is not None:
            raise ValueError("fit: y must be None when x is an iterable of batches (each batch "
                             "holds its targets: (x, y) pairs)")
        if augment is not None:
            raise ValueError("fit: augment= applies to array data; augment the batches in the "
                             "iterable, or use a cnnfast.data.BatchIterator(..., augment=)")
        if sample_weight is not None:
            raise ValueError("fit: with an iterable of batches, give per-batch weights as each "
                             "batch's third item, (x, y, sample_weight)")

    @contextlib.contextmanager
    def _stop_on_interrupt(self):
        """Turn Ctrl-C during fit into a stop at the next batch boundary (a second Ctrl-C
        interrupts at once), so the weights are never left half-updated."""
        self._interrupted = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _check_batches(self, batches: BatchIterator, y: Any, augment: Augmentation | None,
                       sample_weight: Any, class_weight: dict[int, float] | None) -> BatchIterator:
        """Check a BatchIterator given to fit against the model; its targets converted."""
        if y is not None:
            raise ValueError("fit: y must be None when x is a BatchIterator (it holds the targets)")
        if batches.y is None:
            raise ValueError("fit: the BatchIterator has no targets; build it as BatchIterator(x, y, ...)")
        if augment is not None:
            raise ValueError("fit: pass augment= to the BatchIterator, not to fit")
        if sample_weight is not None:
            raise ValueError("fit: pass sample_weight= to the BatchIterator, not to fit")
        if class_weight is not None and batches.sample_weight is not None:
            raise ValueError("fit: the BatchIterator has sample weights and fit got class_weight; "
                             "give one or the other")
        self._check_x(batches.x[:0], "fit")  # shape check (and build) without converting x
        if batches.scale is None:
            self._warn_raw_pixels(batches.x, "fit")
        self._check_output_for_loss("fit")
        try:
            y = self.loss.check_targets(batches.y, self.output_shape_)
        except (TypeError, ValueError) as err:
            raise type(err)(f"fit: {err}") from None
        checked = batches.with_targets(y)
        if class_weight is not None:
            checked = checked.with_sample_weight(_class_weights_of(class_weight, y))
        return checked

    def _fit_epochs(self, source: _BatchSource, table: dict[int, float] | None, checked: bool,
                    val: Any, val_batch_size: int, epochs: int, initial_epoch: int, verbose: int,
                    cbs: list[callbacks_module.Callback]) -> None:
        """The epoch loop; batches of a `checked` source are used as they come, others are
        checked (and given class weights from `table`) one by one."""
        val_warned = False
        dist = self.__dict__.get("_distributed")
        for epoch in range(initial_epoch, epochs):
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", flush=True)
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            bar = callbacks_module.ProgressBar(source.total, verbose)
            loss_sum, sums, seen, step = 0.0, [0.0] * len(self.metrics), 0, 0
            logs: dict[str, float] = {}
            batches: Iterable[Any] = source.epoch()
            if dist is not None:
                batches = dist.shard_batches(batches)
            if not checked:
                batches = self._checked_batches(batches, f"fit: epoch {epoch + 1}", True, table)
            for step, batch in enumerate(batches, 1):
                xb, yb, *rest = batch
                wb = rest[0] if rest else None
                where = f"fit: epoch {epoch + 1}, batch {step}"
                if dist is not None:
                    dist.where = where
                    dist.broadcast_model(self)
                for cb in cbs:
                    cb.on_train_batch_begin(step - 1)
                try:
                    loss, step_sums = self._train_step(xb, yb, where, wb)
                except NonFiniteLossError as err:
                    # TerminateOnNaN sees the loss in the batch's logs and stops the training
                    # (nothing was updated); without it the error goes up.
                    if not any(isinstance(cb, callbacks_module.TerminateOnNaN) for cb in cbs):
                        raise
                    non_finite, loss, step_sums = err, err.loss, [float("nan")] * len(sums)
                else:
                    non_finite = None
                n = len(xb) if dist is None else dist.batch_samples
                loss_sum += loss * n
                seen += n
                logs = {"loss": loss_sum / seen}
                sums = [a + b for a, b in zip(sums, step_sums)]
                logs.update({name: total / seen for name, total in zip(self.metrics, sums)})
                for cb in cbs:
                    cb.on_train_batch_end(step - 1, logs)
                if non_finite is not None and not self.stop_training:
                    raise non_finite
                bar.update(step, seen, logs, final=False)
                if self._interrupted:
                    self.stop_training = True
                    print(f"\nInterrupted: stopped after epoch {epoch + 1}, batch {step}; "
                          "the model holds the weights of that step.", file=sys.stderr)
                if dist is not None:  # one rank stopping (a callback, Ctrl-C) stops them all
                    self.stop_training = dist.agree(self.stop_training)
                if self.stop_training:
                    break
            if step == 0:
                if epoch == initial_epoch:
                    raise ValueError("fit: the training data yielded no batches")
                self._warn_out_of_data(epoch)
                break
            if val is not None:
                result = (self._validate(val, val_batch_size) if dist is None else
                          self._validate_distributed(dist, val, val_batch_size))
                if result is not None:
                    logs["val_loss"] = result[0]
                    logs.update({f"val_{name}": v for name, v in zip(self.metrics, result[1:])})
                elif not val_warned:
                    val_warned = True
                    warnings.warn(
                        f"fit: validation_data yielded no batches at epoch {epoch + 1}; val_ "
                        "metrics are missing from here on. A generator is used up by one pass: "
                        "pass validation_steps and enough batches, or a re-iterable (a "
                        "BatchIterator, a DataLoader, a list of batches)", UserWarning,
                        stacklevel=3)
            bar.update(step, seen, logs, final=True)
            epoch_logs = dict(logs)  # one dict for all, as in Keras (callbacks may add to it)
            for cb in cbs:
                cb.on_epoch_end(epoch, epoch_logs)
            if dist is not None:
                self.stop_training = dist.agree(self.stop_training)
            if self.stop_training:
                break
            if source.exhausted and epoch + 1 < epochs:
                self._warn_out_of_data(epoch + 1)
                break

    def _warn_out_of_data(self, epochs_done: int) -> None:
        self.stop_training = True
        warnings.warn(
            f"fit: the training data ran out of batches after {epochs_done} epoch(s); training "
            "stopped (Keras: 'Your input ran out of data'). A generator is used up by one pass: "
            "pass steps_per_epoch and make it yield steps_per_epoch * epochs batches, or pass a "
            "re-iterable (a BatchIterator, a DataLoader, a list of batches)",
            UserWarning, stacklevel=4)

    def _validate(self, val: Any, batch_size: int) -> list[float] | None:
        if isinstance(val, _BatchSource):
            return self._evaluate_batches(
                self._checked_batches(val.epoch(), "fit validation_data", False), None)
        return self._evaluate_batches(_array_batches(*val, batch_size), None)

    def _validate_distributed(self, dist: Any, val: Any, batch_size: int) -> list[float] | None:
        """_validate with each rank evaluating its share of the data and the sums reduced."""
        if isinstance(val, _BatchSource):
            return dist.evaluate(self, self._checked_batches(
                dist.shard_batches(val.epoch()), "fit validation_data", False))
        return dist.evaluate(self, _array_batches(*dist.shard_arrays(*val), batch_size))

    def _evaluate_batches(self, batches: Iterable[tuple],
                          bar: callbacks_module.ProgressBar | None) -> list[float] | None:
        """[mean loss, each metric's mean] over (x, y, w) batches; None if there were none."""
        loss_sum, sums, seen, step = 0.0, [0.0] * len(self.metrics), 0, 0
        logs: dict[str, float] = {}
        for step, (xb, yb, wb) in enumerate(batches, 1):
            out = self._forward(xb, training=False)
            loss_sum += self._weighted_loss(out, yb, None, wb) * len(xb)
            seen += len(xb)
            sums = [a + b for a, b in zip(sums, self._metric_sums(out, yb))]
            if bar is not None:
                logs = {"loss": loss_sum / seen}
                logs.update({name: total / seen for name, total in zip(self.metrics, sums)})
                bar.update(step, seen, logs, final=False)
        if seen == 0:
            return None
        if bar is not None:
            bar.update(step, seen, logs, final=True)
        return [loss_sum / seen] + [total / seen for total in sums]

    def _results(self, result: list[float], return_dict: bool) -> float | list[float] | dict:
        if return_dict:
            return dict(zip(self.metrics_names, result))
        return result if self.metrics else result[0]

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: int | str = "auto", sample_weight: Any = None,
                 steps: int | None = None,
                 return_dict: bool = False) -> float | list[float] | dict[str, float]:
        """Mean loss (and metrics) over the data.

        Parameters
        ----------
        x, y : arrays, or x an iterable of (x, y) / (x, y, sample_weight) batches and y None
        batch_size : int, default 32
        verbose : "auto", 0, 1 or 2
        sample_weight : array (N,), optional
            Weighted loss sum(w_i l_i) / N, as in fit.
        steps : int, optional
            Evaluate only this many batches.
        return_dict : bool
            Return ``{"loss": ..., "accuracy": ...}`` instead of a value or list.

        Returns
        -------
        float, list or dict
            The loss alone without metrics, else [loss, accuracy] (Keras).
        """
        self._require_compiled("evaluate")
        batch_size = _check_batch_size(batch_size, "evaluate")
        steps = _check_count(steps, "evaluate", "steps")
        verbose = _verbosity(verbose)
        if _is_batch_source(x):
            if y is not None or sample_weight is not None:
                raise ValueError("evaluate: y and sample_weight must be None when x is an "
                                 "iterable of batches (each batch holds them)")
            source = _BatchSource(x, steps, "evaluate", "steps")
            bar = callbacks_module.ProgressBar(source.total, verbose) if verbose else None
            result = self._evaluate_batches(
                self._checked_batches(source.epoch(), "evaluate", False), bar)
            if result is None:
                raise ValueError("evaluate: the data yielded no batches")
            return self._results(result, return_dict)
        x, y = self._check_xy(x, y, "evaluate")
        if len(x) == 0:
            raise ValueError(f"evaluate: no samples (x has shape {x.shape})")
        weights = self._sample_weights(sample_weight, None, y, "evaluate")
        if steps is not None:
            x, y = x[:steps * batch_size], y[:steps * batch_size]
            weights = None if weights is None else weights[:steps * batch_size]
        bar = callbacks_module.ProgressBar(math.ceil(len(x) / batch_size), verbose) if verbose else None
        result = self._evaluate_batches(_array_batches(x, y, weights, batch_size), bar)
        return self._results(result, return_dict)

    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = 0,
                steps: int | None = None) -> np.ndarray:
        """Model outputs for x, computed in batches.

        Parameters
        ----------
        x : array, or an iterable of batches
            Batches may be x alone or tuples whose first item is x ((x, y) pairs: y ignored).
        batch_size : int, default 32
        verbose : 0, 1, 2 or "auto"
            1 (or "auto") a Keras-style progress bar. Silent by default (Keras's default is
            "auto"): a silent call on one batch runs the whole network in one C++ call.
        steps : int, optional
            Predict only this many batches.
        """
        # The batch-1 latency path: defaults, a float32 C-contiguous batch of at most 32 samples
        # of the built model's shape, and a C++ network: one call, no other checks to make.
        if (type(x) is np.ndarray and batch_size is None and verbose == 0 and steps is None
                and x.dtype == np.float32 and self.built and x.ndim > 0 and 0 < len(x) <= 32
                and x.shape[1:] == self.input_shape_ and x.flags.c_contiguous):
            net = self._inference_network()
            if net is not None:
                out = np.empty((len(x),) + self.output_shape_, np.float32)
                # Sealed weights (cnnfast._sealing) cannot have changed: no digests to compare.
                unchanged = _sealing.sealed(self, net)
                net.forward(out, x, None, unchanged)  # weights_unchanged
                if not unchanged:
                    _sealing.seal(self, net)
                return out
        batch_size = _check_batch_size(batch_size, "predict")
        steps = _check_count(steps, "predict", "steps")
        verbose = _verbosity(verbose)
        if _is_batch_source(x):
            return self._predict_batches(_BatchSource(x, steps, "predict", "steps"), verbose)
        # Fast path for the common call (a built model, a float32 C-contiguous batch of the right
        # shape): the checks _check_x would make, without its conversions.
        if not (type(x) is np.ndarray and x.dtype == np.float32 and self.built and x.ndim > 0
                and x.shape[1:] == self.input_shape_ and x.flags.c_contiguous):
            x = self._check_x(x, "predict")
        if steps is not None:
            x = x[:steps * batch_size]
        out = np.empty((len(x),) + self.output_shape_, np.float32)
        net = self._inference_network()
        if net is not None and 0 < len(x) <= batch_size and not verbose:
            net.forward(out, x)
            return out
        total = math.ceil(len(x) / batch_size)
        bar = callbacks_module.ProgressBar(total, verbose) if verbose and total else None
        for step, start in enumerate(range(0, len(x), batch_size), 1):
            xb = x[start:start + batch_size]
            if net is not None:
                net.forward(out[start:start + len(xb)], xb)
            else:
                out[start:start + len(xb)] = self._forward(xb, training=False)
            if bar is not None:
                bar.update(step, start + len(xb), {}, final=step == total)
        return out

    def _predict_batches(self, source: _BatchSource, verbose: int) -> np.ndarray:
        bar = callbacks_module.ProgressBar(source.total, verbose) if verbose else None
        outputs, seen, step = [], 0, 0
        for step, batch in enumerate(source.epoch(), 1):
            # (x,), (x, y) and (x, y, w) tuples give x; DataLoaders yield [x, y] lists.
            if isinstance(batch, tuple) or (isinstance(batch, list) and 1 <= len(batch) <= 3
                                            and hasattr(batch[0], "shape")):
                batch = batch[0]
            xb = self._check_x(batch, f"predict: batch {step}")
            net = self._inference_network()
            out = np.empty((len(xb),) + self.output_shape_, np.float32)
            if net is not None:
                net.forward(out, xb)
            else:
                out[...] = self._forward(xb, training=False)
            outputs.append(out)
            seen += len(xb)
            if bar is not None:
                bar.update(step, seen, {}, final=False)
        if bar is not None and step:
            bar.update(step, seen, {}, final=True)
        if not outputs:
            self._require_built()
            return np.empty((0,) + self.output_shape_, np.float32)
        return np.concatenate(outputs)

    def __call__(self, x: Any, training: bool = False) -> np.ndarray:
        x = self._check_x(x, "call")
        net = None if training else self._inference_network()
        if net is not None:
            out = np.empty((len(x),) + self.output_shape_, np.float32)
            net.forward(out, x)
            return out
        return self._forward(x, training).copy()

    def _inference_network(self):
        """The C++ inference executor (cnnfast._executor) running the whole forward in one call,
        cached and rebuilt when layers or weight arrays are replaced; None if some layer has no
        C++ step (callers then walk the layers in Python)."""
        key = _executor.network_key(self)
        cached = self.__dict__.get("_inference_cache")
        # (key, network, checksum of the folded weights or None when nothing is folded).
        if cached is None or cached[0] != key or (
                cached[2] is not None and cached[2] != _executor.folded_weights_checksum(self)):
            checksum = (_executor.folded_weights_checksum(self)
                        if _executor.folds_batchnorm(self) else None)
            cached = (key, _executor.build_network(self), checksum)
            self._inference_cache = cached
        return cached[1]

    def predict_on_batch(self, x: Any) -> np.ndarray:
        return self.predict(x, batch_size=max(len(np.asarray(x)), 1))

    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None,
                       class_weight: dict[int, float] | None = None) -> float | list[float]:
        """One gradient step on one batch; returns the loss (and metrics) before the update."""
        self._require_compiled("train_on_batch")
        x, y = self._check_xy(x, y, "train_on_batch", training=True)
        if len(x) == 0:
            raise ValueError("train_on_batch: empty batch")
        if class_weight is not None and sample_weight is not None:
            raise ValueError("train_on_batch: give class_weight or sample_weight, not both")
        table = None if class_weight is None else _check_class_weight(class_weight, "train_on_batch")
        weights = self._sample_weights(sample_weight, table, y, "train_on_batch")
        loss, sums = self._train_step(x, y, weights=weights)
        if self.metrics:
            return [loss] + [total / len(x) for total in sums]
        return loss

    def test_on_batch(self, x: Any, y: Any, sample_weight: Any = None) -> float | list[float]:
        return self.evaluate(x, y, batch_size=max(len(np.asarray(x)), 1), verbose=0,
                             sample_weight=sample_weight)

    # -- summary ----------------------------------------------------------------------------
    def summary(self, print_fn: Callable[[str], None] | None = None, line_length: int = 65,
                detailed: bool = False) -> None:
        """Print the Keras-format table: layer (type), output shape, parameter count, totals.

        With ``detailed=True`` print the analyzer's table instead (``cnnfast.analyze(model)``:
        activations, memory, MACs/FLOPs, receptive fields), then, for a built model, the plans
        and what was fused in them: the inference plan's steps (one C++ call) and the
        training fusions.
        """
        print_fn = print_fn or (lambda s: print(s, file=sys.stdout))
        if detailed:
            from cnnfast.analyzer import analyze

            print_fn(str(analyze(self)))
            for line in self._plan_lines():
                print_fn(line)
            return
        self._require_built()
        rows = self.shapes()
        labels = [f"{layer.name} ({type(layer).__name__})" for layer, _, _ in rows]
        # A graph adds Keras's "Connected to" column: the tensors each call reads.
        links = [", ".join(t.name for t in n.inputs) for n in self._nodes] if self._nodes else None
        widest = max([len(s) for s in labels] + [28]) + 1
        line_length = max(line_length, widest + 36)
        cols = (widest, 26, line_length - widest - 26)
        link_width = max([len(s) for s in links] + [12]) + 2 if links else 0
        line_length += link_width
        rule = "_" * line_length
        print_fn(f'Model: "{self.name}"')
        print_fn(rule)
        header = f"{'Layer (type)':<{cols[0]}}{'Output Shape':<{cols[1]}}{'Param #':>{cols[2]}}"
        print_fn(header + ("  Connected to" if links else ""))
        print_fn("=" * line_length)
        for i, ((layer, _, out), label) in enumerate(zip(rows, labels)):
            shape = "(None, " + ", ".join(map(str, out)) + ")"
            params = layer.num_params() if not links or i == _first_call(self._nodes, i) else 0
            line = f"{label:<{cols[0]}}{shape:<{cols[1]}}{params:>{cols[2]},}"
            print_fn(line + (f"  {links[i]}" if links else ""))
            print_fn("=" * line_length if i == len(rows) - 1 else "")
        total = self.count_params()
        trainable = sum(layer.weights_[n].size for layer in self.layers
                        for n in layer.trainable_names())
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {total - trainable:,}")
        print_fn(rule)

    def _plan_lines(self) -> list[str]:
        """The inference plan's steps and the training fusions, for summary(detailed=True)."""
        if not self.built:
            return []
        lines = []
        net = self._inference_network()
        if net is not None:
            lines.append("Inference plan (one C++ call per batch):")
            lines += [f"  {i + 1}. {step}" for i, step in enumerate(net.describe())]
        else:
            lines.append("Inference: layer by layer in Python (a layer has no C++ step)")
        plan = None
        if getattr(self, "compiled", False):
            blocker = self._train_plan_blocker()
            plan = self._train_plan if blocker is None else None
            if plan is not None:
                lines.append("Training step: one C++ call per batch (TrainPlan), steps:")
                lines += [f"  {i + 1}. {step}" for i, step in enumerate(plan.steps)]
            else:
                lines.append("Training step: the Python layer walk "
                             f"({blocker or 'the plan does not follow the Python call order'})")
        fusions = []
        if plan is not None:
            fusions = plan.fusions
        elif self._fused_softmax():
            fusions = [(f"{self._output_layer().name}: {self._output_layer().act.kind} + "
                        f"{self.loss.name} from the "
                        "logits (the Python walk runs every other layer on its own)")]
        lines.append("Training fusions:" if fusions else "Training fusions: none")
        lines += [f"  - {f}" for f in fusions]
        return lines

    def get_config(self) -> dict[str, Any]:
        """The Keras functional config: each layer with its calls ("inbound_nodes": per call,
        the [layer name, call index] of each input), the input and the output node."""
        index = {id(n): sum(m.layer is n.layer for m in self._nodes[:i])
                 for i, n in enumerate(self._nodes)}
        entries = []
        for layer in self.layers:
            calls = [n for n in self._nodes if n.layer is layer]
            entries.append({
                "class_name": type(layer).__name__, "config": layer.get_config(),
                "inbound_nodes": [[[t.node.layer.name, index[id(t.node)]] for t in n.inputs]
                                  for n in calls if n.inputs]})
        out = self._nodes[-1]
        return {"name": self.name, "layers": entries,
                "input_layers": [[self._nodes[0].layer.name, 0]],
                "output_layers": [[out.layer.name, index[id(out)]]]}

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as JSON, ``{"class_name": "Sequential", "config": get_config()}``
        (no weights); :func:`cnnfast.saving.model_from_json` rebuilds the model. Keyword
        arguments go to ``json.dumps``."""
        class_name = "Sequential" if isinstance(self, Sequential) else "Functional"
        return json.dumps({"class_name": class_name, "config": self.get_config()}, **kwargs)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        """The model `get_config` describes, with its input shape set and weights not yet created."""
        from cnnfast.saving import model_from_config

        return model_from_config(config)

    # -- files ------------------------------------------------------------------------------
    def save(self, filepath, include_optimizer: bool = True) -> None:
        """Write architecture, weights and (if compiled) optimizer state to one file.

        See :func:`cnnfast.saving.save_model`; read it back with :func:`cnnfast.load_model`.
        """
        from cnnfast.saving import save_model

        save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath) -> None:
        """Write the weights (and the architecture, for checking) without optimizer state."""
        from cnnfast.saving import save_model

        save_model(self, filepath, include_optimizer=False)

    def load_weights(self, filepath) -> None:
        """Copy the weights of a cnnfast model file into this model (names and shapes must match)."""
        from cnnfast.saving import load_weights

        load_weights(self, filepath)

class Sequential(Model):
    """A linear stack of layers, trained with compile/fit like Keras.

    >>> model = Sequential([Input((28, 28, 1)), Conv2D(8, 3, activation="relu"),
    ...                     Flatten(), Dense(10, activation="softmax")])

    The training step runs the one plan of every model (fusions included); the Python walk
    here is the reference, each layer on its own.
    """

    def __init__(self, layers: Sequence[Layer] | None = None, name: str | None = None) -> None:
        self._init_state(name or "sequential")
        for layer in layers or []:
            self.add(layer)

    # -- building ---------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        """Append a layer (an Input layer only sets the input shape)."""
        if isinstance(layer, SymbolicTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer  # Input(shape) as the first element, as in Keras
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a cnnfast layer, got {type(layer).__name__}")
        if isinstance(layer, InputLayer):
            if self.layers or self.input_shape_ is not None:
                raise ValueError("Sequential: an Input layer must come first")
            self.input_shape_ = layer.declared_input_shape
            return
        if not self.layers and self.input_shape_ is None and layer.declared_input_shape:
            self.input_shape_ = layer.declared_input_shape
        if layer.name is None:
            base = layer.default_name()
            name, k = base, 0
            while name in self._used_names:
                k += 1
                name = f"{base}_{k}"
            layer.name = name
        elif layer.name in self._used_names:
            raise ValueError(f"Sequential: duplicate layer name {layer.name!r}")
        self._used_names.add(layer.name)
        self.layers.append(layer)
        self.built = False
        if self.input_shape_ is not None:
            self.build()

    def build(self, input_shape: Sequence[int] | None = None) -> None:
        """Create every layer's weights for a per-sample input shape."""
        if input_shape is not None:
            self.input_shape_ = tuple(int(s) for s in input_shape)
        if self.input_shape_ is None:
            raise ValueError("Sequential: unknown input shape; start with Input(shape) or call build(shape)")
        shape = self.input_shape_
        for i, layer in enumerate(self.layers):
            if not layer.built:
                layer.build(shape)
            elif layer.input_shape != shape:
                raise ValueError(
                    f"{layer.describe()}: was built for input {layer.input_shape}, now receives {shape}"
                )
            layer.need_input_grad = i > 0
            shape = layer.output_shape(shape)
        self.output_shape_ = shape
        self.built = True

    def shapes(self) -> list[tuple[Layer, Shape, Shape]]:
        """(layer, input shape, output shape) per layer, from the shape formulas alone."""
        shape = self.input_shape_
        rows = []
        for layer in self.layers:
            out = layer.output_shape(shape)
            rows.append((layer, shape, out))
            shape = out
        return rows

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def _backward(self, grad: np.ndarray) -> None:
        last = self.layers[-1]
        # With softmax + cross-entropy the loss gave d(loss)/d(logits): skip the softmax.
        grad = (last.backward(grad, activation_done=True) if self._fused_softmax()
                else last.backward(grad))
        for layer in reversed(self.layers[:-1]):
            if grad is None:
                return
            grad = layer.backward(grad)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "input_shape": list(self.input_shape_ or ()),
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers]}


# What the C++ train plan runs (see Model._train_plan): exact classes, by loss the name it takes.
_PLAN_LOSSES = {
    losses_module.CategoricalCrossentropy: "categorical_crossentropy",
    losses_module.SparseCategoricalCrossentropy: "sparse_categorical_crossentropy",
    losses_module.MeanSquaredError: "mean_squared_error",
    losses_module.MeanAbsoluteError: "mean_absolute_error",
    losses_module.Huber: "huber",  # delta 1 (other options train in Python)
    losses_module.KLDivergence: "kl_divergence",
    losses_module.CategoricalHinge: "categorical_hinge",
    losses_module.BinaryCrossentropy: "binary_crossentropy",  # fused with a sigmoid output
}


class NonFiniteLossError(FloatingPointError):
    """A batch's loss was NaN or infinite; nothing was updated. ``loss`` holds the value."""

    def __init__(self, message: str, loss: float) -> None:
        super().__init__(message)
        self.loss = loss


def _raise_non_finite(where: str, loss: float, n: int) -> None:
    # Raised before any update, so the model keeps the weights it had before this batch.
    raise NonFiniteLossError(
        f"{where}: non-finite loss {loss} (batch of {n} samples); the weights were not "
        "updated. Lower the learning rate or check the inputs for NaN/inf.", loss)


def _first_call(nodes: list[graph.Node], i: int) -> int:
    """The position of the first call of nodes[i]'s layer (its weights are counted there)."""
    return next(k for k, n in enumerate(nodes) if n.layer is nodes[i].layer)


# Arena tensors start on 16-float (64-byte) boundaries: the SIMD kernels load weight rows at
# full width, and a load straddling two cache lines costs two.
_ARENA_ALIGN = 16


def _aligned_zeros(count: int) -> np.ndarray:
    raw = np.zeros(count + _ARENA_ALIGN, np.float32)
    start = (-raw.ctypes.data % 64) // 4
    return raw[start:start + count]


def _swap_in(layer: Layer, state: dict[str, Any]) -> None:
    """Give a shared layer the buffers and saved inputs of one of its calls."""
    layer.__dict__.update(state)
    act = getattr(layer, "act", None)
    if act is not None and "_act" in state:
        act.__dict__.update(state["_act"])


def _swap_out(layer: Layer) -> dict[str, Any]:
    """The per-call part of a shared layer's state: what forward saved for backward and the
    buffers it wrote (everything but weights, gradients and configuration, which calls share)."""
    shared = {"weights_", "gradients_", "regularizers_", "name", "trainable", "built",
              "input_shape", "declared_input_shape", "_nodes", "act", "need_input_grad"}
    state = {k: v for k, v in layer.__dict__.items() if k not in shared}
    act = getattr(layer, "act", None)
    if act is not None:
        state["_act"] = {"z": act.z, "y": act.y}
    layer._buffers = {}  # the next call starts from its own buffers
    return state

