"""Keras habits a newcomer tries next (issue 17): each test fails on the behaviour before it."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import layers as L
from cnnfast.callbacks import ProgressBar
from cnnfast.data import BatchIterator
from cnnfast.keras import models as keras_models
from cnnfast.saving import model_from_json


def tiny_cnn(seed: int = 0, compile_: bool = True, metrics=("accuracy",)) -> cf.Sequential:
    cf.set_seed(seed)
    model = cf.Sequential([L.Input((8, 8, 2)), L.Conv2D(4, 3, activation="relu"),
                           L.MaxPooling2D(2), L.Flatten(), L.Dense(3, activation="softmax")])
    if compile_:
        model.compile(cf.optimizers.SGD(0.05), "sparse_categorical_crossentropy",
                      metrics=list(metrics))
    return model


def toy(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 2), dtype=np.float32), rng.integers(0, 3, n)


def batches_of(x: np.ndarray, y: np.ndarray | None, size: int):
    for start in range(0, len(x), size):
        yield (x[start:start + size],) if y is None else (x[start:start + size],
                                                          y[start:start + size])


class LoaderLike:
    """What a PyTorch DataLoader looks like to fit: __iter__ (a new pass each time), __len__."""

    def __init__(self, x, y, size):
        self.x, self.y, self.size = x, y, size
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        return iter(list(batches_of(self.x, self.y, self.size)))

    def __len__(self):
        return (len(self.x) + self.size - 1) // self.size


class ArrayLike:
    """A batch element NumPy converts through __array__ only (as it does a torch tensor)."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def assert_same_weights(a: cf.Sequential, b: cf.Sequential) -> None:
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


# -- 1. predict(verbose=1) --------------------------------------------------------------------

def test_predict_verbose_shows_a_progress_bar(capsys):
    model = tiny_cnn()
    x, _ = toy(10)
    silent = model.predict(x, batch_size=4)
    assert capsys.readouterr().out == ""
    shown = model.predict(x, batch_size=4, verbose=1)
    out = capsys.readouterr().out
    assert "3/3" in out and "[" in out and "ms/step" in out, out
    np.testing.assert_array_equal(shown, silent)
    model.predict(x, batch_size=4, verbose=2)
    assert "3/3 - " in capsys.readouterr().out


def test_predict_verbose_0_runs_one_batch_in_one_call():
    model = tiny_cnn()
    x, _ = toy(10)
    net = model._inference_network()
    calls = []

    class Counting:
        def forward(self, out, xb):
            calls.append(len(xb))
            net.forward(out, xb)

    model._inference_network = lambda: Counting()
    model.predict(x, batch_size=32)
    assert calls == [10]
    model.predict(x, batch_size=32, verbose=1)  # the bar path also runs through the executor
    assert calls == [10, 10]


def test_progress_bar_with_unknown_total_and_no_metrics():
    stream = io.StringIO()
    bar = ProgressBar(None, verbose=1, stream=stream)
    bar.update(4, 16, {}, final=True)
    line = stream.getvalue()
    assert line.startswith("4/4 [") and not line.rstrip().endswith("-"), line


# -- 2. iterables of batches ------------------------------------------------------------------

def test_fit_on_a_dataloader_like_iterable_equals_fit_on_arrays():
    x, y = toy(20)
    arrays, batched = tiny_cnn(), tiny_cnn()
    h1 = arrays.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    loader = LoaderLike(x, y, 8)
    h2 = batched.fit(loader, epochs=2, verbose=0)
    assert loader.passes == 2  # one new pass per epoch
    assert h2.history["loss"] == h1.history["loss"]
    assert_same_weights(arrays, batched)


def test_batches_may_be_anything_np_asarray_converts():
    x, y = toy(12)
    model, ref = tiny_cnn(), tiny_cnn()
    ref.fit(x, y, batch_size=6, shuffle=False, verbose=0)
    pairs = [(ArrayLike(xb), ArrayLike(yb)) for xb, yb in batches_of(x, y, 6)]
    model.fit(iter(pairs), verbose=0)
    assert_same_weights(model, ref)
    np.testing.assert_array_equal(model.predict(iter(xb for xb, _ in pairs)), ref.predict(x, batch_size=6))


def test_fit_on_a_torch_dataloader():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    x, y = toy(20)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8)
    model, ref = tiny_cnn(), tiny_cnn()
    ref.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    model.fit(loader, epochs=2, verbose=0)
    assert_same_weights(model, ref)
    assert model.evaluate(loader, verbose=0) == ref.evaluate(x, y, batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.predict(loader), ref.predict(x, batch_size=8))


def test_infinite_generator_takes_steps_per_epoch_and_continues_next_epoch():
    x, y = toy(24)
    drawn = []

    def forever():
        i = 0
        while True:
            drawn.append(i)
            start = (i % 6) * 4
            yield x[start:start + 4], y[start:start + 4]
            i += 1

    model, ref = tiny_cnn(), tiny_cnn()
    history = model.fit(forever(), steps_per_epoch=3, epochs=2, verbose=0)
    assert history.epoch == [0, 1] and drawn == list(range(6))
    # Epoch 2 continued with batches 4-6, so two epochs saw each sample once, in order.
    ref.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    assert_same_weights(model, ref)


def test_one_shot_generator_without_steps_trains_one_epoch_then_warns():
    x, y = toy(16)
    model = tiny_cnn()
    with pytest.warns(UserWarning, match="ran out of batches after 1 epoch.*steps_per_epoch"):
        history = model.fit(batches_of(x, y, 4), epochs=3, verbose=0)
    assert history.epoch == [0]
    with pytest.warns(UserWarning, match="ran out of batches after 2 epoch"):
        # A generator shorter than steps_per_epoch * epochs: epoch 2 is cut short, then stop.
        history = model.fit(batches_of(x, y, 4), steps_per_epoch=3, epochs=3, verbose=0)
    assert history.epoch == [0, 1]
    with pytest.raises(ValueError, match="no batches"):
        model.fit(iter([]), verbose=0)


def test_evaluate_and_predict_take_iterables_and_steps():
    x, y = toy(20)
    model = tiny_cnn()
    full = model.evaluate(x, y, batch_size=5, verbose=0)
    assert model.evaluate(batches_of(x, y, 5), verbose=0) == pytest.approx(full, rel=1e-12)
    first_two = model.evaluate(x[:10], y[:10], batch_size=5, verbose=0)
    assert model.evaluate(batches_of(x, y, 5), steps=2, verbose=0) == first_two
    assert model.evaluate(x, y, batch_size=5, steps=2, verbose=0) == first_two
    # Compared with arrays cut into the same batches: the GEMM's blocking, and so the rounding,
    # depends on the batch size.
    ref = model.predict(x, batch_size=6)
    np.testing.assert_array_equal(model.predict(batches_of(x, None, 6)), ref)       # (x,)
    np.testing.assert_array_equal(model.predict(batches_of(x, y, 6)), ref)          # (x, y)
    np.testing.assert_array_equal(model.predict(xb for xb, _ in batches_of(x, y, 6)), ref)
    np.testing.assert_array_equal(model.predict(batches_of(x, y, 6), steps=2), ref[:12])
    np.testing.assert_array_equal(model.predict(x, batch_size=6, steps=2), ref[:12])
    np.testing.assert_array_equal(model.predict(BatchIterator(x, y, 6, shuffle=False)), ref)
    assert model.evaluate(BatchIterator(x, y, 5, shuffle=False), verbose=0) == \
        pytest.approx(full, rel=1e-12)


def test_validation_data_and_list_of_batches():
    x, y = toy(24)
    model = tiny_cnn()
    val = list(batches_of(x[16:], y[16:], 3))  # a list of (x, y) tuples: batches
    history = model.fit(list(batches_of(x[:16], y[:16], 4)), validation_data=val, epochs=2,
                        verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x[16:], y[16:], batch_size=3, verbose=0)[0], rel=1e-12)
    history = model.fit(x[:16], y[:16], validation_data=iter(val), validation_steps=2, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x[16:22], y[16:22], batch_size=3, verbose=0)[0], rel=1e-12)


def test_bad_batches_name_the_batch_and_the_shapes():
    x, y = toy(12)
    model = tiny_cnn()

    def second_is_wrong():
        yield x[:4], y[:4]
        yield x[4:8, :, :, :1], y[4:8]

    with pytest.raises(ValueError, match=r"epoch 1, batch 2.*\(None, 8, 8, 2\), got \(4, 8, 8, 1\)"):
        model.fit(second_is_wrong(), verbose=0)
    with pytest.raises(ValueError, match=r"batch 1: expected an \(x, y\) pair.*ndarray of shape "
                                         r"\(4, 8, 8, 2\)"):
        model.fit(iter([x[:4]]), verbose=0)
    with pytest.raises(ValueError, match=r"batch 1.*x and y have different numbers.*\(3,\)"):
        model.fit(iter([(x[:4], y[:3])]), verbose=0)
    with pytest.raises(ValueError, match=r"evaluate, batch 2.*labels"):
        model.evaluate(iter([(x[:4], y[:4]), (x[4:8], y[4:8] + 5)]), verbose=0)
    with pytest.raises(ValueError, match=r"predict: batch 1.*\(None, 8, 8, 2\)"):
        model.predict(iter([x[:4, :4]]))
    with pytest.raises(ValueError, match="y must be None"):
        model.fit(batches_of(x, y, 4), y)


# -- 3. Keras model attributes ----------------------------------------------------------------

def test_model_shapes_layers_and_weights_like_keras():
    model = tiny_cnn(metrics=())
    assert model.input_shape == (None, 8, 8, 2) and model.input_shape_ == (8, 8, 2)
    assert model.output_shape == (None, 3) and model.output_shape_ == (3,)
    conv, dense = model.get_layer("conv2d"), model.get_layer(index=-1)
    assert conv is model.layers[0] and dense is model.layers[3]
    with pytest.raises(ValueError, match=r"'convv'.*\['conv2d', 'max_pooling2d', 'flatten', "
                                         r"'dense'\]"):
        model.get_layer("convv")
    with pytest.raises(ValueError, match="out of range"):
        model.get_layer(index=4)
    assert [w.shape for w in model.weights] == [(3, 3, 2, 4), (4,), (36, 3), (3,)]
    assert model.weights[0] is conv.weights_["kernel"]  # live, like Keras variables
    conv.trainable = False
    assert [w.shape for w in model.trainable_weights] == [(36, 3), (3,)]
    assert [w.shape for w in model.non_trainable_weights] == [(3, 3, 2, 4), (4,)]
    assert model.metrics_names == ["loss"]
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["acc"])
    assert model.metrics_names == ["loss", "accuracy"]
    assert cf.Sequential([L.Dense(2)], name="s").metrics_names == ["loss"]
    with pytest.raises(AttributeError, match="no input shape"):
        _ = cf.Sequential([L.Dense(2)]).input_shape


def test_unbuilt_output_shape_comes_from_the_shape_formulas():
    model = cf.models.lenet5()
    assert not model.built and model.output_shape == (None, 10)


def test_to_json_round_trips_through_model_from_json():
    model = tiny_cnn()
    text = model.to_json()
    assert json.loads(text)["class_name"] == "Sequential"
    for loader in (model_from_json, keras_models.model_from_json):
        rebuilt = loader(text)
        assert rebuilt.get_config() == model.get_config()
    rebuilt.set_weights(model.get_weights())
    x, _ = toy(4)
    np.testing.assert_array_equal(rebuilt.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="Keras model's JSON"):
        model_from_json(json.dumps({"module": "keras", "class_name": "Sequential", "config": {}}))


def test_layer_get_and_set_weights_check_shapes():
    model = tiny_cnn()
    dense = model.get_layer("dense")
    kernel, bias = dense.get_weights()
    assert kernel.shape == (36, 3) and bias.shape == (3,)
    kernel[...] = 0  # a copy
    assert np.any(dense.get_weights()[0] != 0)
    dense.set_weights([np.ones((36, 3)), np.full(3, 2.0)])
    np.testing.assert_array_equal(model.get_weights()[3], [2, 2, 2])
    with pytest.raises(ValueError, match=r"Dense 'dense' weight 'kernel' has shape \(36, 3\), "
                                         r"got shape \(3, 36\)"):
        dense.set_weights([np.ones((3, 36)), np.zeros(3)])
    with pytest.raises(ValueError, match=r"Dense 'dense' has 2 weight arrays.*got 1"):
        dense.set_weights([np.ones((36, 3))])
    assert L.Dense(3).get_weights() == []


def test_evaluate_return_dict():
    model = tiny_cnn()
    x, y = toy(8)
    loss, acc = model.evaluate(x, y, verbose=0)
    assert model.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss, "accuracy": acc}
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss}


def _softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy",
                                  "mse"])
def test_sample_weight_scales_loss_and_gradient_like_keras(loss):
    # Keras 3 (checked with keras 3.15, torch backend): loss = sum(w_i l_i) / N over the batch,
    # not divided by sum(w), and each sample's gradient is scaled by w_i.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    w = np.array([1.0, 2.0, 0.0, 0.5, 3.0, 1.0])
    cf.set_seed(1)
    model = cf.Sequential([L.Input((5,)), L.Dense(3, activation=None if loss == "mse" else
                                                  "softmax")])
    model.compile(cf.optimizers.SGD(0.1), loss)
    k0, b0 = (a.astype(np.float64) for a in model.get_weights())
    y = labels if loss.startswith("sparse") else np.eye(3)[labels]
    history = model.fit(x, y, sample_weight=w, batch_size=6, shuffle=False, verbose=0)

    z = x.astype(np.float64) @ k0 + b0
    onehot = np.eye(3)[labels]
    if loss == "mse":
        per_sample = ((z - onehot) ** 2).mean(axis=1)
        dz = 2 * (z - onehot) / 3
    else:
        p = _softmax64(z)
        per_sample = -np.log(p[np.arange(6), labels])
        dz = p - onehot
    dz *= w[:, None] / 6
    # float32 forward and loss kernels against float64: a few ulps of values of order 1.
    assert history.history["loss"][0] == pytest.approx((w * per_sample).sum() / 6, rel=1e-5)
    k1, b1 = model.get_weights()
    np.testing.assert_allclose(k1, k0 - 0.1 * x.T.astype(np.float64) @ dz, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b1, b0 - 0.1 * dz.sum(axis=0), rtol=1e-5, atol=1e-6)


def test_class_weight_is_sample_weight_by_class():
    x, y = toy(12)
    table = {0: 1.0, 1: 2.5}  # class 2 missing: weight 1, as in Keras
    by_class, by_sample = tiny_cnn(), tiny_cnn()
    h1 = by_class.fit(x, y, class_weight=table, batch_size=4, shuffle=False, verbose=0)
    h2 = by_sample.fit(x, y, sample_weight=np.array([table.get(c, 1.0) for c in y]),
                       batch_size=4, shuffle=False, verbose=0)
    assert h1.history == h2.history
    assert_same_weights(by_class, by_sample)
    one_hot = tiny_cnn()
    one_hot.compile(cf.optimizers.SGD(0.05), "categorical_crossentropy", metrics=["accuracy"])
    h3 = one_hot.fit(x, np.eye(3)[y], class_weight=table, batch_size=4, shuffle=False, verbose=0)
    assert h3.history["loss"] == pytest.approx(h1.history["loss"], rel=1e-6)  # fp32 kernels
    with pytest.raises(ValueError, match="not both"):
        by_class.fit(x, y, class_weight=table, sample_weight=np.ones(12), verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(12,\)"):
        by_class.fit(x, y, sample_weight=np.ones(11), verbose=0)


def test_sample_weight_in_batches_and_evaluate():
    x, y = toy(12)
    w = np.linspace(0.0, 2.0, 12)
    model, ref = tiny_cnn(), tiny_cnn()
    ref.fit(x, y, sample_weight=w, batch_size=4, shuffle=False, verbose=0)
    model.fit(iter([(x[i:i + 4], y[i:i + 4], w[i:i + 4]) for i in (0, 4, 8)]), verbose=0)
    assert_same_weights(model, ref)
    weighted = model.evaluate(x, y, sample_weight=w, verbose=0)[0]
    plain = model.evaluate(x, y, verbose=0)[0]
    assert weighted != plain


def test_validation_batch_size():
    x, y = toy(20)
    model = tiny_cnn()
    history = model.fit(x[:12], y[:12], validation_data=(x[12:], y[12:]),
                        validation_batch_size=3, batch_size=4, verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[12:], y[12:], batch_size=3, verbose=0)[0], rel=1e-12)


# -- 4. assigning layer.kernel / layer.bias ---------------------------------------------------

def test_assigning_a_weight_takes_effect_in_predict_and_checks_the_shape():
    model = tiny_cnn()
    x, _ = toy(5)
    before = model.predict(x)
    conv, dense = model.get_layer("conv2d"), model.get_layer("dense")
    new_kernel = np.random.default_rng(2).standard_normal(dense.kernel.shape)
    dense.kernel = new_kernel
    dense.bias = dense.bias + 0.5
    conv.kernel = conv.kernel * 2.0
    after = model.predict(x)  # the cached C++ executor reads the same arrays
    assert not np.allclose(after, before)
    ref = tiny_cnn()
    weights = ref.get_weights()
    ref.set_weights([weights[0] * 2, weights[1], new_kernel, weights[3] + 0.5])
    np.testing.assert_array_equal(after, ref.predict(x))
    np.testing.assert_array_equal(model(x), after)
    with pytest.raises(ValueError, match=r"Dense 'dense'.*'kernel' has shape \(36, 3\), got "
                                         r"shape \(3, 36\)"):
        dense.kernel = new_kernel.T
    with pytest.raises(ValueError, match=r"Conv2D 'conv2d'.*'bias' has shape \(4,\), got "
                                         r"shape \(5,\)"):
        conv.bias = np.zeros(5)
    no_bias = L.Dense(2, use_bias=False)
    cf.Sequential([L.Input((3,)), no_bias])
    assert no_bias.bias is None
    with pytest.raises(ValueError, match="has no 'bias'"):
        no_bias.bias = np.zeros(2)
    with pytest.raises(AttributeError, match="before it is built"):
        _ = L.Dense(2).kernel


def test_assigned_weights_are_trained_from():
    x, y = toy(8)
    model, ref = tiny_cnn(), tiny_cnn()
    zeros = np.zeros((36, 3))
    model.get_layer("dense").kernel = zeros
    weights = ref.get_weights()
    ref.set_weights(weights[:2] + [zeros, weights[3]])
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    ref.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    assert_same_weights(model, ref)


# -- 5. callbacks -----------------------------------------------------------------------------

def test_lambda_callback_takes_keras_hooks():
    x, y = toy(12)
    seen = []
    cb = cf.callbacks.LambdaCallback(
        on_train_begin=lambda logs: seen.append("train_begin"),
        on_batch_begin=lambda batch, logs: seen.append(("begin", batch)),
        on_batch_end=lambda batch, logs: seen.append(("end", batch, round(logs["loss"], 9))),
        on_epoch_end=lambda epoch, logs: seen.append(("epoch", epoch)))
    tiny_cnn().fit(x, y, batch_size=6, callbacks=[cb], verbose=0)
    assert seen[0] == "train_begin" and seen[-1] == ("epoch", 0)
    assert [s[:2] for s in seen[1:-1]] == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1)]
    with pytest.raises(TypeError, match=r"unknown hook 'on_batch_ended'.*'on_batch_end'"):
        cf.callbacks.LambdaCallback(on_batch_ended=print)

    class Old(cf.callbacks.Callback):  # Keras's older batch hook names are called during fit
        count = 0

        def on_batch_end(self, batch, logs=None):
            Old.count += 1

    tiny_cnn().fit(x, y, batch_size=6, callbacks=[Old()], verbose=0)
    assert Old.count == 2


@pytest.mark.parametrize("make", [
    lambda path: cf.callbacks.EarlyStopping(monitor="val_los", patience=0),
    lambda path: cf.callbacks.ModelCheckpoint(path, monitor="val_los", save_best_only=True),
])
def test_missing_monitor_warns_once_per_fit_and_training_goes_on(make, tmp_path):
    x, y = toy(12)
    model = tiny_cnn()
    callback = make(tmp_path / "best.cnnfast")
    for _ in range(2):
        with pytest.warns(UserWarning, match=r"'val_los' is not in the logs; available: "
                                             r"\['accuracy', 'loss'\]") as record:
            history = model.fit(x, y, epochs=3, callbacks=[callback], verbose=0)
        assert len(record) == 1 and history.epoch == [0, 1, 2]
    assert not os.listdir(tmp_path)


# -- 6. metric names and raw pixels -----------------------------------------------------------

def test_misspelled_metric_is_unknown_and_the_valid_names_are_listed():
    model = tiny_cnn(compile_=False)
    with pytest.raises(ValueError, match=r"unknown metric 'acuracy' \(did you mean 'accuracy'\?\)"
                                         r"; valid names: \['accuracy', 'acc', "
                                         r"'top_k_categorical_accuracy'"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["acuracy"])
    with pytest.raises(NotImplementedError, match="'mae' is not implemented"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["mae"])
    with pytest.raises(TypeError, match=r"metrics must be a list, e\.g\. metrics=\['accuracy'\]"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics="accuracy")


def test_training_on_raw_uint8_pixels_warns_once_per_model():
    x, y = toy(8)
    raw = (x * 255).astype(np.uint8)
    model = tiny_cnn()
    with pytest.warns(UserWarning, match=r"integers up to \d+ \(dtype uint8\).*divide by 255"):
        model.fit(raw, y, verbose=0)
    model.fit(raw, y, verbose=0)  # once per model: no second warning (warnings are errors here)
    model.train_on_batch(raw, y)
    other = tiny_cnn()
    with pytest.warns(UserWarning, match="divide by 255"):
        other.train_on_batch(raw, y)
    quiet = tiny_cnn()
    quiet.fit((raw > 127).astype(np.uint8), y, verbose=0)  # 0/1 masks are not pixels
    quiet.fit(BatchIterator(raw, y, scale=1 / 255), verbose=0)
    quiet.evaluate(raw, y, verbose=0)  # inference: no warning
    with pytest.warns(UserWarning, match="divide by 255"):
        quiet.fit(iter([(raw, y)]), verbose=0)


# -- 7. error hints ---------------------------------------------------------------------------

def test_channels_first_and_missing_channel_axis_hints():
    model = cf.Sequential([L.Input((28, 28, 1)), L.Flatten(), L.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    y = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match=r"\(2, 1, 28, 28\).*channels-first.*"
                                         r"x\.transpose\(0, 2, 3, 1\)"):
        model.fit(np.zeros((2, 1, 28, 28)), y, verbose=0)
    with pytest.raises(ValueError, match=r"\(2, 28, 28\).*x\[\.\.\., None\]"):
        model.predict(np.zeros((2, 28, 28)))
    rgb = cf.Sequential([L.Input((32, 32, 3)), L.Flatten(), L.Dense(2)])
    with pytest.raises(ValueError, match=r"x\.transpose\(0, 2, 3, 1\)"):
        rgb.predict(np.zeros((2, 3, 32, 32)))


def test_dense_on_an_image_names_the_layer_and_suggests_flatten():
    model = cf.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                           L.Dense(10, activation="softmax")])
    with pytest.raises(ValueError, match=r"compile: Dense 'dense' receives input of shape "
                                         r"\(None, 6, 6, 4\).*Flatten\(\)"):
        model.compile("adam", "sparse_categorical_crossentropy")
    late = cf.Sequential([L.Conv2D(4, 3, activation="relu"), L.Dense(10, activation="softmax")])
    late.compile("adam", "categorical_crossentropy")  # no input shape yet
    with pytest.raises(ValueError, match=r"fit: Dense 'dense'.*Flatten\(\)"):
        late.fit(np.zeros((4, 8, 8, 1)), np.eye(10)[:4], verbose=0)
    # Dense on the last axis stays legal where the loss allows it (Keras).
    per_pixel = cf.Sequential([L.Input((4, 4, 2)), L.Dense(3)])
    per_pixel.compile("sgd", "mse")
    per_pixel.fit(np.zeros((2, 4, 4, 2)), np.zeros((2, 4, 4, 3)), verbose=0)


def test_conv2d_op_names_the_pytorch_kernel_layout():
    x = np.zeros((1, 5, 5, 3), np.float32)
    torch_layout = np.zeros((8, 3, 3, 3), np.float32)[:, :, :2]  # (K, C, KH, KW) = (8, 3, 2, 3)
    with pytest.raises(ValueError, match=r"PyTorch's \(C_out, C_in, KH, KW\) layout, got "
                                         r"\(8, 3, 2, 3\).*\(KH, KW, C_in, C_out\).*"
                                         r"transpose\(2, 3, 1, 0\)"):
        cf.ops.conv2d(x, torch_layout)
    assert cf.ops.conv2d(x, torch_layout.transpose(2, 3, 1, 0)).shape == (1, 4, 3, 8)


def test_callbacks_must_be_a_list_of_instances():
    x, y = toy(4)
    model = tiny_cnn()
    with pytest.raises(TypeError, match=r"a single EarlyStopping; pass callbacks=\[EarlyStopping"):
        model.fit(x, y, callbacks=cf.callbacks.EarlyStopping(), verbose=0)
    with pytest.raises(TypeError, match=r"the class EarlyStopping.*EarlyStopping\(\.\.\.\)"):
        model.fit(x, y, callbacks=[cf.callbacks.EarlyStopping], verbose=0)
    with pytest.raises(TypeError, match=r"the class History"):
        model.fit(x, y, callbacks=cf.callbacks.History, verbose=0)


# -- 8. files ---------------------------------------------------------------------------------

def test_save_refuses_a_folder_and_keras_suffixes_writing_nothing(tmp_path):
    model = tiny_cnn()
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"is a folder.*model\.cnnfast") as err:
        model.save(folder)
    assert isinstance(err.value, IsADirectoryError)
    for name in ("m.h5", "m.keras", "m.weights.h5"):
        with pytest.raises(ValueError, match=r"own single-file format.*\.cnnfast.*export_onnx"):
            model.save(tmp_path / name)
    with pytest.raises(ValueError, match="Keras 3"):
        model.save_weights(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="HDF5"):
        cf.callbacks.ModelCheckpoint(tmp_path / "ckpt-{epoch}.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not os.listdir(folder)
    model.save(tmp_path / "m.model")  # any other suffix is written
    assert cf.load_model(tmp_path / "m.model").get_config() == model.get_config()


def test_load_model_names_foreign_formats(tmp_path):
    pytest.importorskip("onnx")
    model = tiny_cnn()
    onnx_path = tmp_path / "m.onnx"
    cf.export_onnx(model, onnx_path)
    renamed = tmp_path / "m.bin"
    renamed.write_bytes(onnx_path.read_bytes())  # detected by content, not by name
    for path in (onnx_path, renamed):
        with pytest.raises(ValueError, match="an ONNX model; cnnfast loads only its own"):
            cf.load_model(path)
    h5 = tmp_path / "m.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(ValueError, match="HDF5 file"):
        cf.load_model(h5)
    keras_zip = tmp_path / "m.keras"
    with zipfile.ZipFile(keras_zip, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(ValueError, match=r"ZIP archive \(a Keras 3 \.keras model\?\)"):
        cf.load_model(keras_zip)
    with pytest.raises(ValueError, match="HDF5 file"):
        model.load_weights(h5)
