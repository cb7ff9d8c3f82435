"""Training callbacks with Keras names and defaults."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
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
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    # As in Keras, the training batch hooks call the older on_batch_* names, so a callback
    # overriding either set is called during fit.
    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)


def _warn_missing_monitor(callback: Callback, logs: dict[str, Any], consequence: str) -> None:
    """Warn, once per fit, that the monitored value is not in the logs (Keras warns too, and
    training goes on); `callback._warned_missing` is reset by its on_train_begin."""
    if callback._warned_missing:
        return
    callback._warned_missing = True
    warnings.warn(
        f"{type(callback).__name__}: monitored metric {callback.monitor!r} is not in the logs; "
        f"available: {sorted(logs)}. {consequence}", UserWarning, stacklevel=3)


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

    def plot(self, path: str | None = None, metrics: Sequence[str] = ("loss", "accuracy"),
             title: str | None = None):
        """Draw the per-epoch training and validation curves, one panel per metric.

        Parameters
        ----------
        path : str, optional
            Save the figure there (PNG unless the suffix names another matplotlib format).
        metrics : sequence of str
            Metrics to draw; each panel shows ``m`` and, when recorded, ``val_m``. Metrics
            that were not recorded are left out.
        title : str, optional
            Figure title.

        Returns
        -------
        matplotlib.figure.Figure
            Needs matplotlib (``pip install 'cnnfast[plot]'``).
        """
        from cnnfast._plotting import new_figure

        if isinstance(metrics, str):
            metrics = (metrics,)
        shown = [m for m in metrics if m in self.history or f"val_{m}" in self.history]
        if not shown:
            raise ValueError(
                f"History.plot: none of {list(metrics)} was recorded; recorded: {sorted(self.history)}"
            )
        fig = new_figure("History.plot", (4.5 * len(shown), 3.6))
        epochs = [e + 1 for e in self.epoch]
        for i, m in enumerate(shown):
            ax = fig.add_subplot(1, len(shown), i + 1)
            for key, label, style in ((m, "train", "o-"), (f"val_{m}", "validation", "s--")):
                values = self.history.get(key)
                if values:
                    ax.plot(epochs[-len(values):], values, style, label=label, markersize=3)
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_ylabel(m)
            ax.grid(True, alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path)
        return fig


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
        self._warned_missing = False
        self.wait = 0
        self.stopped_epoch = 0
        self.best = np.inf if self.mode == "min" else -np.inf
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            _warn_missing_monitor(self, logs, "Training continues without early stopping.")
            return
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


class ModelCheckpoint(Callback):
    """Save the model during training (Keras semantics).

    `filepath` may hold ``str.format`` fields filled from the epoch (1-based), the batch
    (1-based, with an integer `save_freq`) and the epoch's logs:
    ``"ckpt/model-{epoch:02d}-{val_loss:.3f}.cnnfast"``. Missing directories are created.

    Parameters
    ----------
    filepath : str or path-like
    monitor : str
        Log entry compared by `save_best_only` (Keras default "val_loss").
    verbose : int
        1 prints a line per save.
    save_best_only : bool
        Save only when `monitor` improves on the best value seen so far (the best value is
        kept across ``fit`` calls, as in Keras).
    save_weights_only : bool
        Write architecture and weights only; otherwise the file also carries loss, metrics,
        optimizer state and the training position (completed epochs and the state of
        ``cnnfast.random``), so ``load_model(path)`` then ``fit(..., initial_epoch=k)``
        continues exactly as the uninterrupted run would have.
    mode : {"auto", "min", "max"}
        "auto" maximises names containing "acc" (or ending in "auc") and minimises others.
    save_freq : "epoch" or int
        Save at the end of every epoch, or every that many batches (such mid-epoch files
        cannot be resumed exactly with ``initial_epoch``).
    initial_value_threshold : float, optional
        With `save_best_only`, the value the first save has to beat.
    """

    def __init__(self, filepath, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: str | int = "epoch",
                 initial_value_threshold: float | None = None) -> None:
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ModelCheckpoint: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or
                                     not isinstance(save_freq, (int, np.integer)) or save_freq <= 0):
            raise ValueError(
                f"ModelCheckpoint: save_freq must be 'epoch' or a positive int, got {save_freq!r}"
            )
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.save_freq = save_freq
        if mode == "auto":
            mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
        self.mode = mode
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = np.inf if mode == "min" else -np.inf
        self._current_epoch = 0
        self._batches_since_save = 0
        self._last_batch = -1
        self._warned_missing = False
        from cnnfast.saving import check_save_path

        # A Keras habit (".keras", ".h5") is refused now, not after the first epoch.
        check_save_path(self.filepath, "ModelCheckpoint")

    def on_train_begin(self, logs=None):
        self._warned_missing = False

    def _improved(self, current: float) -> bool:
        return current < self.best if self.mode == "min" else current > self.best

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # Count batches across epochs: a batch index not above the last one starts an epoch.
        self._batches_since_save += batch + 1 if batch <= self._last_batch else batch - self._last_batch
        self._last_batch = batch
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _save(self, epoch: int, batch: int | None, logs: dict) -> None:
        fields = {**logs, "epoch": epoch + 1}
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            path = self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as err:
            raise KeyError(
                f"ModelCheckpoint: cannot format filepath {self.filepath!r} ({err!r}); "
                f"available fields: {sorted(fields)}"
            ) from None
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                _warn_missing_monitor(self, logs, "save_best_only saves nothing until it appears.")
                return
            if not self._improved(float(current)):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{float(current):.5f}, saving model to {path}")
            self.best = float(current)
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        from cnnfast.saving import save_model

        if self.save_weights_only:
            save_model(self.model, path, include_optimizer=False)
        elif batch is None:
            save_model(self.model, path, epoch=epoch + 1)
        else:
            save_model(self.model, path, epoch=epoch, step=batch + 1)


class LambdaCallback(Callback):
    """Callback from plain functions, as in Keras.

    ``on_epoch_begin`` / ``on_epoch_end`` are called as ``fn(epoch, logs)``,
    ``on_train_begin`` / ``on_train_end`` as ``fn(logs)``, and ``on_train_batch_begin`` /
    ``on_train_batch_end`` (or their Keras aliases ``on_batch_begin`` / ``on_batch_end``) as
    ``fn(batch, logs)``.

    >>> LambdaCallback(on_batch_end=lambda batch, logs: print(batch, logs["loss"]))

    Raises
    ------
    TypeError
        An unknown hook name (the message lists the valid ones) or a hook that is not callable.
    """

    HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
             "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        super().__init__()
        for name, fn in hooks.items():
            if name not in self.HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; valid hooks: "
                                f"{list(self.HOOKS)}")
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable, got {fn!r}")
            setattr(self, name, self._wrap(name, fn))

    @staticmethod
    def _wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Keras passes logs positionally; fit calls some hooks without logs."""
        if name in ("on_train_begin", "on_train_end"):
            return lambda logs=None: fn(logs)
        return lambda index, logs=None: fn(index, logs)


def _monitor_mode(owner: str, monitor: str, mode: str) -> str:
    """"min" or "max" for a monitored log entry; "auto" decides as Keras does: losses are
    minimised, accuracy metrics maximised, anything else must be told."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return "min"
    if name in ("accuracy", "acc") or name.endswith("accuracy"):
        return "max"
    raise ValueError(f"{owner} received monitor={monitor!r}, but cannot tell whether it should "
                     "be maximized or minimized. Pass mode='max' or mode='min'")


def _write_text_atomic(path: str, text: str) -> None:
    from cnnfast.saving import _write_atomic

    _write_atomic(path, lambda f: f.write(text.encode("utf-8")))


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch from
    ``schedule(epoch, lr)`` (or ``schedule(epoch)``), epoch counted from 0, as in Keras.

    The epoch's learning rate is added to the logs as ``"learning_rate"`` (History records it).

    Parameters
    ----------
    schedule : callable
        ``(epoch: int, lr: float) -> float`` or ``(epoch: int) -> float``; must return a float.
    verbose : int
        1 prints the new rate each epoch.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(optimizer.learning_rate))
        except TypeError:  # Keras: a one-argument schedule
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.float32, np.float64)):
            raise ValueError(  # noqa: TRY004 - Keras raises ValueError here
                f"LearningRateScheduler: the output of the schedule function should be a float. "
                f"Got: {lr!r}")
        optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved (by more than
    `min_delta`) for `patience` epochs; then wait `cooldown` epochs; never below `min_lr`.

    Keras defaults: monitor "val_loss", factor 0.1, patience 10, mode "auto", min_delta 1e-4,
    cooldown 0, min_lr 0. The epoch's learning rate (before any reduction) is added to the
    logs as ``"learning_rate"``.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0) -> None:
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received "
                             f"factor={factor}")
        if patience < 0 or cooldown < 0:
            raise ValueError(f"ReduceLROnPlateau: patience and cooldown must be >= 0, got "
                             f"{patience} and {cooldown}")
        self.monitor = monitor
        self.mode = _monitor_mode("ReduceLROnPlateau", monitor, mode)
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._warned_missing = False
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.cooldown_counter = 0
        self.wait = 0

    def _is_improvement(self, current: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return current + self.min_delta < self.best
        return current - self.min_delta > self.best

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()
        self._warned_missing = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            _warn_missing_monitor(self, logs, "The learning rate is not reduced.")
            return
        current = float(current)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(optimizer.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (from 0) and the logs' entries in sorted order,
    as Keras does (when no ``val_`` entry is logged, ``val_`` columns are added and hold "NA").

    The file is rewritten atomically at every epoch end (a temporary file renamed over it), so
    a reader or a crash never sees a partial row.

    Parameters
    ----------
    filename : str or path-like
    separator : str
        Column separator (default ",").
    append : bool
        Keep the rows already in the file (and write no header when it has one).
    """

    def __init__(self, filename, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys: list[str] | None = None

    def on_train_begin(self, logs=None):
        self._prefix = ""
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8", newline="") as f:
                self._prefix = f.read()
            if self._prefix and not self._prefix.endswith("\n"):
                self._prefix += "\n"
        self._append_header = not self._prefix
        self._lines: list[str] = []
        self.keys = None

    @staticmethod
    def _cell(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim):
            return '"[' + ", ".join(map(str, value)) + ']"'
        return str(value)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
            if self._append_header:
                self._lines.append(self.sep.join(["epoch", *self.keys]))
        row = [str(epoch)] + [self._cell(logs.get(k, "NA")) for k in self.keys]
        self._lines.append(self.sep.join(row))
        directory = os.path.dirname(os.path.abspath(self.filename))
        os.makedirs(directory, exist_ok=True)
        _write_text_atomic(self.filename, self._prefix + "\r\n".join(self._lines) + "\r\n")


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite (Keras).

    cnnfast never applies the update of a non-finite loss: without this callback ``fit`` raises
    FloatingPointError at that batch; with it, ``fit`` ends normally after that batch (the
    model keeps the weights from before it, every callback's ``on_train_end`` runs). With
    ``raise_error=True`` a RuntimeError is raised instead, as in Keras.
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and (np.isnan(loss) or np.isinf(loss)):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                                   f"{loss}. Terminating training immediately.")
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class BackupAndRestore(Callback):
    """Back up the whole training state so an interrupted ``fit`` resumes where it stopped.

    At every epoch end (or every `save_freq` batches) the model, its optimizer state, the
    state of ``cnnfast.random`` and the epoch reached are written atomically to
    ``backup_dir/latest.cnnfast``. When ``fit`` starts and a backup exists, it is restored and
    training continues from the epoch after the backed-up one: a resumed run gives the weights
    of the uninterrupted one (with ``save_freq="epoch"``). The backup is deleted when ``fit``
    ends normally unless ``delete_checkpoint=False``. Keras semantics; Keras backs up the
    weights only, cnnfast the optimizer and random state as well.

    Parameters
    ----------
    backup_dir : str or path-like
    save_freq : "epoch" or int
    double_checkpoint : bool
        Keep the previous backup as ``latest.cnnfast.bkp``, used when the latest is unreadable.
    delete_checkpoint : bool
    """

    def __init__(self, backup_dir, save_freq: str | int = "epoch",
                 double_checkpoint: bool = False, delete_checkpoint: bool = True) -> None:
        super().__init__()
        if not backup_dir:
            raise ValueError("BackupAndRestore: empty backup_dir argument passed")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or
                                     not isinstance(save_freq, (int, np.integer)) or
                                     save_freq <= 0):
            raise ValueError(f"BackupAndRestore: invalid value for save_freq: {save_freq!r}; "
                             "expected 'epoch' or a positive int")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._path = os.path.join(self.backup_dir, "latest.cnnfast")
        self._prev_path = self._path + ".bkp"
        self._batches_since_save = 0
        self._last_batch_seen = 0
        self._current_epoch = 0

    def on_train_begin(self, logs=None):
        self._batches_since_save = 0
        self._last_batch_seen = 0
        for path in (self._path, self._prev_path):
            if not os.path.exists(path):
                continue
            try:
                self._restore(path)
                return
            except (OSError, ValueError):
                if path == self._prev_path or not os.path.exists(self._prev_path):
                    raise

    def _restore(self, path: str) -> None:
        from cnnfast import random as random_module
        from cnnfast.saving import load_model, read_header

        rng = random_module.get_state()
        saved = load_model(path)  # restores cnnfast.random to the backed-up state
        model, opt = self.model, self.model.optimizer
        try:
            model.set_weights(saved.get_weights())
            if saved.optimizer is not None and type(saved.optimizer) is type(opt):
                opt.iterations = saved.optimizer.iterations
                opt._slots = {i: tuple(a.copy() for a in arrays)
                              for i, arrays in saved.optimizer._slots.items()}
                opt.__dict__.pop("_flat_key", None)  # rebuild the arenas from _slots
            for layer, old in zip(model.layers, saved.layers):
                if hasattr(old, "_calls"):
                    layer._calls = old._calls
        except BaseException:
            random_module.set_state(rng)
            raise
        training = json.loads(read_header(path).metadata.get("training", "{}"))
        epoch = int(training.get("epoch", 0))
        self._current_epoch = epoch
        model._initial_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        if self.save_freq == "epoch":
            self._save()

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        added = batch + 1 if batch <= self._last_batch_seen else batch - self._last_batch_seen
        self._batches_since_save += added
        self._last_batch_seen = batch
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save()

    def _save(self) -> None:
        from cnnfast.saving import save_model

        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._path):
            # A rename (atomic); until the new latest is written, the restore reads the .bkp.
            os.replace(self._path, self._prev_path)
        save_model(self.model, self._path, epoch=self._current_epoch)

    def on_train_end(self, logs=None):
        # fit ends through here after a Ctrl-C as well (a clean stop): keep the backup then.
        if getattr(self.model, "_interrupted", False):
            return
        if self.delete_checkpoint and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir)


class ProgressBar:
    """Keras-style progress line: `12/469 [==>...] - 3s 7ms/step - 18k img/s - loss: 0.31`.

    `total` is the number of steps, or None when unknown (a generator): the line then reads
    `12/Unknown` until the final update, which shows the count reached.
    """

    def __init__(self, total: int | None, verbose: int = 1, stream=None, width: int = 24,
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
        metrics = "".join(f" - {k}: {v:.4f}" for k, v in values.items())
        rate = samples / elapsed if elapsed > 0 else 0.0
        per_step = elapsed / max(step, 1)
        timing = f"{elapsed:.0f}s {per_step * 1e3:.0f}ms/step - {rate:,.0f} samples/s"
        total = step if self.total is None and final else self.total
        if self.verbose == 2:
            line = f"{step}/{total or 'Unknown'} - {timing}{metrics}"
        elif total is None:
            line = f"{step}/Unknown - {timing}{metrics}"
        else:
            done = int(self.width * step / max(total, 1))
            bar = "=" * max(done - 1, 0) + (">" if done < self.width else "=") + "." * (self.width - done)
            line = f"{step:>{len(str(total))}}/{total} [{bar}] - {timing}{metrics}"
        if self.verbose == 1 and self.dynamic:
            self.stream.write("\r" + line + ("\n" if final else ""))
        elif final or self.verbose == 2:
            self.stream.write(line + "\n")
        self.stream.flush()


def __getattr__(name: str) -> Any:
    # The callbacks of cnnfast.inside and cnnfast.report, under this module's name as well
    # (imported on first use: those modules import this one).
    if name == "TrainingDiagnostics":
        from cnnfast.inside import TrainingDiagnostics

        return TrainingDiagnostics
    if name == "HTMLReport":
        from cnnfast.report import HTMLReport

        return HTMLReport
    raise AttributeError(f"module 'cnnfast.callbacks' has no attribute {name!r}")
