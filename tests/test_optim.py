"""Keras optimizer steps (every optimizer, clipping) against float64 references over several
steps."""

from __future__ import annotations

import numpy as np
import pytest
import reference as R

import cnnfast as cf
from cnnfast import _core
from cnnfast.ops import optim as O

SIZES = [1, 7, 100_003]  # 1, odd, and above the 32K threading grain
STEPS = 6
# Each step does a handful of float32 operations on w (rounding 2^-24 relative each) whose
# operands are O(1): |w0| and the accumulated updates can reach ~1 before cancelling to a final w
# near 0. Over 6 steps that is <~16 roundings of O(1) values, 16 * 2^-24 ~ 1e-6 absolute, and a
# few roundings relative to w itself.
RTOL, ATOL = 2e-6, 1e-6


def _problem(n, rng):
    w = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(STEPS)]
    return w, grads


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgd_matches_keras_reference(n, momentum, nesterov, weight_decay, rng):
    w, grads = _problem(n, rng)
    lr = 0.05
    vel = np.zeros(n, np.float32) if momentum else None
    rw, rv = w.astype(np.float64), np.zeros(n)
    for g in grads:
        assert O.sgd_update(w, g, vel, lr=lr, momentum=momentum, nesterov=nesterov,
                            weight_decay=weight_decay) is None
        rw, rv = R.sgd_step(rw, g, rv, lr, momentum, nesterov, weight_decay)
    np.testing.assert_allclose(w, rw, rtol=RTOL, atol=ATOL)
    if momentum:
        np.testing.assert_allclose(vel, rv, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("lr,beta_1,beta_2,epsilon", [(1e-3, 0.9, 0.999, 1e-7),
                                                      (0.1, 0.5, 0.9, 1e-3)])
def test_adam_matches_keras_reference(n, weight_decay, lr, beta_1, beta_2, epsilon, rng):
    w, grads = _problem(n, rng)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    rw, rm, rv = w.astype(np.float64), np.zeros(n), np.zeros(n)
    for t, g in enumerate(grads, start=1):
        O.adam_update(w, g, m, v, t, lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                      weight_decay=weight_decay)
        rw, rm, rv = R.adam_step(rw, g, rm, rv, t, lr, beta_1, beta_2, epsilon, weight_decay)
    # m, v: a few float32 roundings per step; w: see RTOL/ATOL (update m/(sqrt v + eps) is
    # O(1) times lr, its relative error a few 2^-24).
    np.testing.assert_allclose(m, rm, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v, rv, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w, rw, rtol=RTOL, atol=ATOL)


def test_adam_first_step_moves_each_weight_by_lr():
    # With m = v = 0, step 1 gives m/(sqrt(v)+eps) = g/(|g|+eps'): every weight moves by ~lr.
    w = np.zeros(5, np.float32)
    g = np.array([3.0, -0.5, 1e-2, -20.0, 1.0], np.float32)
    O.adam_update(w, g, np.zeros(5, np.float32), np.zeros(5, np.float32), step=1)
    # Keras adds eps to sqrt(v) = sqrt(1 - beta_2)|g|: relative shortfall eps / (0.0316 |g|),
    # 3.2e-4 for the smallest |g| = 1e-2.
    np.testing.assert_allclose(w, -1e-3 * np.sign(g), rtol=4e-4)


def test_sgd_defaults_are_keras_defaults():
    w = np.ones(3, np.float32)
    O.sgd_update(w, np.ones(3, np.float32))
    np.testing.assert_array_equal(w, np.float32(1) - np.float32(0.01))


def test_optimizers_identical_for_1_and_2_threads(rng, restore_threads):
    w0, grads = _problem(100_003, rng)
    out = []
    for t in (1, 2):
        _core.set_num_threads(t)
        w, m, v, vel = w0.copy(), np.zeros_like(w0), np.zeros_like(w0), np.zeros_like(w0)
        w2 = w0.copy()
        for step, g in enumerate(grads, start=1):
            O.adam_update(w, g, m, v, step, weight_decay=0.01)
            O.sgd_update(w2, g, vel, momentum=0.9, nesterov=True)
        out.append((w, m, v, w2, vel))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_optimizer_errors():
    w = np.zeros((2, 3), np.float32)
    g = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="w must be a C-contiguous writable float32"):
        O.sgd_update(np.zeros((2, 3)), g)
    with pytest.raises(ValueError, match="w must be a C-contiguous writable float32"):
        O.sgd_update(np.zeros((3, 2), np.float32).T, g)
    with pytest.raises(ValueError, match="w must be a C-contiguous writable float32"):
        O.sgd_update([1.0, 2.0], [1.0, 2.0])
    ro = np.zeros((2, 3), np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        O.adam_update(ro, g, w.copy(), w.copy(), 1)
    with pytest.raises(ValueError, match=r"g \(3, 2\) must have the shape of w \(2, 3\)"):
        O.sgd_update(w, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="momentum=0.9 needs a velocity"):
        O.sgd_update(w, g, None, momentum=0.9)
    with pytest.raises(ValueError, match="needs a velocity"):
        _core.sgd_update(w, g, None, 0.1, 0.9, False, 0.0)
    with pytest.raises(ValueError, match=r"velocity \(6,\) must have the shape of w"):
        O.sgd_update(w, g, np.zeros(6, np.float32), momentum=0.9)
    with pytest.raises(ValueError, match="step must be"):
        O.adam_update(w, g, w.copy(), w.copy(), 0)
    with pytest.raises(ValueError, match="step must be"):
        _core.adam_update(w, g, w.copy(), w.copy(), 0, 1e-3, 0.9, 0.999, 1e-7, 0.0)
    with pytest.raises(ValueError, match=r"adam_update v \(3,\) and w \(2, 3\)"):
        _core.adam_update(w, g, w.copy(), np.zeros(3, np.float32), 1, 1e-3, 0.9, 0.999, 1e-7, 0.0)
    with pytest.raises(ValueError, match=r"m \(2, 2\) must have the shape of w \(2, 3\)"):
        O.adam_update(w, g, np.zeros((2, 2), np.float32), w.copy(), 1)


# -- the optimizers of cnnfast.optimizers, through Optimizer.apply_flat (one kernel call) ------

def _run(opt, w, grads, layout=None):
    layout = layout or [(0, w.shape)]
    for g in grads:
        opt.apply_flat(w, g.copy(), layout)  # g is clipped in place; keep the caller's
    return opt


KERAS_RULES = {
    # name: (optimizer, float64 reference of its whole run on (w, grads))
    "rmsprop": (lambda: cf.optimizers.RMSprop(0.01, weight_decay=0.01),
                lambda w, gs: _ref_rmsprop(w, gs, lr=0.01, weight_decay=0.01)),
    "rmsprop_momentum_centered": (
        lambda: cf.optimizers.RMSprop(0.01, rho=0.8, momentum=0.9, centered=True, epsilon=1e-3),
        lambda w, gs: _ref_rmsprop(w, gs, lr=0.01, rho=0.8, momentum=0.9, centered=True,
                                   epsilon=1e-3)),
    "adagrad": (lambda: cf.optimizers.Adagrad(0.1, initial_accumulator_value=0.5),
                lambda w, gs: _ref_chain(R.adagrad_step, w, gs, [np.full(w.shape, 0.5)],
                                         lr=0.1)),
    "adadelta": (lambda: cf.optimizers.Adadelta(1.0, rho=0.9, epsilon=1e-6, weight_decay=0.01),
                 lambda w, gs: _ref_chain(R.adadelta_step, w, gs, [np.zeros(w.shape)] * 2,
                                          lr=1.0, rho=0.9, epsilon=1e-6, weight_decay=0.01)),
    "adamax": (lambda: cf.optimizers.Adamax(0.01, beta_1=0.8),
               lambda w, gs: _ref_chain(R.adamax_step, w, gs, [np.zeros(w.shape)] * 2,
                                        stepped=True, lr=0.01, beta_1=0.8)),
    "nadam": (lambda: cf.optimizers.Nadam(0.01, weight_decay=0.01),
              lambda w, gs: _ref_chain(R.nadam_step, w, gs, [np.zeros(w.shape)] * 2,
                                       stepped=True, lr=0.01, weight_decay=0.01)),
    "adamw": (lambda: cf.optimizers.AdamW(0.01),
              lambda w, gs: _ref_chain(R.adam_step, w, gs, [np.zeros(w.shape)] * 2,
                                       stepped=True, lr=0.01, weight_decay=0.004)),
}


def _ref_chain(step_fn, w, grads, state, stepped=False, **kw):
    w = w.astype(np.float64)
    for t, g in enumerate(grads, start=1):
        w, *state = step_fn(w, g, *state, t, **kw) if stepped else step_fn(w, g, *state, **kw)
    return w, state


def _ref_rmsprop(w, grads, **kw):
    w, state = w.astype(np.float64), [np.zeros(w.shape)] * 3
    for g in grads:
        w, *state = R.rmsprop_step(w, g, *state, **kw)
    return w, state


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", sorted(KERAS_RULES))
def test_optimizer_matches_keras_float64_reference(name, n, rng):
    make, reference = KERAS_RULES[name]
    w, grads = _problem(n, rng)
    ref_w, ref_state = reference(w, grads)
    opt = _run(make(), w, grads)
    # Each step is a handful of float32 operations per element whose operands are O(1)
    # (normalised steps times lr <= 1): as for Adam above, <~16 roundings of O(1) values over
    # 6 steps; the slots (sums of g^2, of g) carry a few roundings relative to themselves.
    np.testing.assert_allclose(w, ref_w, rtol=RTOL, atol=ATOL, err_msg=name)
    for got, want in zip(opt._slots[0], ref_state):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=name)
    assert opt.iterations == STEPS


@pytest.mark.parametrize("n", SIZES)
def test_lion_matches_keras_float64_reference_step_by_step(n, rng):
    # Lion moves each weight by exactly +-lr (or 0): the sign of beta_1 m + (1 - beta_1) g. Run
    # over several steps, a sign computed from float32 m against float64 m could flip where that
    # sum is within rounding of 0, so each step is compared from the kernel's own state.
    w, grads = _problem(n, rng)
    opt = cf.optimizers.Lion(0.01, beta_1=0.8, beta_2=0.95, weight_decay=0.1)
    for g in grads:
        m = opt._slots[0][0].astype(np.float64) if opt._slots else np.zeros(n)
        ref_w, ref_m = R.lion_step(w, g, m, lr=0.01, beta_1=0.8, beta_2=0.95, weight_decay=0.1)
        opt.apply_flat(w, g.copy(), [(0, w.shape)])
        # w: two float32 roundings of O(1) values; m: two.
        np.testing.assert_allclose(w, ref_w, rtol=2e-7, atol=2e-7)
        np.testing.assert_allclose(opt._slots[0][0], ref_m, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("clip", [{"clipnorm": 0.5}, {"clipvalue": 0.3},
                                  {"global_clipnorm": 0.7}, {"global_clipnorm": 1e6}])
def test_clipping_matches_keras(clip, rng):
    # Three variables in one arena; plain SGD (w -= lr * g) shows the clipped gradients.
    shapes = [(3, 4), (5,), (40_000,)]  # the last above the threading grain
    sizes = [int(np.prod(s)) for s in shapes]
    layout, start = [], 0
    for shape, size in zip(shapes, sizes):
        layout.append((start, shape))
        start += size
    grads = [rng.standard_normal(size).astype(np.float32) * 0.2 for size in sizes]
    flat_g = np.concatenate(grads)
    w = np.zeros(start, np.float32)
    cf.optimizers.SGD(1.0, **clip).apply_flat(w, flat_g, layout)
    want = np.concatenate(R.clip_gradients(grads, **clip))
    # g * c / max(norm, c): two float32 roundings; the norm summed in double.
    np.testing.assert_allclose(-w, want, rtol=3e-7, atol=1e-9)
    if "global_clipnorm" in clip and clip["global_clipnorm"] == 1e6:
        np.testing.assert_array_equal(-w, np.concatenate(grads))  # below the norm: unchanged


def test_global_clipnorm_of_a_non_finite_gradient_is_nan():
    w = np.zeros(3, np.float32)
    cf.optimizers.SGD(1.0, global_clipnorm=1.0).apply_flat(
        w, np.array([1.0, np.inf, 0.0], np.float32), [(0, (3,))])
    assert np.isnan(w).all()  # Keras: the scale becomes NaN when the norm is not finite


def test_new_optimizers_identical_for_1_and_2_threads(rng, restore_threads):
    w0, grads = _problem(100_003, rng)
    for name, (make, _) in sorted(KERAS_RULES.items()):
        out = []
        for t in (1, 2):
            _core.set_num_threads(t)
            w = w0.copy()
            opt = _run(make(), w, grads)
            out.append((w, *opt._slots[0]))
        for a, b in zip(*out):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_keras_defaults():
    O_ = cf.optimizers
    assert O_.RMSprop().get_config() == {
        "learning_rate": 0.001, "weight_decay": 0.0, "clipnorm": None, "clipvalue": None,
        "global_clipnorm": None, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
        "centered": False}
    assert O_.Adagrad().get_config()["initial_accumulator_value"] == 0.1
    assert (O_.Adagrad().learning_rate, O_.Adagrad().epsilon) == (0.001, 1e-7)
    assert (O_.Adadelta().learning_rate, O_.Adadelta().rho, O_.Adadelta().epsilon) == \
        (0.001, 0.95, 1e-7)
    for cls in (O_.Adamax, O_.Nadam, O_.AdamW):
        o = cls()
        assert (o.learning_rate, o.beta_1, o.beta_2, o.epsilon) == (0.001, 0.9, 0.999, 1e-7)
    assert O_.AdamW().weight_decay == 0.004
    assert (O_.Lion().learning_rate, O_.Lion().beta_1, O_.Lion().beta_2) == (0.001, 0.9, 0.99)
    assert O_.RMSprop().slot_names == ("velocity",)
    assert O_.RMSprop(momentum=0.9, centered=True).slot_names == \
        ("velocity", "momentum", "average_gradient")
    assert isinstance(O_.get("rmsprop"), O_.RMSprop) and isinstance(O_.get("AdamW"), O_.AdamW)


def test_adagrad_accumulator_starts_at_initial_value():
    opt = cf.optimizers.Adagrad(0.1, initial_accumulator_value=0.25)
    w = np.zeros(4, np.float32)
    opt.apply_flat(w, np.zeros(4, np.float32), [(0, (4,))])
    np.testing.assert_array_equal(opt._slots[0][0], np.float32(0.25))
    np.testing.assert_array_equal(w, 0.0)


def test_optimizer_argument_errors_name_the_optimizer_and_argument():
    O_ = cf.optimizers
    with pytest.raises(ValueError, match="RMSprop: rho must be in"):
        O_.RMSprop(rho=1.5)
    with pytest.raises(ValueError, match="Adagrad: initial_accumulator_value must be >= 0"):
        O_.Adagrad(initial_accumulator_value=-1)
    with pytest.raises(ValueError, match="Lion: beta_1 must be in \\(0, 1\\]"):
        O_.Lion(beta_1=0.0)
    with pytest.raises(ValueError, match="Nadam: epsilon must be > 0"):
        O_.Nadam(epsilon=0)
    with pytest.raises(ValueError, match="Adamax: only one of clipnorm, clipvalue and "
                                         "global_clipnorm"):
        O_.Adamax(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="SGD: clipvalue must be > 0"):
        O_.SGD(clipvalue=-1.0)
    with pytest.raises(ValueError, match="Adadelta: learning_rate must be >= 0"):
        O_.Adadelta(learning_rate=float("nan"))
    with pytest.raises(TypeError, match="AdamW: learning_rate must be a number"):
        O_.AdamW(learning_rate="fast")
    with pytest.raises(ValueError, match="AdamW: weight_decay must be a number"):
        O_.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="unknown optimizer 'ftrl'"):
        O_.get("ftrl")
    w = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="optimizer_update: adagrad needs its 'accumulator'"):
        _core.optimizer_update(w, w.copy(), optimizer="adagrad", lr=0.1)
    with pytest.raises(ValueError, match=r"optimizer_update slot1: expected 3 floats"):
        _core.optimizer_update(w, w.copy(), w.copy(), np.zeros(2, np.float32), optimizer="adam")
    with pytest.raises(ValueError, match="iteration must be >= 1"):
        _core.optimizer_update(w, w.copy(), optimizer="sgd", iteration=0)


def test_ops_optimizer_update_is_the_optimizers_step(rng):
    w0, grads = _problem(50, rng)
    opt = cf.optimizers.RMSprop(0.01, momentum=0.5, centered=True, clipnorm=1.0)
    w_opt = w0.copy()
    _run(opt, w_opt, grads)
    w = w0.copy()
    slots = {n: np.zeros_like(w) for n in O.SLOTS["rmsprop"]}
    for t, g in enumerate(grads, start=1):
        O.optimizer_update("rmsprop", w, g.copy(), slots, lr=0.01, step=t, momentum=0.5,
                           centered=True, rho=0.9, epsilon=1e-7, clipnorm=1.0)
    np.testing.assert_array_equal(w, w_opt)  # the same kernel with the same arguments
    for name, state in zip(opt.slot_names, opt._slots[0]):
        np.testing.assert_array_equal(slots[name], state)
    with pytest.raises(ValueError, match="unknown optimizer; known"):
        O.optimizer_update("ftrl", w, grads[0].copy(), lr=0.1)
    with pytest.raises(ValueError, match=r"unknown slots \['v'\]"):
        O.optimizer_update("adagrad", w, grads[0].copy(), {"v": w.copy()}, lr=0.1)
    with pytest.raises(ValueError, match="adagrad needs its 'accumulator' slot"):
        O.optimizer_update("adagrad", w, grads[0].copy(), lr=0.1)
    with pytest.raises(ValueError, match=r"unknown settings \['rh0'\]"):
        O.optimizer_update("rmsprop", w, grads[0].copy(), slots, lr=0.1, rh0=0.9)
    with pytest.raises(ValueError, match="g must be a C-contiguous writable float32"):
        O.optimizer_update("sgd", w, grads[0].astype(np.float64), lr=0.1)
