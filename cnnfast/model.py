"""Sequential model with the Keras training API: compile, fit, evaluate, predict, summary."""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from cnnfast import _core, _executor
from cnnfast import callbacks as callbacks_module
from cnnfast import losses as losses_module
from cnnfast import optimizers as optimizers_module
from cnnfast.data import Augmentation, BatchIterator
from cnnfast.layers import Conv2D, InputLayer, Layer, MaxPooling2D

Shape = tuple[int, ...]


def _as_float_array(x: Any, what: str) -> np.ndarray:
    """float32 C-contiguous view or copy of a numeric array; a clear error otherwise."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, np.float32)


class Sequential:
    """A linear stack of layers, trained with compile/fit like Keras.

    >>> model = Sequential([Input((28, 28, 1)), Conv2D(8, 3, activation="relu"),
    ...                     Flatten(), Dense(10, activation="softmax")])
    """

    def __init__(self, layers: Sequence[Layer] | None = None, name: str | None = None) -> None:
        self.name = name or "sequential"
        self.layers: list[Layer] = []
        self.input_shape_: Shape | None = None
        self.built = False
        self.compiled = False
        self.stop_training = False
        self.history: callbacks_module.History | None = None
        self._used_names: set[str] = set()
        self._fused_head = False  # see _head_fuses
        for layer in layers or []:
            self.add(layer)

    # -- building ---------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        """Append a layer (an Input layer only sets the input shape)."""
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
        # A ReLU right before a max-pooling layer is differentiated by that layer (see
        # MaxPooling2D.relu_before).
        for before, after in zip(self.layers, self.layers[1:] + [None]):
            act = getattr(before, "act", None)
            fold = isinstance(after, MaxPooling2D) and act is not None and act.kind == "relu"
            if act is not None:
                act.folded_into_pool = fold
            if isinstance(after, MaxPooling2D):
                after.relu_before = fold
        self._fused_head = self._head_fuses()
        self.output_shape_ = shape
        self.built = True

    def _head_fuses(self) -> bool:
        """True when the network opens with Conv2D(relu, stride 1, "valid") -> MaxPooling2D(2,
        stride 2, "valid") and the fused kernel runs here; the first layer needs no input
        gradient, so the pair's backward is dw and db alone."""
        if len(self.layers) < 3:
            return False
        conv, pool = self.layers[0], self.layers[1]
        if not (isinstance(conv, Conv2D) and isinstance(pool, MaxPooling2D)):
            return False
        if (conv.act.kind != "relu" or conv.groups != 1 or tuple(conv.strides) != (1, 1)
                or conv.pad_top or conv.pad_left or pool.pool_size != (2, 2)
                or pool.strides != (2, 2) or pool.padding != "valid"):
            return False
        h, w, c = conv.input_shape
        kh, kw = conv.kernel_size
        if (conv.oh, conv.ow) != (h - kh + 1, w - kw + 1):
            return False
        return bool(_core.conv2d_relu_maxpool_supported(1, h, w, c, kh, kw, conv.filters))

    def shapes(self) -> list[tuple[Layer, Shape, Shape]]:
        """(layer, input shape, output shape) per layer, from the shape formulas alone."""
        shape = self.input_shape_
        rows = []
        for layer in self.layers:
            out = layer.output_shape(shape)
            rows.append((layer, shape, out))
            shape = out
        return rows

    def _require_built(self) -> None:
        if not self.built:
            self.build()

    # -- weights ----------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        self._require_built()
        return [w.copy() for layer in self.layers for w in layer.params()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
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

    def count_params(self) -> int:
        self._require_built()
        return sum(layer.num_params() for layer in self.layers)

    def _trainable(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        params, grads = [], []
        for layer in self.layers:
            if layer.trainable:
                params += layer.params()
                grads += layer.grads()
        return params, grads

    # -- compile ----------------------------------------------------------------------------
    def compile(self, optimizer: str | optimizers_module.Optimizer = "adam",
                loss: str | losses_module.Loss = "categorical_crossentropy",
                metrics: Iterable[str] | None = None) -> None:
        """Choose optimizer, loss and metrics ("accuracy"/"acc")."""
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        self.metrics = []
        for m in metrics or []:
            if m not in ("accuracy", "acc"):
                raise NotImplementedError(f"compile: metric {m!r} is not supported (only 'accuracy')")
            self.metrics.append("accuracy")
        self.compiled = True
        if not self.layers:
            raise ValueError("compile: the model has no layers")
        # With a softmax output and cross-entropy, the loss kernel returns the gradient with
        # respect to the logits, so the softmax's own backward is skipped.
        for layer in self.layers:
            if getattr(layer, "act", None) is not None:
                layer.act.fused_with_loss = False
        if self._fused_softmax():
            self.layers[-1].act.fused_with_loss = True

    # -- data checks ------------------------------------------------------------------------
    def _check_x(self, x: Any, what: str) -> np.ndarray:
        arr = np.asarray(x)
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
                f"(None, {', '.join(map(str, expected))}), got {arr.shape}"
            )
        return np.ascontiguousarray(arr, np.float32)

    def _check_xy(self, x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        x = self._check_x(x, what)
        y_arr = np.asarray(y)
        if y_arr.ndim == 0 or len(y_arr) != len(x):
            raise ValueError(
                f"{what}: x and y have different numbers of samples: x {x.shape}, y {y_arr.shape}"
            )
        return x, self.loss.check_targets(y_arr, self.output_shape_)

    # -- compute ----------------------------------------------------------------------------
    def _fused_head_applies(self) -> bool:
        """Whether the first two layers run as one fused Conv2D + ReLU + max-pool kernel."""
        return self._fused_head and self.layers[0].trainable

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        layers = self.layers
        if self._fused_head_applies():
            # Conv2D(relu) -> MaxPooling2D(2) as one kernel: the convolution's full-resolution
            # output is never stored (cnnfast/_core conv2d_relu_maxpool_*).
            conv, pool = layers[0], layers[1]
            shape = (x.shape[0], pool.oh, pool.ow, conv.filters)
            y = pool._buffer("y", shape)
            which = pool._buffer("which", shape, np.int32)
            _core.conv2d_relu_maxpool_forward(y, which, x, conv.weights_["kernel"],
                                              conv.weights_.get("bias"))
            conv.x, pool.y, pool.which = x, y, which
            x, layers = y, layers[2:]
        for layer in layers:
            x = layer.forward(x, training)
        return x

    def _fused_softmax(self) -> bool:
        last = self.layers[-1]
        act = getattr(last, "act", None)
        return self.loss.fuses_softmax and act is not None and act.kind == "softmax"

    def _loss_and_gradient(self, out: np.ndarray, y: np.ndarray, grad: np.ndarray | None) -> float:
        if self._fused_softmax():
            logits = self.layers[-1].act.z
            return self.loss.compute_from_logits(grad, logits.reshape(len(y), -1), y)
        return self.loss.compute(grad, out, y)

    def _backward(self, grad: np.ndarray) -> None:
        fused = self._fused_head_applies()
        layers = self.layers[2:] if fused else self.layers
        for layer in reversed(layers):
            grad = layer.backward(grad)
            if grad is None:
                return
        if fused:
            conv, pool = self.layers[0], self.layers[1]
            _core.conv2d_relu_maxpool_backward_weights(
                conv.gradients_["kernel"], conv.gradients_.get("bias"), conv.x, grad, pool.y,
                pool.which)

    def _train_step(self, xb: np.ndarray, yb: np.ndarray,
                    where: str = "train_on_batch") -> tuple[float, np.ndarray]:
        out = self._forward(xb, training=True)
        grad = self._grad_buffer(out.shape)
        loss = self._loss_and_gradient(out, yb, grad)
        if not math.isfinite(loss):
            # Raised before any update, so the model keeps the weights it had before this batch.
            raise FloatingPointError(
                f"{where}: non-finite loss {loss} (batch of {len(xb)} samples); the weights were "
                "not updated. Lower the learning rate or check the inputs for NaN/inf."
            )
        self._backward(grad)
        reg = 0.0
        for layer in self.layers:
            if layer.regularizers_:
                reg += layer.regularization_loss()
                layer.add_regularization_gradients()
        params, grads = self._trainable()
        self.optimizer.apply(params, grads)
        return loss + reg, out

    def _grad_buffer(self, shape: Shape) -> np.ndarray:
        buf = getattr(self, "_loss_grad", None)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, np.float32)
            self._loss_grad = buf
        return buf

    def _correct(self, out: np.ndarray, y: np.ndarray) -> int:
        """Number of correct predictions (Keras picks the accuracy flavour from the targets)."""
        if y.ndim == 1:
            return int(np.count_nonzero(out.reshape(len(y), -1).argmax(axis=1) == y))
        if y.shape[-1] == 1:
            return int(np.count_nonzero((out > 0.5) == (y > 0.5)))
        return int(np.count_nonzero(out.argmax(axis=-1) == y.argmax(axis=-1)))

    # -- public training API ----------------------------------------------------------------
    def _require_compiled(self, what: str) -> None:
        if not getattr(self, "compiled", False):
            raise RuntimeError(f"{what}: the model must be compiled first; call model.compile(...)")

    def fit(self, x: Any, y: Any = None, batch_size: int | None = 32, epochs: int = 1,
            verbose: int | str = "auto",
            callbacks: Sequence[callbacks_module.Callback] | None = None,
            validation_split: float = 0.0, validation_data: tuple | None = None,
            shuffle: bool = True, initial_epoch: int = 0,
            augment: Augmentation | None = None) -> callbacks_module.History:
        """Train for `epochs` epochs; returns a History (per-epoch loss/metrics).

        validation_split takes the last fraction of x/y before shuffling (Keras). verbose: 1
        a progress bar per epoch, 2 one line per epoch, 0 silent.

        x may also be a :class:`cnnfast.data.BatchIterator` holding the targets (y None), which
        then decides batch size, shuffling, dtype conversion and augmentation. ``augment``
        (cnnfast extension, e.g. ``cnnfast.data.cifar10_augmentation()``) is applied in place
        to every training batch of array inputs, drawing from cnnfast's global generator.
        """
        self._require_compiled("fit")
        verbose = 1 if verbose == "auto" else int(verbose)
        batch_size = 32 if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"fit: batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative integer, got {epochs!r}")
        batches = None
        if isinstance(x, BatchIterator):  # cnnfast.data hook
            batches = self._check_batches(x, y, validation_split, augment)
        else:
            x, y = self._check_xy(x, y, "fit")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val)")
            x_val, y_val = self._check_xy(*validation_data, "fit validation_data")
        elif validation_split > 0.0:
            split = int(len(x) * (1.0 - validation_split))
            if split == 0 or split == len(x):
                raise ValueError(
                    f"fit: validation_split={validation_split} leaves an empty training or "
                    f"validation set for {len(x)} samples"
                )
            x, x_val = x[:split], x[split:]
            y, y_val = y[:split], y[split:]
        else:
            x_val = y_val = None
        if batches is None:
            if len(x) == 0:
                raise ValueError(f"fit: no training samples (x has shape {x.shape})")
            batches = BatchIterator(x, y, batch_size, shuffle=shuffle, augment=augment)
        batch_size = batches.batch_size

        history = callbacks_module.History()
        cbs = [history] + list(callbacks or [])
        steps = len(batches)
        params = {"epochs": epochs, "steps": steps, "batch_size": batch_size, "verbose": verbose}
        for cb in cbs:
            cb.set_model(self)
            cb.set_params(params)
        self.stop_training = False
        self.history = history
        for cb in cbs:
            cb.on_train_begin()

        with self._stop_on_interrupt():
            self._fit_epochs(batches, x_val, y_val, batch_size, epochs, initial_epoch,
                             verbose, steps, cbs)
        for cb in cbs:
            cb.on_train_end()
        return history

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

    def _check_batches(self, batches: BatchIterator, y: Any, validation_split: float,
                       augment: Augmentation | None) -> BatchIterator:
        """Check a BatchIterator given to fit against the model; its targets converted."""
        if y is not None:
            raise ValueError("fit: y must be None when x is a BatchIterator (it holds the targets)")
        if batches.y is None:
            raise ValueError("fit: the BatchIterator has no targets; build it as BatchIterator(x, y, ...)")
        if validation_split:
            raise ValueError("fit: validation_split is not supported with a BatchIterator; "
                             "pass validation_data=(x_val, y_val)")
        if augment is not None:
            raise ValueError("fit: pass augment= to the BatchIterator, not to fit")
        self._check_x(batches.x[:0], "fit")  # shape check (and build) without converting x
        return batches.with_targets(self.loss.check_targets(batches.y, self.output_shape_))

    def _fit_epochs(self, batches, x_val, y_val, batch_size, epochs, initial_epoch,
                    verbose, steps, cbs) -> None:
        for epoch in range(initial_epoch, epochs):
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", flush=True)
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            bar = callbacks_module.ProgressBar(steps, verbose)
            loss_sum, correct, seen = 0.0, 0, 0
            logs: dict[str, float] = {}
            for step, (xb, yb) in enumerate(batches):
                for cb in cbs:
                    cb.on_train_batch_begin(step)
                loss, out = self._train_step(xb, yb, f"fit: epoch {epoch + 1}, batch {step + 1}")
                loss_sum += loss * len(xb)
                seen += len(xb)
                logs = {"loss": loss_sum / seen}
                if self.metrics:
                    correct += self._correct(out, yb)
                    logs["accuracy"] = correct / seen
                for cb in cbs:
                    cb.on_train_batch_end(step, logs)
                bar.update(step + 1, seen, logs, final=False)
                if self._interrupted:
                    self.stop_training = True
                    print(f"\nInterrupted: stopped after epoch {epoch + 1}, batch {step + 1}; "
                          "the model holds the weights of that step.", file=sys.stderr)
                if self.stop_training:
                    break
            if x_val is not None:
                val = self._evaluate_arrays(x_val, y_val, batch_size)
                logs["val_loss"] = val[0]
                if self.metrics:
                    logs["val_accuracy"] = val[1]
            bar.update(step + 1, seen, logs, final=True)
            for cb in cbs:
                cb.on_epoch_end(epoch, dict(logs))
            if self.stop_training:
                break

    def _evaluate_arrays(self, x: np.ndarray, y: np.ndarray, batch_size: int,
                         bar: callbacks_module.ProgressBar | None = None) -> list[float]:
        loss_sum, correct = 0.0, 0
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = self._forward(xb, training=False)
            loss_sum += self._loss_and_gradient(out, yb, None) * len(xb)
            if self.metrics:
                correct += self._correct(out, yb)
            if bar is not None:
                logs = {"loss": loss_sum / (start + len(xb))}
                if self.metrics:
                    logs["accuracy"] = correct / (start + len(xb))
                bar.update(start // batch_size + 1, start + len(xb), logs,
                           final=start + batch_size >= len(x))
        result = [loss_sum / len(x)]
        if self.metrics:
            result.append(correct / len(x))
        return result

    def evaluate(self, x: Any, y: Any, batch_size: int | None = 32,
                 verbose: int | str = "auto") -> float | list[float]:
        """Mean loss (and metrics) over the data: `loss` alone, or [loss, accuracy] with metrics."""
        self._require_compiled("evaluate")
        batch_size = 32 if batch_size is None else int(batch_size)
        if batch_size <= 0:
            raise ValueError(f"evaluate: batch_size must be positive, got {batch_size}")
        x, y = self._check_xy(x, y, "evaluate")
        if len(x) == 0:
            raise ValueError(f"evaluate: no samples (x has shape {x.shape})")
        verbose = 1 if verbose == "auto" else int(verbose)
        bar = callbacks_module.ProgressBar(math.ceil(len(x) / batch_size), verbose) if verbose else None
        result = self._evaluate_arrays(x, y, batch_size, bar)
        return result if self.metrics else result[0]

    def predict(self, x: Any, batch_size: int | None = 32, verbose: int = 0) -> np.ndarray:
        """Model outputs for x, computed in batches (silent by default)."""
        batch_size = 32 if batch_size is None else int(batch_size)
        if batch_size <= 0:
            raise ValueError(f"predict: batch_size must be positive, got {batch_size}")
        # Fast path for the common call (a built model, a float32 C-contiguous batch of the right
        # shape): the checks _check_x would make, without its conversions.
        if not (type(x) is np.ndarray and x.dtype == np.float32 and self.built and x.ndim > 0
                and x.shape[1:] == self.input_shape_ and x.flags.c_contiguous):
            x = self._check_x(x, "predict")
        out = np.empty((len(x),) + self.output_shape_, np.float32)
        net = self._inference_network()
        if net is not None and 0 < len(x) <= batch_size:
            net.forward(out, x)
            return out
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            if net is not None:
                net.forward(out[start:start + len(xb)], xb)
            else:
                out[start:start + len(xb)] = self._forward(xb, training=False)
        return out

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
        if cached is None or cached[0] != key:
            cached = (key, _executor.build_network(self))
            self._inference_cache = cached
        return cached[1]

    def predict_on_batch(self, x: Any) -> np.ndarray:
        return self.predict(x, batch_size=max(len(np.asarray(x)), 1))

    def train_on_batch(self, x: Any, y: Any) -> float | list[float]:
        """One gradient step on one batch; returns the loss (and metrics) before the update."""
        self._require_compiled("train_on_batch")
        x, y = self._check_xy(x, y, "train_on_batch")
        if len(x) == 0:
            raise ValueError("train_on_batch: empty batch")
        loss, out = self._train_step(x, y)
        if self.metrics:
            return [loss, self._correct(out, y) / len(x)]
        return loss

    def test_on_batch(self, x: Any, y: Any) -> float | list[float]:
        return self.evaluate(x, y, batch_size=max(len(np.asarray(x)), 1), verbose=0)

    # -- summary ----------------------------------------------------------------------------
    def summary(self, print_fn: Callable[[str], None] | None = None, line_length: int = 65,
                detailed: bool = False) -> None:
        """Print the Keras-format table: layer (type), output shape, parameter count, totals.

        With ``detailed=True`` print the analyzer's table instead (``cnnfast.analyze(model)``:
        activations, memory, MACs/FLOPs, receptive fields), without building the weights.
        """
        print_fn = print_fn or (lambda s: print(s, file=sys.stdout))
        if detailed:
            from cnnfast.analyzer import analyze

            print_fn(str(analyze(self)))
            return
        self._require_built()
        rows = self.shapes()
        labels = [f"{layer.name} ({type(layer).__name__})" for layer, _, _ in rows]
        widest = max([len(s) for s in labels] + [28]) + 1
        line_length = max(line_length, widest + 36)
        cols = (widest, 26, line_length - widest - 26)
        rule = "_" * line_length
        print_fn(f'Model: "{self.name}"')
        print_fn(rule)
        print_fn(f"{'Layer (type)':<{cols[0]}}{'Output Shape':<{cols[1]}}{'Param #':>{cols[2]}}")
        print_fn("=" * line_length)
        for i, ((layer, _, out), label) in enumerate(zip(rows, labels)):
            shape = "(None, " + ", ".join(map(str, out)) + ")"
            print_fn(f"{label:<{cols[0]}}{shape:<{cols[1]}}{layer.num_params():>{cols[2]},}")
            print_fn("=" * line_length if i == len(self.layers) - 1 else "")
        total = self.count_params()
        trainable = sum(layer.num_params() for layer in self.layers if layer.trainable)
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {total - trainable:,}")
        print_fn(rule)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "input_shape": list(self.input_shape_ or ()),
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
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
