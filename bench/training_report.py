"""Shared pieces of the training scripts (bench/train_mnist.py, bench/train_cifar10.py).

Each finished run is stored as one row in ``<out>/training.json`` (keyed by run name, so a rerun
replaces its row) and ``<out>/training.md`` is regenerated from all rows: a markdown table of
test accuracy, epochs, wall time, training images/s and threads, with a link to the run's
curves (``<out>/<run>.png``, drawn by ``History.plot``).
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cnnfast as cf
from bench.common import machine_name, markdown_table

RESULTS = Path(__file__).resolve().parent / "results"
HEADER = ["run", "model", "data (train/test)", "epochs", "batch", "optimizer", "test accuracy",
          "target", "met", "wall time (s)", "train images/s", "threads", "curves", "date"]


def output_dir(out: str | None, quick: bool) -> Path:
    """--out, else bench/results, except that --quick smoke runs never touch bench/results."""
    if out:
        path = Path(out)
    elif quick:
        path = Path(tempfile.gettempdir()) / "cnnfast-bench-quick"
    else:
        path = RESULTS
    path.mkdir(parents=True, exist_ok=True)
    return path


class TrainTimer(cf.callbacks.Callback):
    """Training time without the per-epoch validation: epoch begin to its last batch's end."""

    def __init__(self, samples: int) -> None:
        super().__init__()
        self.samples = samples
        self.train_seconds = 0.0
        self.images = 0
        self._start = 0.0
        self._last = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()
        self.images += self._batch_images(batch)

    def _batch_images(self, batch: int) -> int:
        b = self.params["batch_size"]
        return min(b, self.samples - batch * b)

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds += self._last - self._start


class TimeBudget(cf.callbacks.Callback):
    """Stop training (at a batch boundary) once ``seconds`` of wall time have passed."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__()
        self.seconds = seconds
        self.start = 0.0
        self.hit = False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is not None and time.perf_counter() - self.start > self.seconds:
            self.hit = True
            self.model.stop_training = True


def step_decay(base: float, drops: dict[int, float]) -> cf.callbacks.LambdaCallback:
    """Learning rate ``base * prod(factors of milestones <= epoch)`` set at each epoch start."""

    def on_epoch_begin(epoch, logs=None):
        lr = base
        for milestone, factor in drops.items():
            if epoch >= milestone:
                lr *= factor
        callback.model.optimizer.learning_rate = lr

    callback = cf.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin)
    return callback


def record(out: Path, run: str, row: dict, history: cf.callbacks.History | None,
           title: str) -> None:
    """Save the curves, store the row and rewrite training.md."""
    if history is not None and history.history:
        try:
            history.plot(str(out / f"{run}.png"), title=title)
            row["curves"] = f"[{run}.png]({run}.png)"
        except ImportError as err:
            print(f"(no curves: {err})", file=sys.stderr)
    row.setdefault("curves", "")
    row["date"] = datetime.date.today().isoformat()
    store = out / "training.json"
    rows = json.loads(store.read_text()) if store.exists() else {}
    rows[run] = row
    store.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    table = markdown_table(HEADER, [[r.get(k, "") for k in HEADER] for _, r in sorted(rows.items())])
    lines = [
        "# Trained accuracy",
        "",
        (f"Machine: {machine_name()}. Written by bench/train_mnist.py and bench/train_cifar10.py; "
         "each row is the latest run of that name. Wall time covers fit (training and the "
         "per-epoch validation pass) and the final evaluation; train images/s counts training "
         "batches only. Validation curves use the test set (no model selection is made on it)."),
        "",
        table,
        "",
    ]
    (out / "training.md").write_text("\n".join(lines))
    print(f"wrote {out / 'training.md'}")


def result_row(run: str, model_name: str, data: str, epochs: int, batch: int, optimizer: str,
               accuracy: float | None, target: float | None, wall: float, timer: TrainTimer) -> dict:
    met = "" if target is None or accuracy is None else ("yes" if accuracy >= target else "NO")
    return {
        "run": run, "model": model_name, "data (train/test)": data, "epochs": epochs,
        "batch": batch, "optimizer": optimizer,
        "test accuracy": "n/a" if accuracy is None else f"{100 * accuracy:.2f}%",
        "target": "" if target is None else f">= {100 * target:.1f}%", "met": met,
        "wall time (s)": round(wall, 1),
        "train images/s": round(timer.images / timer.train_seconds) if timer.train_seconds else "",
        "threads": cf.get_num_threads(),
    }
