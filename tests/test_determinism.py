"""Determinism and concurrency: bit-identical training for a seed and thread count, agreement
across thread counts, and predict from several Python threads on one model.

(Ctrl-C during fit, which must stop at a batch boundary with the model usable, is covered by
tests/test_model.py::test_ctrl_c_stops_fit_at_a_batch_boundary.)
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import cnnfast as cf

L = cf.layers


def conv_net():
    """Big enough that every kernel call is split over threads: the second convolution is
    16x16x32 outputs x 3x3x16 taps = 1.18M MACs per image, 9.4M per batch of 8; the first conv's
    weight gradient reduces over 8 x 16 x 16 positions."""
    return cf.Sequential([
        L.Input((16, 16, 3)),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(32, 3, strides=2, padding="same", activation="elu"),
        L.AveragePooling2D(2),
        L.Flatten(),
        L.Dropout(0.25),
        L.Dense(32, activation="relu"),
        L.Dense(10, activation="softmax"),
    ])


def data(n=48):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, 16, 16, 3)).astype(np.float32)
    y = rng.integers(0, 10, n)
    return x, y


def train(threads: int, optimizer: str = "adam") -> tuple[list[np.ndarray], list[float]]:
    cf.set_num_threads(threads)
    cf.set_seed(2024)  # initial weights, shuffling and dropout masks
    model = conv_net()
    opt = cf.optimizers.Adam(1e-3) if optimizer == "adam" else cf.optimizers.SGD(0.05, 0.9, True)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    x, y = data()
    hist = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model.get_weights(), hist.history["loss"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_same_seed_and_threads_give_bit_identical_weights(restore_threads, threads, optimizer):
    w1, loss1 = train(threads, optimizer)
    w2, loss2 = train(threads, optimizer)
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert loss1 == loss2


def test_thread_counts_agree_within_tolerance(restore_threads):
    """1 vs 2 threads. The kernels split work so that each output is summed in the same order
    for any thread count where they can (the documented element-wise, loss, bias-gradient and
    direct-conv weight-gradient reductions); where a GEMM's K split depended on the thread
    count, float32 reassociation would differ by ~1e-7 relative per step, compounding over
    12 Adam steps to below 1e-4 of the weight scale - the tolerance here."""
    w1, loss1 = train(1)
    w2, loss2 = train(2)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(1.0, np.abs(a).max()))
    # The loss of the last step, from weights that agree to 1e-4 of their scale (above).
    np.testing.assert_allclose(loss1, loss2, rtol=1e-5)


def test_predict_from_several_python_threads_on_one_model(restore_threads):
    """The GIL is released inside the kernels, so threads really overlap; every thread must get
    exactly the single-threaded answer for its own inputs, including on the first call, when
    the C++ inference network is built lazily."""
    cf.set_num_threads(2)
    cf.set_seed(5)
    model = conv_net()
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((n, 16, 16, 3)).astype(np.float32) for n in (1, 7, 16, 33)]
    expected = [model._forward(x, training=False).copy() for x in inputs]  # Python layer path
    model._inference_cache = None  # force the lazy build to race
    barrier = threading.Barrier(len(inputs) * 2)
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(i: int, rep: int) -> None:
        try:
            barrier.wait()
            for k in range(10):
                out = model.predict(inputs[i], batch_size=8 if k % 2 else 32)
                results[(i, rep, k)] = out
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i, rep))
               for i in range(len(inputs)) for rep in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "predict threads hung"
    assert not errors, errors
    assert len(results) == len(inputs) * 2 * 10
    # Every thread's answer equals the sequential one for the same input and batch size
    # exactly (different batch sizes may round differently: other GEMM shapes and blocking).
    for (i, rep, k), out in results.items():
        sequential = model.predict(inputs[i], batch_size=8 if k % 2 else 32)
        np.testing.assert_array_equal(out, sequential)
        # The executor and the layer-by-layer path run the same kernels (the executor fuses
        # ReLU into the epilogue): the same float32 math up to an ulp or two.
        np.testing.assert_allclose(out, expected[i], rtol=1e-5, atol=1e-6)
