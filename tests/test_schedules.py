"""Learning-rate schedules (cnnfast.optimizers.schedules): Keras 3's values, per-step use by the
optimizers (on the iteration count, through the C++ step and the Python walk alike) and saving."""

from __future__ import annotations

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import layers as L
from cnnfast.optimizers import schedules as S

STEPS = (0, 3, 4, 5, 9, 12, 25)
# Values printed by Keras 3.15 (torch backend) for these schedules at STEPS, rounded to 7
# decimals: keras.optimizers.schedules.<Name>(**kwargs)(step).
KERAS_VALUES = [
    ('ExponentialDecay', {'initial_learning_rate': 0.1, 'decay_steps': 7, 'decay_rate': 0.5}, [0.1, 0.0742997, 0.067295, 0.0609507, 0.0410168, 0.0304753, 0.0084119]),
    ('ExponentialDecay', {'initial_learning_rate': 0.1, 'decay_steps': 7, 'decay_rate': 0.5, 'staircase': True}, [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.0125]),
    ('PiecewiseConstantDecay', {'boundaries': [3, 10], 'values': [1.0, 0.5, 0.1]}, [1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]),
    ('InverseTimeDecay', {'initial_learning_rate': 0.1, 'decay_steps': 4, 'decay_rate': 0.5}, [0.1, 0.0727273, 0.0666667, 0.0615385, 0.0470588, 0.04, 0.0242424]),
    ('InverseTimeDecay', {'initial_learning_rate': 0.1, 'decay_steps': 4, 'decay_rate': 0.5, 'staircase': True}, [0.1, 0.1, 0.0666667, 0.0666667, 0.05, 0.04, 0.025]),
    ('PolynomialDecay', {'initial_learning_rate': 0.1, 'decay_steps': 10, 'power': 2.0}, [0.1, 0.049051, 0.036064, 0.025075, 0.001099, 0.0001, 0.0001]),
    ('PolynomialDecay', {'initial_learning_rate': 0.1, 'decay_steps': 10, 'power': 0.5, 'cycle': True, 'end_learning_rate': 0.01}, [0.1, 0.0852994, 0.0797137, 0.0736396, 0.0384605, 0.066921, 0.0467423]),
    ('CosineDecay', {'initial_learning_rate': 0.1, 'decay_steps': 10, 'alpha': 0.1}, [0.1, 0.0814503, 0.0689058, 0.055, 0.0122025, 0.01, 0.01]),
    ('CosineDecay', {'initial_learning_rate': 0.0, 'decay_steps': 10, 'warmup_target': 0.2, 'warmup_steps': 5}, [0.0, 0.12, 0.16, 0.2, 0.1309017, 0.0412215, 0.0]),
    ('CosineDecayRestarts', {'initial_learning_rate': 0.1, 'first_decay_steps': 5}, [0.1, 0.0345491, 0.0095492, 0.1, 0.0654509, 0.0206107, 0.05]),
    ('CosineDecayRestarts', {'initial_learning_rate': 0.1, 'first_decay_steps': 5, 't_mul': 1.0, 'm_mul': 0.5, 'alpha': 0.1}, [0.1, 0.0410942, 0.0185942, 0.055, 0.0142971, 0.0247264, 0.0128125]),
    ('CosineDecayRestarts', {'initial_learning_rate': 0.1, 'first_decay_steps': 4, 't_mul': 1.5, 'm_mul': 0.8}, [0.1, 0.0146447, 0.08, 0.074641, 0.005359, 0.0565134, 0.0300454]),
]


@pytest.mark.parametrize("name,kwargs,want", KERAS_VALUES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(KERAS_VALUES)])
def test_schedule_values_match_keras(name, kwargs, want):
    schedule = getattr(S, name)(**kwargs)
    got = [schedule(step) for step in STEPS]
    # Keras computes in float32 (7 significant digits) and the values above are rounded to 7
    # decimals: 1e-6 relative plus 6e-8 absolute covers both.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=6e-8)
    again = S.deserialize(S.serialize(schedule))
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    assert [again(step) for step in STEPS] == got


def test_cosine_decay_restarts_restarts_on_the_period_boundary():
    # Periods of 4 and 6 steps: step 10 starts the third period at m_mul^2 of the peak. (Keras's
    # float32 log puts step 10 a rounding short of the boundary and answers the end of the
    # second period, 0.)
    s = S.CosineDecayRestarts(0.1, 4, t_mul=1.5, m_mul=0.8)
    assert s(10) == pytest.approx(0.1 * 0.8**2)


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match="ExponentialDecay: decay_steps must be > 0"):
        S.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="values must have one more element than boundaries"):
        S.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="boundaries must be non-decreasing"):
        S.PiecewiseConstantDecay([5, 2], [0.1, 0.2, 0.3])
    with pytest.raises(TypeError, match="CosineDecay: initial_learning_rate must be a number"):
        S.CosineDecay("a", 10)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'Cyclic'"):
        S.deserialize({"class_name": "Cyclic", "config": {}})


def _model(optimizer: cf.optimizers.Optimizer, python: bool) -> cf.Sequential:
    cf.set_seed(0)
    model = cf.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer, "categorical_crossentropy")
    model._force_python_training = python
    return model


@pytest.mark.parametrize("python", [False, True], ids=["plan", "walk"])
def test_sgd_steps_use_the_schedule_at_the_iteration_count(python):
    # With plain SGD, w_k = w_{k-1} - lr_k * g_k: each step's lr is read off the weights, and
    # Keras's rule is lr_k = schedule(iterations before the step) = schedule(k - 1).
    schedule = S.PiecewiseConstantDecay([0, 1, 2], [0.5, 0.25, 0.125, 0.0625])
    model = _model(cf.optimizers.SGD(schedule), python)
    assert (model._train_plan is None) == python
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    for k, want in enumerate([0.5, 0.25, 0.125, 0.0625, 0.0625]):
        assert model.optimizer.learning_rate == want
        before = [w.copy() for w in model.get_weights()]
        model.train_on_batch(x, y)
        grads = [g.copy() for g in model.layers[-1].grads()]
        for b, a, g in zip(before, model.get_weights(), grads):
            # One float32 subtraction of lr * g: within 1 ulp of the step.
            np.testing.assert_allclose(b - a, want * g, rtol=1e-5, atol=1e-7)
        assert model.optimizer.iterations == k + 1


def test_learning_rate_of_a_schedule_is_not_settable():
    opt = cf.optimizers.Adam(S.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.1
    opt.iterations = 10
    assert opt.learning_rate == pytest.approx(0.05)
    plain = cf.optimizers.SGD(0.1)
    plain.learning_rate = S.PiecewiseConstantDecay([0], [1.0, 0.5])  # Keras allows this
    assert plain.learning_rate == 1.0
    plain.iterations = 1
    assert plain.learning_rate == 0.5


@pytest.mark.parametrize("schedule", [
    S.ExponentialDecay(0.1, 3, 0.5, staircase=True), S.PiecewiseConstantDecay([2], [0.1, 0.01]),
    S.InverseTimeDecay(0.1, 2, 1.0), S.PolynomialDecay(0.1, 5, cycle=True),
    S.CosineDecay(0.0, 6, warmup_target=0.1, warmup_steps=2),
    S.CosineDecayRestarts(0.1, 3, m_mul=0.5),
], ids=lambda s: type(s).__name__)
def test_a_saved_model_keeps_its_schedule(schedule, tmp_path):
    model = _model(cf.optimizers.RMSprop(schedule, clipnorm=1.0), False)
    x = np.ones((4, 4), np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    path = tmp_path / "m.cnnfast"
    model.save(path)
    loaded = cf.load_model(path)
    opt = loaded.optimizer
    assert type(opt) is cf.optimizers.RMSprop and opt.clipnorm == 1.0
    assert type(opt._learning_rate) is type(schedule)
    assert opt._learning_rate.get_config() == schedule.get_config()
    assert opt.iterations == 2 and opt.learning_rate == schedule(2)
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
