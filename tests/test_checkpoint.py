"""ModelCheckpoint (Keras semantics) and exact resume: training 4 epochs straight gives the same
bits as training 2, saving, loading (here or in a fresh process) and training epochs 3-4."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import layers as L

# One thread: conv2d_backward_weights hands units to threads dynamically and sums per-thread
# partials, so with several threads the summation order (and the last bits) vary run to run.
# Exact resume is about the saved state, which one thread isolates from that.
THREADS = 1

CONFIGS = {
    # Adam, unseeded dropout (masks from cnnfast.random), shuffling, validation split.
    "adam": {"model": "keras_mnist_cnn", "optimizer": ("Adam", {"learning_rate": 2e-3})},
    # SGD with Nesterov momentum and a seeded dropout layer (per-layer call counter).
    "sgd": {"model": "seeded_dropout",
            "optimizer": ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True})},
}

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import cnnfast as cf
    cf.set_num_threads({threads})
    cf.set_seed(12345)  # anything: the checkpoint restores the generator
    data = np.load(sys.argv[1])
    model = cf.load_model(sys.argv[2])
    assert model.saved_epoch == 2, model.saved_epoch
    model.fit(data["x"], data["y"], batch_size=16, epochs=4, verbose=0, validation_split=0.25,
              initial_epoch=model.saved_epoch)
    model.save(sys.argv[3])
""")


def make_model(config: str) -> cf.Sequential:
    cf.set_seed(42)
    spec = CONFIGS[config]
    if spec["model"] == "keras_mnist_cnn":
        model = cf.models.keras_mnist_cnn(input_shape=(18, 18, 1))
    else:
        model = cf.Sequential([L.Input((18, 18, 1)), L.Conv2D(4, 3, strides=2, activation="relu"),
                               L.Dropout(0.3, seed=9), L.Flatten(), L.Dense(10, activation="softmax")])
    name, kwargs = spec["optimizer"]
    model.compile(getattr(cf.optimizers, name)(**kwargs), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((72, 18, 18, 1)).astype(np.float32), rng.integers(0, 10, 72)


@pytest.fixture(autouse=True)
def one_thread():
    before = cf.get_num_threads()
    cf.set_num_threads(THREADS)
    yield
    cf.set_num_threads(before)


def fit(model, epochs, initial_epoch=0, callbacks=None):
    x, y = data()
    return model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, validation_split=0.25,
                     initial_epoch=initial_epoch, callbacks=callbacks)


def assert_same_weights(a: cf.Sequential, b: cf.Sequential) -> None:
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_resume_from_checkpoint_is_bit_identical(tmp_path, config):
    straight = make_model(config)
    history = fit(straight, 4)

    first = make_model(config)
    checkpoint = cf.callbacks.ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}.cnnfast")
    fit(first, 2, callbacks=[checkpoint])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.cnnfast", "ckpt-02.cnnfast"]

    cf.set_seed(777)  # a different global sequence: the checkpoint must restore its own
    resumed = cf.load_model(tmp_path / "ckpt-02.cnnfast")
    assert resumed.compiled and resumed.saved_epoch == 2
    assert resumed.optimizer.iterations == first.optimizer.iterations
    rest = fit(resumed, 4, initial_epoch=resumed.saved_epoch)
    assert_same_weights(straight, resumed)
    assert rest.history["loss"] == history.history["loss"][2:]
    assert rest.history["val_loss"] == history.history["val_loss"][2:]


def test_resume_in_a_fresh_process_is_bit_identical(tmp_path):
    straight = make_model("adam")
    fit(straight, 4)
    first = make_model("adam")
    fit(first, 2, callbacks=[cf.callbacks.ModelCheckpoint(tmp_path / "ckpt.cnnfast")])
    x, y = data()
    np.savez(tmp_path / "data.npz", x=x, y=y)

    package_root = pathlib.Path(cf.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(package_root),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(threads=THREADS), str(tmp_path / "data.npz"),
         str(tmp_path / "ckpt.cnnfast"), str(tmp_path / "final.cnnfast")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
        cwd=tmp_path,  # not the repo root: `-c` puts the cwd first on sys.path
    )
    assert proc.returncode == 0, proc.stderr
    assert_same_weights(straight, cf.load_model(tmp_path / "final.cnnfast"))


# -- ModelCheckpoint semantics ------------------------------------------------------------------

class Driver:
    """Calls a callback the way fit does, with chosen logs."""

    def __init__(self, callback, model=None):
        self.cb = callback
        self.model = model or make_model("sgd")
        callback.set_model(self.model)
        callback.set_params({"epochs": 10, "steps": 3, "verbose": 0})
        callback.on_train_begin()

    def epoch(self, e, logs, steps=3):
        self.cb.on_epoch_begin(e)
        for b in range(steps):
            self.cb.on_train_batch_end(b, {"loss": 1.0})
        self.cb.on_epoch_end(e, logs)


def test_filepath_formatting_with_logs_and_directories(tmp_path):
    cb = cf.callbacks.ModelCheckpoint(str(tmp_path / "run" / "m-{epoch:02d}-{val_loss:.2f}.cnnfast"))
    d = Driver(cb)
    d.epoch(0, {"loss": 2.0, "val_loss": 1.2345})
    d.epoch(1, {"loss": 1.5, "val_loss": 0.5})
    assert sorted(os.listdir(tmp_path / "run")) == ["m-01-1.23.cnnfast", "m-02-0.50.cnnfast"]
    with pytest.raises(KeyError, match="val_accuracy"):
        Driver(cf.callbacks.ModelCheckpoint(tmp_path / "{val_accuracy}.x")).epoch(0, {"loss": 1})


def test_save_best_only_min_and_max(tmp_path, capsys):
    path = tmp_path / "best.cnnfast"
    cb = cf.callbacks.ModelCheckpoint(path, save_best_only=True, verbose=1)
    d = Driver(cb)
    d.epoch(0, {"val_loss": 1.0})
    saved = path.stat().st_mtime_ns, path.read_bytes()
    d.model.layers[0].weights_["kernel"][...] = 0.0
    d.epoch(1, {"val_loss": 1.5})  # worse: not saved
    assert path.read_bytes() == saved[1]
    d.epoch(2, {"val_loss": 0.5})  # better: saved
    assert path.read_bytes() != saved[1]
    assert cb.best == 0.5
    out = capsys.readouterr().out
    assert "Epoch 2: val_loss did not improve from 1.00000" in out
    assert "Epoch 3: val_loss improved from 1.00000 to 0.50000, saving model to" in out

    acc = cf.callbacks.ModelCheckpoint(tmp_path / "acc-{epoch}.cnnfast", monitor="val_accuracy",
                                       save_best_only=True)
    assert acc.mode == "max"
    d = Driver(acc)
    for e, value in enumerate([0.5, 0.4, 0.7]):
        d.epoch(e, {"val_accuracy": value})
    assert sorted(os.listdir(tmp_path)) == ["acc-1.cnnfast", "acc-3.cnnfast", "best.cnnfast"]
    threshold = cf.callbacks.ModelCheckpoint(tmp_path / "t.cnnfast", save_best_only=True,
                                             initial_value_threshold=0.1)
    Driver(threshold).epoch(0, {"val_loss": 0.2})
    assert not (tmp_path / "t.cnnfast").exists()


def test_missing_monitor_warns_and_skips(tmp_path):
    cb = cf.callbacks.ModelCheckpoint(tmp_path / "m.cnnfast", save_best_only=True)
    with pytest.warns(UserWarning, match="'val_loss' is not in the logs"):
        Driver(cb).epoch(0, {"loss": 1.0})
    assert not os.listdir(tmp_path)


def test_save_weights_only_file_has_no_training_state(tmp_path):
    cb = cf.callbacks.ModelCheckpoint(tmp_path / "w.cnnfast", save_weights_only=True)
    d = Driver(cb)
    d.epoch(0, {"loss": 1.0})
    meta = cf.saving.read_header(tmp_path / "w.cnnfast").metadata
    assert set(meta) == {"format", "format_version", "architecture"}
    loaded = cf.load_model(tmp_path / "w.cnnfast")
    assert not loaded.compiled and loaded.saved_epoch is None
    assert_same_weights(loaded, d.model)
    full = cf.callbacks.ModelCheckpoint(tmp_path / "f.cnnfast")
    Driver(full, d.model).epoch(4, {"loss": 1.0})
    training = json.loads(cf.saving.read_header(tmp_path / "f.cnnfast").metadata["training"])
    assert training["epoch"] == 5 and training["loss"] == "sparse_categorical_crossentropy"
    assert training["dropout_calls"] == {"dropout": 0}


def test_save_freq_in_batches(tmp_path):
    cb = cf.callbacks.ModelCheckpoint(tmp_path / "m-{epoch}-{batch}.cnnfast", save_freq=2)
    d = Driver(cb)
    d.epoch(0, {"loss": 1.0}, steps=3)
    d.epoch(1, {"loss": 1.0}, steps=3)
    # Batches are counted across epochs: saves after batches 2 and 4 and 6 overall.
    assert sorted(os.listdir(tmp_path)) == ["m-1-2.cnnfast", "m-2-1.cnnfast", "m-2-3.cnnfast"]
    loaded = cf.load_model(tmp_path / "m-2-1.cnnfast")
    assert loaded.saved_epoch is None  # mid-epoch: not a resumable epoch boundary
    training = json.loads(cf.saving.read_header(tmp_path / "m-2-1.cnnfast").metadata["training"])
    assert (training["epoch"], training["step"]) == (1, 1)


@pytest.mark.parametrize("kwargs", [{"mode": "best"}, {"save_freq": 0}, {"save_freq": "batch"},
                                    {"save_freq": True}])
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        cf.callbacks.ModelCheckpoint(tmp_path / "m.cnnfast", **kwargs)
