"""Sealed weights (cnnfast._sealing): after a batch-1 predict of a model that is not compiled,
its weight arrays are read-only until something hands them out or writes them, and predict
then skips the kept Winograd kernels' digests. Every way to change the weights must still be
seen by the next predict; an array someone holds is never sealed."""

from __future__ import annotations

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import layers as L


def _model(seed=3):
    # 3x3 convolutions whose batch-1 forward keeps Winograd kernels (16x16 maps, 64 -> 128
    # channels: test_network's streamed kept kernel).
    cf.set_seed(seed)
    model = cf.Sequential([L.Input((16, 16, 64)),
                           L.Conv2D(128, 3, padding="same", activation="relu"),
                           L.Conv2D(64, 3, padding="same"), L.GlobalAveragePooling2D(),
                           L.Dense(5)])
    model.build()
    return model


def _kernel(model, i=1):
    """The layer's kernel array itself, read without unsealing it."""
    return dict.__getitem__(model.layers[i].weights_, "kernel")


def _want(model, x):
    """The outputs of a fresh model holding copies of `model`'s current weights."""
    fresh = _model()
    fresh.set_weights(model.get_weights())
    return fresh.predict(x, batch_size=len(x) + 40)


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((1, 16, 16, 64)).astype(np.float32)


def _sealed_model(x):
    model = _model()
    model.predict(x)
    model.predict(x)
    assert not _kernel(model).flags.writeable, "predict should seal an unshared model's arrays"
    return model


EDITS = {
    "model.weights": lambda m: m.weights[2].__imul__(0.5),
    "layer.kernel": lambda m: m.layers[1].kernel.__setitem__((1, 1, 3, 7), 2.0),
    "layer.weights_": lambda m: m.layers[1].weights_["kernel"].__iadd__(0.25),
    "trainable_weights": lambda m: m.trainable_weights[2].__setitem__(Ellipsis, 0.1),
    "layer.kernel =": lambda m: setattr(m.layers[1], "kernel", np.ones((3, 3, 128, 64))),
    "set_weights": lambda m: m.set_weights([w * 1.5 for w in m.get_weights()]),
    "layer.set_weights": lambda m: m.layers[1].set_weights([w - 0.5 for w in
                                                            m.layers[1].get_weights()]),
}


@pytest.mark.parametrize("how", sorted(EDITS))
def test_every_way_to_edit_sealed_weights_is_seen(x, how):
    model = _sealed_model(x)
    before = model.predict(x)
    EDITS[how](model)
    after = model.predict(x)
    assert not np.array_equal(after, before)
    np.testing.assert_allclose(after, _want(model, x), rtol=1e-5, atol=1e-5)
    # Sealed again, and still right.
    np.testing.assert_array_equal(model.predict(x), after)
    assert not _kernel(model).flags.writeable


def test_load_weights_into_sealed_model_is_seen(x, tmp_path):
    model = _sealed_model(x)
    other = _model(seed=9)
    path = tmp_path / "other.cnnfast"
    other.save(path)
    model.load_weights(path)
    np.testing.assert_allclose(model.predict(x), other.predict(x), rtol=1e-6, atol=1e-6)


def test_held_arrays_and_views_are_never_sealed(x):
    model = _model()
    kernel = model.layers[1].kernel          # a reference held across predicts
    model.predict(x)
    model.predict(x)
    assert kernel.flags.writeable
    kernel *= -1.0
    np.testing.assert_allclose(model.predict(x), _want(model, x), rtol=1e-5, atol=1e-5)
    del kernel
    model.predict(x)
    assert not _kernel(model).flags.writeable  # nobody holds it now
    view = model.layers[1].kernel[1]           # a view made after unsealing
    model.predict(x)
    model.predict(x)
    assert view.flags.writeable and _kernel(model).flags.writeable
    view[...] = 0.0
    np.testing.assert_allclose(model.predict(x), _want(model, x), rtol=1e-5, atol=1e-5)


def test_a_layer_shared_by_two_models_is_followed_by_both(x):
    a = _model()
    b = cf.Sequential([L.Input((16, 16, 64)), *a.layers])
    b.build()
    assert _kernel(b) is _kernel(a)
    a.predict(x)
    b.predict(x)
    a.predict(x)                               # sealed by a, after b's last call
    b.layers[1].kernel[0, 0, 0, 0] += 3.0      # unsealed and edited through b
    b.predict(x)                               # b re-digests and seals again
    np.testing.assert_allclose(a.predict(x), _want(a, x), rtol=1e-5, atol=1e-5)


def test_compiled_models_are_not_sealed_and_training_is_seen(x):
    model = _sealed_model(x)
    model.compile("sgd", "mse")
    assert _kernel(model).flags.writeable
    before = model.predict(x)
    y = np.ones((8, 5), np.float32)
    model.fit(np.repeat(x, 8, axis=0), y, epochs=2, batch_size=4, verbose=0)
    after = model.predict(x)
    model.predict(x)
    assert _kernel(model).flags.writeable
    assert not np.array_equal(after, before)
    np.testing.assert_allclose(after, _want(model, x), rtol=1e-5, atol=1e-5)
