"""Training callbacks with Keras names and defaults."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np


class Callback:
    """Base class; `self.model` is set by fit before on_train_begin."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...


class History(Callback):
    """Records the per-epoch logs: `history["loss"]`, `history["val_accuracy"]`, ..."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    Keras defaults: monitor "val_loss", min_delta 0, patience 0, mode "auto" (max for
    accuracy-like names), restore_best_weights False, start_from_epoch 0. With
    restore_best_weights the best epoch's weights are restored when training ends.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        if mode == "auto":
            mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
        self.mode = mode

    def _better(self, current: float, reference: float) -> bool:
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = np.inf if self.mode == "min" else -np.inf
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping: monitored metric {self.monitor!r} is not available; "
                f"available: {sorted(logs)}"
            )
        if epoch < self.start_from_epoch:
            return
        current = float(logs[self.monitor])
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._better(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class LambdaCallback(Callback):
    """Callback from plain functions, e.g. LambdaCallback(on_epoch_end=lambda e, logs: ...)."""

    def __init__(self, **hooks) -> None:
        super().__init__()
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise TypeError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, fn)


class ProgressBar:
    """Keras-style progress line: `12/469 [==>...] - 3s 7ms/step - 18k img/s - loss: 0.31`."""

    def __init__(self, total: int, verbose: int = 1, stream=None, width: int = 24,
                 min_interval: float = 0.1) -> None:
        self.total = total
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.width = width
        self.min_interval = min_interval
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.dynamic = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, step: int, samples: int, values: dict[str, float], final: bool = False) -> None:
        if self.verbose == 0 or (self.verbose == 2 and not final):
            return
        now = time.perf_counter()
        if not final and now - self.last_draw < self.min_interval:
            return
        self.last_draw = now
        elapsed = now - self.start
        metrics = " - ".join(f"{k}: {v:.4f}" for k, v in values.items())
        rate = samples / elapsed if elapsed > 0 else 0.0
        per_step = elapsed / max(step, 1)
        timing = f"{elapsed:.0f}s {per_step * 1e3:.0f}ms/step - {rate:,.0f} samples/s"
        if self.verbose == 2:
            line = f"{step}/{self.total} - {timing} - {metrics}"
        else:
            done = int(self.width * step / max(self.total, 1))
            bar = "=" * max(done - 1, 0) + (">" if done < self.width else "=") + "." * (self.width - done)
            line = f"{step:>{len(str(self.total))}}/{self.total} [{bar}] - {timing} - {metrics}"
        if self.verbose == 1 and self.dynamic:
            self.stream.write("\r" + line + ("\n" if final else ""))
        elif final or self.verbose == 2:
            self.stream.write(line + "\n")
        self.stream.flush()
