"""Keras's metric names (top-k accuracies) in compile/fit/evaluate, the loss functions of Keras 2
scripts, and the classic Keras mnist_cnn.py run through cnnfast.keras."""

from __future__ import annotations

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import layers as L
from cnnfast import losses as LS
from cnnfast import metrics as M


def brute_top_k(labels: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """In the top k: fewer than k classes score strictly higher than the label's class."""
    target = pred[np.arange(len(labels)), labels]
    return (np.sum(pred > target[:, None], axis=1) < k).astype(np.float32)


@pytest.mark.parametrize("k", [1, 2, 5, 10, 12])
def test_top_k_functions_match_a_brute_force_count(k, rng):
    pred = rng.random((50, 10)).astype(np.float32)
    pred[:5, :4] = 0.5  # ties straddling the k-th place count as in (Keras's in_top_k)
    labels = rng.integers(0, 10, 50)
    labels[:5] = 3
    onehot = np.eye(10, dtype=np.float32)[labels]
    want = brute_top_k(labels, pred, k)
    np.testing.assert_array_equal(M.top_k_categorical_accuracy(onehot, pred, k), want)
    np.testing.assert_array_equal(M.sparse_top_k_categorical_accuracy(labels, pred, k), want)
    np.testing.assert_array_equal(
        M.sparse_top_k_categorical_accuracy(labels[:, None], pred, k), want)
    assert M.top_k_categorical_accuracy(onehot, pred).dtype == np.float32


def classifier(seed: int = 0) -> cf.Sequential:
    cf.set_seed(seed)
    return cf.Sequential([L.Input((5, 5, 2)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                          L.Dense(10, activation="softmax")])


def problem(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 5, 5, 2), dtype=np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize("python", [False, True], ids=["plan", "walk"])
@pytest.mark.parametrize("sparse", [False, True], ids=["onehot", "sparse"])
def test_top_k_metrics_in_training_and_evaluation(python, sparse):
    x, labels = problem()
    y = labels if sparse else np.eye(10, dtype=np.float32)[labels]
    model = classifier()
    top = "sparse_top_k_categorical_accuracy" if sparse else "top_k_categorical_accuracy"
    model.compile(cf.optimizers.SGD(0.5), "sparse_categorical_crossentropy" if sparse
                  else "categorical_crossentropy",
                  metrics=["accuracy", top, M.TopKCategoricalAccuracy(2, name="top2")
                           if not sparse else M.SparseTopKCategoricalAccuracy(2, name="top2")])
    model._force_python_training = python
    assert (model._train_plan is None) == python
    assert model.metrics_names == ["loss", "accuracy", top, "top2"]
    # Training metrics are those of the output before the update: predict() gives it (no
    # dropout), and the first of the two identical batches shows them.
    before = model.predict(x, verbose=0)
    _, acc, top5, top2 = model.train_on_batch(x, y)
    assert acc == np.mean(before.argmax(1) == labels)
    assert top5 == np.mean(brute_top_k(labels, before, 5))
    assert top2 == np.mean(brute_top_k(labels, before, 2))
    after = model.predict(x, verbose=0)
    result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(result) == {"loss", "accuracy", top, "top2"}
    assert result[top] == pytest.approx(np.mean(brute_top_k(labels, after, 5)), abs=1e-12)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_split=0.25)
    assert set(history.history) == {"loss", "accuracy", top, "top2", "val_loss",
                                    "val_accuracy", f"val_{top}", "val_top2"}
    assert all(0.0 <= v <= 1.0 for v in history.history[f"val_{top}"])


def test_top_k_training_logs_of_plan_and_walk_agree():
    x, labels = problem()
    logs = []
    for python in (False, True):
        model = classifier()
        model.compile(cf.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                      metrics=["sparse_top_k_categorical_accuracy"])
        model._force_python_training = python
        cf.set_seed(1)
        logs.append(model.fit(x, labels, batch_size=8, epochs=3, verbose=0).history)
    assert logs[0] == logs[1]


def test_metric_objects_and_functions_in_compile_and_saving(tmp_path):
    x, labels = problem()
    model = classifier()
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=[M.sparse_top_k_categorical_accuracy,
                           M.SparseTopKCategoricalAccuracy(k=3, name="top3")])
    assert model.metrics_names == ["loss", "sparse_top_k_categorical_accuracy", "top3"]
    model.fit(x, labels, epochs=1, verbose=0)
    model.save(tmp_path / "m.cnnfast")
    loaded = cf.load_model(tmp_path / "m.cnnfast")
    assert loaded.metrics_names == model.metrics_names
    assert loaded._metric_objects[1].k == 3
    np.testing.assert_allclose(loaded.evaluate(x, labels, verbose=0),
                               model.evaluate(x, labels, verbose=0), rtol=0, atol=0)
    with pytest.raises(ValueError, match="distinct names"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["acc", "accuracy"])
    with pytest.raises(ValueError, match="k must be a positive int"):
        M.TopKCategoricalAccuracy(k=0)


# -- losses as Keras 2 functions ----------------------------------------------------------------

def test_loss_functions_give_per_sample_losses_like_keras(rng):
    labels = rng.integers(0, 4, 6)
    onehot = np.eye(4, dtype=np.float32)[labels]
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    unnormalised = probs * 3.0  # Keras divides by the row sum first
    want = -np.log(np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7))[np.arange(6), labels]
    # float32 log of a float32 probability: a few ulps of values of size ~1.
    for got in (LS.categorical_crossentropy(onehot, unnormalised),
                LS.sparse_categorical_crossentropy(labels, probs),
                LS.categorical_crossentropy(onehot, logits, from_logits=True),
                LS.sparse_categorical_crossentropy(labels[:, None], logits, from_logits=True)):
        assert got.shape == (6,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    smooth = LS.categorical_crossentropy(onehot, probs, label_smoothing=0.2)
    target = onehot * 0.8 + 0.05
    np.testing.assert_allclose(smooth, -np.sum(target * np.log(probs), axis=1), rtol=1e-5)
    y, p = rng.random((3, 4, 2)), rng.random((3, 4, 2))
    np.testing.assert_allclose(LS.mean_squared_error(y, p), np.mean((y - p) ** 2, -1),
                               rtol=1e-6)
    assert LS.mse is LS.mean_squared_error
    with pytest.raises(ValueError, match="labels must lie in"):
        LS.sparse_categorical_crossentropy([5], probs[:1])


@pytest.mark.parametrize("fn,cls", [
    (LS.categorical_crossentropy, LS.CategoricalCrossentropy),
    (LS.sparse_categorical_crossentropy, LS.SparseCategoricalCrossentropy),
    (LS.mean_squared_error, LS.MeanSquaredError),
])
def test_compile_takes_the_loss_functions(fn, cls):
    x, labels = problem(16)
    y = labels if cls is LS.SparseCategoricalCrossentropy else np.eye(10, dtype=np.float32)[labels]
    weights = []
    for loss in (fn, cls()):
        model = classifier()
        model.compile(cf.optimizers.SGD(0.1), loss)
        assert type(model.loss) is cls and model._train_plan is not None
        model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


# -- the classic Keras 2 example, mnist_cnn.py, on cnnfast.keras ------------------------------

def test_keras_mnist_cnn_script_runs_on_cnnfast_keras():
    from cnnfast import keras
    from cnnfast.keras import backend as K
    from cnnfast.keras.datasets import mnist
    from cnnfast.keras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
    from cnnfast.keras.models import Sequential

    batch_size, num_classes = 32, 10
    img_rows, img_cols = 28, 28
    (x_train, y_train), (x_test, y_test) = mnist.load_data(sample=True)
    x_train, y_train = x_train[:256], y_train[:256]  # a few steps on a small slice
    x_test, y_test = x_test[:64], y_test[:64]
    assert K.image_data_format() == "channels_last"
    x_train = x_train.reshape(x_train.shape[0], img_rows, img_cols, 1)
    x_test = x_test.reshape(x_test.shape[0], img_rows, img_cols, 1)
    input_shape = (img_rows, img_cols, 1)
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)

    model = Sequential()
    model.add(Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=input_shape))
    model.add(Conv2D(64, (3, 3), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))
    model.add(Flatten())
    model.add(Dense(128, activation="relu"))
    model.add(Dropout(0.5))
    model.add(Dense(num_classes, activation="softmax"))
    model.compile(loss=keras.losses.categorical_crossentropy,
                  optimizer=keras.optimizers.Adadelta(), metrics=["accuracy"])
    assert model._train_plan is not None  # the C++ step runs Adadelta
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=1, verbose=0,
                        validation_data=(x_test, y_test))
    score = model.evaluate(x_test, y_test, verbose=0)
    assert model.optimizer.iterations == 256 // batch_size
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(score) == 2 and np.isfinite(score).all() and 0.0 <= score[1] <= 1.0
    # Adadelta's first steps are tiny (Keras 3's lr 1e-3, sqrt(eps) scale) but move every
    # weight tensor.
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_keras_names_of_optimizers_schedules_callbacks_losses_metrics():
    import importlib

    from cnnfast import keras

    names = {
        "optimizers": ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax",
                       "Nadam", "Lion"],
        "optimizers.schedules": ["ExponentialDecay", "PiecewiseConstantDecay",
                                 "InverseTimeDecay", "PolynomialDecay", "CosineDecay",
                                 "CosineDecayRestarts", "LearningRateSchedule"],
        "callbacks": ["LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger",
                      "TerminateOnNaN", "BackupAndRestore", "LambdaCallback", "EarlyStopping",
                      "ModelCheckpoint"],
        "losses": ["categorical_crossentropy", "sparse_categorical_crossentropy",
                   "mean_squared_error", "mse"],
        "metrics": ["accuracy", "top_k_categorical_accuracy",
                    "sparse_top_k_categorical_accuracy", "TopKCategoricalAccuracy",
                    "SparseTopKCategoricalAccuracy"],
    }
    for module, members in names.items():
        mod = importlib.import_module(f"cnnfast.keras.{module}")
        attr = keras
        for part in module.split("."):
            attr = getattr(attr, part)
        assert attr is mod
        for name in members:
            assert getattr(mod, name) is not None, f"keras.{module}.{name}"
    assert keras.optimizers.RMSprop is cf.optimizers.RMSprop
    assert keras.optimizers.schedules.CosineDecay is cf.optimizers.schedules.CosineDecay
    assert keras.backend.image_data_format() == "channels_last"
    with pytest.raises(NotImplementedError, match="keras.metrics.AUC is not supported"):
        _ = keras.metrics.AUC
