"""Parameter and gradient arenas: one contiguous buffer each, layers' arrays are views, the
optimizer updates every trainable weight in one call; and the calls into the core per step."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import _core

L = cf.layers


def core_calls(fn) -> dict[str, int]:
    """Calls from Python into cnnfast._core while fn() runs, by name (sys.setprofile)."""
    counts: dict[str, int] = {}

    def profile(frame, event, arg):
        if event == "c_call":
            owner = getattr(arg, "__self__", None)
            module = getattr(arg, "__module__", None) or type(owner).__module__
            if module == "cnnfast._core" or owner is _core:
                counts[arg.__name__] = counts.get(arg.__name__, 0) + 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return counts


def lenet(seed=0):
    cf.set_seed(seed)
    model = cf.models.lenet5((28, 28, 1))
    model.build()
    return model


def batch(rng, n=32):
    return (rng.random((n, 28, 28, 1), dtype=np.float32),
            rng.integers(0, 10, n).astype(np.int64))


def test_weights_and_gradients_are_views_of_two_arenas(rng):
    model = lenet()
    model.compile(cf.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    flat_g, flat_w = model.flat_gradients(), model.flat_weights()
    for layer in model.layers:
        for name, w in layer.weights_.items():
            assert np.shares_memory(w, flat_w) and np.shares_memory(layer.gradients_[name], flat_g)
            assert w.ctypes.data % 64 == 0  # aligned for the SIMD kernels
    model.train_on_batch(*batch(rng))
    # The view holds the step's gradients, in trainable_weights order, gaps zero.
    pieces = [g.reshape(-1) for layer in model.layers for g in layer.grads()]
    packed = np.concatenate([np.concatenate([p, np.zeros(-p.size % 16, np.float32)])
                             for p in pieces])
    np.testing.assert_array_equal(model.flat_gradients(), packed)
    before = model.predict(batch(rng)[0])
    model.flat_weights()[:] *= 0.5  # writing into the view changes the model
    assert not np.allclose(model.predict(batch(rng)[0]), before)


@pytest.mark.parametrize("optimizer", [
    lambda: cf.optimizers.SGD(0.05), lambda: cf.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: cf.optimizers.Adam(1e-2, weight_decay=1e-3)])
def test_one_arena_update_equals_the_per_parameter_updates(optimizer, rng):
    """The same elementwise kernels on the arena: bit-identical weights and state."""
    model = lenet()
    opt = optimizer()
    model.compile(opt, "sparse_categorical_crossentropy")
    reference = optimizer()
    ref_weights = [w.copy() for w in model.trainable_weights]
    for _ in range(3):
        model.train_on_batch(*batch(rng))
        reference.apply(ref_weights, [g.copy() for layer in model.layers for g in layer.grads()])
    for got, want in zip(model.trainable_weights, ref_weights):
        np.testing.assert_array_equal(got, want)
    for i, slots in reference._slots.items():
        for got, want in zip(opt._slots[i], slots):
            np.testing.assert_array_equal(got, want)


def test_frozen_layers_stay_outside_the_update(rng):
    model = lenet()
    model.layers[0].trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    frozen = model.layers[0].get_weights()
    size = sum(-(-w.size // 16) * 16 for w in model.trainable_weights)
    assert model.flat_gradients().size == size
    model.train_on_batch(*batch(rng))
    for got, want in zip(model.layers[0].get_weights(), frozen):
        np.testing.assert_array_equal(got, want)


def test_calls_into_the_core_per_step_and_per_predict(rng):
    model = lenet()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = batch(rng)
    model.train_on_batch(x, y)  # shapes settle, buffers exist
    step = core_calls(lambda: model.train_on_batch(x, y))
    assert step == {"step": 1}  # forward, loss, backward and update in one C++ call
    print(f"LeNet-5 train_on_batch: {sum(step.values())} calls into the core: {step}")
    model._force_python_training = True  # the layer walk
    walk = core_calls(lambda: model.train_on_batch(x, y))
    assert walk.get("optimizer_update") == 1  # one update for all ten weight tensors
    print(f"LeNet-5 train_on_batch in Python: {sum(walk.values())} calls into the core: {walk}")
    model._force_python_training = False
    model.predict(x)  # builds the executor once
    predict = core_calls(lambda: model.predict(x, batch_size=len(x)))
    assert sum(predict.values()) == 1 and predict == {"forward": 1}
