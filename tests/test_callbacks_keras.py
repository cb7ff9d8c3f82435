"""The Keras callbacks LearningRateScheduler, ReduceLROnPlateau, CSVLogger, TerminateOnNaN and
BackupAndRestore: Keras 3 semantics and defaults, files written atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import callbacks as C
from cnnfast import layers as L


@pytest.fixture(autouse=True)
def one_thread():
    before = cf.get_num_threads()
    cf.set_num_threads(1)  # resumed and uninterrupted runs compared bit for bit
    yield
    cf.set_num_threads(before)


def small(seed: int = 0, optimizer=None, dropout: float = 0.0) -> cf.Sequential:
    cf.set_seed(seed)
    model = cf.Sequential([L.Input((6, 6, 2)), L.Conv2D(4, 3, activation="relu"),
                           L.Flatten(), L.Dropout(dropout), L.Dense(3, activation="softmax")])
    model.compile(optimizer or cf.optimizers.SGD(0.1), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(n: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6, 6, 2), dtype=np.float32), rng.integers(0, 3, n)


# -- LearningRateScheduler --------------------------------------------------------------------

def test_learning_rate_scheduler_sets_each_epochs_rate_and_logs_it():
    model = small()
    x, y = data()
    seen = []
    record = C.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(
        model.optimizer.learning_rate))
    sched = C.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else 0.2)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[sched, record])
    assert seen == [0.2, 0.1, 0.05]
    assert history.history["learning_rate"] == [0.2, 0.1, 0.05]


def test_learning_rate_scheduler_one_argument_schedule_and_errors():
    model = small()
    x, y = data()
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[C.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))])
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="should be a float. Got: 1"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[C.LearningRateScheduler(lambda e: 1)])
    scheduled = small(optimizer=cf.optimizers.SGD(
        cf.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)))
    with pytest.raises(TypeError, match="not settable"):  # Keras refuses it too
        scheduled.fit(x, y, epochs=1, verbose=0,
                      callbacks=[C.LearningRateScheduler(lambda e: 0.1)])


# -- ReduceLROnPlateau ------------------------------------------------------------------------

LOSSES = [1.0, 0.9, 0.95, 0.9, 0.95, 0.85, 0.84999, 0.9, 0.9, 0.9, 0.9, 0.9, 0.7, 0.9, 0.9]
# The learning rate after each epoch's on_epoch_end for the losses above, printed by Keras 3.15
# (torch backend) running keras.callbacks.ReduceLROnPlateau(**kwargs) on a model with SGD(1.0).
KERAS_PLATEAU = [
    ({"monitor": "loss", "factor": 0.5, "patience": 2},
     [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625, 0.0625,
      0.03125]),
    ({"monitor": "loss", "factor": 0.5, "patience": 1, "cooldown": 2, "min_lr": 0.1, "min_delta": 0.01},
     [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),
    ({"monitor": "loss", "factor": 0.2, "patience": 0},
     [1.0, 1.0, 0.2, 0.04, 0.008, 0.008, 0.0016, 0.00032, 6.4e-05, 1.3e-05, 3e-06, 1e-06,
      1e-06, 0.0, 0.0]),
]


@pytest.mark.parametrize("kwargs,want", KERAS_PLATEAU)
def test_reduce_lr_on_plateau_follows_keras(kwargs, want):
    model = small(optimizer=cf.optimizers.SGD(1.0))
    cb = C.ReduceLROnPlateau(**kwargs)
    cb.set_model(model)
    cb.on_train_begin()
    got, logged = [], []
    for epoch, loss in enumerate(LOSSES):
        logs = {"loss": loss}
        cb.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
        got.append(round(model.optimizer.learning_rate, 6))
    assert got == want  # rounded to 6 decimals as the Keras values were
    # The logged rate is the epoch's own, before any reduction at its end.
    assert logged == pytest.approx([1.0] + want[:-1], abs=1e-6)


def test_reduce_lr_on_plateau_defaults_and_errors():
    cb = C.ReduceLROnPlateau()
    assert (cb.monitor, cb.factor, cb.patience, cb.mode, cb.min_delta, cb.cooldown,
            cb.min_lr) == ("val_loss", 0.1, 10, "min", 1e-4, 0, 0.0)
    assert C.ReduceLROnPlateau(monitor="val_accuracy").mode == "max"
    with pytest.raises(ValueError, match="does not support a factor >= 1.0"):
        C.ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="cannot tell whether it should be maximized"):
        C.ReduceLROnPlateau(monitor="val_f1")


def test_reduce_lr_on_plateau_in_fit_reduces_and_history_records_the_rate():
    model = small(optimizer=cf.optimizers.Adam(0.01))
    x, y = data()
    # min_delta 10: no epoch improves on the first; with patience 1 the rate drops to 0 at the
    # end of epoch 2 (whose own rate, logged, was still 0.01).
    cb = C.ReduceLROnPlateau(monitor="loss", factor=0.0, patience=1, min_delta=10.0)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    assert history.history["learning_rate"] == [0.01, 0.01, 0.0]
    assert model.optimizer.learning_rate == 0.0


def test_reduce_lr_on_plateau_warns_when_the_monitor_is_missing():
    model = small()
    x, y = data()
    with pytest.warns(UserWarning, match="'val_loss' is not in the logs"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[C.ReduceLROnPlateau()])


# -- CSVLogger --------------------------------------------------------------------------------

def test_csv_logger_writes_keras_rows(tmp_path):
    model = small()
    x, y = data()
    path = tmp_path / "log" / "training.csv"
    history = model.fit(x, y, epochs=2, verbose=0, validation_split=0.25,
                        callbacks=[C.CSVLogger(path)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    for epoch, line in enumerate(lines[1:]):
        cells = line.split(",")
        assert cells[0] == str(epoch)
        values = [float(c) for c in cells[1:]]
        want = [history.history[k][epoch] for k in ("accuracy", "loss", "val_accuracy",
                                                    "val_loss")]
        assert values == want  # str(float) round-trips exactly
    assert len(lines) == 3
    assert sorted(os.listdir(path.parent)) == ["training.csv"]  # no temporary file left


def test_csv_logger_append_separator_and_missing_validation(tmp_path):
    path = tmp_path / "t.csv"
    model = small()
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[C.CSVLogger(path, separator=";")])
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[C.CSVLogger(path, separator=";", append=True)])
    lines = path.read_text().splitlines()
    # Keras adds val_ columns when none is logged; they read NA.
    assert lines[0] == "epoch;accuracy;loss;val_accuracy;val_loss"
    assert len(lines) == 3 and lines[1].endswith(";NA;NA") and lines[2].startswith("0;")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[C.CSVLogger(path)])  # append=False
    assert len(path.read_text().splitlines()) == 2


# -- TerminateOnNaN ---------------------------------------------------------------------------

def nan_data():
    x, y = data(16)
    x[8] = np.nan  # the second batch of 8 (no shuffling)
    return x, y


def test_terminate_on_nan_stops_cleanly_before_the_update(capsys):
    model = small()
    x, y = nan_data()
    model.fit(x[:8], y[:8], epochs=1, batch_size=8, shuffle=False, verbose=0)
    ended = []
    history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0, callbacks=[
        C.TerminateOnNaN(), C.LambdaCallback(on_train_end=lambda logs: ended.append(True))])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])
    assert ended == [True]
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # The first batch was applied, the second (NaN) was not: as one fit on the first batch.
    reference = small()
    reference.fit(x[:8], y[:8], epochs=1, batch_size=8, shuffle=False, verbose=0)
    reference.fit(x[:8], y[:8], epochs=1, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_without_terminate_on_nan_fit_raises_and_raise_error_raises_runtime_error():
    x, y = nan_data()
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        small().fit(x, y, batch_size=8, shuffle=False, verbose=0)
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1"):
        small().fit(x, y, batch_size=8, shuffle=False, verbose=0,
                    callbacks=[C.TerminateOnNaN(raise_error=True)])


# -- BackupAndRestore -------------------------------------------------------------------------

class Crash(Exception):
    pass


def test_backup_and_restore_resumes_to_the_uninterrupted_weights(tmp_path):
    x, y = data(32)
    kwargs = {"epochs": 4, "batch_size": 8, "verbose": 0}

    def make():  # dropout and shuffling draw from cnnfast.random: the backup restores it
        return small(seed=5, optimizer=cf.optimizers.RMSprop(0.01, momentum=0.5), dropout=0.3)

    straight = make()
    straight_history = straight.fit(x, y, **kwargs)

    backup = tmp_path / "backup"
    interrupted = make()

    def crash(epoch, logs):
        if epoch == 1:
            raise Crash

    with pytest.raises(Crash):
        interrupted.fit(x, y, callbacks=[C.BackupAndRestore(backup),
                                         C.LambdaCallback(on_epoch_end=crash)], **kwargs)
    assert os.listdir(backup) == ["latest.cnnfast"]
    cf.set_seed(123)  # a new process would start elsewhere; the backup brings the state back
    resumed = make()
    history = resumed.fit(x, y, callbacks=[C.BackupAndRestore(backup)], **kwargs)
    assert len(history.history["loss"]) == 2  # epochs 3 and 4
    assert history.history["loss"] == straight_history.history["loss"][2:]
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed.optimizer.iterations == straight.optimizer.iterations
    assert not backup.exists()  # deleted once fit ends normally


def test_backup_and_restore_options(tmp_path):
    x, y = data(16)
    backup = tmp_path / "b"
    model = small()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[C.BackupAndRestore(
        backup, save_freq=1, double_checkpoint=True, delete_checkpoint=False)])
    assert sorted(os.listdir(backup)) == ["latest.cnnfast", "latest.cnnfast.bkp"]
    # The previous backup is used when the latest cannot be read.
    (backup / "latest.cnnfast").write_bytes(b"garbage")
    again = small()
    history = again.fit(x, y, epochs=3, batch_size=8, verbose=0,
                        callbacks=[C.BackupAndRestore(backup)])
    # The .bkp was written after the first batch of epoch 2 (index 1): a backup within an
    # epoch restarts that epoch (Keras), so epochs 2 and 3 run.
    assert len(history.history["loss"]) == 2
    with pytest.raises(ValueError, match="empty backup_dir"):
        C.BackupAndRestore("")
    with pytest.raises(ValueError, match="save_freq"):
        C.BackupAndRestore(backup, save_freq="batch")
