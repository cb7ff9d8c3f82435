"""The Keras-style model API: building, compile/fit/evaluate/predict, callbacks, errors."""

import io
import re

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import layers as L


def readme_cnn():
    """The network of the README's example (also trained on MNIST in test_train_mnist.py)."""
    return cf.Sequential([
        L.Input((28, 28, 1)),
        L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.Flatten(),
        L.Dropout(0.2),
        L.Dense(10, activation="softmax"),
    ])


def small_cnn(seed=0):
    cf.set_seed(seed)
    return cf.Sequential([
        L.Input((8, 8, 2)),
        L.Conv2D(4, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dropout(0.25),
        L.Dense(3, activation="softmax"),
    ])


def toy_data(n=64, seed=0):
    """Three classes separable by which image quadrant is brightest."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.1, (n, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, n)
    for i, c in enumerate(y):
        r, s = divmod(int(c), 2)
        x[i, 4 * r:4 * r + 4, 4 * s:4 * s + 4, :] += 1.0
    return x, np.eye(3, dtype=np.float32)[y], y


def test_summary_matches_keras_param_counts(capsys):
    model = readme_cnn()
    # Keras: conv 3*3*1*64+64, conv 3*3*64*64+64, dense 7744*10+10.
    assert [layer.num_params() for layer in model.layers] == [640, 0, 36928, 0, 0, 77450]
    assert model.count_params() == 115018
    model.summary()
    out = capsys.readouterr().out
    for text in ("Layer (type)", "Output Shape", "Param #", "(None, 26, 26, 64)",
                 "(None, 7744)", "Total params: 115,018", "Trainable params: 115,018",
                 "Non-trainable params: 0", "conv2d_1 (Conv2D)"):
        assert text in out


def test_glorot_uniform_limits_and_zero_bias():
    cf.set_seed(3)
    model = readme_cnn()
    kernel, bias = model.layers[2].params()
    limit = np.sqrt(6.0 / (9 * 64 + 9 * 64))  # fan_in = fan_out = KH*KW*64
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    assert np.all(bias == 0)


def test_fit_learns_toy_problem_and_history():
    x, y, _ = toy_data(96)
    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=15, batch_size=16, verbose=0, validation_split=0.25)
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(hist.history["loss"]) == 15 and hist.epoch == list(range(15))
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    _, acc = model.evaluate(x, y, batch_size=32, verbose=0)
    assert acc >= 0.9
    probs = model.predict(x)
    assert probs.shape == (96, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)  # softmax rows, fp32


def test_evaluate_returns_loss_alone_without_metrics():
    x, y, _ = toy_data(20)
    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer="sgd")
    result = model.evaluate(x, y, verbose=0)
    assert isinstance(result, float)
    # The loss equals the mean clipped cross-entropy of the predicted probabilities.
    p = np.clip(model.predict(x).astype(np.float64), 1e-7, 1 - 1e-7)
    expected = -np.mean(np.sum(y * np.log(p), axis=1))
    assert result == pytest.approx(expected, rel=1e-5)  # fp32 softmax vs fp64 log


def test_sparse_labels_match_one_hot():
    x, y, labels = toy_data(32)
    a, b = small_cnn(1), small_cnn(1)
    a.compile(loss="categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    b.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    # Integer and one-hot kernels may round differently in the last bits (fp32 log-sum-exp).
    np.testing.assert_allclose(a.evaluate(x, y, verbose=0), b.evaluate(x, labels, verbose=0),
                               rtol=1e-6)
    cf.set_seed(5)  # same dropout masks in both steps
    la = a.train_on_batch(x, y)
    cf.set_seed(5)
    lb = b.train_on_batch(x, labels)
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)


def test_same_seed_gives_identical_training():
    x, y, _ = toy_data(48)
    runs = []
    for _ in range(2):
        model = small_cnn(seed=7)
        model.compile(loss="categorical_crossentropy", optimizer="adam")
        hist = model.fit(x, y, epochs=3, batch_size=10, verbose=0)
        runs.append((model.get_weights(), hist.history["loss"]))
    for wa, wb in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(wa, wb)
    assert runs[0][1] == runs[1][1]


def test_get_set_weights_roundtrip_and_errors():
    model = small_cnn()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(3, 3, 2, 4), (4,), (64, 3), (3,)]
    other = small_cnn(seed=99)
    other.set_weights(weights)
    for a, b in zip(other.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"conv2d.*kernel.*\(3, 3, 2, 4\).*\(3, 3\)"):
        other.set_weights([np.zeros((3, 3))] + weights[1:])
    with pytest.raises(ValueError, match="4 weight arrays, got 1"):
        other.set_weights(weights[:1])


def test_fit_before_compile_raises():
    x, y, _ = toy_data(8)
    with pytest.raises(RuntimeError, match="compile"):
        small_cnn().fit(x, y, verbose=0)


def test_wrong_input_shape_names_layer_and_shapes():
    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    with pytest.raises(ValueError, match=r"conv2d.*\(None, 8, 8, 2\).*\(4, 8, 8\)"):
        model.predict(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\(None, 8, 8, 2\).*\(4, 8, 8, 3\)"):
        model.fit(np.zeros((4, 8, 8, 3)), np.zeros((4, 3)), verbose=0)
    with pytest.raises(TypeError, match="numeric"):
        model.predict(np.array([["a"] * 2] * 8 * 8 * 2, dtype=object).reshape(2, 8, 8, 2))


def test_predict_on_scalar_samples():
    # A rank-0 per-sample shape: a batch is a vector; the C++ executor needs a sample axis, so
    # predict walks the layers in Python. A 0-d input is no batch and is refused with shapes.
    model = cf.Sequential([cf.layers.Activation("relu")])
    model.build(())
    np.testing.assert_array_equal(model.predict(np.array([1.5, -2.0], np.float32)), [1.5, 0.0])
    with pytest.raises(ValueError, match=r"activation.*\(None, \).*\(\)"):
        model.predict(np.array(1.0, np.float32))


def test_mismatched_x_y_and_bad_targets():
    x, y, labels = toy_data(10)
    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    with pytest.raises(ValueError, match=r"different numbers of samples.*\(10, 8, 8, 2\).*\(9, 3\)"):
        model.fit(x, y[:9], verbose=0)
    with pytest.raises(ValueError, match=r"targets of shape \(10, 4\).*\(None, 3\)"):
        model.fit(x, np.zeros((10, 4)), verbose=0)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.fit(x, labels + 3, verbose=0)


def test_non_finite_loss_names_epoch_and_batch():
    x, y, _ = toy_data(40)
    x[25] = np.nan  # batch 3 of 10 samples
    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    before = model.get_weights()
    with pytest.raises(FloatingPointError, match="epoch 1, batch 3"):
        model.fit(x, y, batch_size=10, shuffle=False, verbose=0)
    # Batches 1-2 updated the weights; the failing batch did not: they are finite and usable.
    after = model.get_weights()
    assert all(np.all(np.isfinite(w)) for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert np.all(np.isfinite(model.predict(x[:5])))


def test_ctrl_c_stops_fit_at_a_batch_boundary(capsys):
    import os
    import signal

    x, y, _ = toy_data(80)
    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    steps = []
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under nohup

    def interrupt(batch, logs):
        steps.append(batch)
        if batch == 2:
            os.kill(os.getpid(), signal.SIGINT)

    hist = model.fit(x, y, batch_size=10, epochs=3, verbose=0,
                     callbacks=[cf.callbacks.LambdaCallback(on_train_batch_end=interrupt)])
    assert steps == [0, 1, 2]  # stopped right after the interrupted batch
    assert len(hist.epoch) == 1 and np.isfinite(hist.history["loss"][0])
    assert "Interrupted" in capsys.readouterr().err
    assert np.all(np.isfinite(model.predict(x[:4])))
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


@pytest.mark.parametrize("make, message", [
    (lambda: L.Conv2D(0, 3), "filters must be a positive integer"),
    (lambda: L.Conv2D(4, 0), "kernel_size must be positive"),
    (lambda: L.Conv2D(4, 3, strides=0), "strides must be positive"),
    (lambda: L.Conv2D(4, 3, padding="full"), "padding"),
    (lambda: L.Conv2D(4, 3, activation="bogus"), "unknown activation"),
    (lambda: L.Dense(-1), "units must be a positive integer"),
    (lambda: L.MaxPooling2D(0), "pool_size must be positive"),
    (lambda: L.Dropout(1.0), r"rate must be in \[0, 1\)"),
])
def test_bad_layer_configs_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_kernel_larger_than_input_names_layer_and_shape():
    with pytest.raises(ValueError, match=r"Conv2D 'conv2d_1'.*\(5, 5\).*\(3, 3, 8\)"):
        cf.Sequential([L.Input((5, 5, 1)), L.Conv2D(8, 3), L.Conv2D(8, 5)])
    with pytest.raises(ValueError, match=r"MaxPooling2D.*\(1, 1, 4\)"):
        cf.Sequential([L.Input((3, 3, 1)), L.Conv2D(4, 3), L.MaxPooling2D(2)])


def test_strides_floor_like_keras():
    # (7 - 3) / 3 is not exact: Keras and PyTorch floor to 2 outputs, ignoring the last row.
    model = cf.Sequential([L.Input((7, 7, 1)), L.Conv2D(1, 3, strides=3)])
    assert model.output_shape_ == (2, 2, 1)
    same = cf.Sequential([L.Input((7, 7, 1)), L.Conv2D(1, 3, strides=3, padding="same")])
    assert same.output_shape_ == (3, 3, 1)


def test_unsupported_keras_options_raise_not_implemented():
    with pytest.raises(NotImplementedError, match="data_format"):
        L.Conv2D(4, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="unknown optimizer 'ftrl'"):
        small_cnn().compile(optimizer="ftrl", loss="mse")


def test_early_stopping_stops_and_restores_best():
    x, y, _ = toy_data(40)
    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer=cf.optimizers.SGD(learning_rate=0.0))
    # With a zero learning rate val_loss never improves after epoch 1: stop after patience.
    stopper = cf.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    hist = model.fit(x, y, epochs=20, validation_data=(x, y), callbacks=[stopper], verbose=0)
    assert len(hist.epoch) == 3
    assert stopper.stopped_epoch == 2

    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer=cf.optimizers.Adam(0.05))
    seen = []
    tracker = cf.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(model.get_weights()))
    stopper = cf.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    hist = model.fit(x, y, epochs=8, validation_data=(x[:8], y[:8]),
                     callbacks=[tracker, stopper], verbose=0)
    best = int(np.argmin(hist.history["val_loss"]))
    for got, want in zip(model.get_weights(), seen[best]):
        np.testing.assert_array_equal(got, want)


def test_progress_output_per_verbosity(capsys):
    x, y, _ = toy_data(30)
    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert re.search(r"4/4 \[=+\] - .*samples/s - loss: \d\.\d{4} - accuracy: \d\.\d{4}", out)
    model.fit(x, y, epochs=1, batch_size=8, verbose=2)
    assert re.search(r"4/4 - .*loss: ", capsys.readouterr().out)
    model.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_progress_bar_redraws_on_terminals():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = cf.callbacks.ProgressBar(3, verbose=1, stream=stream, min_interval=0.0)
    for step in range(1, 4):
        bar.update(step, step * 10, {"loss": 1.0 / step}, final=step == 3)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and "3/3 [" in text


def test_validation_split_takes_last_fraction():
    x, y, _ = toy_data(40)
    model = small_cnn()
    model.compile(loss="categorical_crossentropy", optimizer=cf.optimizers.SGD(0.0),
                  metrics=["accuracy"])
    hist = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0)
    expected = model.evaluate(x[30:], y[30:], verbose=0)
    assert hist.history["val_loss"][0] == pytest.approx(expected[0], rel=1e-6)


def test_mse_regression_and_sgd_momentum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    true_w = rng.normal(size=(4, 2)).astype(np.float32)
    y = x @ true_w + 0.5
    cf.set_seed(0)
    model = cf.Sequential([L.Input((4,)), L.Dense(2)])
    model.compile(loss="mse", optimizer=cf.optimizers.SGD(0.05, momentum=0.9, nesterov=True))
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    kernel, bias = model.get_weights()
    # Noise-free linear data: SGD converges to the generating weights.
    np.testing.assert_allclose(kernel, true_w, atol=1e-3)
    np.testing.assert_allclose(bias, 0.5, atol=1e-3)


def test_train_on_batch_matches_numpy_dense_step():
    """One SGD step of a softmax Dense model equals a float64 NumPy derivation."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    y = np.eye(4, dtype=np.float32)[labels]
    cf.set_seed(0)
    model = cf.Sequential([L.Input((5,)), L.Dense(4, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=cf.optimizers.SGD(0.1))
    w0, b0 = [a.astype(np.float64) for a in model.get_weights()]
    loss = model.train_on_batch(x, y)
    z = x.astype(np.float64) @ w0 + b0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(6), labels])), rel=1e-5)
    dz = (p - y) / 6
    w1, b1 = model.get_weights()
    # fp32 GEMM over 6 samples: errors ~1e-7 relative to entries of size ~1.
    np.testing.assert_allclose(w1, w0 - 0.1 * x.T.astype(np.float64) @ dz, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b1, b0 - 0.1 * dz.sum(0), rtol=1e-5, atol=1e-6)


def test_l2_regularizer_adds_to_loss_and_gradient():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    y = rng.normal(size=(4, 2)).astype(np.float32)
    cf.set_seed(0)
    model = cf.Sequential([L.Input((3,)), L.Dense(2, use_bias=False,
                                                  kernel_regularizer=cf.regularizers.L2(0.1))])
    model.compile(loss="mse", optimizer=cf.optimizers.SGD(0.5))
    (w0,) = [w.astype(np.float64) for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    pred = x @ w0
    assert loss == pytest.approx(np.mean((pred - y) ** 2) + 0.1 * np.sum(w0**2), rel=1e-5)
    grad = 2 * x.T @ (pred - y) / pred.size + 2 * 0.1 * w0
    np.testing.assert_allclose(model.get_weights()[0], w0 - 0.5 * grad, rtol=1e-5, atol=1e-6)


def test_set_num_threads_roundtrip():
    before = cf.get_num_threads()
    cf.set_num_threads(1)
    assert cf.get_num_threads() == 1
    cf.set_num_threads(0)
    assert cf.get_num_threads() == before


def test_core_type_stub_lists_every_binding():
    """cnnfast/_core.pyi must be regenerated when a binding is added or removed."""
    import ast
    import pathlib

    from cnnfast import _core

    stub = pathlib.Path(__file__).resolve().parents[1] / "cnnfast" / "_core.pyi"
    if not stub.exists():
        pytest.skip(f"{stub} not beside the tests")
    tree = ast.parse(stub.read_text())
    declared = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    declared |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]
                 if isinstance(t, ast.Name)}
    public = {name for name in dir(_core) if not name.startswith("_")}
    assert public - declared == set() and declared - public - {"__all__"} == set()


def test_training_step_allocates_no_arrays():
    """Once shapes settle, a training step reuses its buffers: no array is allocated.

    tracemalloc sees NumPy's data allocations; the smallest array of this step (the 64x10 loss
    gradient) is 2.5 KB, and the activations are hundreds of KB, so a peak under 2 KB above the
    starting point means only Python objects (views, tuples) were created.
    """
    import tracemalloc

    cf.set_seed(0)
    model = cf.models.keras_mnist_cnn()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
    for _ in range(2):  # first steps size the buffers and optimizer slots
        model.train_on_batch(x, y)
    x32, y32 = model._check_xy(x, y, "test")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            model._train_step(x32, y32)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 2048, f"a training step allocated {peak} bytes"


def test_relu_before_max_pool_is_differentiated_at_the_pooled_resolution():
    # Conv(relu) -> MaxPool: the plan's pooling step applies the ReLU's backward to the pooled
    # gradient (max-pooling commutes with ReLU). The Python walk, the reference, runs the ReLU's
    # backward at full resolution; the weights after a step must be bit-identical: the same
    # products, only masked at the other resolution. Ties at zero (all four inputs of a window
    # negative) come from the strongly negative bias. "same" padding keeps the opening pair out
    # of the conv+relu+pool head kernel (which sums in another order).
    def model():
        cf.set_seed(3)
        m = cf.Sequential([L.Input((10, 10, 2)),
                           L.Conv2D(8, 3, padding="same", activation="relu"),
                           L.MaxPooling2D(2), L.Conv2D(4, 3, padding="same", activation="relu"),
                           L.MaxPooling2D(2), L.Flatten(), L.Dense(3, activation="softmax")])
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        m.layers[0].weights_["bias"][:4] = -0.5
        return m

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 10, 10, 2)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 6)]
    folded, plain = model(), model()
    fusions = folded._train_plan.fusions
    assert any("'conv2d': relu differentiated by MaxPooling2D 'max_pooling2d'" in f
               for f in fusions), fusions
    assert any("'conv2d_1': relu differentiated by MaxPooling2D 'max_pooling2d_1'" in f
               for f in fusions), fusions
    plain._force_python_training = True
    before = folded.get_weights()
    for m in (folded, plain):
        m.train_on_batch(x, y)
    assert not np.array_equal(folded.get_weights()[0], before[0])
    for a, b in zip(folded.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
